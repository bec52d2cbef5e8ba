"""Callbacks: hooks at run, epoch and step level. A hook that returns True stops the run.

Step hooks run Python after every step, so a trainer with one runs one step per
kernel call: use them for teaching and debugging, epoch hooks for the rest.
"""


class Callback:
    """Override the hooks you need."""

    def on_run_begin(self, trainer):
        """Before the first step of the run."""

    def on_step_end(self, trainer, step, loss):
        """After global step ``step`` with its batch loss."""

    def on_epoch_end(self, trainer, epoch, logs):
        """After epoch ``epoch``; ``logs`` has loss (and val_loss, val_accuracy with validation)."""

    def on_run_end(self, trainer):
        """When the epoch budget is spent or the run stopped early."""


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda tr, e, logs: ...)``."""

    def __init__(self, on_run_begin=None, on_step_end=None, on_epoch_end=None, on_run_end=None):
        for name, fn in (("on_run_begin", on_run_begin), ("on_step_end", on_step_end),
                         ("on_epoch_end", on_epoch_end), ("on_run_end", on_run_end)):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {fn!r}")
                setattr(self, name, fn)
