"""absl flags shared by every experiment's ``train.py``, and their conversion to a config.

Only entry points import this module; library code receives a :class:`TrainConfig`.
Each experiment calls :func:`define_train_flags` with its own defaults, so the flag names
(``--model``, ``--num_layers``, ``--epochs``...) are the same everywhere and are defined
once.
"""

import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app, flags, logging

from common.config import OPTIMIZERS, SCHEDULES, TrainConfig
from common.errors import ConfigError, Interrupted, NonFiniteLossError, UserError
from common.train import distributed

DATA_DIR_ENV = "GLONETS_DATA_DIR"


def define_train_flags(
    *, model: str, num_layers: int | None, features: int | None, epochs: int, batch_size: int,
    learning_rate: float, l2_reg_alpha: float = 0.0, validation_size: int | None = None,
    eval_batch_size: int = 1000, optimizer: str = "ADAM", lr_schedule: str = "constant",
    momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0,
    lr_boundaries: Sequence[int] = (), lr_decay_factor: float = 0.1,
    warmup_epochs: float = 0.0, remat: bool = False, grad_clip_norm: float = 0.0,
    extra_help: str = "") -> None:
  """Defines the common training flags with an experiment's defaults.

  Args:
    model: default ``--model``.
    num_layers: default ``--num_layers``.
    features: default ``--features`` (hidden width); None defines no such flag (the
      convolutional experiments, whose families fix every width: a ``--features`` they
      accepted would be recorded in ``config.json`` and ignored by the model). Such an
      experiment passes the width it records to :func:`config_from_flags`.
    epochs: default ``--epochs``.
    batch_size: default ``--batch_size``.
    learning_rate: default ``--learning_rate``.
    l2_reg_alpha: default ``--l2_reg_alpha``.
    validation_size: default ``--validation_size``; None defines no such flag (the
      experiment has a fixed train/val/test split).
    eval_batch_size: default ``--eval_batch_size``.
    optimizer: default ``--optimizer``.
    lr_schedule: default ``--lr_schedule``.
    momentum: default ``--momentum`` (SGD).
    nesterov: default ``--nesterov`` (SGD).
    weight_decay: default ``--weight_decay``.
    lr_boundaries: default ``--lr_boundaries`` (epochs, for the step schedule).
    lr_decay_factor: default ``--lr_decay_factor`` (step schedule).
    warmup_epochs: default ``--warmup_epochs``.
    remat: default ``--remat``.
    grad_clip_norm: default ``--grad_clip_norm`` (0: no clipping).
    extra_help: appended to the help of ``--model``.

  The defaults of the arguments reproduce the original recipe (Adam, constant learning
  rate, no weight decay, no warmup), so an experiment states only what it changes.
  """
  flags.DEFINE_string("model", model, f"Model name, optionally with a depth suffix. {extra_help}")
  flags.DEFINE_integer("num_layers", num_layers,
                       "Depth, counted as the experiment's README says (Dense layers for the "
                       "MLPs, weight layers for the CNNs); or a suffix of --model.",
                       lower_bound=1)
  if features is not None:
    flags.DEFINE_integer("features", features, "Hidden width.", lower_bound=1)
  flags.DEFINE_boolean("use_batch_norm", None,
                       "Batch norm in the blocks (default: the family's: on for every "
                       "convolutional family and the dense ResNet, off for the dense GloNet "
                       "and MLP).")
  flags.DEFINE_integer("epochs", epochs, "Total epochs.", lower_bound=1)
  flags.DEFINE_integer("batch_size", batch_size, "Training batch size.", lower_bound=1)
  flags.DEFINE_integer("eval_batch_size", eval_batch_size, "Evaluation batch size.",
                       lower_bound=1)
  flags.DEFINE_float("learning_rate", learning_rate, "Learning rate.", lower_bound=0.0)
  flags.DEFINE_enum("lr_schedule", lr_schedule, SCHEDULES,
                    "Learning-rate schedule: constant; cosine or linear decay to 0 over the "
                    "run; step (times --lr_decay_factor after each epoch of "
                    "--lr_boundaries); onecycle (cosine one-cycle peaking at "
                    "--learning_rate).")
  flags.DEFINE_list("lr_boundaries", [str(b) for b in lr_boundaries],
                    "With --lr_schedule=step: comma-separated epochs after which the "
                    "learning rate is multiplied by --lr_decay_factor (e.g. 100,150).")
  flags.DEFINE_float("lr_decay_factor", lr_decay_factor,
                     "Factor of the step schedule at each boundary, in (0, 1].")
  flags.DEFINE_float("warmup_epochs", warmup_epochs,
                     "Linear warmup from 0 to --learning_rate over this many epochs "
                     "(fractions allowed), then the schedule; not with onecycle.",
                     lower_bound=0.0)
  flags.DEFINE_enum("optimizer", optimizer, OPTIMIZERS, "Optimizer.", case_sensitive=False)
  flags.DEFINE_float("momentum", momentum, "SGD momentum.", lower_bound=0.0)
  flags.DEFINE_boolean("nesterov", nesterov, "Nesterov momentum (SGD only).")
  flags.DEFINE_float("weight_decay", weight_decay,
                     "weight_decay * w added to the gradient of every kernel (not biases or "
                     "batch norm) before the optimizer, as PyTorch's weight_decay; not part "
                     "of the reported loss.", lower_bound=0.0)
  flags.DEFINE_float("grad_clip_norm", grad_clip_norm,
                     "Clip the loss gradient to this global L2 norm before weight decay and "
                     "the optimizer (0: no clipping).", lower_bound=0.0)
  flags.DEFINE_float("l2_reg_alpha", l2_reg_alpha,
                     "Weight of sum(p^2) added to the training loss only.", lower_bound=0.0)
  flags.DEFINE_integer("seed", 0, "Seed of initialisation and data order.")
  if validation_size is not None:  # experiments with a fixed split define no such flag
    flags.DEFINE_integer("validation_size", validation_size,
                         "Examples held out of the training set for validation.",
                         lower_bound=1)
  flags.DEFINE_integer("split_seed", 0, "Seed of the validation (or train/val/test) split.")
  flags.DEFINE_string("data_dir", None, f"Data root (default: ${DATA_DIR_ENV}).")
  flags.DEFINE_string("workdir", None,
                      "Run directory; an existing one is resumed. Default: a new "
                      "<result_dir>/<model><depth>/session_<UTC time>_<random id>.")
  flags.DEFINE_string("result_dir", "training_results",
                      "Root of automatically named run directories.")
  flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard event files.")
  flags.DEFINE_boolean("progress", None, "Progress bar per epoch (default: on a terminal).")
  flags.DEFINE_integer("train_size", None, "Train on a fixed random subset of N training "
                       "examples (nested as N grows; smoke runs, learning curves; default: "
                       "all).", lower_bound=1)
  flags.DEFINE_boolean("remat", remat,
                       "Recompute the scanned blocks' activations in the backward pass "
                       "instead of storing them: less memory, more compute.")
  flags.DEFINE_integer("num_processes", 1,
                       "Processes of a multi-process run (one per host, or several on one "
                       "machine); each is started with the same flags and its own "
                       "--process_id. Under `srun --ntasks=N` Slurm's environment says it.",
                       lower_bound=1)
  flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.",
                       lower_bound=0)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 in a multi-process run (a free port).")


def define_image_flags(*, augment_help: str, label_smoothing: float = 0.0) -> None:
  """Defines the flags of the image experiments (CIFAR-10, Imagenette).

  Args:
    augment_help: what ``--augment`` does in this experiment.
    label_smoothing: default ``--label_smoothing``.
  """
  flags.DEFINE_boolean("augment", True, augment_help)
  flags.DEFINE_float("label_smoothing", label_smoothing,
                     "Label smoothing of the training loss.", lower_bound=0)
  flags.DEFINE_enum("carry", "avgpool_conv", ["avgpool_conv", "strided_conv"],
                    "GloNet: the map carrying the sum across a stage transition "
                    "(2x2 average pool + 1x1 conv, or the paper's stride-2 1x1 conv).")
  flags.DEFINE_enum("glonet_sum", "block", ["block", "stage"],
                    "GloNet: sum every block output (block) or the stem and each stage's "
                    "output only (stage: the authors' CIFAR notebook).")
  flags.DEFINE_boolean("glonet_head_norm", False,
                       "GloNet: batch norm (affine, no ReLU) on the sum before the head, as "
                       "ResNet-v2 normalises its stream; off: the paper's GloNet.")
  flags.DEFINE_boolean("glonet_head_rms", False,
                       "GloNet: scale-only norm on the sum before the head (each channel "
                       "divided by its root mean square: no centring, no shift, so early "
                       "exits keep their meaning); off: the paper's GloNet.")
  flags.DEFINE_string("cache_dir", None,
                      "Cache of decoded images (default: $GLONETS_CACHE_DIR, else the user "
                      "cache folder).")


def image_settings() -> dict[str, Any]:
  """The values of :func:`define_image_flags`'s flags, for :func:`config_from_flags`."""
  f = flags.FLAGS
  return {"augment": f.augment, "label_smoothing": f.label_smoothing, "carry": f.carry,
          "glonet_sum": f.glonet_sum, "glonet_head_norm": f.glonet_head_norm,
          "glonet_head_rms": f.glonet_head_rms,
          "cache_dir": f.cache_dir}


def define_recipe_flag(recipes: Mapping[str, Mapping[str, Any] | None], default: str,
                       help_text: str) -> None:
  """Defines ``--recipe``: named sets of flag defaults (None: the flags' own defaults)."""
  flags.DEFINE_enum("recipe", default, list(recipes), help_text)


def apply_recipe(recipes: Mapping[str, Mapping[str, Any] | None]) -> str:
  """Sets the chosen recipe's values on every flag the user did not give; returns its name.

  Flags given explicitly on the command line always win over the recipe.
  """
  name = flags.FLAGS.recipe
  for flag, value in (recipes[name] or {}).items():
    if not flags.FLAGS[flag].present:
      flags.FLAGS[flag].value = value
  return name


def _parse_boundaries(values: list[str]) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ConfigError(f"--lr_boundaries must be comma-separated whole epochs (e.g. 100,150); "
                      f"got {','.join(values)}.") from None


def config_from_flags(experiment: str, **extra: Any) -> TrainConfig:
  """Builds the frozen config from the parsed flags.

  Args:
    experiment: the experiment package name, recorded in the config.
    **extra: settings of flags that only this experiment defines (``augment``...), and
      ``features`` where the experiment defines no ``--features``.

  Returns:
    The :class:`TrainConfig`; ``data_dir`` falls back to ``$GLONETS_DATA_DIR``.

  Raises:
    ConfigError: an invalid value or combination of flags.
  """
  f = flags.FLAGS
  # `--model=GloNet50` carries its depth: the default --num_layers must not contradict it,
  # but an explicit --num_layers must agree with it (checked by the registry).
  has_suffix = f.model.rstrip("0123456789") != f.model
  num_layers = f.num_layers if (f["num_layers"].present or not has_suffix) else None
  if "features" in f:
    extra["features"] = f.features
  return TrainConfig(
      experiment=experiment, model=f.model, num_layers=num_layers,
      use_batch_norm=f.use_batch_norm, epochs=f.epochs, batch_size=f.batch_size,
      eval_batch_size=f.eval_batch_size, learning_rate=f.learning_rate,
      lr_schedule=f.lr_schedule, optimizer=f.optimizer.upper(), momentum=f.momentum,
      l2_reg_alpha=f.l2_reg_alpha, seed=f.seed,
      validation_size=f.validation_size if "validation_size" in f else None,
      split_seed=f.split_seed,
      data_dir=f.data_dir or os.environ.get(DATA_DIR_ENV) or None,
      workdir=f.workdir, result_dir=f.result_dir, tensorboard=f.tensorboard,
      progress=f.progress, weight_decay=f.weight_decay, nesterov=f.nesterov,
      lr_boundaries=_parse_boundaries(f.lr_boundaries), lr_decay_factor=f.lr_decay_factor,
      warmup_epochs=f.warmup_epochs, remat=f.remat, train_size=f.train_size,
      grad_clip_norm=f.grad_clip_norm, **extra)


def run_main(main: Callable[[list[str]], Any], positional: bool = False) -> None:
  """``app.run(main)`` that turns :class:`UserError` into one message and exit status 2.

  Expected problems (unknown model, missing data, a locked run directory...) are not
  bugs, so they get a plain ``error: ...`` line on stderr instead of a traceback. A run
  stopped by a signal (SIGTERM, Ctrl-C, SIGHUP) prints one ``interrupted by ...`` line and
  exits with ``128 + signum`` (143 for SIGTERM, 130 for Ctrl-C).

  Args:
    main: the program, ``main(argv)``.
    positional: accept positional arguments (otherwise they are a usage error).
  """

  def wrapped(argv):
    if len(argv) > 1 and not positional:  # e.g. `--glonet_head_norm true`
      sys.stderr.write(f"error: unexpected arguments: {' '.join(argv[1:])}; flags take "
                       "the form --name=value (a boolean also --name or --noname).\n")
      sys.exit(2)
    logging.set_verbosity(logging.INFO)
    from common.train import checkpoint  # noqa: PLC0415  (orbax only when a program runs)
    checkpoint.quiet_orbax_info_logs()
    try:
      if "num_processes" in flags.FLAGS:  # before any JAX work, as JAX requires
        f = flags.FLAGS
        distributed.initialize(f.num_processes, f.process_id, f.coordinator_address)
      return main(argv)
    except UserError as e:
      sys.stderr.write(f"error: {e}\n")
      sys.exit(2)
    except NonFiniteLossError as e:  # an experimental outcome, recorded in the run dir
      sys.stderr.write(f"error: {e}\n")
      sys.exit(1)
    except KeyboardInterrupt as e:  # a signal (see common.train.signals): one line, no trace
      signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
      name = e.signal_name if isinstance(e, Interrupted) else "Ctrl-C"
      sys.stderr.write(f"interrupted by {name}: rerun the same command to go on (a run "
                       f"directory, once made, keeps every finished epoch).\n")
      sys.exit(128 + int(signum))

  app.run(wrapped, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag as one ``error:`` line and exit status 2 (absl
  itself prints a FATAL line and exits with 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}. Pass --helpfull to list the flags.\n")
    sys.exit(2)
