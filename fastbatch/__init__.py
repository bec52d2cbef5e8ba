"""fastbatch: fast mini-batch training of small dense networks, in records, batches, steps and epochs."""
from . import config
from ._data import split_indices
from ._task import Task, decide as decide_task
from .callbacks import Callback, LambdaCallback
from .errors import DivergenceError, NotFittedError
from .compare import compare_batch_sizes, scaled_learning_rate
from .history import History
from .schedule import Plan, epoch_order, last_batch_size, plan, schedule_lines, split_sizes, steps_per_epoch
from .trainer import Trainer

__version__ = "0.1.0"
__all__ = ["Trainer", "config", "split_indices", "decide_task", "Task", "History", "Plan", "plan", "steps_per_epoch", "last_batch_size", "epoch_order",
           "schedule_lines", "split_sizes", "compare_batch_sizes", "scaled_learning_rate", "DivergenceError", "NotFittedError", "Callback", "LambdaCallback"]
