"""Training: state, pure steps, the Trainer, the epoch loop, hooks, checkpoints, run dirs."""

from common.errors import DivergedError, LossExplodedError, NonFiniteLossError
from common.train.loop import fit, run_experiment, summarize
from common.train.metrics_log import TIMING_KEYS
from common.train.state import TrainState, count_params, create_train_state, model_variables
from common.train.tasks import Classification, Regression
from common.train.trainer import Trainer

__all__ = ["Classification", "DivergedError", "LossExplodedError", "NonFiniteLossError",
           "Regression", "TIMING_KEYS", "TrainState", "Trainer", "count_params",
           "create_train_state", "fit", "model_variables", "run_experiment", "summarize"]
