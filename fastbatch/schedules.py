"""Learning-rate schedules: the rate of every step, as a multiple of ``learning_rate``.

A schedule maps global step indices to factors in one vectorised call per kernel
call (never per step). ``plateau`` also watches a metric at each epoch end.
"""
import inspect
import math

import numpy as np

from ._validation import check_choice, check_float, check_int

SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")


class Schedule:
    """``factors(steps, steps_per_epoch, total_steps)`` -> the multiplier of each step."""

    name = "constant"

    def __init__(self, warmup_steps=0):
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        # every step's factor is 1 (no schedule, no warm-up): a step's rate is learning_rate
        self._constant_rate = type(self)._factors is Schedule._factors and not self.warmup_steps

    def _factors(self, steps, steps_per_epoch, total_steps):
        return np.ones(len(steps))

    def rates(self, learning_rate, start, n, steps_per_epoch, total_steps, last=None):
        """The rates of steps [start, start + n) (at least n of them): ``learning_rate`` times their factors.

        ``last``: an earlier result for the same run (never written to): a constant schedule gives
        it back when it holds at least n rates, all ``learning_rate`` (no array work per call).
        """
        if self._constant_rate:  # no per-step arithmetic
            if last is not None and len(last) >= n and last.item(0) == learning_rate:
                return last
            rates = np.empty(n)
            rates.fill(learning_rate)
            return rates
        return learning_rate * self.factors(np.arange(start, start + n), steps_per_epoch, total_steps)

    # whether the factor is a function of the epoch alone (steps // steps_per_epoch): step and exponential decay
    by_epoch = False

    def factors(self, steps, steps_per_epoch, total_steps, epochs=None):
        """The multiplier of each step. ``epochs``: each step's epoch, when epochs need not hold
        ``steps_per_epoch`` steps (fit_batches: a generator's later epoch may yield more batches than its first);
        a schedule by epoch then follows them, never moving on inside an epoch, and the others the steps."""
        steps = np.asarray(steps, dtype=np.float64)
        at = steps if epochs is None or not self.by_epoch else np.asarray(epochs, dtype=np.float64) * steps_per_epoch
        f = self._factors(at, steps_per_epoch, total_steps)
        if self.warmup_steps:  # linear warm-up from 1/warmup to 1
            f = f * np.minimum(1.0, (steps + 1) / self.warmup_steps)
        return f

    # plateau is the only schedule with state; these keep the interface uniform
    def on_epoch_end(self, metric):
        """Watch the epoch's metric (validation loss if any, else the epoch's training loss)."""

    def state(self):
        return {}

    def load_state(self, state):
        pass

    def config(self):
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    name = "constant"


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_epochs`` epochs."""

    name = "step"
    by_epoch = True

    def __init__(self, step_epochs=10, gamma=0.1, warmup_steps=0):
        super().__init__(warmup_steps)
        self.step_epochs = check_int("step_epochs", step_epochs, 1)
        self.gamma = check_float("gamma", gamma, 0.0, low_open=True)

    def _factors(self, steps, spe, total):
        return self.gamma ** np.floor(steps // spe / self.step_epochs)


class Exponential(Schedule):
    """Multiply the rate by ``gamma`` each epoch."""

    name = "exponential"
    by_epoch = True

    def __init__(self, gamma=0.95, warmup_steps=0):
        super().__init__(warmup_steps)
        self.gamma = check_float("gamma", gamma, 0.0, low_open=True)

    def _factors(self, steps, spe, total):
        return self.gamma ** (steps // spe)


class Cosine(Schedule):
    """Cosine decay from 1 to ``min_factor`` over the whole run."""

    name = "cosine"

    def __init__(self, min_factor=0.0, warmup_steps=0):
        super().__init__(warmup_steps)
        self.min_factor = check_float("min_factor", min_factor, 0.0, 1.0)

    def _factors(self, steps, spe, total):
        frac = np.clip(steps / max(total - 1, 1), 0.0, 1.0)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + np.cos(math.pi * frac))


class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when the metric has not improved for ``patience`` epochs."""

    name = "plateau"

    def __init__(self, factor=0.1, patience=3, min_factor=1e-4, warmup_steps=0):
        super().__init__(warmup_steps)
        self.factor = check_float("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        self.patience = check_int("patience", patience, 1)
        self.min_factor = check_float("min_factor", min_factor, 0.0, 1.0)
        self._scale, self._best, self._bad = 1.0, math.inf, 0

    def _factors(self, steps, spe, total):
        return np.full(len(steps), self._scale)

    def on_epoch_end(self, metric):
        if metric < self._best:
            self._best, self._bad = metric, 0
            return
        self._bad += 1
        if self._bad >= self.patience:
            self._scale = max(self._scale * self.factor, self.min_factor)
            self._bad = 0

    def state(self):
        return {"scale": self._scale, "best": self._best, "bad": self._bad}

    def load_state(self, state):
        """A saved ``state()`` (a checkpoint's): ValueError unless it is one this schedule can reach."""
        try:
            scale, best, bad = state["scale"], state["best"], state["bad"]
        except (TypeError, KeyError):
            raise ValueError(f"a plateau schedule's state holds scale, best and bad, got {state!r}") from None
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (scale, best, bad))
        if not (ok and self.min_factor <= scale <= 1.0 and not math.isnan(best) and bad == int(bad)
                and 0 <= bad < self.patience):
            raise ValueError(f"a plateau schedule's state must have min_factor <= scale <= 1, a best metric "
                             f"and 0 <= bad < patience, got {state!r}")
        self._scale, self._best, self._bad = float(scale), float(best), int(bad)


_BY_NAME = {c.name: c for c in (Constant, StepDecay, Exponential, Cosine, ReduceOnPlateau)}


def make_schedule(spec, warmup_steps=0):
    """A Schedule from a name, a config dict (``{"name": ..., **kwargs}``) or a Schedule."""
    if isinstance(spec, Schedule):
        return spec
    if spec is None:
        spec = "constant"
    if isinstance(spec, dict):
        kw = dict(spec)
        name = check_choice("lr_schedule", kw.pop("name", "constant"), SCHEDULES)
        kw.setdefault("warmup_steps", warmup_steps)
        allowed = set(inspect.signature(_BY_NAME[name]).parameters)
        if not allowed.issuperset(kw):
            raise TypeError(f"lr_schedule {name!r} has no setting(s) {sorted(set(kw) - allowed)}; "
                            f"its settings are {sorted(allowed)}")
        return _BY_NAME[name](**kw)
    name = check_choice("lr_schedule", spec, SCHEDULES)
    return _BY_NAME[name](warmup_steps=warmup_steps)
