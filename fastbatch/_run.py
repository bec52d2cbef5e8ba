"""The run state: everything that moves while a run trains, in one typed object.

A :class:`RunState` owns the params, the optimizer state, the position (step, epoch,
batch), the history buffers, the current epoch's record order, the best params of
early stopping and the schedule's state. The driver snapshots it before each kernel
call and restores it exactly on any error; checkpoints serialise it (``to_arrays`` /
``from_arrays``), with no private attribute of the Trainer.
"""
import dataclasses
import math

import numpy as np

from ._network import n_params, unpack

PREALLOCATE_STEPS = 1 << 28  # a planned run up to this many steps gets its history buffers at once
N_OPT_ROWS = 3  # opt_state rows: m (momentum buffer), v (square average), RMSprop's grad average


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
    loss_buf: np.ndarray = None
    lr_buf: np.ndarray = None
    per_step_buf: np.ndarray = None  # fit_batches: (3, cap) int64 of epoch, batch, batch size
    noise_buf: np.ndarray = None     # track_noise: (cap, 2) of |G_B|^2 and mean |g_i|^2 per step
    hits_buf: np.ndarray = None      # classification: the fraction of each step's batch classified right
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
    snapshots: list = None       # the driver's two snapshot buffers, kept between calls (not saved)
    layer_views: list = None     # [(W, b), ...] views into theta (it changes in place), made once
    schedule_state: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def new(cls, sizes, loss, theta, n_records, n_records_all, steps_per_epoch, generator, n_threads,
            order_cache=True):
        sizes = np.asarray(sizes, dtype=np.int64)
        st = cls(sizes=sizes, loss=loss, n_records=int(n_records), n_records_all=int(n_records_all),
                 steps_per_epoch=int(steps_per_epoch), generator=bool(generator), n_threads=int(n_threads),
                 theta=theta, opt_state=np.zeros((N_OPT_ROWS, theta.shape[0]), dtype=theta.dtype))
        st.loss_buf, st.lr_buf = np.zeros(0), np.zeros(0)
        if loss != "mse":
            st.hits_buf = np.zeros(0)
        st.per_step_buf = np.zeros((3, 0), dtype=np.int64)
        if order_cache:
            st.ensure_order_cache()
        return st

    def ensure_order_cache(self):
        """The record-order buffer, made when the data is there (never from a number a file declares)."""
        if self.order_cache is None or self.order_cache.shape[0] != self.n_records + 1:
            self.order_cache = np.full(self.n_records + 1, -1, dtype=np.int64)

    def layers(self):
        """(W, b) views into theta, per layer."""
        if self.layer_views is None:
            self.layer_views = unpack(self.theta, self.sizes)
        return self.layer_views

    @property
    def n_features(self):
        return int(self.sizes[0])

    @property
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
        for name in ("loss_buf", "lr_buf", "hits_buf"):
            old = getattr(self, name)
            if old is None:
                continue
            new = np.zeros(cap)
            new[:len(old)] = old
            setattr(self, name, new)
        if self.noise_buf is not None:
            new = np.zeros((cap, 2))
            new[:len(self.noise_buf)] = self.noise_buf
            self.noise_buf = new
        if self.generator:
            new = np.zeros((3, cap), dtype=np.int64)
            new[:, :self.per_step_buf.shape[1]] = self.per_step_buf
            self.per_step_buf = new

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, opt_rows):
        """What a kernel call may change, copied: restore() puts it back exactly."""
        snap = _Snapshot(np.empty_like(self.theta), np.empty_like(self.opt_state[:opt_rows]), ())
        self.snapshot_into(snap)
        return snap

    def snapshot_into(self, snap):
        """Refill an existing snapshot (no allocation: the driver's per-call path)."""
        np.copyto(snap.theta, self.theta)
        np.copyto(snap.opt, self.opt_state[:snap.opt.shape[0]])
        snap.scalars = tuple(getattr(self, name) for name in _SNAPSHOT_SCALARS) + (
            len(self.epoch_loss), len(self.val_loss), dict(self.schedule_state))

    def restore(self, snap):
        np.copyto(self.theta, snap.theta)
        np.copyto(self.opt_state[:snap.opt.shape[0]], snap.opt)
        for name, value in zip(_SNAPSHOT_SCALARS, snap.scalars):
            setattr(self, name, value)
        n_epochs, n_val, schedule_state = snap.scalars[len(_SNAPSHOT_SCALARS):]
        self.schedule_state = dict(schedule_state)
        del self.epoch_loss[n_epochs:]
        del self.epoch_metrics[n_epochs:]
        del self.val_loss[n_val:]
        del self.val_accuracy[n_val:]
        if self.order_cache is not None:
            self.order_cache[0] = -1  # the order is a pure function of (seed, epoch): recomputed when needed

    # ------------------------------------------------------------------ epochs

    def close_epoch(self, first_step, end_step, batch_sizes):
        """Close an epoch: the mean loss of steps [first_step, end_step) weighted by batch size, and the
        training metric (r2 of the epoch's losses for mse), in O(steps in the epoch)."""
        w = np.asarray(batch_sizes, dtype=np.float64)
        losses = self.loss_buf[first_step:end_step]
        loss = float(np.dot(losses, w) / w.sum()) if len(w) else math.nan
        self.epoch_loss.append(loss)
        logs = {"loss": loss}
        if self.loss == "mse" and self.target_var:
            logs["r2"] = 1.0 - loss / self.target_var
        elif self.hits_buf is not None and len(w):
            logs["accuracy"] = float(np.dot(self.hits_buf[first_step:end_step], w) / w.sum())
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
                 "schedule_state": self.schedule_state,
                 "best": None if self.best is None else {"metric": self.best["metric"], "epoch": self.best["epoch"]}}
        arrays = {"sizes": self.sizes, "theta": self.theta, "opt_state": self.opt_state,
                  "loss": self.loss_buf[:s], "lr": self.lr_buf[:s]}
        if self.best is not None:
            arrays["best_theta"] = self.best["theta"]
        for key, value in (self.scaling or {}).items():
            arrays[key] = value
        if self.noise_buf is not None:
            arrays["noise"] = self.noise_buf[:s]
        if self.hits_buf is not None:
            arrays["hits"] = self.hits_buf[:s]
        return facts, arrays

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
        st = cls.new(sizes, loss_name, theta.copy(), _count(facts, "n_records"), _count(facts, "n_records_all"),
                     _count(facts, "steps_per_epoch"), bool(facts["generator"]), max(1, _count(facts, "n_threads")),
                     order_cache=False)
        st.opt_state[...] = opt
        st.reserve(step)
        st.loss_buf[:step] = _float_array(arrays["loss"], np.float64, (step,), "loss", finite=False)
        st.lr_buf[:step] = _float_array(arrays["lr"], np.float64, (step,), "lr")
        st.step, st.opt_t = step, _count(facts, "opt_t")
        st.epoch, st.batch, st.records = _count(facts, "epoch"), _count(facts, "batch"), _count(facts, "records")
        st.stopped_early = bool(facts["stopped_early"])
        st.epoch_loss = [float(x) for x in facts["epoch_loss"]]
        st.epoch_metrics = [{str(k): float(v) for k, v in d.items()} for d in facts.get("epoch_metrics", [])]
        if len(st.epoch_metrics) != len(st.epoch_loss):
            raise ValueError("epoch_metrics and epoch_loss differ in length")
        st.target_var = None if facts.get("target_var") is None else float(facts["target_var"])
        st.val_loss = [float(x) for x in facts["val_loss"]]
        st.val_accuracy = [float(x) for x in facts["val_accuracy"]]
        if len(st.val_loss) != len(st.val_accuracy):
            raise ValueError("val_loss and val_accuracy differ in length")
        st.schedule_state = dict(facts["schedule_state"] or {})
        if "hits" in arrays and st.hits_buf is not None:
            st.hits_buf[:step] = _float_array(arrays["hits"], np.float64, (step,), "hits")
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
        return st


# what a snapshot keeps besides theta and the optimizer rows (then: epochs closed, validations, schedule state)
_SNAPSHOT_SCALARS = ("step", "opt_t", "epoch", "batch", "records", "stopped_early", "best", "steps_per_epoch",
                     "n_records")


@dataclasses.dataclass
class _Snapshot:
    theta: np.ndarray
    opt: np.ndarray
    scalars: tuple


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
