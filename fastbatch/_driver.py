"""The step loop: the one place where a run advances, for ``fit`` and ``fit_batches`` alike.

A run advances in chunks, each one call of a backend's ``train_steps``:

1. the source gives the next chunk (``ArraySource``, for ``fit``: up to the run's end, an
   epoch end when an epoch hook needs the state there, or ``CHUNK_SECONDS`` of work;
   ``BatchSource``, for ``fit_batches``: one batch, or the end of an epoch);
2. the run state is snapshotted, the kernel runs, and the chunk is committed (history,
   position), or on any error (divergence, OSError, KeyboardInterrupt) the snapshot is
   restored exactly;
3. every epoch that ended inside the chunk is closed: its mean loss (O(steps in the epoch)),
   then validation, the schedule, early stopping and the epoch callbacks; an error there undoes
   the chunk with them (an epoch is closed whole or not at all), and an epoch an interrupt left
   unclosed after its chunk is closed at the start of the next call;
4. progress is reported, and a stop request ends the loop.

Between chunks the state is consistent (step, params and history agree): that is when
other threads may read it (``Trainer._consistent``) and when callbacks run.

``quick`` is ``run``'s first chunk for ``fit``'s usual call in a loop (no hooks, the chunk
inside one epoch or ending it), without the loop's set-up: the same steps 2 and 3, bit for
bit (tests compare the two); any other case, or a chunk that did not end well, goes to ``run``.
"""
import dataclasses
import math
import time

import numpy as np

from . import _data, _inference, _task, _validation as V
from ._codes import Status
from .config import ACTIVATION_CODES, LOSS_CODES, OPTIMIZER_CODES
from ._kernel_spec import KernelSpec
from ._locks import ForkSafeLock
from ._text import count
from .callbacks import Callback
from .errors import DivergenceError
from .history import weighted_sum
from .schedule import epoch_order as schedule_epoch_order

CHUNK_SECONDS = 0.1        # a kernel call returns after about this long: the loop then reports and yields
MAX_CHUNK_STEPS = 1 << 16  # steps per kernel call at most (bounds the per-call arrays)
BLOW_UP = 10.0             # a divergence rewinds to a level at most this many times the lowest so far
# ... where a loss is the mean over about this many records (the steps before it): one record's loss varies
# 1000-fold in a healthy run (a batch-1 run on digits rewound 1,500 steps, to its first, on the lowest record's)
BLOW_UP_RECORDS = 64
# ... and a level counts as blown only above BLOW_UP times this share of the run's first level (at the least): a run
# whose loss fell 1000-fold varies 10-fold near 0 (digits fit to ~1e-5) without blowing up
BLOW_UP_FLOOR = 1e-2
BLOW_UP_LOOKBACK = 1 << 16  # steps before the earliest step a rewind may go back to, that "so far" looks at
# a step loss beyond this many times the run's first loss, or its data's largest (target_peak), or 1, ends it as a
# divergence though finite: a float32 run on unscaled targets went 7e3 -> 4e13 -> 7e36 and on, and returned an r2
# of -3e17 without a word. (The data's part: a batch holding a rare large target, 1% insurance claims of $20,000,
# has a loss 1e8 times a first batch without one: the data's, not a divergence.)
LOSS_LIMIT = 1e6


_specs = {}  # the specs made lately, by their fields: equal runs share one (a KernelSpec never changes)


def kernel_spec(cfg, state, batch_size=None, steps_per_epoch=None, shuffle=None):
    """The fixed part of the run's kernel calls, from the checked config."""
    b1, b2 = cfg["betas"]
    batch_size = batch_size or cfg["batch_size"]
    steps_per_epoch = steps_per_epoch or state.steps_per_epoch
    shuffle = cfg["shuffle"] if shuffle is None else shuffle
    floats = (cfg["momentum"], b1, b2, cfg["eps"], cfg["weight_decay"], cfg.get("alpha", 1.0))
    # every field's value, as the spec's key (a -0.0 equals 0.0 as a key: such a spec is not shared)
    key = (state.sizes.tobytes(), batch_size, steps_per_epoch, shuffle, cfg["seed"], cfg["activation"], state.loss,
           cfg["optimizer"], cfg["nesterov"], cfg.get("centered"), state.n_threads, *floats)
    shared = not (0.0 in floats and any(v == 0.0 and math.copysign(1.0, v) < 0 for v in floats))
    spec = _specs.get(key) if shared else None
    if spec is None:
        spec = KernelSpec(
            sizes=state.sizes, batch_size=batch_size, steps_per_epoch=steps_per_epoch, shuffle=shuffle,
            seed=cfg["seed"], activation=ACTIVATION_CODES[cfg["activation"]], loss=LOSS_CODES[state.loss],
            optimizer=OPTIMIZER_CODES[cfg["optimizer"]], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
            beta1=b1, beta2=b2, eps=cfg["eps"], weight_decay=cfg["weight_decay"],
            **{k: cfg[k] for k in ("alpha", "centered") if k in cfg}, n_threads=state.n_threads)
        if shared:
            if len(_specs) >= 64:
                _specs.clear()
            _specs[key] = spec
    return spec


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

    def __init__(self, trainer, on_progress, val, callbacks, verbose=0):
        self.on_progress, self.val, self.callbacks = on_progress, val, callbacks
        # only what reports needs the trainer: a hook-less Hooks (which its trainer keeps between
        # calls) holds none, so a dropped trainer's buffers are freed at once, not by a later GC pass
        self.trainer = trainer if on_progress is not None or verbose else None
        cfg = trainer._cfg
        self.step_hooks = bool(callbacks) and any(overrides(cb, "on_step_end") for cb in callbacks)
        # epoch ends that must see the params of that moment: the chunk stops there
        self.epoch_state = bool(val is not None or cfg["patience"] or trainer._schedule.name == "plateau"
                                or (callbacks and any(overrides(cb, "on_epoch_end") for cb in callbacks)))
        self.last_report = self.epoch_clock = time.perf_counter()  # epoch_clock: when the last reported epoch ended
        self.verbose = verbose

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
            parts = [f"Epoch {e + 1}/{budget}", count(steps, "step"),
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


# The first epoch's record order of recent runs, by (backend's train_steps, records, seed, shuffle),
# read-only: a new run of the same shape (a fresh Trainer on the same data, a grid search) copies
# it instead of sorting the records again. Taken from a kernel call's order_cache, so it is the
# backend's own order; orders of more than FIRST_ORDER_MAX records are not kept.
FIRST_ORDERS_KEPT = 4
FIRST_ORDER_MAX = 1 << 20
_first_orders = {}
_first_orders_lock = ForkSafeLock()  # trainers in several threads keep orders at once

EPOCH_END = "epoch end"  # what a generator source gives when its iterable is spent


@dataclasses.dataclass(slots=True)
class Chunk:
    """One kernel call's steps. ``step0`` is the run's step before it; ``start`` the kernel's first
    step index (the same for array data; 0 for a generator's one-batch "dataset"); ``lrs`` their
    rates. A generator's chunk also carries its batch: ``head``, the kernel's first arguments
    (spec, X, targets, labels, weights, theta, opt_state, order), and its record count ``rows``."""

    step0: int
    start: int
    n: int
    lrs: np.ndarray
    head: tuple = None
    rows: int = 0
    rate: float = None  # every step's rate, when they are all the same (a constant schedule)


class ArraySource:
    """Chunks of steps over records held in arrays (``fit``).

    Made once per run (what stays the same: the backend, the spec, the run's buffers) and
    bound to each fit call's data with ``bind``, released with ``release`` when the call ends
    (the caller's arrays are never kept between calls).
    """

    def __init__(self, backend, batch_sizes, records, spec, state):
        self.backend = backend
        self.train = backend.train_steps
        self.spec, self.state = spec, state
        self.bad = np.empty(2, dtype=np.int64)  # where the kernel writes a bad record: (index, 0 X / 1 y)
        self.checks_records = getattr(backend, "CHECKS_RECORDS", False)
        self.checks_params = getattr(backend, "CHECKS_PARAMS", False)
        self.lrs = None  # the last chunk's rates (a constant schedule's are reused while the rate stays the same)
        # every step's batch size of an epoch (the plan's read-only int64 array: the weights of its mean loss and
        # accuracy, summed in float64 by weighted_sum, exactly as a float64 copy would be), and their sum
        self.weights, self.records = batch_sizes, float(records)
        self.bad_input = False  # set when the kernel met a record it cannot train on
        self.sample_weights = None  # the call's (n,) sample weights (None: none; epoch_weights)
        self.limit = math.inf  # the run's loss_limit for this call's data, once it has a first step
        self.order_kept = False  # the first epoch's order was looked at for _first_orders
        self.data = self.rows = self.recheck = self.head = self.check_rows = None
        self.data_seen = None  # the token of the FitData the limit is for (not the FitData: it holds the arrays)
        # whether fit's quick calls (quick) may take this run: on the kernel, with no split, no target that each call
        # scales and no noise numbers (all fixed for the run)
        self.quick = (self.checks_records and state.n_records == state.n_records_all and state.noise_buf is None
                      and not _data.scales_targets(state))

    def bind(self, data, rows, recheck):
        """This call's data (``rows``: its RowSource, or None for an array in memory). ``recheck``:
        ``_data.prepare``'s arguments, to check the caller's data whole (it raises the ValueError
        that names a bad value) when the kernel reports a bad record (``Status.BAD_INPUT``)."""
        state = self.state
        self.data, self.rows, self.recheck = data, rows, recheck
        self.weigh(data)
        self.check_rows = None if rows is None or not rows.mapped else rows.check
        # the kernel's arguments that stay the same for the whole fit call (arrays change in place)
        self.head = (self.spec, data.X, data.targets, data.labels, data.weights, state.theta, state.opt_state,
                     state.order_cache)
        self.fd, self.data_offset = (-1, 0) if rows is None else (rows.fd, rows.data_offset)
        self.affine = state.x_affine()
        self.bad_input = False
        order = state.order_cache
        if order.item(0) == -1 and state.step < state.steps_per_epoch:  # the first epoch's order is to be made
            first = _first_orders.get(self._order_key())
            if first is not None:
                order[1:] = first
                order[0] = 0

    def release(self):
        """Let go of the call's data; keep the first epoch's order for the next run like this one."""
        self.data = self.rows = self.recheck = self.head = self.check_rows = None
        order = self.state.order_cache
        if self.order_kept or order is None or order.item(0) != 0:
            return
        self.order_kept = True
        key = self._order_key()
        if key not in _first_orders and len(order) <= FIRST_ORDER_MAX + 1:
            first = order[1:].copy()
            first.flags.writeable = False
            with _first_orders_lock:  # (the oldest goes: iterating while another thread adds would raise)
                if len(_first_orders) >= FIRST_ORDERS_KEPT:
                    _first_orders.pop(next(iter(_first_orders)), None)
                _first_orders[key] = first

    def _order_key(self):
        """What the first epoch's record order is a function of (``schedule.epoch_order``), and who made it."""
        return self.train, self.state.n_records, self.spec.seed, self.spec.shuffle

    def next_chunk(self, trainer, end, hooks):
        """Up to the end, or to the epoch's end when epoch hooks need its state, or one step for step hooks."""
        state = self.state
        start, spe = state.step, state.steps_per_epoch
        n = end - start
        if n > MAX_CHUNK_STEPS:
            n = MAX_CHUNK_STEPS
        if start == 0:
            n = 1  # the run's first step alone: its loss sets the loss_limit of the calls after it
        if hooks.epoch_state:
            n = min(n, spe - start % spe)
        if hooks.step_hooks:
            n = 1
        schedule, lr = trainer._schedule, trainer._cfg["learning_rate"]
        lrs = self.lrs = schedule.rates(lr, start, n, spe, trainer._plan.total_steps, self.lrs)
        if self.check_rows is not None:
            self.check_rows()  # a file cut short under a map: an OSError here, not a SIGBUS in the kernel
        return Chunk(start, start, n, lrs, None, 0, lr if schedule._constant_rate else None)

    def loss_limit(self, data, state):
        """The run's loss_limit on ``data`` (the call's FitData): made once the run has a first step, and kept while
        the calls are on the same arrays."""
        token = _data.token_of(data)
        if token is not self.data_seen:  # (a later call on the same arrays gets the same FitData: nothing to do)
            self.data_seen, self.limit = token, math.inf
        limit = self.limit
        if limit == math.inf and state.step:
            if data.peak is None:
                data.peak = _data.target_peak(data.targets, data.weights)
            limit = self.limit = loss_limit(state, data.peak)
        return limit

    def limit_was_stale(self, state):
        """After a call that ended BLOWN_UP: whether the loss_limit it was given is below the one of its targets as
        they are now (a later call on the same arrays keeps their peak, taken when they were first seen: targets
        scaled up in place since would end the run as a false divergence). Then the limit is raised to theirs, for
        the caller to do the chunk again. O(records), on this rare path only."""
        data = self.data
        if data is None or not state.step:
            return False
        peak = _data.target_peak(data.targets, data.weights)
        if data.peak is not None and peak <= data.peak:
            return False
        data.peak = peak
        limit = loss_limit(state, peak)
        if limit <= self.limit:
            return False
        self.limit = limit
        return True

    def call(self, chunk, state, losses, noise, n, stop, max_seconds, hits=None):
        affine, limit = self.affine, self.loss_limit(self.data, state)
        if self.checks_records:  # the kernel looks at each record it reads, and says which was bad
            return self.train(*self.head, chunk.lrs, losses, noise, chunk.start, n, state.opt_t, stop, max_seconds,
                              self.fd, self.data_offset, hits, self.bad, affine, limit)
        kw = {"fd": self.fd, "data_offset": self.data_offset} if self.fd >= 0 else {}
        if affine is not None:
            kw["x_affine"] = affine
        return self.train(*self.head, chunk.lrs, losses, noise, chunk.start, n, state.opt_t, stop, max_seconds,
                          hits=hits, loss_limit=limit, **kw)

    def input_error(self):
        """The error for the bad record the kernel found: the whole check's, which names the value. The call is
        refused: the loss limit is made again from the targets the next call has (these were edited, or bad)."""
        self.bad_input = True
        self.limit, self.data_seen = math.inf, None
        if self.data is not None:
            self.data.peak = None
        _data.prepare(*self.recheck)
        record, what = (int(v) for v in self.bad)
        part = "X" if what == 0 else "y"
        return ValueError(f"{part} of record {record} holds a value the network cannot train on "
                          f"(non-finite, too large for the run's dtype, or not a valid label / target)")

    def weigh(self, data):
        """Take the call's sample weights (None when it has none)."""
        weights = data.weights
        self.sample_weights = weights if weights.size else None

    def epoch_weights(self, state, epoch):
        """(weights of the epoch's steps, their sum, whether they are sample weights): the batch sizes (the plan's),
        or with sample weights each batch's sum of them. An epoch's mean loss and accuracy weigh its steps so: the
        sample-weighted means over its records, where a batch of weights 0 (its loss 0 by the rule) counts for
        nothing. Decided once an epoch, by the first call that adds to its sums (its weights; the epoch's order
        decides its batches: O(records), once), and kept with the run (RunState.epoch_weights): every step of the
        epoch, and its closing, weigh the same way, whatever weights later calls pass."""
        kept = state.epoch_weights
        if kept is not None and kept[0] == epoch:
            return kept[1:] if kept[1] is not None else (self.weights, self.records, False)  # (None: batch sizes)
        w = self.sample_weights
        if w is None:
            state.epoch_weights = (epoch, self.weights, self.records, False)
            return self.weights, self.records, False
        cache = state.order_cache
        if cache is not None and cache.item(0) == epoch:
            order = cache[1:]
        else:
            order = getattr(self.backend, "epoch_order", schedule_epoch_order)(state.n_records, self.spec.seed,
                                                                               epoch, self.spec.shuffle)
        sizes = self.weights
        starts = np.zeros(len(sizes), dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        per_step = np.add.reduceat(w[order[:int(self.records)]].astype(np.float64), starts)
        total = float(per_step.sum())
        weighted = total > 0
        if not weighted:  # (an epoch of weights 0 only: its records' means are none; its batches' sizes then)
            per_step, total = sizes, self.records
        state.epoch_weights = (epoch, per_step, total, weighted)
        return per_step, total, weighted

    def add_hits(self, state, chunk, done, hits):
        """The chunk's first ``done`` hit fractions, weighted by their steps' weights (``epoch_weights``), into
        their epochs' sums. Without sample weights a step's fraction times its batch size is its count of records
        classified right, a whole number: it is added as one, so an epoch's sum is exact, the same however its
        steps were cut into calls (a run fit in pieces gives the accuracy of the run in one call, bit for bit)."""
        spe, s, end = state.steps_per_epoch, chunk.step0, chunk.step0 + done
        if done == 1:  # (fit(steps=1) in a loop: an epoch weighed by batch sizes, decided already)
            e = s // spe
            kept = state.epoch_weights
            if kept is not None and kept[0] == e and not kept[3]:
                sums = state.hit_sums
                sums[e] = sums.get(e, 0.0) + round(hits.item(0) * self.weights.item(s - e * spe))
                return
        while s < end:  # one piece per epoch the chunk touches
            e = s // spe
            stop = min(end, (e + 1) * spe)
            steps, _, weighted = self.epoch_weights(state, e)
            counts = not weighted
            if stop - s == 1:   # (one step: no array call)
                v = hits.item(s - chunk.step0) * steps.item(s - e * spe)
                sums = state.hit_sums
                sums[e] = sums.get(e, 0.0) + (round(v) if counts else v)
                s = stop
                continue
            sizes = steps[s - e * spe:stop - e * spe]
            part = hits[s - chunk.step0:stop - chunk.step0]
            state.add_hits(e, float(np.rint(part * sizes).sum()) if counts else weighted_sum(part, sizes))
            s = stop

    def read_error(self, chunk, done):
        if self.check_rows is not None:
            self.check_rows()
        return OSError(f"could not read the records of step {chunk.step0 + done + 1} from the file behind X")

    def commit(self, state, chunk, done):
        if self.rows is not None and self.rows.releases_pages:
            self.rows.after_chunk()

    def may_end_epochs(self, state):
        """Whether an epoch has ended that is not closed yet (by the last chunk, or by one whose closing an
        error cut short before it began)."""
        return unclosed_epochs(state)

    def epochs_ended(self, state):
        """The epochs ended and not closed yet, closed one by one: [(epoch, ...)]."""
        spe = state.steps_per_epoch
        for epoch in range(len(state.epoch_loss), state.step // spe):
            state.close_epoch(epoch, epoch * spe, (epoch + 1) * spe, *self.epoch_weights(state, epoch)[:2])
            yield epoch


class BatchSource:
    """One chunk per batch of ``batches()``, one pass of it per epoch (``fit_batches``)."""

    def __init__(self, trainer, batches, n_outputs, validation_data, backend):
        self.trainer, self.batches, self.n_outputs = trainer, batches, n_outputs
        self.validation_data, self.backend = validation_data, backend
        state = trainer._state
        self.iterator = None
        self.skip = state.batch if state is not None else 0  # batches of this epoch already trained on
        self.scaling = state.scaling if state is not None else None
        # a new run's loss and outputs (decided by _first_pass, over all of the first epoch's batches)
        self.loss = self.n_out = None
        self.bad_input = False  # set when a batch was refused (the call is undone)
        self.peak = 0.0  # the largest target_peak of the batches this call trained on
        self.limit = math.inf  # the loss_limit the last batch was given
        self.stats_done = state is not None
        self.epoch_batches = None  # batches an epoch trains on, counted first when the rates need them (_epoch_batches)
        self.specs = {}
        self.checks_params = getattr(backend, "CHECKS_PARAMS", False)

    def _check(self, xb, yb):
        tr = self.trainer
        return check_batch(tr._cfg, tr._state, xb, yb, self.n_out, self.loss)

    def next_chunk(self, trainer, end, hooks):
        cfg = trainer._cfg
        dtype = np.dtype(cfg["dtype"])
        counted = None
        if not self.stats_done:
            self.loss, self.n_out, self.scaling, counted = _first_pass(self.batches, cfg, self.n_outputs,
                                                                       trainer._stop_flag)
            self.stats_done = True
        state = trainer._state
        if self.epoch_batches is None and not (state is not None and state.steps_per_epoch) \
                and not trainer._schedule._constant_rate:
            self.epoch_batches = counted if counted is not None else _epoch_batches(self.batches, cfg)
        if self.iterator is None:
            self.iterator, self.k, self.seen = _pairs(self.batches), 0, 0
        for xb, yb in self.iterator:
            self.seen += 1
            if cfg["drop_last"] and np.shape(xb)[0] < cfg["batch_size"]:
                continue  # dropped: not one of the epoch's steps (nor counted among those a resumed call skips)
            self.k += 1
            if self.k <= self.skip and (hooks.val is not None or self.validation_data is None):
                continue
            Xb, t, lab, kk, loss = self._check(xb, yb)
            if hooks.val is None and self.validation_data is not None:  # (from the first batch, trained or not:
                # a call resumed at an epoch's last batch trains none of it, and still validates that epoch)
                val = _data.prepare_validation(self.validation_data, loss, kk, dtype, Xb.shape[1], self.scaling)
                hooks.val, hooks.epoch_state = val, True
            if self.k <= self.skip:
                continue
            if self.scaling:
                Xb, t = _data.apply_scaling(self.scaling, Xb, t, dtype)
            state = trainer._state
            if state is None:
                state = trainer._start_generator_run(Xb.shape[1], loss, kk)
                state.scaling = self.scaling
            spe = state.steps_per_epoch or self.epoch_batches or (state.batch + 1)
            # (an epoch that yields more batches than the first: a schedule by epoch keeps its rate to its end; the
            # others, and the warm-up, go by the run's steps, whatever the lengths of the epochs before)
            lrs = trainer.learning_rate * trainer._schedule.factors([state.step], spe,
                                                                    spe * cfg["epochs"], epochs=[state.epoch])
            spec = self.specs.get(Xb.shape[0])  # one per batch size: the kernel keeps its buffers per spec
            if spec is None:
                spec = self.specs[Xb.shape[0]] = kernel_spec(cfg, state, batch_size=Xb.shape[0], steps_per_epoch=1,
                                                             shuffle=False)
            order = np.full(Xb.shape[0] + 1, -1, dtype=np.int64)
            return Chunk(state.step, 0, 1, lrs, (spec, Xb, t, lab, V.no_weights(Xb.dtype), state.theta,
                                                 state.opt_state, order), Xb.shape[0])
        state = trainer._state
        if state is None:
            raise ValueError("batches() yielded no batch to train on" if self.seen == 0 else
                             "every batch was smaller than batch_size and drop_last=True dropped them all")
        if state.batch == 0:
            raise ValueError(f"batches() yielded no batch in epoch {state.epoch + 1}")
        self.iterator, self.skip = None, 0
        return EPOCH_END

    def call(self, chunk, state, losses, noise, n, stop, max_seconds, hits=None):
        # a batch is checked whole before it trains (check_batch): no bad record reaches the kernel
        self.peak = max(self.peak, _data.target_peak(chunk.head[2]))  # (the batches' so far: a stream's targets)
        self.limit = loss_limit(state, self.peak)
        return self.backend.train_steps(*chunk.head, chunk.lrs, losses, noise, chunk.start, n, state.opt_t, stop,
                                        max_seconds, hits=hits, loss_limit=self.limit)

    def limit_was_stale(self, state):
        """Never: each batch's own targets set the limit of its call (``call``)."""
        return False

    def add_hits(self, state, chunk, done, hits):
        if done:
            state.add_hits(state.epoch, hits[0] * chunk.rows)

    def read_error(self, chunk, done):
        return OSError("could not read the batch")  # pragma: no cover - batches are in memory

    def commit(self, state, chunk, done):
        if done:
            state.per_step_buf[:, state.step] = (state.epoch, state.batch, chunk.rows)
            state.batch += 1
            state.records += chunk.rows

    def close_epoch(self, state):
        """The iterable is spent: close its epoch (the first one fixes the steps per epoch)."""
        if not state.steps_per_epoch:
            state.steps_per_epoch, state.n_records = state.batch, state.records
        first = state.step - state.batch
        state.close_epoch(state.epoch, first, state.step, state.per_step_buf[2, first:state.step])
        epoch = state.epoch
        state.epoch, state.batch, state.records = epoch + 1, 0, 0
        return epoch

    def may_end_epochs(self, state):
        return False  # close_epoch closes them (EPOCH_END)

    def epochs_ended(self, state):
        return ()


def run(trainer, source, end, hooks, stop, make_theta=None, first=None):
    """The step loop of ``fit`` and ``fit_batches``: chunks until ``end`` (a step), the budget, or a stop.

    ``make_theta``: for a run this call made, a function making its first params again exactly; the
    call's first chunk then snapshots without a copy of them (``RunState.snapshot_start``). Not with
    callbacks (on_run_begin runs before that snapshot, with the trainer in its hands).

    ``first``: (snapshot, chunk) of the call's first chunk, when ``quick`` did it (the call goes on here).
    """
    cfg = trainer._cfg
    rows = opt_rows(cfg)
    prev = None  # (snapshot, chunk) of the previous kernel call: a divergence may rewind into it
    state = trainer._state
    carried = state.carried if state is not None else None
    if carried is not None and carried[2] != (state.step if first is None else first[0].step):
        carried = None  # (something moved the run since: not the chunk before this call's)
    # the last call's last chunk (state.carried): a call undone by a bad record gives it back while its snapshot is
    # whole (a later chunk's snapshot takes its buffer: then none, and the next rewind goes no further than its call)
    kept = carried
    # whether prev's steps may be run again (a divergence's rewind into it) on this call's data: a chunk of this
    # call, yes; the last call's, no: its arrays may be others of the same shape (a partial_fit stream's next chunk)
    # or edited in place since, so a rewind into it goes back to its start, its snapshot, and runs none of its steps
    prev_ours = first is not None
    if first is not None:
        prev = first
    elif carried is not None:
        prev = carried[:2]  # the last call's last chunk, nothing changed since
    # the snapshot of the call's first chunk: a bad record found later goes back to it
    call_start = None if first is None else first[0]
    began = trainer._state is not None and trainer._state.step > 0
    look_at_params = not source.checks_params  # else the kernel's status says so
    look = False  # the callers look at trainer.finished before the loop (and end is past the step)
    if state is not None and state.steps_per_epoch and source.may_end_epochs(state):
        # an epoch the last call ended but did not close (an interrupt between its chunk and its closing):
        # closed now, at the params it ended with, before any step of this call (whole, or not at all)
        before = state.snapshot(rows)
        state.snapshot_into(before)
        call_start = before  # (a refused batch or record later undoes the closing too: as if never called)
        try:
            if _close_epochs(trainer, source, state, hooks) or state.step >= end:
                return
        except BaseException as exc:
            _undo(trainer, state, before)
            if isinstance(exc, _Stopped):
                return
            raise
    while True:
        state = trainer._state
        if look and (state.step >= end or trainer.finished):
            break
        look = True
        try:
            chunk = source.next_chunk(trainer, end, hooks)
        except _Stopped:  # (in fit_batches' first pass over the batches: no step yet)
            break
        except (ValueError, TypeError):  # a batch refused by its check: as if this fit call had not been made
            source.bad_input = True
            if call_start is not None:
                _undo(trainer, trainer._state, call_start)
                trainer._state.carried = kept
            raise
        state = trainer._state
        if chunk is EPOCH_END:
            before = state.snapshot(rows)
            state.snapshot_into(before)
            if call_start is None:  # (a refused batch later undoes this closing too: as if never called)
                call_start = before
            try:  # an epoch is closed whole, or not at all
                epoch = source.close_epoch(state)
                stop_run = end_epoch(trainer, epoch, hooks) if hooks.epoch_state else False
                hooks.report_epochs(epoch, epoch + 1)
                hooks.progress(force=True)
            except BaseException as exc:
                _undo(trainer, state, before)
                if isinstance(exc, _Stopped):
                    break
                raise
            if stop_run:
                break
            continue
        if not began:
            began = True
            if state.step == 0 and fire(hooks.callbacks, "on_run_begin", trainer):
                break
        snaps = _snapshots(state, rows, call_start, None if prev is None else prev[0])
        snap = snaps[0]
        if kept is not None and snap is kept[0]:
            kept = None
        if call_start is None:
            call_start = snap
            if make_theta is not None and not hooks.callbacks and state.step == 0:
                state.snapshot_start(snap, make_theta)
            else:
                state.snapshot_into(snap)
        else:
            state.snapshot_into(snap)
        step0, n = chunk.step0, chunk.n
        try:
            if step0 + n > len(state.loss_buf):
                state.reserve(step0 + n, trainer.total_steps)
            hits = state.chunk_hits(n)
            noise = _NO_NOISE if state.noise_buf is None else state.noise_buf[step0:step0 + n]
            # the kernel writes each step's loss into the run's history, in its dtype
            done, status = source.call(chunk, state, state.loss_buf[step0:step0 + n], noise, n, stop, CHUNK_SECONDS,
                                       hits)
            if status == _READ_ERROR:
                raise source.read_error(chunk, done)
            if status == _BAD_INPUT:
                raise _BadRecord
            if status == _BLOWN_UP and source.limit_was_stale(state):
                state.restore(snap)  # (the chunk changed the params, the optimizer rows and the order cache only)
                continue             # the chunk again, with the limit of the targets as they are now
            if status == _NONFINITE or status == _BLOWN_UP or (look_at_params and not _all_finite(state.theta)):
                _rewind(trainer, source, state, snap, chunk, done, status, prev, prev_ours)
            _record(source, state, chunk, done, hits)
            source.commit(state, chunk, done)
            state.step += done
            state.opt_t += done
        except DivergenceError:
            raise  # _rewind left the state at the last params whose loss was finite
        except _BadRecord:
            _undo(trainer, state, call_start)  # as if this fit call had not been made
            state.carried = kept
            raise source.input_error() from None
        except BaseException:
            _undo(trainer, state, snap)
            raise
        snaps[0], snaps[1] = snaps[1], snaps[0]
        prev, prev_ours = (snaps[1], chunk), True
        # the chunk's step hook and the epochs it ended, closed whole (validation, schedule, early stopping,
        # callbacks), or on an error (KeyboardInterrupt, a validation file cut short) the chunk undone with them
        try:
            stop_run = hooks.step_hooks and done and fire(hooks.callbacks, "on_step_end", trainer, state.step - 1,
                                                          float(state.loss_buf[state.step - 1]))
            ended = source.may_end_epochs(state)   # (closed when a step hook stops the run too)
            if (ended and _close_epochs(trainer, source, state, hooks)) or stop_run:
                break
            if hooks.on_progress is not None:
                hooks.progress(force=ended and hooks.epoch_state)
        except BaseException as exc:
            _undo(trainer, state, snaps[1])
            if isinstance(exc, _Stopped):  # (the chunk is done again by the next call, with its epoch's closing)
                prev = None
                break
            raise
        if status == _STOPPED:
            break
        if trainer._readers:
            trainer._yield_to_readers()
    state = trainer._state
    if state is not None:
        state.carried = None if prev is None else (*prev, state.step)
    if hooks.on_progress is not None:
        hooks.progress(force=True)
    if hooks.callbacks and trainer.finished:
        fire(hooks.callbacks, "on_run_end", trainer)


def quick(trainer, X, y, steps, stop, n_outputs=None):
    """``fit(X, y, steps=k)``'s usual call in one kernel call, without run()'s set-up: run()'s first chunk, for a
    call with no hook, whose steps end inside the epoch they are in or at its end (closed then, as run() closes it
    without epoch hooks), on arrays that need no conversion (``_data.prepare``'s later-call case: the last call's
    arrays, ``LastArrays``, cost no check), on the kernel. What it does is what run() does for that chunk, bit for
    bit (tests compare the two): snapshot, kernel call, commit, the epoch's closing, the carried chunk for the next
    call's rewind. (``fit(steps=1)`` in a loop; partial_fit's one-epoch calls.)

    Returns None when the call is not that case, or the chunk did not end well (a bad record, a divergence): the
    state is then as before, and run() does the call (again), with its handling. Else True when the call is done,
    or (its steps took more than CHUNK_SECONDS) the chunk's (snapshot, chunk), for run() to go on from (``first``).
    A refused argument (a shape, a dtype) is prepare's error, as run()'s call would give it, before any change; an
    error after the kernel call (an interrupt) undoes the chunk, as run() does.
    """
    state, source = trainer._state, trainer._source
    if source is None or not source.quick or source.state is not state or state.step == 0 or state.stopped_early \
            or isinstance(X, np.memmap):
        return None
    spe, start = state.steps_per_epoch, state.step
    end = total = trainer.plan.total_steps
    if start + steps < end:
        end = start + steps
    n = end - start
    left = spe - start % spe  # steps to the epoch's end
    if n <= 0 or n > MAX_CHUNK_STEPS or n > left or start // spe > len(state.epoch_loss):
        return None
    hooks = None
    if n == left:
        hooks = trainer._quiet_hooks
        if hooks is None:
            hooks = trainer._quiet_hooks = Hooks(trainer, None, None, ())
        if hooks.epoch_state:  # the epoch's closing looks at the params then (early stopping, plateau)
            return None
    cfg, schedule, last = trainer._cfg, trainer._schedule, trainer._last_arrays
    data = last.get(X, y) if n_outputs is None else None  # (prepare's first look, without its call)
    if data is None:
        data = _data.prepare(X, y, cfg, state, n_outputs, scan=False, last=last, split=0.0)
    source.sample_weights = None  # (a quick call has no sample weights)
    try:
        carried = state.carried  # (the chunk a divergence in this one may rewind into: its snapshot stays whole)
        snaps = _snapshots(state, opt_rows(cfg), None if carried is None or carried[2] != start else carried[0])
        snap = snaps[0]
        state.snapshot_into(snap)
        try:
            if end > len(state.loss_buf):
                state.reserve(end, total)
            hits = state.chunk_hits(n)
            lr = cfg["learning_rate"]
            lrs = source.lrs = schedule.rates(lr, start, n, spe, total, source.lrs)
            done, status = source.train(source.spec, data.X, data.targets, data.labels, data.weights, state.theta,
                                        state.opt_state, state.order_cache, lrs, state.loss_buf[start:end],
                                        _NO_NOISE, start, n, state.opt_t, stop, CHUNK_SECONDS, -1, 0, hits,
                                        source.bad, state.x_affine(), source.loss_limit(data, state))
            if status != _DONE and status != _STOPPED and status != _TIME_UP:
                state.restore(snap)  # (the chunk changed the params, the optimizer rows and the order cache only)
                return None
            chunk = Chunk(start, start, n, lrs, None, 0, lr if schedule._constant_rate else None)
            _record(source, state, chunk, done, hits)
            state.step += done
            state.opt_t += done
            snaps[0], snaps[1] = snaps[1], snaps[0]
            if done == left:  # the epoch closed whole, or (an interrupt) the chunk undone with it
                _close_epochs(trainer, source, state, hooks)
        except BaseException:
            _undo(trainer, state, snap)
            raise
    finally:
        last.release()
    if status == _TIME_UP and done < n:
        return snap, chunk  # (state.carried stays the last call's: run() keeps it for an undo of the whole call)
    state.carried = (snap, chunk, state.step)
    if trainer._readers:
        trainer._yield_to_readers()
    return True


def _snapshots(state, rows, keep, keep2=None):
    """The run's snapshot buffers, the first free for the next chunk: not ``keep`` or ``keep2`` (None, or snapshots
    still needed: the call's first, for an undo of the call; the previous chunk's, for a rewind into it: an error
    after a chunk may leave that one first). Two take turns, and a spare stands in for one kept: three at most."""
    snaps = state.snapshots
    if snaps is None or snaps[0].opt_rows != rows:
        snaps = state.snapshots = [state.snapshot(rows) for _ in range(2)]
    if snaps[0] is keep or snaps[0] is keep2:
        spare = next((i for i in range(2, len(snaps)) if snaps[i] is not keep and snaps[i] is not keep2), None)
        if spare is None:
            spare = len(snaps)
            snaps.append(state.snapshot(rows))
        snaps[0], snaps[spare] = snaps[spare], snaps[0]
    return snaps


_NO_NOISE = np.zeros((0, 2))  # the noise numbers' buffer of a run that does not track them
_DONE, _TIME_UP, _READ_ERROR, _BAD_INPUT, _NONFINITE, _STOPPED, _BLOWN_UP = (int(v) for v in (
    Status.DONE, Status.TIME_UP, Status.READ_ERROR, Status.BAD_INPUT, Status.NONFINITE, Status.STOPPED,
    Status.BLOWN_UP))


def loss_limit(state, peak=0.0):
    """The loss beyond which a step means the run has diverged: LOSS_LIMIT times the largest of its first step's,
    ``peak`` (the largest a record of its data gives, _data.target_peak) and 1; none before its first step."""
    return LOSS_LIMIT * max(abs(float(state.loss_buf.item(0))), peak, 1.0) if state.step else math.inf


def unclosed_epochs(state):
    """Whether an array run has an epoch that ended and is not closed yet (an interrupt came between its last
    chunk and its closing): the next fit call closes it first, even on a finished run."""
    return not state.generator and state.step // state.steps_per_epoch > len(state.epoch_loss)


def _close_epochs(trainer, source, state, hooks):
    """Close the epochs that ended and are not closed yet: their means, then (epoch hooks) validation, schedule,
    early stopping and callbacks; report them. True when the run is to end."""
    first = None
    for epoch in source.epochs_ended(state):
        first = epoch if first is None else first
        if hooks.epoch_state and end_epoch(trainer, epoch, hooks):
            hooks.report_epochs(first, epoch + 1)
            return True
    if first is not None:
        hooks.report_epochs(first, state.step // state.steps_per_epoch)
    return False


def _undo(trainer, state, snap):
    """Restore ``snap`` (the state before a chunk, an epoch's closing or the call) after an error there: a run
    never keeps an epoch half closed (its loss without its validation, schedule or early-stopping step). The
    Histories given out meanwhile keep what they recorded; the schedule follows the state (a plateau's)."""
    state.detach_history()
    state.restore(snap)
    trainer._sync_schedule()


class _BadRecord(Exception):
    """The kernel met a record it cannot train on (Status.BAD_INPUT)."""


class _Stopped(Exception):
    """stop() came while an epoch was being closed (its validation): the run goes back to before the chunk that
    ended it (an epoch is closed whole or not at all), and the call returns; the next one does both again."""


def _all_finite(a):
    """Whether every value of the vector ``a`` is finite: its dot product with itself says so, unless
    that overflows (values beyond ~1e19 in float32): then each is looked at."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(a, a))) or bool(np.isfinite(a).all())


def validate(trainer, val, epoch=None):
    """The validation set's score at an epoch end: on the cython backend a kernel call over X
    (``_kernel.score``: the forward pass and the score in C, where numpy's calls cost 10x the
    arithmetic on a small set), else the numpy reference's (``_inference``)."""
    state, cfg, stop = trainer._state, trainer._cfg, trainer._stop_flag
    if epoch is None or state.stopped_closing == epoch:  # (a second try at an epoch's closing goes through)
        stop = None
    Xv, tv, lv, wv = val
    backend = trainer._backend()
    # a standardised target's mae is said in the data's units (its loss stays the standardised one, as the
    # training losses are): one output's is a factor; several outputs' need each output's errors (numpy's path)
    y_scale = (state.scaling or {}).get("y_scale") if state.loss == "mse" else None
    in_c = hasattr(backend, "score") and len(Xv) and Xv.dtype == state.theta.dtype and Xv.flags.c_contiguous \
        and (y_scale is None or len(y_scale) == 1)
    codes = (ACTIVATION_CODES[cfg["activation"]], LOSS_CODES[state.loss])
    sums, zs = None, []
    for lo, hi, part in _validation_parts(Xv):
        if stop is not None and stop[0] and lo:  # stop() came: the epoch is not closed (a big set takes a while)
            state.stopped_closing = epoch
            raise _Stopped
        if in_c:
            sums = backend.score(state.theta, state.sizes, *codes, part, tv[lo:hi], lv[lo:hi], wv[lo:hi], sums)
        else:
            zs.append(_inference.forward_views(state.layers(), cfg["activation"], part))
    if in_c:
        out = _inference.score_of_sums(sums, state.loss, tv, wv)
        if y_scale is not None:
            out["mae"] *= float(y_scale[0])
        return out
    z = zs[0] if len(zs) == 1 else np.concatenate(zs)
    out = _inference.score(z, state.loss, tv, lv, wv)
    if y_scale is not None:
        out["mae"] = _inference.score(z * y_scale, state.loss, tv * y_scale, lv, wv)["mae"]
    return out


def _validation_parts(Xv):
    """(lo, hi, rows) of the validation set, _inference.CHUNK rows at a time (a stop is looked at between them;
    scored in parts, the sums are the same bit for bit): views of an array in memory; a memory map's rows read
    through the row source (a file cut short is an OSError, not a SIGBUS; memory stays bounded)."""
    if not isinstance(Xv, np.memmap):
        for lo in range(0, max(len(Xv), 1), _inference.CHUNK):
            hi = min(lo + _inference.CHUNK, len(Xv))
            yield lo, hi, Xv[lo:hi]
        return
    from ._rows import RowSource
    with RowSource.open(Xv, "validation_data X") as src:
        for lo in range(0, len(Xv), _inference.CHUNK):
            hi = min(lo + _inference.CHUNK, len(Xv))
            yield lo, hi, np.ascontiguousarray(src.read(lo, hi))


def end_epoch(trainer, epoch, hooks):
    """Validation, schedule, early stopping and callbacks at an epoch end; True to end the run."""
    state, cfg = trainer._state, trainer._cfg
    metric = state.epoch_loss[-1]
    logs = {"epoch": epoch, "loss": metric}
    if hooks.val is not None:
        res = validate(trainer, hooks.val, epoch)
        for values in (state.val_loss, state.val_accuracy):  # NaN for epochs that ended without validation
            values.extend([math.nan] * (epoch - len(values)))
        state.val_loss.append(res["loss"])
        state.val_accuracy.append(res.get("accuracy", math.nan))
        metric = res["loss"]
        logs.update({f"val_{k}": v for k, v in res.items()})
        state.epoch_metrics[-1].update({f"val_{k}": v for k, v in res.items()})
    trainer._schedule.on_epoch_end(metric)
    state.schedule_state = trainer._schedule.state()
    patience = cfg["patience"]
    if patience:
        # the best of the metric watched now: a validation loss and a training loss are not compared (validation
        # given on some fit calls only), so when the watched one changes the count starts again from this epoch
        validated, best = hooks.val is not None, state.best
        if best is None or best.get("validated", validated) != validated or metric < best["metric"]:
            state.best = {"metric": metric, "epoch": epoch, "theta": state.theta.copy(), "validated": validated}
        elif epoch - best["epoch"] >= patience:
            state.theta[...] = state.best["theta"]
            state.stopped_early = True
            logs["stopped_early"] = True
    stop = fire(hooks.callbacks, "on_epoch_end", trainer, epoch, logs)
    return bool(stop) or state.stopped_early


def _rewind(trainer, source, state, snap, chunk, done, status, prev, prev_ours=True):
    """Rewind to params from before the blow-up, and raise DivergenceError.

    The first bad state is the params before step ``bad`` (0-based): their batch loss is
    non-finite, or they are non-finite themselves. A run that diverges usually blows up
    over a few steps first (losses of 1e8, 1e20, then inf), and params whose loss is
    finite but huge diverge again at any rate. So the run goes back to the step before the
    blow-up began (``_before_blow_up``: mean losses over ~BLOW_UP_RECORDS records against
    the lowest so far), at least one step before ``bad``, and no further back than the
    snapshots kept: the start of the previous kernel call. Continuing with a smaller rate redoes that step's update. A step is only run again
    on the data it was trained on: a target inside ``prev``, the last fit call's chunk
    (``prev_ours`` False: its arrays may be others now, or edited since), goes back to that
    chunk's start.
    """
    step0 = chunk.step0
    limit = source.limit if status == Status.BLOWN_UP else None  # (the one the kernel call was given)
    state.detach_history()  # (it may go back into the last call: the History that call returned stays as it was)
    if status in (Status.NONFINITE, Status.BLOWN_UP) and np.isfinite(state.theta).all():
        bad = step0 + done
    else:  # the params went non-finite at some step of the chunk: replay from the snapshot to find it
        lo, hi = 0, done  # finite after lo steps, non-finite after hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            _replay(source, state, snap, chunk, mid)
            if np.isfinite(state.theta).all():
                lo = mid
            else:
                hi = mid
        bad = step0 + lo + 1 if hi > lo else step0 + lo
    earliest = prev[1].step0 if prev is not None else step0
    target, sane = earliest, False  # sane: the target's own loss was finite and not blown up
    if bad > earliest:
        target, sane = _before_blow_up(state, earliest, bad)
    for snapshot, ch in ((snap, chunk),) + ((prev,) if prev is not None else ()):
        if target >= ch.step0:
            if ch is not chunk and not prev_ours:  # (the last call's steps: not run again on this call's data)
                state.restore(snapshot)
                target = ch.step0
            else:
                _replay(source, state, snapshot, ch, target - ch.step0, record=True)
            break
    else:  # nothing earlier to go back to: the run's first params already give a non-finite loss
        state.restore(snap)
        target = state.step
    state.opt_t += target - state.step
    state.step = target
    trainer._sync_schedule()
    lr = float(trainer.learning_rate * trainer._schedule.factors([target], state.steps_per_epoch or 1,
                                                                 trainer.total_steps or 1)[0])
    epoch, batch = (state.epoch, state.batch) if state.generator else divmod(target, state.steps_per_epoch)
    what = "the loss" if status in (Status.NONFINITE, Status.BLOWN_UP) and bad == step0 + done else "the params"
    cfg = trainer._cfg  # the advice names only a scaling the run does not do
    scale = ("the inputs (standardize=True)" if not cfg["standardize"] else
             "the targets (standardize_target=True)" if state.loss == "mse" and not cfg["standardize_target"] else None)
    raise DivergenceError(target, epoch, batch, lr, what, bad, sane, limit if what == "the loss" else None, scale)


def _before_blow_up(state, earliest, bad):
    """(target, sane): the step ``_rewind`` goes back to, in earliest..bad-1 (the steps before ``bad`` all had
    finite losses), and whether its loss was not blown up. A step's level is the mean loss of the steps over its
    last ~BLOW_UP_RECORDS records, leaving out losses of exactly 0 (a batch whose sample weights are all 0, or
    records a well-fit network scores exactly: no measure of it); a level is blown when it is more than BLOW_UP
    times the lowest level so far, the lowest counting as at least BLOW_UP_FLOOR times the run's first level (a
    run whose loss fell 1000-fold then varies 10-fold near 0 without blowing up). The blow-up is the blown levels
    after the last level that was not: a healthy run's loss goes 10x over its lowest now and then (the first time
    is often thousands of steps before the blow-up). It began at the first step of its first blown level's window
    whose own loss is more than BLOW_UP times the level before the window (or of the steps above it that run into
    the window): the target is the step before that one. A blown-up network can still score a record exactly (a
    loss of 0) now and then, so a sane loss after a blown-up one does not mean sane params: only a sane level
    (a mean over ~64 records, zeros left out) ends a blow-up."""
    per_step = state.n_records / state.steps_per_epoch if state.steps_per_epoch else BLOW_UP_RECORDS / 8
    window = max(1, min(BLOW_UP_RECORDS, math.ceil(BLOW_UP_RECORDS / max(per_step, 1.0))))
    lo = max(0, earliest - BLOW_UP_LOOKBACK)
    losses = np.abs(state.loss_buf[lo:bad].astype(np.float64))
    ones = np.ones(window)
    sums = np.convolve(losses, ones)[:len(losses)]  # (sums, not a cumsum's differences)
    counts = np.convolve((losses != 0).astype(np.float64), ones)[:len(losses)]
    with np.errstate(invalid="ignore", divide="ignore"):
        level = sums / counts  # NaN: a window of zeros only (no measure: not blown, not the lowest)
    head = np.abs(state.loss_buf[:min(window, bad)].astype(np.float64))
    head = head[head != 0]
    floor = max(BLOW_UP_FLOOR * float(head.mean()) if len(head) else 0.0, 1e-30)
    lowest = np.fmax(np.fmin.accumulate(level), floor)  # (NaN before a first level: the floor)
    sane_levels = np.flatnonzero(~(level > BLOW_UP * lowest))
    last = int(sane_levels[-1]) if len(sane_levels) else -1
    if last == len(losses) - 1:
        return bad - 1, True
    i = last + 1
    first = max(0, i - window + 1)
    base = BLOW_UP * lowest[first - 1 if first else 0]
    spikes = np.flatnonzero(~(losses[first:i + 1] <= base))
    begin = first + (int(spikes[0]) if len(spikes) else 0)
    if begin == first:  # above the level before it from the window's first step: it began before, where?
        calm = np.flatnonzero(losses[:first] <= base)
        begin = int(calm[-1]) + 1 if len(calm) else 0
    target = lo + begin - 1
    return min(max(target, earliest), bad - 1), target >= earliest


def _record(source, state, chunk, done, hits):
    """The rates of the chunk's first ``done`` steps, and their hit fractions, into the run's history."""
    rate = chunk.rate
    if rate is not None:  # (no array work)
        rates = state.rates
        if done and not (rates.n and rates.values.item(rates.n - 1) == rate):  # (else the last run goes on)
            rates.record_rate(chunk.step0, rate)
    else:
        lrs = chunk.lrs
        state.rates.record(chunk.step0, lrs if done == len(lrs) else lrs[:done])
    if hits is not None and done:
        source.add_hits(state, chunk, done, hits)


def _replay(source, state, snap, chunk, n, record=False):
    """Restore ``snap`` and run the chunk's first ``n`` steps again (deterministic: the same results);
    ``record``: and record their rates and hit fractions, as a chunk of n steps would."""
    state.restore(snap)
    if n > 0:
        hits = state.chunk_hits(n)
        source.call(chunk, state, state.loss_buf[chunk.step0:chunk.step0 + n], np.zeros((0, 2)), n,
                    np.zeros(1, np.uint8), 3600.0, hits)
        if record:
            _record(source, state, chunk, n, hits)


def _pairs(batches):
    """The (X, y) pairs of a fresh ``batches()`` iterable; anything else is a TypeError saying what it was."""
    for item in batches():
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"batches() must yield (X_batch, y_batch) pairs, got {type(item).__name__}"
                            + (f" of {len(item)}" if isinstance(item, (tuple, list)) else ""))
        yield item


def _epoch_batches(batches, cfg):
    """A first pass over ``batches()`` counting the batches an epoch trains on (drop_last's short ones left
    out): a schedule of the steps per epoch (step, exponential, cosine) then gives the first epoch's steps
    the rates ``fit`` gives them, as it does once the first epoch has ended and its length is known."""
    n = 0
    for xb, _ in _pairs(batches):
        n += not (cfg["drop_last"] and np.shape(xb)[0] < cfg["batch_size"])
    return n


def _first_pass(batches, cfg, n_outputs, stop=None):
    """A new run's pass over ``batches()`` before its first step, for what its first batch cannot tell:
    ``(loss, n_outputs, scaling, batches counted)``. With loss="auto" the task is the rule over all the epoch's
    targets (a first batch of one class of data sorted by class is not a regression), a classification's outputs
    come from the largest label of them all (unless ``n_outputs`` is given), and the standardisation statistics
    when asked for. No pass when none of them is needed (counted: None). The batches are checked again as they
    are trained on. A stop() between two batches ends it (_Stopped): nothing has changed yet."""
    loss = cfg["loss"]
    classes = n_outputs is None and loss in ("auto", "cross_entropy")
    scaled = cfg["standardize"] or cfg["standardize_target"]
    if loss != "auto" and not classes and not scaled:
        return loss, n_outputs, None, None
    dtype = np.dtype(cfg["dtype"])
    scan, xs, ys, n_features, counted = _task.TaskScan("y"), _data.RunningStats(), _data.RunningStats(), None, 0
    for xb, yb in _pairs(batches):
        if stop is not None and stop[0]:
            raise _Stopped
        Xb = V.check_X(xb, dtype, name="X batch")
        if n_features is not None and Xb.shape[1] != n_features:
            raise ValueError(f"X batch has {Xb.shape[1]} features, but the first batch had {n_features}")
        n_features = Xb.shape[1]
        if cfg["drop_last"] and Xb.shape[0] < cfg["batch_size"]:
            continue  # not trained on: not among the epoch's targets either
        counted += 1
        scan.add(yb)
        if scaled:
            xs.add(Xb)
            if cfg["standardize_target"] and scan.numbers and np.size(yb):
                ys.add(np.asarray(yb, dtype=np.float64).reshape(np.shape(yb)[0], -1))
    task = scan.result(loss)
    if loss == "auto" and scan.seen:
        task.warn()
    loss = task.loss
    _data.warn_unused_target_scaling(cfg, loss)
    if loss == "cross_entropy" and n_outputs is None and scan.whole and scan.top is not None and scan.top >= 0:
        n_outputs = V.n_classes(scan.top)  # (a label out of range is named by the batch's check)
    if not scaled or not xs.n:
        return loss, n_outputs, None, counted  # (no batch: the training loop says so)
    y_stats = ys.result() if cfg["standardize_target"] and loss == "mse" and ys.n else None
    return loss, n_outputs, _data.scaling_from(xs.result(), y_stats, cfg), counted


def check_batch(cfg, state, xb, yb, n_outputs, loss=None):
    """One generator batch, checked: (X, targets, labels, n_outputs, loss). A new run's ``loss``: the one
    :func:`_first_pass` decided (None: the config's, or the rule over this batch)."""
    dtype = np.dtype(cfg["dtype"])
    first = state is None
    Xb = V.check_X(xb, dtype, name="X batch", n_features=None if first else state.n_features)
    if first:
        loss = loss or _task.decide(yb, cfg["loss"], "y").loss
    else:
        loss = state.loss
    t, lab, k = V.check_y(yb, loss, Xb.shape[0], dtype, n_outputs if first else state.n_outputs, name="y batch",
                          run_outputs=None if first else V.TRAIN_OUTPUTS_HINT)
    return Xb, t, lab, k, loss
