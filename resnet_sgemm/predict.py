r"""Scores new SGEMM kernel configurations with a trained run directory.

  python -m resnet_sgemm.predict --workdir=RUN_DIR --input=kernels.csv --output=pred.csv

The input CSV needs the 14 parameter columns by name (MWG ... SB; other columns are kept
as they are). They are standardised with the run's ``scaler.json`` (training-split
statistics); the output adds ``predicted_log_ms`` (the model's output) and
``predicted_ms`` (its exponential: the predicted mean runtime in milliseconds).
"""

import csv
import os
import sys

if __package__ in (None, ""):  # `cd resnet_sgemm && python predict.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from common import fileio  # noqa: E402
from common.cli import run_main  # noqa: E402
from common.errors import RunDirError, UserError  # noqa: E402
from common.models import DENSE_MODELS, build_from_config  # noqa: E402
from common.train.restore import load_config, load_trained_state  # noqa: E402
from common.train.state import model_variables  # noqa: E402
from resnet_sgemm.data import FEATURES, SCALER  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained resnet_sgemm run directory.")
_INPUT = flags.DEFINE_string("input", None, "CSV of kernel configurations.")
_OUTPUT = flags.DEFINE_string("output", None, "Output CSV (default: standard output).")
flags.mark_flags_as_required(["workdir", "input"])


def predict_log_ms(run_path: str, features: np.ndarray) -> np.ndarray:
  """Predicted log mean runtime (ms) for raw (unstandardised) kernel parameters.

  Args:
    run_path: a resnet_sgemm run directory with a checkpoint and ``scaler.json``.
    features: array (N, 14) in the order of ``FEATURES``.

  Returns:
    Array (N,) of predicted log-milliseconds.
  """
  config = load_config(run_path)  # a run directory, before anything else is read
  scaler = read_scaler(run_path)
  x = ((features - np.asarray(scaler["mean"])) / np.asarray(scaler["std"])).astype(np.float32)
  model, _, _ = build_from_config(config, 1, DENSE_MODELS)
  state, _ = load_trained_state(run_path, model, (len(FEATURES),))
  apply = jax.jit(lambda v, xb: state.apply_fn(v, xb, train=False))
  return np.asarray(apply(model_variables(state), x))[:, 0]


def read_scaler(run_path: str) -> dict:
  """The run's ``scaler.json``, checked: the 14 features in order, a mean and a std each.

  Raises:
    RunDirError: missing or damaged, naming the command that writes it again.
  """
  path = os.path.join(run_path, SCALER)
  fix = (f"rerun the run's training command with --workdir={run_path}, which writes it "
         f"again without training, or restore it from a copy of the run")
  problems: list[str] = []
  scaler = fileio.read_json_or(path, None, problems, kind=dict)
  if scaler is None:
    raise RunDirError(f"{path} is missing or damaged ({problems[0] if problems else 'absent'}"
                      f"): {fix}.")
  ok = (scaler.get("features") == list(FEATURES)
        and all(isinstance(scaler.get(k), list) and len(scaler[k]) == len(FEATURES)
                and all(isinstance(v, (int, float)) for v in scaler[k])
                for k in ("mean", "std")))
  if not ok:
    raise RunDirError(f"{path} is not this experiment's input scaler (14 features with a "
                      f"mean and a std each): {fix}.")
  return scaler


def main(argv):
  del argv
  if not os.path.exists(_INPUT.value):
    raise UserError(f"--input={_INPUT.value} does not exist.")
  with open(_INPUT.value, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise UserError(f"{_INPUT.value} has no rows.")
  missing = [c for c in FEATURES if c not in rows[0]]
  if missing:
    raise UserError(f"{_INPUT.value} lacks the column(s) {', '.join(missing)}.")
  try:
    features = np.array([[float(r[c]) for c in FEATURES] for r in rows])
  except ValueError as e:
    raise UserError(f"{_INPUT.value} has a non-numeric parameter: {e}") from None
  log_ms = predict_log_ms(_WORKDIR.value, features)
  out = open(_OUTPUT.value, "w", newline="", encoding="utf-8") if _OUTPUT.value else sys.stdout
  writer = csv.DictWriter(out, fieldnames=[*rows[0].keys(), "predicted_log_ms", "predicted_ms"])
  writer.writeheader()
  for row, value in zip(rows, log_ms, strict=True):
    writer.writerow({**row, "predicted_log_ms": f"{value:.5f}",
                     "predicted_ms": f"{np.exp(value):.3f}"})
  if out is not sys.stdout:
    out.close()


if __name__ == "__main__":
  run_main(main)
