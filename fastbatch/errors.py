"""Errors fastbatch raises beyond ValueError / TypeError."""
from ._text import count


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or non-finite params, or a loss beyond ``limit`` (a million times
    the run's first loss, or the largest loss a record's targets give an output of 0, or 1: a run that diverged
    without overflowing).

    The trainer is rewound to the last params whose batch loss was finite (``step``,
    0-based, with its optimizer state and history), before the update that produced the
    bad state at ``bad_step``, so it can continue with a smaller learning rate. ``sane`` is
    False when the run had blown up before the earliest step it keeps (its last two kernel
    calls): the message then says so, and to start over.
    """

    def __init__(self, step, epoch, batch, learning_rate, what="the loss", bad_step=None, sane=True, limit=None,
                 scale="the inputs (standardize=True)", run=None):
        # scale: what the run could scale that it does not (None: it scales all it can), for the advice
        # run: which run of several diverged, for a caller that holds none of their trainers (a comparison's
        # "batch size 4"): the message names it, and its advice is the caller's, not the trainer's
        bad_step = step if bad_step is None else bad_step
        self.step, self.epoch, self.batch, self.learning_rate = step, epoch, batch, learning_rate
        self.bad_step, self.what, self.sane, self.limit, self.scale = bad_step, what, sane, limit, scale
        self.run = run
        where = (f"the trainer is back to {count(step, 'step')} done (its next is step {step + 1}: "
                 f"epoch {epoch + 1}, batch {batch + 1})")
        if sane:
            back = (f"{where}, before the update that produced them: the last params whose batch loss was "
                    + ("finite" if limit is None else "within that"))
            advice = ("Continue with a smaller learning rate (e.g. trainer.learning_rate /= 100)"
                      + (f", or scale {scale}." if scale else "."))
        else:  # the run had blown up before the earliest step it could go back to
            back = (f"{where}, as far back as it keeps (the start of its previous kernel call), but the loss had "
                    f"already blown up there")
            advice = ("A smaller learning rate may not bring these params back: reset() starts the run over "
                      "(or load a checkpoint from before), with a smaller rate"
                      + (f", or scale {scale}." if scale else "."))
        how = "became NaN or infinite" if limit is None else (
            f"grew beyond {limit:.3g} (a million times the run's first loss or the largest its data gives)")
        run_at = "" if run is None else f" at {run}"
        self.headline = f"training diverged{run_at}: {what} {how} at step {bad_step + 1}"  # (what, without advice)
        if run is not None:
            super().__init__(f"{self.headline} (epoch {epoch + 1}) with learning_rate={learning_rate:g}. Try a "
                             "smaller learning rate for it, or leave it out" + (f", or scale {scale}." if scale else "."))
            return
        super().__init__(f"{self.headline} with learning_rate={learning_rate:g}; {back}. {advice}")

    def __reduce__(self):  # (pickled to another process: a Dask or joblib worker's error reaches the caller)
        return type(self), (self.step, self.epoch, self.batch, self.learning_rate, self.what, self.bad_step,
                            self.sane, self.limit, self.scale, self.run)


class NotFittedError(ValueError, AttributeError):
    """The trainer has no params yet: call fit() (or set_params()) first."""
