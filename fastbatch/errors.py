"""Errors fastbatch raises beyond ValueError / TypeError."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite params.

    The trainer is left as it was just before the bad step (params, optimizer
    state, history), so it can continue with a smaller learning rate.
    """

    def __init__(self, step, epoch, batch, learning_rate, what="the loss"):
        self.step, self.epoch, self.batch, self.learning_rate = step, epoch, batch, learning_rate
        super().__init__(
            f"training diverged at step {step} (epoch {epoch}, batch {batch}): {what} became NaN or infinite "
            f"with learning_rate={learning_rate:g}. Try a smaller learning rate, or scale the inputs "
            f"(e.g. standardise each feature); the trainer keeps the params from before step {step}.")


class NotFittedError(ValueError, AttributeError):
    """The trainer has no params yet: call fit() (or set_params()) first."""
