"""Errors fastbatch raises beyond ValueError / TypeError."""


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite params.

    The trainer is rewound to the last params whose batch loss was finite (``step``,
    0-based, with its optimizer state and history), before the update that produced the
    bad state at ``bad_step``, so it can continue with a smaller learning rate.
    """

    def __init__(self, step, epoch, batch, learning_rate, what="the loss", bad_step=None):
        bad_step = step if bad_step is None else bad_step
        self.step, self.epoch, self.batch, self.learning_rate = step, epoch, batch, learning_rate
        self.bad_step = bad_step
        back = (f"the trainer is back at step {step + 1} (epoch {epoch + 1}, batch {batch + 1}), before the update "
                f"that produced them: the last params whose batch loss was finite")
        super().__init__(
            f"training diverged: {what} became NaN or infinite at step {bad_step + 1} with "
            f"learning_rate={learning_rate:g}; {back}. Continue with a smaller learning rate "
            f"(e.g. trainer.learning_rate /= 100), or scale the inputs (standardize=True).")


class NotFittedError(ValueError, AttributeError):
    """The trainer has no params yet: call fit() (or set_params()) first."""
