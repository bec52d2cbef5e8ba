"""The step loop: the one place where a run advances, for ``fit`` and ``fit_batches`` alike.

A run advances in chunks, each one call of a backend's ``train_steps``:

1. the source gives the next chunk (array data: up to the run's end, an epoch end when
   an epoch hook needs the state there, or ``CHUNK_SECONDS`` of work; a generator: one batch);
2. the run state is snapshotted, the kernel runs, and the chunk is committed (history,
   position), or on any error (divergence, OSError, KeyboardInterrupt) the snapshot is
   restored exactly;
3. every epoch that ended inside the chunk is closed: its mean loss (O(steps in the epoch)),
   then validation, the schedule, early stopping and the epoch callbacks;
4. progress is reported, and a stop request ends the loop.

Between chunks the state is consistent (step, params and history agree): that is when
other threads may read it (``Trainer._consistent``) and when callbacks run.
"""
import math
import time

import numpy as np

from . import _data, _inference, _task, _validation as V
from ._codes import Status
from ._config import ACTIVATION_CODES, LOSS_CODES, OPTIMIZER_CODES
from ._kernel_spec import KernelSpec
from .callbacks import Callback
from .errors import DivergenceError

CHUNK_SECONDS = 0.1        # a kernel call returns after about this long: the loop then reports and yields
MAX_CHUNK_STEPS = 1 << 16  # steps per kernel call at most (bounds the per-call arrays)
BLOW_UP = 10.0             # a divergence rewinds to a loss at most this many times the lowest so far


def kernel_spec(cfg, state, batch_size=None, steps_per_epoch=None, shuffle=None):
    """The fixed part of the run's kernel calls, from the checked config."""
    b1, b2 = cfg["betas"]
    return KernelSpec(
        sizes=state.sizes, batch_size=batch_size or cfg["batch_size"],
        steps_per_epoch=steps_per_epoch or state.steps_per_epoch,
        shuffle=cfg["shuffle"] if shuffle is None else shuffle, seed=cfg["seed"],
        activation=ACTIVATION_CODES[cfg["activation"]], loss=LOSS_CODES[state.loss],
        optimizer=OPTIMIZER_CODES[cfg["optimizer"]], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
        beta1=b1, beta2=b2, eps=cfg["eps"], weight_decay=cfg["weight_decay"],
        **{k: cfg[k] for k in ("alpha", "centered") if k in cfg}, n_threads=state.n_threads)


def opt_rows(cfg):
    """How many rows of opt_state the optimizer uses (the rest need no snapshot)."""
    if cfg["optimizer"] == "sgd":
        return 1 if cfg["momentum"] else 0
    if cfg["optimizer"] == "rmsprop":
        return 3
    return 2


def overrides(cb, hook):
    fn = getattr(cb, hook, None)
    return fn is not None and getattr(fn, "__func__", fn) is not getattr(Callback, hook)


def fire(callbacks, hook, *args):
    """Call ``hook`` on every callback; True when one of them asks to stop."""
    stop = False
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            stop |= bool(fn(*args))
    return stop


class Hooks:
    """What the caller watches: progress, validation, callbacks; and whether epochs need their state."""

    def __init__(self, trainer, on_progress, val, callbacks):
        self.trainer, self.on_progress, self.val, self.callbacks = trainer, on_progress, val, callbacks
        cfg = trainer._cfg
        self.step_hooks = any(overrides(cb, "on_step_end") for cb in callbacks)
        # epoch ends that must see the params of that moment: the chunk stops there
        self.epoch_state = bool(val is not None or any(overrides(cb, "on_epoch_end") for cb in callbacks)
                                or cfg["patience"] or trainer._schedule.name == "plateau")
        self.last_report = time.perf_counter()
        self.verbose = 0
        self.epoch_clock = time.perf_counter()  # when the last reported epoch ended

    def report_epochs(self, first, last):
        """verbose=1: one Keras-style line per finished epoch [first, last)."""
        if not self.verbose or last <= first:
            return
        tr = self.trainer
        now = time.perf_counter()
        per_epoch = (now - self.epoch_clock) / (last - first)
        self.epoch_clock = now
        budget = tr._cfg["epochs"]
        steps = tr._state.steps_per_epoch
        for e in range(first, last):
            logs = tr._state.epoch_metrics[e]
            parts = [f"Epoch {e + 1}/{budget}", f"{steps:,} step{'s' if steps != 1 else ''}",
                     f"{per_epoch * 1000:.3g} ms" if per_epoch < 1 else f"{per_epoch:.3g} s"] + [f"{k}: {v:.4g}" for k, v in logs.items()]
            line = " - ".join(parts)
            if callable(self.verbose):
                self.verbose(line)
            else:
                print(line, flush=True)

    def progress(self, force=False):
        if self.on_progress is None:
            return
        now = time.perf_counter()
        if force or now - self.last_report >= CHUNK_SECONDS:
            self.on_progress(self.trainer.history)
            self.last_report = now


class ArraySource:
    """Chunks of steps over records held in arrays (``fit``)."""

    generator = False

    def __init__(self, data, rows, backend, batch_sizes):
        self.data, self.rows, self.backend = data, rows, backend
        self.batch_sizes = batch_sizes  # of every step of an epoch

    def next_chunk(self, state, end, hooks):
        """(n steps) of the next chunk, stopping at an epoch end when epoch hooks need it."""
        start = state.step
        spe = state.steps_per_epoch
        n = min(end - start, MAX_CHUNK_STEPS)
        if hooks.epoch_state:
            n = min(n, spe - start % spe)
        if hooks.step_hooks:
            n = 1
        return n

    def call(self, spec, state, lrs, losses, noise, start, n, stop, max_seconds):
        d = self.data
        rows = self.rows
        return self.backend.train_steps(
            spec, rows.array, d.targets, d.labels, d.weights, state.theta, state.opt_state, state.order_cache,
            lrs, losses, noise, start, n, state.opt_t + (start - state.step), stop, max_seconds,
            **({"fd": rows.fd, "data_offset": rows.data_offset} if rows.fd >= 0 else {}))


def _schedule_lrs(trainer, state, start, n, spe, total):
    steps = np.arange(start, start + n)
    return trainer.learning_rate * trainer._schedule.factors(steps, spe, total)


def train_arrays(trainer, source, end, hooks, stop):
    """Run ``fit``'s steps from ``state.step`` up to ``end``; returns when done, stopped or finished."""
    state, cfg = trainer._state, trainer._cfg
    spe = state.steps_per_epoch
    total = trainer.total_steps
    spec = trainer._spec
    rows = opt_rows(cfg)
    if state.snapshots is None or state.snapshots[0].opt.shape[0] != rows:
        state.snapshots = [state.snapshot(rows), state.snapshot(rows)]
    snaps = state.snapshots  # this chunk's start, and the previous chunk's
    prev = None  # (snapshot, lrs, start, n) of the previous chunk: a divergence may rewind into it
    if state.step == 0 and fire(hooks.callbacks, "on_run_begin", trainer):
        return
    while state.step < end and not state.stopped_early:
        start = state.step
        n = source.next_chunk(state, end, hooks)
        lrs = _schedule_lrs(trainer, state, start, n, spe, total)
        snap = snaps[0]
        state.snapshot_into(snap)
        try:
            state.reserve(start + n, total)
            noise = trainer._noise_buffer(start, n)
            source.rows.check()  # a file cut short under a map: an OSError here, not a SIGBUS in the kernel
            done, status = source.call(spec, state, lrs, state.loss_buf[start:start + n], noise, start, n,
                                       stop, CHUNK_SECONDS)
            if status == Status.READ_ERROR:
                source.rows.check()
                raise OSError(f"could not read the records of step {start + done + 1} from the file behind X")
            if status == Status.NONFINITE or not np.isfinite(state.theta).all():
                _rewind(trainer, source, state, spec, snap, lrs, start, done, status, prev, stop)
            state.lr_buf[start:start + done] = lrs[:done]
            state.step += done
            state.opt_t += done
            source.rows.after_chunk()
        except DivergenceError:
            raise  # _rewind left the state at the last params whose loss was finite
        except BaseException:
            state.restore(snap)
            raise
        snaps.reverse()
        prev = (snaps[1], lrs, start, done)  # (a divergence in the next chunk may rewind into this one)
        if hooks.step_hooks and done and fire(hooks.callbacks, "on_step_end", trainer, state.step - 1,
                                              float(state.loss_buf[state.step - 1])):
            break
        first_epoch, last_epoch = start // spe, state.step // spe
        ended = False
        for epoch in range(first_epoch, last_epoch):
            state.close_epoch(epoch * spe, (epoch + 1) * spe, source.batch_sizes)
            ended = True
            if hooks.epoch_state and end_epoch(trainer, epoch, hooks):
                hooks.report_epochs(epoch, epoch + 1)
                hooks.progress(force=True)
                return finish(trainer, hooks)
        hooks.report_epochs(first_epoch, last_epoch)
        hooks.progress(force=ended and hooks.epoch_state)
        if status == Status.STOPPED:
            break
        trainer._yield_to_readers()
    return finish(trainer, hooks)


def finish(trainer, hooks):
    hooks.progress(force=True)
    if trainer.finished:
        fire(hooks.callbacks, "on_run_end", trainer)


def end_epoch(trainer, epoch, hooks):
    """Validation, schedule, early stopping and callbacks at an epoch end; True to end the run."""
    state, cfg = trainer._state, trainer._cfg
    metric = state.epoch_loss[-1]
    logs = {"epoch": epoch, "loss": metric}
    if hooks.val is not None:
        Xv, tv, lv, wv = hooks.val
        res = _inference.score(_inference.forward(state.theta, state.sizes, cfg["activation"], Xv), state.loss,
                               tv, lv, wv)
        state.val_loss.append(res["loss"])
        state.val_accuracy.append(res.get("accuracy", math.nan))
        metric = res["loss"]
        logs.update({f"val_{k}": v for k, v in res.items()})
        state.epoch_metrics[-1].update({f"val_{k}": v for k, v in res.items()})
    trainer._schedule.on_epoch_end(metric)
    state.schedule_state = trainer._schedule.state()
    patience = cfg["patience"]
    if patience:
        if state.best is None or metric < state.best["metric"]:
            state.best = {"metric": metric, "epoch": epoch, "theta": state.theta.copy()}
        elif epoch - state.best["epoch"] >= patience:
            state.theta[...] = state.best["theta"]
            state.stopped_early = True
            logs["stopped_early"] = True
    stop = fire(hooks.callbacks, "on_epoch_end", trainer, epoch, logs)
    return bool(stop) or state.stopped_early


def _rewind(trainer, source, state, spec, snap, lrs, start, done, status, prev, stop):
    """Rewind to params from before the blow-up, and raise DivergenceError.

    The first bad state is the params before step ``bad`` (0-based): their batch loss is
    non-finite, or they are non-finite themselves. A run that diverges usually blows up
    over a few steps first (losses of 1e8, 1e20, then inf), and params whose loss is
    finite but huge diverge again at any rate. So the run goes back to the last step
    whose loss was finite and at most ``BLOW_UP`` times the lowest loss so far (at least
    one step before ``bad``, and no further back than the snapshots kept: the start of
    the previous kernel call). Continuing with a smaller rate redoes that step's update.
    """
    if status == Status.NONFINITE and np.isfinite(state.theta).all():
        bad = start + done
    else:  # the params went non-finite at some step of the chunk: replay from the snapshot to find it
        lo, hi = 0, done  # finite after lo steps, non-finite after hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            _replay(source, state, spec, snap, lrs, start, mid, stop)
            if np.isfinite(state.theta).all():
                lo = mid
            else:
                hi = mid
        bad = start + lo + 1 if hi > lo else start + lo
    earliest = prev[2] if prev is not None else start
    losses = state.loss_buf[:bad]  # steps before `bad` all had finite losses
    target = earliest
    if bad > earliest:
        lowest = np.minimum.accumulate(np.abs(losses))
        sane = np.flatnonzero(np.abs(losses[earliest:bad]) <= BLOW_UP * np.maximum(lowest[earliest:bad], 1e-30))
        target = earliest + int(sane[-1]) if len(sane) else earliest
        target = min(target, bad - 1)
    if target >= start:
        _replay(source, state, spec, snap, lrs, start, target - start, stop)
        state.lr_buf[start:target] = lrs[:target - start]
    elif prev is not None:
        psnap, plrs, pstart, _ = prev
        _replay(source, state, spec, psnap, plrs, pstart, target - pstart, stop)
        state.lr_buf[pstart:target] = plrs[:target - pstart]
    state.opt_t += target - state.step
    state.step = target
    lr_bad = float(trainer.learning_rate * trainer._schedule.factors([target], state.steps_per_epoch,
                                                                      trainer.total_steps)[0])
    spe = state.steps_per_epoch
    what = "the loss" if status == Status.NONFINITE and bad == start + done else "the params"
    raise DivergenceError(target, target // spe, target % spe, lr_bad, what, bad)


def _replay(source, state, spec, snap, lrs, start, n, stop):
    """Restore ``snap`` and run its first ``n`` steps again (deterministic: the same results)."""
    state.restore(snap)
    if n > 0:
        scratch = np.zeros(n)
        source.call(spec, state, lrs, scratch, np.zeros((0, 2)), start, n, np.zeros(1, np.uint8), 3600.0)


# ---------------------------------------------------------------------------- fit_batches


def train_batches(trainer, batches, hooks, stop, n_outputs, validation_data, prepare_batch):
    """``fit_batches``: each batch of ``batches()`` is one step, each pass one epoch."""
    cfg = trainer._cfg
    dtype = np.dtype(cfg["dtype"])
    prev = [None]  # the snapshot from before the previous step of this call
    state = trainer._state
    scaling = state.scaling if state is not None else _batch_scaling(batches, cfg, prepare_batch, n_outputs)
    while not trainer.finished:
        state = trainer._state
        skip = state.batch if state is not None else 0  # batches of this epoch already trained on
        k = -1
        iterator = iter(batches())
        for k, (xb, yb) in enumerate(iterator):
            if k < skip:
                continue
            state = trainer._state
            Xb, t, lab, kk, loss = prepare_batch(xb, yb, n_outputs)
            if hooks.val is None and validation_data is not None:
                hooks.val = _data.prepare_validation(validation_data, loss, kk, dtype, Xb.shape[1])
                if scaling:
                    hooks.val = (*_data.apply_scaling(scaling, hooks.val[0], hooks.val[1], dtype), *hooks.val[2:])
                hooks.epoch_state = True
            if cfg["drop_last"] and Xb.shape[0] < cfg["batch_size"]:
                continue
            if scaling:
                Xb, t = _data.apply_scaling(scaling, Xb, t, dtype)
            if state is None:
                state = trainer._start_generator_run(Xb.shape[1], loss, kk)
                state.scaling = scaling
                if fire(hooks.callbacks, "on_run_begin", trainer):
                    return
            if _batch_step(trainer, state, Xb, t, lab, stop, hooks, prev):
                return
            if stop[0]:
                return
            trainer._yield_to_readers()
        state = trainer._state
        if state is None:
            raise ValueError("batches() yielded no batch to train on" if k < 0 else
                             "every batch was smaller than batch_size and drop_last=True dropped them all")
        if state.batch == 0:
            raise ValueError(f"batches() yielded no batch in epoch {state.epoch}")
        if not state.steps_per_epoch:
            state.steps_per_epoch, state.n_records = state.batch, state.records
        epoch = state.epoch
        first = state.step - state.batch
        state.close_epoch(first, state.step, state.per_step_buf[2, first:state.step])
        state.epoch += 1
        state.batch = 0
        state.records = 0
        stop_run = end_epoch(trainer, epoch, hooks)
        hooks.report_epochs(epoch, epoch + 1)
        hooks.progress(force=True)
        if stop_run:
            break
    finish(trainer, hooks)


def _batch_scaling(batches, cfg, prepare_batch, n_outputs):
    """A first pass over ``batches()`` for the run's standardisation statistics (only when asked for)."""
    if not cfg["standardize"] and not cfg["standardize_target"]:
        return None
    xs, ys, loss = _data.RunningStats(), _data.RunningStats(), None
    for xb, yb in batches():
        Xb, t, _, _, loss = prepare_batch(xb, yb, n_outputs)
        if cfg["drop_last"] and Xb.shape[0] < cfg["batch_size"]:
            continue
        xs.add(Xb)
        if t.size:
            ys.add(t)
    if not xs.n:
        return None  # no batch: the training loop says so
    y_stats = ys.result() if cfg["standardize_target"] and loss == "mse" and ys.n else None
    return _data.scaling_from(xs.result(), y_stats, cfg)


def _batch_step(trainer, state, Xb, t, lab, stop, hooks, prev):
    """One step on one batch; True when the run should end (stop, or a step hook).

    ``prev`` holds the snapshot from before the previous step of this call: a divergence
    rewinds there (the last params whose batch loss was finite).
    """
    cfg = trainer._cfg
    step = state.step
    spe_known = state.steps_per_epoch or (state.batch + 1)
    lrs = trainer.learning_rate * trainer._schedule.factors([state.epoch * spe_known + state.batch], spe_known,
                                                            spe_known * cfg["epochs"])
    spec = kernel_spec(cfg, state, batch_size=Xb.shape[0], steps_per_epoch=1, shuffle=False)
    snap = state.snapshot(opt_rows(cfg))
    order = np.full(Xb.shape[0] + 1, -1, dtype=np.int64)
    try:
        state.reserve(step + 1)
        done, status = trainer._backend().train_steps(
            spec, Xb, t, lab, np.empty(0, Xb.dtype), state.theta, state.opt_state, order, lrs,
            state.loss_buf[step:step + 1], trainer._noise_buffer(step, 1), 0, 1, state.opt_t, stop, 3600.0)
        diverged = status == Status.NONFINITE or not np.isfinite(state.theta).all()
        if not diverged and status == Status.DONE:
            state.lr_buf[step] = lrs[0]
            state.per_step_buf[:, step] = (state.epoch, state.batch, Xb.shape[0])
            state.step += 1
            state.opt_t += 1
            state.batch += 1
            state.records += Xb.shape[0]
    except BaseException:
        state.restore(snap)
        raise
    if status == Status.STOPPED:
        return True
    if diverged:
        state.restore(prev[0] if prev[0] is not None else snap)
        what = "the loss" if status == Status.NONFINITE else "the params"
        raise DivergenceError(state.step, state.epoch, state.batch, float(lrs[0]), what, step)
    prev[0] = snap
    if hooks.step_hooks and fire(hooks.callbacks, "on_step_end", trainer, step, float(state.loss_buf[step])):
        return True
    hooks.progress()
    return False


def check_batch(cfg, state, xb, yb, n_outputs):
    """One generator batch, checked: (X, targets, labels, n_outputs, loss)."""
    dtype = np.dtype(cfg["dtype"])
    first = state is None
    Xb = V.check_X(xb, dtype, name="X batch", n_features=None if first else state.n_features)
    loss = _task.decide(yb, cfg["loss"], "y").loss if first else state.loss
    t, lab, k = V.check_y(yb, loss, Xb.shape[0], dtype, n_outputs if first else state.n_outputs, name="y batch")
    return Xb, t, lab, k, loss
