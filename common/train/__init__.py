"""Training: state, pure steps, the epoch loop, checkpoints and the run directory."""

from common.train.loop import NonFiniteLossError, fit, run_experiment, summarize
from common.train.metrics_log import TIMING_KEYS, read_metrics
from common.train.state import TrainState, count_params, create_train_state, model_variables
from common.train.tasks import Classification, Regression

__all__ = ["Classification", "NonFiniteLossError", "Regression", "TIMING_KEYS", "TrainState",
           "count_params", "create_train_state", "fit", "model_variables", "read_metrics",
           "run_experiment", "summarize"]
