"""The run state: everything that moves while a run trains, in one typed object.

A :class:`RunState` owns the params, the optimizer state, the position (step, epoch,
batch), the history buffers, the current epoch's record order, the best params of
early stopping and the schedule's state. The driver snapshots it before each kernel
call and restores it exactly on any error; checkpoints serialise it (``to_arrays`` /
``from_arrays``), with no private attribute of the Trainer.
"""
import dataclasses
import functools
import math
import mmap
import operator

import numpy as np

from ._network import aligned, n_params, unpack
from .history import weighted_sum

PREALLOCATE_STEPS = 1 << 28  # a planned run up to this many steps gets its history buffers at once
N_OPT_ROWS = 3  # opt_state rows: m (momentum buffer), v (square average), RMSprop's grad average
SHARED_ZEROS_KEPT = 8  # opt_state shapes whose shared read-only zeros are kept (RunState.new, opt_untouched)


_shared_zeros = {}


def shared_zeros(shape, dtype):
    """Zeros of this shape and dtype in an anonymous map that cannot be written (any write, even the kernel's
    through a pointer, faults): one for all the runs whose optimizer never touches its state, kept for the last
    SHARED_ZEROS_KEPT shapes. Its pages are never written, so it costs no memory, and a new run (a fresh
    Trainer) pays neither a memset of 3 rows of params nor a map and unmap of its own."""
    key = (shape, np.dtype(dtype).str)
    out = _shared_zeros.get(key)
    if out is None:
        count = math.prod(shape)
        if hasattr(mmap, "PROT_READ"):
            out = np.frombuffer(mmap.mmap(-1, max(1, count * np.dtype(dtype).itemsize), prot=mmap.PROT_READ),
                                dtype=dtype, count=count).reshape(shape)
        else:  # (no protection flags to ask for, e.g. Windows: numpy's read-only flag)
            out = np.zeros(shape, dtype=dtype)
            out.flags.writeable = False
        # the oldest go (list(): one step, whatever other threads add meanwhile; a run keeps its own reference)
        for old in list(_shared_zeros)[:max(0, len(_shared_zeros) - SHARED_ZEROS_KEPT + 1)]:
            _shared_zeros.pop(old, None)
        _shared_zeros[key] = out
    return out


class RateLog:
    """Every step's learning rate, kept as runs of equal rates: a constant rate costs nothing per
    step, a rate that changes every step (cosine) one entry per step. ``n`` runs are in use."""

    def __init__(self, starts=None, values=None):
        self.starts = np.zeros(16, dtype=np.int64) if starts is None else np.array(starts, dtype=np.int64)
        self.values = np.zeros(16) if values is None else np.array(values, dtype=np.float64)
        self.n = 0 if starts is None else len(self.starts)

    def copy(self):
        out = RateLog()
        out.starts, out.values, out.n = self.starts.copy(), self.values.copy(), self.n
        return out

    def record(self, step0, rates):
        """Steps [step0, step0 + len(rates)) used ``rates`` (step0: the first step not yet recorded)."""
        if not len(rates):
            return
        if len(rates) == 1:  # (a one-step call: no array work)
            self.record_rate(step0, rates.item(0))
            return
        if rates[0] == rates[-1] and not (rates != rates[0]).any():
            starts, values = [step0], rates[:1]
        else:
            at = np.concatenate(([0], np.flatnonzero(rates[1:] != rates[:-1]) + 1))
            starts, values = at + step0, rates[at]
        if self.n and self.values[self.n - 1] == values[0]:  # the last run goes on
            starts, values = starts[1:], values[1:]
        self._append(starts, values)

    def record_rate(self, step0, rate):
        """Steps from step0 on (at least one) used the one rate ``rate``: O(1), no array work."""
        if self.n and self.values.item(self.n - 1) == rate:
            return  # the last run goes on
        self._append((step0,), (rate,))

    def _append(self, starts, values):
        k = len(starts)
        if not k:
            return
        if self.n + k > len(self.starts) or self.n + k > len(self.values):  # (either: an interrupt may have come
            cap = max(self.n + k, 2 * len(self.starts))                     # between the two, last time)
            self.values = np.resize(self.values, cap)
            self.starts = np.resize(self.starts, cap)
        self.starts[self.n:self.n + k] = starts
        self.values[self.n:self.n + k] = values
        self.n += k

    def per_step(self, steps):
        """The rate of each of the first ``steps`` steps, as one float64 array."""
        k = int(np.searchsorted(self.starts[:self.n], steps))
        if not k:
            return np.empty(0)
        counts = np.diff(np.append(self.starts[:k], steps))
        return np.repeat(self.values[:k], counts)

    def runs(self):
        """(starts, values) of the runs in use (copies)."""
        return self.starts[:self.n].copy(), self.values[:self.n].copy()


@dataclasses.dataclass
class RunState:
    """One run: fixed facts about its data and network, then everything that moves."""

    # fixed once the run starts
    sizes: np.ndarray            # int64 [n_features, *hidden, n_outputs]
    loss: str                    # the concrete loss: mse, binary_crossentropy or cross_entropy
    n_records: int               # training records (after the validation split); 0 for fit_batches until known
    n_records_all: int           # records passed to fit, before the split (0 for fit_batches)
    steps_per_epoch: int         # 0 for a fit_batches run until its first epoch ends
    generator: bool              # a fit_batches run
    n_threads: int               # the kernel's team size, fixed for the run
    # what moves
    theta: np.ndarray            # the params, flat (see _network.unpack)
    opt_state: np.ndarray        # (N_OPT_ROWS, n_params)
    step: int = 0                # steps done
    opt_t: int = 0               # optimizer steps done (Adam's bias correction counts from it)
    epoch: int = 0               # fit_batches: the epoch the next batch belongs to
    batch: int = 0               # fit_batches: batches done in that epoch
    records: int = 0             # fit_batches: records done in that epoch
    stopped_early: bool = False
    # history: per step (buffers grow by doubling; entries past `step` mean nothing)
    loss_buf: np.ndarray = None      # each step's loss, in the run's dtype (4 bytes a step in float32)
    rates: RateLog = None            # each step's learning rate, as runs of equal rates
    per_step_buf: np.ndarray = None  # fit_batches: (3, cap) int64 of epoch, batch, batch size
    noise_buf: np.ndarray = None     # track_noise: (cap, 2) of |G_B|^2 and mean |g_i|^2 per step
    # classification: per epoch not yet closed, the sum over its steps of batch size x the fraction of
    # the batch classified right (the kernel's per-step fractions are summed as each chunk ends)
    hit_sums: dict = None
    chunk_out: np.ndarray = None     # float64: where a kernel call writes each step's hit fraction (classification)
    # history: per finished epoch
    epoch_loss: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_accuracy: list = dataclasses.field(default_factory=list)
    epoch_metrics: list = dataclasses.field(default_factory=list)  # per finished epoch: {"loss", "accuracy" or "r2", "val_..."}
    target_var: float = None     # mse: the training targets' variance (pooled over outputs), for the epoch's r2
    # the current epoch's record order between kernel calls (index 0: its epoch, -1 none)
    order_cache: np.ndarray = None
    best: dict = None            # early stopping: {"metric", "epoch", "theta"}
    scaling: dict = None         # standardisation: x_shift, x_scale (n_features), y_shift, y_scale (n_outputs)
    snapshots: list = None       # the driver's three snapshot buffers, kept between calls (not saved)
    # the last call's last chunk, (snapshot, chunk, step after it): a divergence at the next call's start rewinds
    # into it (a run of short calls could otherwise never go back before one), to its start (none of its steps is
    # run again: this call's arrays may not be the ones it trained on)
    carried: tuple = None
    # how the open epoch's steps weigh in its means (ArraySource.epoch_weights): (epoch, per-step weights, their
    # sum, whether they are sample weights), decided by its first call; saved with the run (its sample weights'
    # per-step sums: a checkpoint resumed with other weights closes the epoch as the run would have); the
    # per-step weights None: the plan's batch sizes
    epoch_weights: tuple = None
    # the epoch whose closing a stop() cut short (the next call closes it whatever stops come: no run is stopped
    # again and again at the same closing and never gets past it); not saved
    stopped_closing: int = None
    layer_views: list = None     # [(W, b), ...] views into theta (it changes in place), made once
    affine: np.ndarray = None    # the x_affine the backend standardises records with (from scaling), made once
    schedule_state: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def new(cls, sizes, loss, theta, n_records, n_records_all, steps_per_epoch, generator, n_threads,
            order_cache=True, opt_untouched=False):
        """``opt_untouched``: the optimizer never writes opt_state (plain SGD): it is then zeros shared by
        every such run of its shape, read-only (see shared_zeros)."""
        sizes = np.asarray(sizes, dtype=np.int64)
        shape, dtype = (N_OPT_ROWS, theta.shape[0]), theta.dtype
        opt_state = shared_zeros(shape, dtype) if opt_untouched else np.zeros(shape, dtype=dtype)
        st = cls(sizes=sizes, loss=loss, n_records=int(n_records), n_records_all=int(n_records_all),
                 steps_per_epoch=int(steps_per_epoch), generator=bool(generator), n_threads=int(n_threads),
                 theta=theta, opt_state=opt_state)
        st.loss_buf, st.rates = np.zeros(0, dtype=theta.dtype), RateLog()
        if loss != "mse":
            st.hit_sums = {}
        st.per_step_buf = np.zeros((3, 0), dtype=np.int64)
        if order_cache:
            st.ensure_order_cache()
        return st

    def ensure_order_cache(self):
        """The record-order buffer, made when the data is there (never from a number a file declares)."""
        if self.order_cache is None or self.order_cache.shape[0] != self.n_records + 1:
            self.order_cache = np.empty(self.n_records + 1, dtype=np.int64)  # (read only after it is made)
            self.order_cache[0] = -1

    def x_affine(self):
        """(2, n_features) float64, shift then 1 / scale, for the backend to standardise each record as it
        reads it; None without feature standardisation."""
        if self.affine is None and self.scaling and "x_shift" in self.scaling:
            self.affine = np.ascontiguousarray(np.stack([self.scaling["x_shift"], 1.0 / self.scaling["x_scale"]]),
                                               dtype=np.float64)
        return self.affine

    def layers(self):
        """(W, b) views into theta, per layer."""
        if self.layer_views is None:
            self.layer_views = unpack(self.theta, self.sizes)
        return self.layer_views

    @functools.cached_property
    def n_features(self):
        return int(self.sizes[0])  # (sizes are fixed for the run)

    @functools.cached_property
    def n_outputs(self):
        return int(self.sizes[-1])

    def reserve(self, end, cap_limit=None):
        """Grow the per-step buffers (by doubling) to hold ``end`` steps: amortised, never per step."""
        cap = len(self.loss_buf)
        if end <= cap:
            return
        # the whole planned run at once when it is known: zeroed pages cost no memory until written,
        # and a long run never pays a doubling's copy (nor holds both copies at its peak)
        if cap_limit is not None and cap_limit <= PREALLOCATE_STEPS:
            cap = max(end, cap_limit)
        else:
            cap = max(end, 2 * cap, 1024)
            if cap_limit is not None:
                cap = max(end, min(cap, cap_limit))
        # loss_buf last, its length being what says the buffers are big enough: an interrupt between two of these
        # leaves it short, so the next call grows them all again (the others to at least its length)
        if self.noise_buf is not None and len(self.noise_buf) < cap:
            new = np.zeros((cap, 2))
            new[:len(self.noise_buf)] = self.noise_buf
            self.noise_buf = new
        if self.generator and self.per_step_buf.shape[1] < cap:
            new = np.zeros((3, cap), dtype=np.int64)
            new[:, :self.per_step_buf.shape[1]] = self.per_step_buf
            self.per_step_buf = new
        new = np.zeros(cap, dtype=self.loss_buf.dtype)
        new[:len(self.loss_buf)] = self.loss_buf
        self.loss_buf = new

    def chunk_hits(self, n):
        """A float64 array of at least n entries for one kernel call's hit fractions (None for mse), reused."""
        if self.hit_sums is None:
            return None
        if self.chunk_out is None or len(self.chunk_out) < n:
            self.chunk_out = np.zeros(n)
        return self.chunk_out

    def add_hits(self, epoch, value):
        """Add steps' hit fractions, weighted by their batch sizes, to ``epoch``'s sum."""
        self.hit_sums[epoch] = self.hit_sums.get(epoch, 0.0) + float(value)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, opt_rows):
        """An empty snapshot of the state's shape: its buffers are made when it is first filled
        (``snapshot_into``), so a call that needs one snapshot allocates one."""
        return _Snapshot(None, None, opt_rows)

    def snapshot_into(self, snap):
        """Copy what a kernel call may change into ``snap``: restore() puts it back exactly
        (no allocation once the snapshot has been filled before: the driver's per-call path)."""
        if snap.theta is None:
            snap.theta, snap.opt = np.empty_like(self.theta), np.empty_like(self.opt_state[:snap.opt_rows])
        snap.theta[...] = self.theta
        if snap.opt_rows:
            snap.opt[...] = self.opt_state[:snap.opt_rows]
        snap.initial = None
        self._snapshot_rest(snap)

    def snapshot_start(self, snap, make_theta):
        """snapshot_into for a run that has not stepped yet, whose params ``make_theta()`` makes again
        exactly and whose optimizer rows are still zeros: nothing is copied (a new run's first kernel
        call does not pay a copy of all its params), and restore() makes the params again."""
        snap.initial = make_theta
        self._snapshot_rest(snap)

    def _snapshot_rest(self, snap):
        hit_sums = self.hit_sums
        snap.scalars = _snapshot_scalars(self)
        # schedule_state is replaced, never changed in place (end_epoch, restore): kept by reference
        snap.more = (len(self.epoch_loss), len(self.val_loss), self.schedule_state, self.rates.n,
                     None if hit_sums is None else hit_sums.copy(), self.epoch_weights)

    def detach_history(self):
        """New copies of what the Histories taken so far read (the per-step buffers, the rate log, the epoch
        lists), before the run goes back over steps they hold (a divergence's rewind, an error's undo): each
        History keeps what it recorded. O(the run's steps), on those rare paths only."""
        self.loss_buf = self.loss_buf.copy()
        if self.noise_buf is not None:
            self.noise_buf = self.noise_buf.copy()
        if self.per_step_buf is not None:
            self.per_step_buf = self.per_step_buf.copy()
        self.rates = self.rates.copy()
        self.epoch_loss, self.val_loss = list(self.epoch_loss), list(self.val_loss)
        self.val_accuracy, self.epoch_metrics = list(self.val_accuracy), list(self.epoch_metrics)

    def restore(self, snap):
        if snap.initial is not None:  # (snapshot_start)
            self.theta[...] = snap.initial()
            if snap.opt_rows:
                self.opt_state[:snap.opt_rows] = 0
        else:
            self.theta[...] = snap.theta
            if snap.opt_rows:
                self.opt_state[:snap.opt_rows] = snap.opt
        for name, value in zip(_SNAPSHOT_SCALARS, snap.scalars):
            setattr(self, name, value)
        n_epochs, n_val, schedule_state, n_rates, hit_sums, self.epoch_weights = snap.more
        self.schedule_state = dict(schedule_state)
        self.rates.n = n_rates
        self.hit_sums = None if hit_sums is None else dict(hit_sums)
        del self.epoch_loss[n_epochs:]
        del self.epoch_metrics[n_epochs:]
        del self.val_loss[n_val:]
        del self.val_accuracy[n_val:]
        if self.order_cache is not None:
            self.order_cache[0] = -1  # the order is a pure function of (seed, epoch): recomputed when needed

    # ------------------------------------------------------------------ epochs

    def close_epoch(self, epoch, first_step, end_step, batch_sizes, records=None):
        """Close an epoch: the mean loss of steps [first_step, end_step) weighted by batch size, and the
        training metric (r2 of the epoch's losses for mse), in O(steps in the epoch). ``records``: the
        batch sizes' sum, when the caller knows it (an array run's epochs all have the same batches)."""
        if len(batch_sizes) == 1:  # a one-step epoch (e.g. partial_fit on one batch): no array work
            loss, records = self.loss_buf.item(first_step), float(batch_sizes[0])
        else:
            w = np.asarray(batch_sizes)  # (integers or floats: weighted_sum sums them in float64)
            if records is None:
                records = float(w.sum())
            loss = weighted_sum(self.loss_buf[first_step:end_step], w) / records if len(w) else math.nan
        self.epoch_loss.append(loss)
        logs = {"loss": loss}
        if self.loss == "mse" and self.target_var:
            logs["r2"] = 1.0 - loss / self.target_var
        elif self.hit_sums is not None and len(batch_sizes):
            logs["accuracy"] = self.hit_sums.pop(epoch, 0.0) / records
        self.epoch_metrics.append(logs)

    # ------------------------------------------------------------------ checkpoints

    def to_arrays(self):
        """Plain arrays and one JSON-able dict: everything needed to go on exactly."""
        s = self.step
        facts = {"loss": self.loss, "n_records": self.n_records, "n_records_all": self.n_records_all,
                 "steps_per_epoch": self.steps_per_epoch, "generator": self.generator,
                 "n_threads": self.n_threads, "step": s, "opt_t": self.opt_t, "epoch": self.epoch,
                 "batch": self.batch, "records": self.records, "stopped_early": self.stopped_early,
                 "epoch_loss": self.epoch_loss, "val_loss": self.val_loss, "val_accuracy": self.val_accuracy,
                 "epoch_metrics": self.epoch_metrics, "target_var": self.target_var,
                 "schedule_state": self.schedule_state, "rate_runs": self.rates.n,
                 "hit_sums": None if self.hit_sums is None else {str(e): v for e, v in self.hit_sums.items()},
                 "epoch_weights": None if not self._open_epoch_weights() else
                 {"epoch": self.epoch_weights[0], "weighted": bool(self.epoch_weights[3])},
                 "best": None if self.best is None else {k: self.best[k] for k in ("metric", "epoch", "validated")
                                                         if k in self.best}}
        lr_starts, lr_values = self.rates.runs()
        arrays = {"sizes": self.sizes, "theta": self.theta, "opt_state": self.opt_state,
                  "loss": self.loss_buf[:s], "lr_starts": lr_starts, "lr_values": lr_values}
        if self.best is not None:
            arrays["best_theta"] = self.best["theta"]
        for key, value in (self.scaling or {}).items():
            arrays[key] = value
        if self.noise_buf is not None:
            arrays["noise"] = self.noise_buf[:s]
        if self._open_epoch_weights() and self.epoch_weights[3]:
            arrays["epoch_step_weights"] = self.epoch_weights[1]
        return facts, arrays

    def _open_epoch_weights(self):
        """Whether epoch_weights are an open epoch's (a closed one's are of no more use: not saved)."""
        return self.epoch_weights is not None and self.epoch_weights[0] >= len(self.epoch_loss)

    @classmethod
    def from_arrays(cls, facts, arrays, dtype, hidden):
        """A RunState from ``to_arrays`` output; ValueError on anything inconsistent."""
        sizes = np.asarray(arrays["sizes"])
        if sizes.dtype != np.int64 or sizes.shape != (len(hidden) + 2,) or (sizes < 1).any() \
                or tuple(int(s) for s in sizes[1:-1]) != tuple(hidden):
            raise ValueError(f"layer sizes {sizes.tolist()} do not fit hidden={tuple(hidden)}")
        P = n_params(sizes)
        theta = _float_array(arrays["theta"], dtype, (P,), "theta")
        opt = _float_array(arrays["opt_state"], dtype, (N_OPT_ROWS, P), "opt_state")
        step = _count(facts, "step")
        loss_name = facts["loss"]
        if loss_name not in ("mse", "binary_crossentropy", "cross_entropy"):
            raise ValueError(f"unknown loss {loss_name!r}")
        for key in ("generator", "stopped_early"):
            _flag(facts, key)
        if loss_name != "mse" and ("y_shift" in arrays or "y_scale" in arrays):
            raise ValueError(f"a {loss_name} run has no target standardisation (y_shift / y_scale)")
        if ("x_shift" in arrays) != ("x_scale" in arrays) or ("y_shift" in arrays) != ("y_scale" in arrays):
            raise ValueError("a standardisation needs both its shift and its scale")
        st = cls.new(sizes, loss_name, aligned(theta, copy=True), _count(facts, "n_records"), _count(facts, "n_records_all"),
                     _count(facts, "steps_per_epoch"), facts["generator"], max(1, _count(facts, "n_threads")),
                     order_cache=False)
        st.opt_state[...] = opt
        st.reserve(step)
        st.loss_buf[:step] = _float_array(arrays["loss"], dtype, (step,), "loss", finite=False)
        st.rates = _rate_log(arrays["lr_starts"], arrays["lr_values"], _count(facts, "rate_runs"), step)
        st.step, st.opt_t = step, _count(facts, "opt_t")
        st.epoch, st.batch, st.records = _count(facts, "epoch"), _count(facts, "batch"), _count(facts, "records")
        st.stopped_early = facts["stopped_early"]
        st.epoch_loss = [float(x) for x in facts["epoch_loss"]]
        metrics = facts.get("epoch_metrics", [])
        if not isinstance(metrics, list) or not all(isinstance(d, dict) for d in metrics):
            raise ValueError("epoch_metrics must be a list of {name: value} per epoch")
        st.epoch_metrics = [{str(k): float(v) for k, v in d.items()} for d in metrics]
        if len(st.epoch_metrics) != len(st.epoch_loss):
            raise ValueError("epoch_metrics and epoch_loss differ in length")
        st.target_var = None if facts.get("target_var") is None else float(facts["target_var"])
        st.val_loss = [float(x) for x in facts["val_loss"]]
        st.val_accuracy = [float(x) for x in facts["val_accuracy"]]
        if len(st.val_loss) != len(st.val_accuracy):
            raise ValueError("val_loss and val_accuracy differ in length")
        st.schedule_state = dict(facts["schedule_state"] or {})
        if st.hit_sums is not None and facts.get("hit_sums"):
            st.hit_sums = _hit_sums(facts["hit_sums"], st.step, st.steps_per_epoch, len(st.epoch_loss))
        st.epoch_weights = _epoch_weights(facts.get("epoch_weights"), arrays.get("epoch_step_weights"),
                                          st.steps_per_epoch, len(st.epoch_loss), st.step)
        if "noise" in arrays:
            st.noise_buf = np.zeros((len(st.loss_buf), 2))
            st.noise_buf[:step] = _float_array(arrays["noise"], np.float64, (step, 2), "noise")
        for key, size in (("x_shift", st.n_features), ("x_scale", st.n_features), ("y_shift", st.n_outputs),
                          ("y_scale", st.n_outputs)):
            if key in arrays:
                st.scaling = st.scaling or {}
                st.scaling[key] = _float_array(arrays[key], np.float64, (size,), key)
        if st.scaling and any(k in st.scaling and (st.scaling[k] <= 0).any() for k in ("x_scale", "y_scale")):
            raise ValueError("standardisation scales must be positive")
        if facts["best"] is not None:
            st.best = {"metric": float(facts["best"]["metric"]), "epoch": _count(facts["best"], "epoch"),
                       "theta": _float_array(arrays["best_theta"], dtype, (P,), "best_theta").copy()}
            if "validated" in facts["best"]:  # (checkpoints before it: the best of whichever metric was watched)
                st.best["validated"] = _flag(facts["best"], "validated")
        return st


# what a snapshot keeps besides theta and the optimizer rows (then: epochs closed, validations, schedule state)
_SNAPSHOT_SCALARS = ("step", "opt_t", "epoch", "batch", "records", "stopped_early", "best", "steps_per_epoch",
                     "n_records")

_snapshot_scalars = operator.attrgetter(*_SNAPSHOT_SCALARS)


@dataclasses.dataclass
class _Snapshot:
    theta: np.ndarray
    opt: np.ndarray
    opt_rows: int
    scalars: tuple = ()  # the _SNAPSHOT_SCALARS
    more: tuple = ()     # epochs closed, validations, schedule state, rate runs, open epochs' hit sums
    initial: object = None  # snapshot_start's make_theta: the params are made again, not copied (None: copied)

    @property
    def step(self):
        """The run's step when it was taken."""
        return self.scalars[0]


def _rate_log(starts, values, n, steps):
    """A RateLog from saved runs: starts strictly increasing from 0 below ``steps``, rates finite and >= 0."""
    starts = np.asarray(starts)
    if starts.dtype != np.int64 or starts.shape != (n,):
        raise ValueError(f"lr_starts must be int64 of shape ({n},), found {starts.dtype} {starts.shape}")
    values = _float_array(values, np.float64, (n,), "lr_values")
    if (values < 0).any():
        raise ValueError("lr_values must be >= 0")
    if n and (starts[0] != 0 or starts[-1] >= steps or (np.diff(starts) <= 0).any()):
        raise ValueError(f"lr_starts must rise strictly from 0 to below step {steps}")
    if steps and not n:
        raise ValueError(f"no learning rate is recorded for the run's {steps} steps")
    return RateLog(starts, values)


def _epoch_weights(saved, per_step, steps_per_epoch, closed, step):
    """RunState.epoch_weights from a checkpoint's facts (None: none saved, as before they were) and its per-step
    sample weights: an open epoch's, finite, >= 0, of a positive sum."""
    if saved is None:
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("weighted"), bool):
        raise ValueError("epoch_weights must be a mapping with a bool 'weighted'")
    epoch = _count(saved, "epoch")
    if not steps_per_epoch or not closed <= epoch <= step // steps_per_epoch:
        last = step // max(1, steps_per_epoch)
        raise ValueError(f"epoch_weights names epoch {epoch}; only epochs {closed} to {last} are open")
    if not saved["weighted"]:
        if per_step is not None:
            raise ValueError("epoch_weights of batch sizes come with no epoch_step_weights")
        return epoch, None, None, False
    w = _float_array(per_step, np.float64, (steps_per_epoch,), "epoch_step_weights")
    total = float(w.sum())
    if (w < 0).any() or not total > 0:
        raise ValueError("epoch_step_weights must be >= 0, with a positive sum")
    return epoch, w, total, True


def _hit_sums(saved, step, steps_per_epoch, closed):
    """The open epochs' hit sums from a checkpoint: {epoch: sum}, epochs that can be open at ``step`` with
    ``closed`` epochs closed (the current one, and an ended one an interrupt left to close)."""
    if not isinstance(saved, dict):
        raise ValueError("hit_sums must be a mapping")
    current = step // max(1, steps_per_epoch)
    out = {}
    for key, value in saved.items():
        if not (isinstance(key, str) and key.isdigit()) or not closed <= int(key) <= current:
            raise ValueError(f"hit_sums names epoch {key!r}; only epochs {closed} to {current} are open at step "
                             f"{step}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"hit_sums[{key}] must be a finite number >= 0, found {value!r}")
        out[int(key)] = float(value)
    return out


def _flag(d, key):
    v = d[key]
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be true or false, found {v!r}")
    return v


def _count(d, key, limit=1 << 62):
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
        raise ValueError(f"{key} must be a non-negative integer, found {v!r}")
    return v


def _float_array(a, dtype, shape, name, finite=True):
    a = np.asarray(a)
    if a.dtype != dtype or a.shape != shape:
        raise ValueError(f"{name} must be {np.dtype(dtype)} of shape {shape}, found {a.dtype} {a.shape}")
    if finite and not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a
