r"""Command lines: ``--config`` with overrides, the original repository's flags, the runner.

  python -m linear_mnist.train --model=GloNet --num_layers=10 --features=256 --epochs=10
  python -m resnet_cifar10.train --config=resnet_cifar10/configs/default.py:authors \
      --config.optim.learning_rate=0.05

``--config`` names a config file and variant (default: the experiment's
``configs/default.py``); ``--config.<section>.<key>=value`` overrides any field. The
original flags (``--model``, ``--num_layers``, ``--epochs``...) are shorthands for fields,
applied on top; each experiment accepts those whose field its config has. ``--recipe=X``
is ``--config=<experiment>/configs/default.py:X``.
"""

import importlib.util
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from common import startup
from common.config import FIELDS
from common.errors import ConfigError, DivergedError, Interrupted, UserError

# Shorthand flag -> (flag type, help); the field it sets is config.FIELDS[flag].
SHORTHANDS: dict[str, tuple[str, str]] = {
    "model": ("string", "Model: a family, optionally with its depth (GloNet50)."),
    "num_layers": ("integer", "Depth (the README's convention)."),
    "features": ("integer", "Hidden width."),
    "use_batch_norm": ("boolean",
                       "Batch norm in the blocks (default: the family's)."),
    "carry": ("string", "CNN GloNet: map across a stage transition "
              "(avgpool_conv, strided_conv)."),
    "glonet_sum": ("string", "CNN GloNet: sum every block or stage."),
    "glonet_head_norm": ("boolean",
                         "CNN GloNet: batch norm on the sum before the head."),
    "glonet_head_rms": ("boolean",
                        "CNN GloNet: scale-only norm on the sum before the head."),
    "validation_size": ("integer",
                        "Training examples held out for validation."),
    "split_seed": ("integer", "Seed of the validation split."),
    "train_size": ("integer",
                   "Train on a fixed random subset of N examples."),
    "augment": ("boolean", "Augment training images."),
    "label_smoothing": ("float", "Label smoothing of the loss."),
    "image_size": ("integer", "Model input side in pixels."),
    "min_crop_area": ("float",
                      "Smallest random-resized crop, as a fraction of the area."),
    "allow_unofficial_data": ("boolean",
                              "Accept data files that are not the official release."),
    "optimizer": ("string", "ADAM or SGD."),
    "learning_rate": ("float", "(Peak) learning rate."),
    "momentum": ("float", "SGD momentum."),
    "nesterov": ("boolean", "Nesterov momentum (SGD)."),
    "lr_schedule": ("string",
                    "constant, cosine, linear, step, onecycle or plateau."),
    "warmup_epochs": ("float", "Linear warmup epochs."),
    "lr_boundaries": ("list",
                      "Step schedule: epochs after which the rate is multiplied."),
    "lr_decay_factor": ("float", "Step and plateau schedules' factor."),
    "plateau_patience": ("integer", "Plateau schedule: epochs without improvement."),
    "weight_decay": ("float", "Weight decay of the kernels."),
    "l2_reg_alpha": ("float", "sum(p^2) in the training loss."),
    "grad_clip_norm": ("float",
                       "Clip the loss gradient's global norm (0: off)."),
    "epochs": ("integer", "Total epochs."),
    "batch_size": ("integer", "Training batch size."),
    "seed": ("integer", "Seed of initialisation and data order."),
    "eval_batch_size": ("integer", "Evaluation batch size."),
    "patience": ("integer", "Early stopping: epochs without improvement (0: off)."),
    "min_delta": ("float", "Early stopping: the smallest improvement that counts."),
    "workdir": ("string", "Run directory; an existing one is resumed."),
    "result_dir": ("string", "Root of automatically named run directories."),
    "data_dir": ("string", "Data root (default: $GLONETS_DATA_DIR)."),
    "cache_dir": ("string", "Cache of decoded images."),
    "remat": ("boolean", "Recompute scanned blocks in the backward pass."),
    "tensorboard": ("boolean", "Write TensorBoard event files."),
    "progress": ("boolean", "Progress bar per epoch (default: on a terminal)."),
}


def _has_field(config: ml_collections.ConfigDict, path: str) -> bool:
  section, key = path.split(".")
  return key in config[section]


def define_flags(experiment: str, config_file: str, flag_values: flags.FlagValues = flags.FLAGS,
                 argv: list[str] | None = None) -> None:
  """Defines ``--config``, ``--recipe``, the shorthands this experiment's config has, and
  the multi-process flags.

  Args:
    experiment: the experiment package.
    config_file: its default config file.
    flag_values: where to define them (absl's global flags for a program).
    argv: the command line ``--config.*`` overrides are read from (default ``sys.argv``).
  """
  # Listed by --help as the program's own flags (absl lists the main module's).
  module = sys.argv[0] if flag_values is flags.FLAGS else experiment
  main_module = {"module_name": module, "flag_values": flag_values}
  config_flags.DEFINE_config_file(
      "config", config_file, f"Config file and variant, e.g. {experiment}/configs/default.py:"
      f"<variant>; --config.<section>.<key>=value overrides a field.", lock_config=True,
      flag_values=flag_values, sys_argv=argv)
  flag_values.register_flag_by_module(module, flag_values["config"])
  default, variants = _load_default(config_file)
  flags.DEFINE_string("recipe", None, f"A variant of the default config file "
                      f"({', '.join(variants)}; smoke: a first run in about a minute): the "
                      f"same as --config=<its path>:<variant>.", **main_module)
  for name, (kind, help_text) in SHORTHANDS.items():
    path = FIELDS[name]
    if _has_field(default, path):
      section, key = path.split(".")
      getattr(flags, f"DEFINE_{kind}")(
          name, None, f"{help_text} Sets --config.{path} (default {default[section][key]}).",
          **main_module)
  flags.DEFINE_integer("num_processes", 1, "Processes of a multi-process run (one per host); "
                       "each is started with the same flags and its own --process_id. Under "
                       "`srun --ntasks=N` Slurm's environment says it.", lower_bound=1,
                       **main_module)
  flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.",
                       lower_bound=0, **main_module)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 in a multi-process run (a free port).",
                      **main_module)


def _load_default(config_file: str) -> tuple[ml_collections.ConfigDict, tuple[str, ...]]:
  """The config file's default config and its variants."""
  spec = importlib.util.spec_from_file_location("_default_config", config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(), tuple(getattr(module, "VARIANTS", ()))


def default_config_file(experiment: str) -> str:
  """The experiment's ``configs/default.py``."""
  spec = importlib.util.find_spec(experiment)
  if spec is None or not spec.submodule_search_locations:
    raise ConfigError(f"no experiment package {experiment!r}.")
  return os.path.join(list(spec.submodule_search_locations)[0], "configs", "default.py")


def parse_config(experiment: str, argv: list[str]) -> ml_collections.ConfigDict:
  """The config a ``train.py`` command line asks for, parsed in process on flags of its own
  (nothing global is read or changed): what the program would run.

  Args:
    experiment: the experiment package (``linear_mnist``).
    argv: the command line, program name first.

  Raises:
    ConfigError: what the program would print as its one ``error:`` line.
  """
  config_file = default_config_file(experiment)
  argv = _recipe_to_config(list(argv), config_file)
  flag_values = flags.FlagValues()
  problem = _flag_problem(define_flags, experiment, config_file, flag_values, argv)
  if problem is None:
    rest = []
    problem = _flag_problem(lambda: rest.extend(flag_values(argv)[1:]))
    if problem is None and rest:
      problem = _unexpected(rest)
  if problem is not None:
    raise ConfigError(problem)
  return config_from_flags(flag_values)


def config_from_flags(f: flags.FlagValues = flags.FLAGS) -> ml_collections.ConfigDict:
  """The parsed ``--config`` with its overrides and the shorthand flags applied."""
  try:
    config = f.config
    config.get("experiment")  # a config that failed to load raises on first use
  except OSError as e:  # config_flags defers a file that fails to load to the first read
    raise ConfigError(f"--config could not be loaded: {_root_cause(e)}") from None
  for name, (kind, _) in SHORTHANDS.items():
    path = FIELDS[name]
    if name in f and f[name].present:
      value = f[name].value
      if kind == "list":
        value = _whole_epochs(value, name)
      section, key = path.split(".")
      try:
        config[section][key] = value
      except TypeError as e:
        raise ConfigError(f"--{name}={value}: {e}") from None
  # `--model=GloNet50` carries its depth: the config's depth must not contradict it.
  model = config.model.name
  if (model.rstrip("0123456789") != model and "num_layers" in f
      and not f["num_layers"].present and f["model"].present):
    config.model.depth = None
  return config


def _whole_epochs(values: list[str], name: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ConfigError(f"--{name} must be comma-separated whole epochs (e.g. 100,150); "
                      f"got {','.join(values)}.") from None


def _recipe_to_config(argv: list[str], config_file: str) -> list[str]:
  """``--recipe=X`` becomes ``--config=<config_file>:X`` (before parsing, so that
  ``--config.*`` overrides apply to that variant)."""
  out, recipe = [], None
  args = iter(argv)
  for arg in args:
    if arg.startswith("--recipe="):
      recipe = arg.split("=", 1)[1]
    elif arg == "--recipe":
      recipe = next(args, "")
    else:
      out.append(arg)
  if recipe is None:
    return argv
  if any(a == "--config" or a.startswith("--config=") for a in out):
    raise ConfigError("--recipe and --config both choose the config; give one.")
  return [out[0], f"--config={config_file}:{recipe}", *out[1:]]


def main(experiment: str, train_file: str) -> None:
  """The command line of an experiment's ``train.py``: flags to :func:`common.experiment.run`.

  Args:
    experiment: the experiment package (``linear_mnist``).
    train_file: its ``train.py`` (``__file__``), beside which ``configs/`` lies.
  """
  config_file = os.path.join(os.path.dirname(os.path.abspath(train_file)), "configs",
                             "default.py")
  _or_error_line(lambda: setattr(sys, "argv", _recipe_to_config(sys.argv, config_file)))
  # config_flags reads its overrides from sys.argv as the flag is defined.
  _or_error_line(define_flags, experiment, config_file)

  def train(argv: list[str]) -> None:
    del argv
    from common import experiment as experiment_lib  # noqa: PLC0415  (JAX after the flags)
    experiment_lib.run(config_from_flags())

  run_main(train)


def run_main(main_fn: Callable[[list[str]], Any], positional: bool = False) -> None:
  """``app.run(main_fn)`` that turns :class:`UserError` into one message and exit status 2.

  Expected problems (unknown model, missing data, a locked run directory...) are not
  bugs, so they get a plain ``error: ...`` line on stderr instead of a traceback. A run
  stopped by a signal (SIGTERM, Ctrl-C, SIGHUP) prints one ``interrupted by ...`` line and
  exits with ``128 + signum`` (143 for SIGTERM, 130 for Ctrl-C).

  Args:
    main_fn: the program, ``main_fn(argv)``.
    positional: accept positional arguments (otherwise they are a usage error).
  """

  def wrapped(argv):
    if len(argv) > 1 and not positional:  # e.g. `--glonet_head_norm true`
      sys.stderr.write(f"error: {_unexpected(argv[1:])}\n")
      sys.exit(2)
    logging.set_verbosity(logging.INFO)
    from common.train import checkpoint  # noqa: PLC0415  (orbax only when a program runs)
    from common.train.signals import interrupt_on_signals  # noqa: PLC0415
    checkpoint.quiet_orbax_info_logs()
    startup.started()  # signals now stop the program as below, no longer at once
    try:
      # From the start, not only once a run directory exists: SIGTERM while the data are
      # read or decoded once killed the process silently, leaving a partial cache file.
      with interrupt_on_signals():
        if "num_processes" in flags.FLAGS:  # before any JAX work, as JAX requires
          from common.train import distributed  # noqa: PLC0415  (reports need no JAX)
          f = flags.FLAGS
          distributed.initialize(f.num_processes, f.process_id, f.coordinator_address)
        return main_fn(argv)
    except UserError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)
    except DivergedError as e:  # an experimental outcome, recorded in the run dir
      sys.stderr.write(f"error: {e}\n")
      sys.exit(1)
    except KeyboardInterrupt as e:  # a signal (see common.train.signals): one line, no trace
      signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
      name = e.signal_name if isinstance(e, Interrupted) else "Ctrl-C"
      sys.stderr.write(f"interrupted by {name}: rerun the same command to go on (a run "
                       f"directory, once made, keeps every finished epoch).\n")
      sys.exit(128 + int(signum))

  app.run(wrapped, flags_parser=_parse_flags)


_HELP = ("--help", "-help", "--helpshort", "--helpfull", "--helpxml", "-h", "-?")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, a bad flag as one ``error:`` line and exit status 2 (absl itself
  prints a FATAL line and exits with 1), and help asked for with exit status 0 (absl's 1
  reads as a failure to scripts)."""
  try:
    return _or_error_line(flags.FLAGS, argv)
  except SystemExit as e:
    if e.code == 1 and any(a in _HELP for a in argv[1:]):
      sys.exit(0)
    raise


def _unexpected(args: list[str]) -> str:
  return (f"unexpected arguments: {' '.join(args)}; flags take the form --name=value (a "
          "boolean also --name or --noname).")


def _or_error_line(fn: Callable[..., Any], *args: Any) -> Any:
  """``fn(*args)``, or one ``error:`` line and exit status 2 for a bad flag, config file
  or config key."""
  result = []
  problem = _flag_problem(lambda: result.append(fn(*args)))
  if problem is None:
    return result[0]
  sys.stderr.write(f"error: {problem}\n")
  sys.exit(2)


def _flag_problem(fn: Callable[..., Any], *args: Any) -> str | None:
  """Calls ``fn(*args)``; returns what is wrong with the flags, config file or config key
  it parsed (None when nothing is)."""
  try:
    fn(*args)
  except flags.Error as e:
    return f"{e}. Pass --help to list the flags."
  except (AttributeError, KeyError) as e:  # config_flags: an override of no such field
    text = str(e.args[0] if e.args else e).replace("\\'", "'").replace("\\n", "\n")
    name, *hint = [line.strip(" '\"") for line in text.splitlines() if line.strip(" '\"")]
    return (f"a --config override names no field of the config: {name}"
            f"{'. ' + hint[0] if hint else ''}.".replace("?.", "?"))
  except UserError as e:  # raised by get_config: an unknown variant
    return str(e)
  except OSError as e:  # config_flags: a config file that does not load
    return f"--config could not be loaded: {_root_cause(e)}"
  return None


def _root_cause(error: BaseException) -> str:
  while error.__cause__ or error.__context__:
    error = error.__cause__ or error.__context__
  return str(error).strip().splitlines()[-1].strip()
