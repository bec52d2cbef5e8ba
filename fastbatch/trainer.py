"""The Trainer: one training run of a dense network, driven in steps and epochs.

Everything is checked and converted here, once; the backends (``_kernel.pyx`` and
``_numpy_backend.py``) only run steps.
"""
import math
import mmap
import os
import threading
import time
import warnings

import numpy as np

from . import _numpy_backend, _validation as V
from .callbacks import Callback
from ._network import ACTIVATION_CODES, LOSS_CODES, OPTIMIZER_CODES, init_params, layer_sizes, unpack
from .errors import DivergenceError, NotFittedError
from .history import History
from .schedule import plan as make_plan
from .schedules import make_schedule

try:
    from . import _kernel
except ImportError:  # pragma: no cover - only when the extension was not built
    _kernel = None

DONE, STOPPED, NONFINITE, TIME_UP, READ_ERROR = 0, 1, 2, 3, 4
PROGRESS_SECONDS = 0.1   # on_progress is called at least this often
MAX_CHUNK_STEPS = 1 << 16  # steps per kernel call at most (bounds the per-call arrays)
MMAP_CHUNK_BYTES = 64 << 20  # a memory-mapped X is released from memory after about this much is paged in

DEFAULTS = dict(
    hidden=(32,), activation="relu", loss="auto", batch_size=64, epochs=5, learning_rate=0.01,
    optimizer="sgd", momentum=0.0, nesterov=False, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
    shuffle=True, drop_last=False, seed=0, dtype="float32", backend="cython",
    validation_split=0.0, patience=None, lr_schedule="constant", warmup_steps=0,
)


class Trainer:
    """One mini-batch training run of a dense network with a budget of ``epochs`` epochs.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers; ``()`` is linear / logistic / softmax regression.
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Activation of the hidden layers; the output layer is linear (logits).
    loss : {"auto", "mse", "binary_crossentropy", "cross_entropy"}
        ``"auto"`` picks cross_entropy for integer/bool labels and mse for float targets.
    batch_size, epochs : int
        Records per step, and passes over all records in the run.
    learning_rate : float
        The rate (the base of ``lr_schedule``). It may be changed between ``fit`` calls.
    optimizer : {"sgd", "adam", "adamw"}
        As ``torch.optim.SGD`` (with ``momentum``, ``nesterov``), ``Adam`` and ``AdamW``
        (with ``betas``, ``eps``); ``weight_decay`` applies to weights and biases.
    shuffle, drop_last : bool
        Visit the records of epoch e in ``epoch_order(n, seed, e)``; drop the last short batch.
    seed : int
        Seeds the initial parameters and the record order.
    dtype : {"float32", "float64"}
    backend : {"cython", "numpy"}
        The compiled kernel, or the plain numpy reference (same results).
    validation_split : float in [0, 1)
        Hold out this fraction of the records (a seeded random split) to validate each epoch.
    patience : int or None
        Early stopping: end the run when the validation loss (the training epoch loss
        without validation) has not improved for this many epochs, restoring the best params.
    lr_schedule : str, dict or Schedule
        "constant", "step", "exponential", "cosine" or "plateau" (see ``fastbatch.schedules``).
    warmup_steps : int
        Linear warm-up of the rate over the first steps.
    """

    def __init__(self, **params):
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"Trainer got unknown parameter(s) {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
        cfg = V.check_config({**DEFAULTS, **params})
        if cfg["backend"] == "cython" and _kernel is None:
            raise ImportError("the Cython kernel is not built; reinstall fastbatch (pip install -e .) "
                              "or use backend='numpy'")
        self._schedule = make_schedule(cfg["lr_schedule"], cfg["warmup_steps"])
        cfg["lr_schedule"] = self._schedule.config()
        self._cfg = cfg
        self._learning_rate = cfg["learning_rate"]
        self._stop = np.zeros(1, dtype=np.uint8)
        self._read_from = (-1, 0)  # (file descriptor, offset) while fit reads X from its file
        self._fit_lock = threading.Lock()
        self._pending_params = None
        self._cache = None
        self.reset()

    # ------------------------------------------------------------------ configuration

    @property
    def config(self):
        """The run's parameters (a copy)."""
        return {**self._cfg, "learning_rate": self._learning_rate}

    def __getattr__(self, name):
        cfg = self.__dict__.get("_cfg")
        if cfg is not None and name in cfg:
            return cfg[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        """Change the rate; it applies from the next step (History.learning_rate records it)."""
        self._learning_rate = V.check_float("learning_rate", value, 0.0, low_open=True)

    def __repr__(self):
        diff = ", ".join(f"{k}={v!r}" for k, v in self.config.items()
                         if k in DEFAULTS and v != DEFAULTS[k] and k != "lr_schedule")
        return f"Trainer({diff}) at step {self.step}/{self.total_steps or '?'}"

    # ------------------------------------------------------------------ position in the run

    def reset(self):
        """Start the run over: the next ``fit`` initialises the params and trains from step 0."""
        self._check_not_fitting("reset")
        self._run = None
        self._theta = self._m = self._v = None
        self._sizes = None
        self._step = 0
        self._opt_t = 0
        self._stopped_early = False
        self._best = None
        self._val_loss, self._val_acc = [], []
        self._hist = None
        self._schedule = make_schedule(self._cfg["lr_schedule"])
        self._cache = None

    @property
    def started(self):
        return self._run is not None

    @property
    def step(self):
        """Steps done so far in this run."""
        return self._step

    @property
    def epoch(self):
        """The epoch the next step belongs to (0-based)."""
        if self._run and self._run.get("generator"):
            return self._run["epoch"]
        return self._step // self._run["plan"].steps_per_epoch if self._run else 0

    @property
    def plan(self):
        """The run's :class:`~fastbatch.schedule.Plan` (None before the first fit)."""
        return self._run["plan"] if self._run else None

    @property
    def total_steps(self):
        """Steps in the whole run (None before the first fit, and for fit_batches runs)."""
        return self._run["plan"].total_steps if self._run and self._run["plan"] else None

    @property
    def finished(self):
        """True when the epoch budget is spent (or early stopping ended the run)."""
        if not self._run:
            return False
        if self._run.get("generator"):
            return self._stopped_early or self._run["epoch"] >= self._cfg["epochs"]
        return self._stopped_early or self._step >= self._run["plan"].total_steps

    @property
    def history(self):
        """The :class:`History` of all steps so far."""
        if self._run is None:
            return History(np.empty(0), np.empty(0), [], 0, 0)
        h, s, plan = self._hist, self._step, self._run["plan"]
        if plan is None:  # a fit_batches run
            per_step = {k: h[k][:s].astype(np.int64) for k in ("epoch", "batch", "batch_size")}
            return History(h["loss"][:s], h["lr"][:s], [], self._run["steps_per_epoch"] or 0,
                           self._run["n_records"] or 0, list(self._val_loss), list(self._val_acc), per_step)
        return History(h["loss"][:s], h["lr"][:s], plan.batch_sizes(), plan.steps_per_epoch,
                       self._run["n_records"], list(self._val_loss), list(self._val_acc))

    def stop(self):
        """Ask a running ``fit`` to return after the current step (safe from any thread).

        A no-op when no fit is running: it never stops a later fit.
        """
        if self._fit_lock.locked():
            self._stop[0] = 1

    # ------------------------------------------------------------------ params

    def get_params(self):
        """Copies of the params, ``[(W, b), ...]`` with W shaped (n_in, n_out)."""
        if self._theta is None:
            if self._pending_params is not None:
                return [(W.copy(), b.copy()) for W, b in self._pending_params]
            raise NotFittedError("this trainer has no params yet: call fit() first (or set_params())")
        return [(W.copy(), b.copy()) for W, b in unpack(self._theta, self._sizes)]

    def set_params(self, params):
        """Set the params; before the first ``fit`` they replace the seeded initialisation."""
        self._check_not_fitting("set_params")
        dtype = np.dtype(self._cfg["dtype"])
        try:
            layers = [(np.asarray(W), np.asarray(b)) for W, b in params]
        except (TypeError, ValueError):
            raise TypeError("params must be a list of (W, b) pairs, W shaped (n_in, n_out)") from None
        n_hidden = len(self._cfg["hidden"])
        if len(layers) != n_hidden + 1:
            raise ValueError(f"params must have {n_hidden + 1} (W, b) layers for hidden={self._cfg['hidden']}, "
                             f"got {len(layers)}")
        sizes = [layers[0][0].shape[0] if layers[0][0].ndim == 2 else -1]
        for i, (W, b) in enumerate(layers):
            if W.ndim != 2 or b.shape != (W.shape[1],) or W.shape[0] != sizes[-1]:
                raise ValueError(f"params layer {i}: W must be (n_in, n_out) chaining from the previous layer "
                                 f"and b (n_out,); got W {W.shape}, b {b.shape}")
            if W.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
                raise TypeError(f"params layer {i} must hold real numbers, got {W.dtype} / {b.dtype}")
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError(f"params layer {i} holds NaN or infinite values")
            sizes.append(W.shape[1])
        if tuple(sizes[1:-1]) != self._cfg["hidden"]:
            raise ValueError(f"params have hidden widths {tuple(sizes[1:-1])}, this trainer has {self._cfg['hidden']}")
        if self._theta is not None:
            if tuple(sizes) != tuple(self._sizes):
                raise ValueError(f"params have layer sizes {tuple(sizes)}, the run has {tuple(self._sizes)}")
            for (W, b), (W0, b0) in zip(layers, unpack(self._theta, self._sizes)):
                W0[...] = W
                b0[...] = b
        else:
            self._pending_params = [(W.astype(dtype), b.astype(dtype)) for W, b in layers]

    # ------------------------------------------------------------------ data

    def _prepare(self, X, y, first_call, n_outputs=None):
        """Check and convert (X, y) once; nothing of the trainer changes here."""
        c = self._cache
        if c is not None and c["X_in"] is X and c["y_in"] is y and n_outputs in (None, c["n_outputs"]):
            return c
        dtype = np.dtype(self._cfg["dtype"])
        run = self._run
        Xc = V.check_X(X, dtype, n_features=None if first_call else run["n_features"])
        loss = V.resolve_loss(self._cfg["loss"], y) if first_call else run["loss"]
        n = Xc.shape[0]
        targets, labels, k = V.check_y(y, loss, n, dtype, n_outputs if first_call else run["n_outputs"])
        if n_outputs is not None and n_outputs != k:
            raise ValueError(f"n_outputs={n_outputs} does not fit the run, which has {k} outputs")
        if not first_call and n != run["n_records_all"]:
            raise ValueError(f"X has {n} records, but this run was started with {run['n_records_all']}; "
                             "call reset() to start a new run on other data")
        if self._pending_params is not None and first_call:
            p = self._pending_params
            if p[0][0].shape[0] != Xc.shape[1] or p[-1][0].shape[1] != k:
                raise ValueError(f"the params set with set_params map {p[0][0].shape[0]} features to "
                                 f"{p[-1][0].shape[1]} outputs, but the data has {Xc.shape[1]} features "
                                 f"and needs {k} outputs")
        split = self._cfg["validation_split"]
        val = None
        if split > 0:
            n_val = int(round(n * split))
            if n_val < 1 or n - n_val < 1:
                raise ValueError(f"validation_split={split} of {n} records leaves "
                                 f"{n_val} for validation and {n - n_val} for training; both need at least 1")
            perm = np.random.default_rng([self._cfg["seed"], 0x5A11]).permutation(n)
            tr_idx, va_idx = np.sort(perm[n_val:]), np.sort(perm[:n_val])
            val = (V.take_rows(Xc, va_idx, dtype), targets[va_idx] if targets.size else targets,
                   labels[va_idx] if labels.size else labels)
            Xc = V.take_rows(Xc, tr_idx, dtype)
            targets = targets[tr_idx] if targets.size else targets
            labels = labels[tr_idx] if labels.size else labels
        plan = make_plan(Xc.shape[0], self._cfg["batch_size"], self._cfg["epochs"], self._cfg["drop_last"])
        return {"X_in": X, "y_in": y, "X": Xc, "targets": targets, "labels": labels, "loss": loss,
                "n_outputs": k, "plan": plan, "val": val, "n_records_all": n}

    def _check_validation_data(self, validation_data, loss, k):
        if validation_data is None:
            return None
        try:
            Xv, yv = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_val, y_val)") from None
        dtype = np.dtype(self._cfg["dtype"])
        Xv = V.check_X(Xv, dtype, name="validation_data X", n_features=None)
        t, l, _ = V.check_y(yv, loss, Xv.shape[0], dtype, k, name="validation_data y")
        return Xv, t, l

    def _start_run(self, data):
        """Bind the run to its data's shape and initialise params and optimizer state."""
        dtype = np.dtype(self._cfg["dtype"])
        X = data["X"]
        self._sizes = layer_sizes(X.shape[1], self._cfg["hidden"], data["n_outputs"])
        if self._pending_params is not None:
            self._theta = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in self._pending_params])
            self._theta = np.ascontiguousarray(self._theta, dtype=dtype)
            self._pending_params = None
        else:
            self._theta = init_params(self._sizes, self._cfg["activation"], self._cfg["seed"], dtype)
        self._m = np.zeros_like(self._theta)
        self._v = np.zeros_like(self._theta)
        plan = data["plan"]
        self._run = {"plan": plan, "n_records": X.shape[0], "n_features": X.shape[1], "loss": data["loss"],
                     "n_outputs": data["n_outputs"], "n_records_all": data["n_records_all"]}
        self._hist = {"loss": np.zeros(0), "lr": np.zeros(0)}
        # the current epoch's record order, kept between kernel calls (epoch -1: none yet)
        self._order_cache = np.full(X.shape[0] + 1, -1, dtype=np.int64)

    def _reserve(self, end):
        """Grow the history buffers (by doubling) to hold ``end`` steps: amortised, never per step."""
        cap = len(self._hist["loss"])
        if end <= cap:
            return
        cap = max(end, 2 * cap, 1024)
        if self._run["plan"] is not None:
            cap = min(cap, self._run["plan"].total_steps)
        for key, old in self._hist.items():
            new = np.zeros(cap)
            new[:len(old)] = old
            self._hist[key] = new

    # ------------------------------------------------------------------ training

    def _check_not_fitting(self, what):
        if self._fit_lock.locked():
            raise RuntimeError(f"cannot {what}() while fit() is running on this trainer in another thread")

    def fit(self, X, y, steps=None, on_progress=None, validation_data=None, callbacks=None, n_outputs=None):
        """Train until the epoch budget is spent, or for ``steps`` more steps.

        Continues from where the run stands: pieces of ``fit`` give bit-identical
        results to one uninterrupted call. Returns the :class:`History` so far.

        Parameters
        ----------
        X : array-like (n_records, n_features), or a memory-mapped ``.npy`` (np.load(..., mmap_mode="r"))
        y : array-like (n_records,) labels or targets, or (n_records, k) mse targets
        steps : int, optional
            Advance at most this many steps (fewer if the run ends).
        on_progress : callable(History), optional
            Called from the training thread at least every 0.1 s and at each epoch end.
        validation_data : (X_val, y_val), optional
            Validated at each epoch end (instead of ``validation_split``).
        callbacks : list of fastbatch.callbacks.Callback, optional
            Step, epoch and run hooks; a hook that returns True stops the run.
        n_outputs : int, optional
            The network's outputs: for cross_entropy the number of classes, when the
            labels of this data do not show the largest one (default: largest label + 1).
        """
        if steps is not None:
            steps = V.check_int("steps", steps, 1)
        if n_outputs is not None:
            n_outputs = V.check_int("n_outputs", n_outputs, 1)
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable, got {on_progress!r}")
        callbacks = list(callbacks or [])
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError("fit() is already running on this trainer in another thread; "
                               "use one trainer per thread")
        try:
            first = self._run is None
            data = self._prepare(X, y, first, n_outputs)
            val = self._check_validation_data(validation_data, data["loss"], data["n_outputs"]) or data["val"]
            if self.finished:
                warnings.warn(f"this run is finished ({self._step} of {self.total_steps} steps); fit() "
                              "trains nothing. Call reset() to start over or make a new Trainer.",
                              RuntimeWarning, stacklevel=2)
                return self.history
            # from here on the trainer changes
            self._cache = data
            if first:
                self._start_run(data)
            return self._train(data, steps, on_progress, val, callbacks)
        finally:
            self._stop[0] = 0
            self._fit_lock.release()

    def fit_batches(self, batches, on_progress=None, validation_data=None, callbacks=None, n_outputs=None):
        """Train from ``batches()``, a callable returning a fresh iterable of (X_batch, y_batch) each epoch.

        The seed's ``data_generator``: each batch is one step, each pass over the
        iterable one epoch, up to ``epochs`` epochs. With ``drop_last=True`` a batch
        smaller than ``batch_size`` (the last, partial one) is skipped; otherwise it
        is trained on like any other. A run stopped mid-epoch resumes by skipping the
        batches it already trained on. For cross_entropy pass ``n_outputs`` (the
        number of classes) unless the first batch shows the largest label.
        """
        if not callable(batches):
            raise TypeError(f"batches must be a callable returning an iterable of (X, y) batches, got {batches!r}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable, got {on_progress!r}")
        if n_outputs is not None:
            n_outputs = V.check_int("n_outputs", n_outputs, 1)
        if self._run is not None and not self._run.get("generator"):
            raise ValueError("this run was started with fit(X, y); call reset() before fit_batches()")
        callbacks = list(callbacks or [])
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError("fit() is already running on this trainer in another thread; "
                               "use one trainer per thread")
        try:
            if self.finished:
                warnings.warn("this run is finished; fit_batches() trains nothing. Call reset() to start over.",
                              RuntimeWarning, stacklevel=2)
                return self.history
            return self._train_batches(batches, on_progress, validation_data, callbacks, n_outputs)
        finally:
            self._stop[0] = 0
            self._fit_lock.release()

    def _train_batches(self, batches, on_progress, validation_data, callbacks, n_outputs):
        dtype = np.dtype(self._cfg["dtype"])
        cfg = self._cfg
        last_report = time.perf_counter()
        val = None
        while not self.finished:
            run = self._run
            skip = run["batch"] if run else 0  # batches of this epoch already trained on
            k = -1
            for k, (xb, yb) in enumerate(batches()):
                if k < skip:
                    continue
                run = self._run
                first = run is None
                Xb = V.check_X(xb, dtype, name="X batch", n_features=None if first else run["n_features"])
                loss = V.resolve_loss(cfg["loss"], yb) if first else run["loss"]
                t, lab, kk = V.check_y(yb, loss, Xb.shape[0], dtype, n_outputs if first else run["n_outputs"],
                                       name="y batch")
                if val is None:
                    val = self._check_validation_data(validation_data, loss, kk)
                if cfg["drop_last"] and Xb.shape[0] < cfg["batch_size"]:
                    continue
                if first:
                    self._start_generator_run(Xb.shape[1], loss, kk)
                    if _fire(callbacks, "on_run_begin", self):
                        return self.history
                    run = self._run
                step = self._step
                self._reserve(step + 1)
                spe = run["steps_per_epoch"] or (run["batch"] + 1)
                lrs = self._learning_rate * self._schedule.factors(
                    [run["epoch"] * spe + run["batch"]], spe, spe * cfg["epochs"])
                snap = [a.copy() for a in (self._theta, self._m, self._v)]
                done, status = self._backend().train_steps(
                    Xb, t if t.size else np.empty((0, 0), dtype), lab, self._sizes, self._theta, self._m, self._v,
                    lrs, self._hist["loss"][step:step + 1], 0, 1, self._opt_t, Xb.shape[0], 1, False, 0,
                    ACTIVATION_CODES[cfg["activation"]], LOSS_CODES[loss], OPTIMIZER_CODES[cfg["optimizer"]],
                    cfg["momentum"], cfg["nesterov"], *cfg["betas"], cfg["eps"], cfg["weight_decay"],
                    self._stop, 3600.0, np.full(Xb.shape[0] + 1, -1, dtype=np.int64))
                if status == STOPPED:
                    return self.history
                if status == NONFINITE or not np.isfinite(self._theta).all():
                    self._restore(snap)
                    raise DivergenceError(step, run["epoch"], run["batch"], float(lrs[0]),
                                          "the loss" if status == NONFINITE else "the params")
                for key, value in (("lr", lrs[0]), ("epoch", run["epoch"]), ("batch", run["batch"]),
                                   ("batch_size", Xb.shape[0])):
                    self._hist[key][step] = value
                self._step += 1
                self._opt_t += 1
                run["batch"] += 1
                run["records"] += Xb.shape[0]
                if _overrides_any(callbacks, "on_step_end") and _fire(
                        callbacks, "on_step_end", self, step, float(self._hist["loss"][step])):
                    return self.history
                now = time.perf_counter()
                if on_progress and now - last_report >= PROGRESS_SECONDS:
                    on_progress(self.history)
                    last_report = now
                if self._stop[0]:
                    return self.history
            if self._run is None:
                raise ValueError("batches() yielded no batch to train on" if k < 0 else
                                 "every batch was smaller than batch_size and drop_last=True dropped them all")
            run = self._run
            if run["batch"] == 0:
                raise ValueError(f"batches() yielded no batch in epoch {run['epoch']}")
            if run["steps_per_epoch"] is None:
                run["steps_per_epoch"], run["n_records"] = run["batch"], run["records"]
            epoch = run["epoch"]
            run["epoch"] += 1
            run["batch"] = 0
            run["records"] = 0
            stop = self._end_epoch(epoch, val, callbacks)
            if on_progress:
                on_progress(self.history)
                last_report = time.perf_counter()
            if stop:
                break
        if self.finished:
            _fire(callbacks, "on_run_end", self)
        return self.history

    def _start_generator_run(self, n_features, loss, n_outputs):
        self._start_run({"X": np.empty((1, n_features)), "n_outputs": n_outputs, "loss": loss,
                         "plan": None, "n_records_all": None})
        self._run.update(generator=True, epoch=0, batch=0, records=0, steps_per_epoch=None, n_records=None)
        self._hist.update(epoch=np.zeros(0), batch=np.zeros(0), batch_size=np.zeros(0))

    def _backend(self):
        return _kernel if self._cfg["backend"] == "cython" else _numpy_backend

    def _call_kernel(self, data, start, n_steps, lrs, max_seconds):
        cfg, plan = self._cfg, self._run["plan"]
        b1, b2 = cfg["betas"]
        X = data["X"]
        n_steps = min(n_steps, len(lrs))
        return self._backend().train_steps(
            X, data["targets"] if data["targets"].size else np.empty((0, 0), X.dtype), data["labels"],
            self._sizes, self._theta, self._m, self._v, lrs[:n_steps], self._hist["loss"][start:start + n_steps],
            start, n_steps, self._opt_t + (start - self._step), plan.batch_size, plan.steps_per_epoch,
            cfg["shuffle"], cfg["seed"], ACTIVATION_CODES[cfg["activation"]], LOSS_CODES[self._run["loss"]],
            OPTIMIZER_CODES[cfg["optimizer"]], cfg["momentum"], cfg["nesterov"], b1, b2, cfg["eps"],
            cfg["weight_decay"], self._stop, max_seconds, self._order_cache,
            *(self._read_from if self._cfg["backend"] == "cython" else ()))

    def _train(self, data, steps, on_progress, val, callbacks):
        plan = self._run["plan"]
        spe = plan.steps_per_epoch
        end = plan.total_steps if steps is None else min(plan.total_steps, self._step + steps)
        mapped = isinstance(data["X"], np.memmap)
        chunk_cap = None
        source = V.file_source(data["X"]) if mapped and self._cfg["backend"] == "cython" else None
        if source:  # the kernel reads each batch's rows from the file: nothing of it is mapped in
            self._read_from = (os.open(source[0], os.O_RDONLY), source[1])
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self._read_from[0], 0, 0, os.POSIX_FADV_RANDOM)
            mapped = False
        elif mapped:
            # a row read from the map brings in its page and, by the kernel's fault-around,
            # up to 15 cached pages next to it (64 KB), which all count as resident
            V.read_randomly(data["X"])
            row_cost = max(data["X"].strides[0], 16 * mmap.PAGESIZE)
            chunk_cap = max(1, MMAP_CHUNK_BYTES // (plan.effective_batch_size * row_cost))
        try:
            return self._train_loop(data, on_progress, val, callbacks, end, spe, plan, mapped, chunk_cap)
        finally:
            if self._read_from[0] >= 0:
                os.close(self._read_from[0])
                self._read_from = (-1, 0)

    def _train_loop(self, data, on_progress, val, callbacks, end, spe, plan, mapped, chunk_cap):
        step_hooks = any(_overrides(cb, "on_step_end") for cb in callbacks)
        epoch_hooks = bool(on_progress or val or callbacks or self._cfg["patience"]
                           or self._schedule.name == "plateau")
        if self._step == 0 and _fire(callbacks, "on_run_begin", self):
            return self.history
        last_report = time.perf_counter()
        # the state a divergence rewinds to: params, and the optimizer's m and v if it uses them
        cfg = self._cfg
        n_state = 1 if cfg["optimizer"] == "sgd" and cfg["momentum"] == 0 else 2 if cfg["optimizer"] == "sgd" else 3
        snap = [np.empty_like(self._theta) for _ in range(n_state)]
        while self._step < end and not self._stopped_early:
            start = self._step
            n = min(end - start, MAX_CHUNK_STEPS)
            if epoch_hooks:
                n = min(n, spe - start % spe)  # stop at the epoch's end for its hooks
            if step_hooks:
                n = 1
            if chunk_cap:
                n = min(n, chunk_cap)
            steps_idx = np.arange(start, start + n)
            lrs = self._learning_rate * self._schedule.factors(steps_idx, spe, plan.total_steps)
            self._reserve(start + n)
            for s, a in zip(snap, (self._theta, self._m, self._v)):
                np.copyto(s, a)
            done, status = self._call_kernel(data, start, n, lrs, PROGRESS_SECONDS if on_progress else 3600.0)
            if status == READ_ERROR:
                raise OSError(f"could not read the records of step {start + done} from {data['X'].filename}")
            if status == NONFINITE or not np.isfinite(self._theta).all():
                self._diverged(data, start, done, status, lrs, snap)
            self._hist["lr"][start:start + done] = lrs[:done]
            self._step += done
            self._opt_t += done
            if mapped:
                V.release_pages(data["X"])
            if step_hooks and done and _fire(callbacks, "on_step_end", self, self._step - 1,
                                              float(self._hist["loss"][self._step - 1])):
                break
            epoch_end = self._step % spe == 0 and done > 0
            if epoch_end and self._end_epoch(self._step // spe - 1, val, callbacks):
                break
            now = time.perf_counter()
            if on_progress and (epoch_end or now - last_report >= PROGRESS_SECONDS or status == STOPPED):
                on_progress(self.history)
                last_report = now
            if status == STOPPED:
                break
        if self.finished:
            _fire(callbacks, "on_run_end", self)
        return self.history

    def _end_epoch(self, epoch, val, callbacks):
        """Validation, schedule, early stopping and callbacks at an epoch end; True to stop the run."""
        h = self.history
        metric = float(h.epoch_loss[-1])
        logs = {"epoch": epoch, "loss": metric}
        if val is not None:
            res = self._evaluate_arrays(*val)
            self._val_loss.append(res["loss"])
            self._val_acc.append(res.get("accuracy", math.nan))
            metric = res["loss"]
            logs.update(val_loss=res["loss"], val_accuracy=self._val_acc[-1])
        self._schedule.on_epoch_end(metric)
        patience = self._cfg["patience"]
        if patience:
            if self._best is None or metric < self._best["metric"]:
                self._best = {"metric": metric, "epoch": epoch, "theta": self._theta.copy()}
            elif epoch - self._best["epoch"] >= patience:
                self._theta[...] = self._best["theta"]
                self._stopped_early = True
                logs["stopped_early"] = True
        return bool(_fire(callbacks, "on_epoch_end", self, epoch, logs)) or self._stopped_early

    def _diverged(self, data, start, done, status, lrs, snap):
        """Rewind to just before the first bad step and raise DivergenceError."""
        bad = start + done
        what = "the loss"
        if not np.isfinite(self._theta).all():
            # params went non-finite at some step before `bad`: replay from the snapshot to find it
            lo, hi = 0, done  # finite after lo steps, non-finite after hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                self._restore(snap)
                self._call_kernel(data, start, mid, lrs, 3600.0)
                if np.isfinite(self._theta).all():
                    lo = mid
                else:
                    hi = mid
            self._restore(snap)
            if lo:
                self._call_kernel(data, start, lo, lrs, 3600.0)
            bad, what = start + lo, "the params"
        done = bad - start
        self._hist["lr"][start:bad] = lrs[:done]
        self._hist["loss"][bad:start + len(lrs)] = 0
        self._step = bad
        self._opt_t += done
        spe = self._run["plan"].steps_per_epoch
        raise DivergenceError(bad, bad // spe, bad % spe, float(lrs[done]), what)

    def _restore(self, snap):
        for s, a in zip(snap, (self._theta, self._m, self._v)):
            np.copyto(a, s)

    # ------------------------------------------------------------------ using the model

    def _forward(self, X):
        if self._theta is None:
            raise NotFittedError("this trainer has not been trained yet: call fit() before predict()")
        Xc = V.check_X(X, np.dtype(self._cfg["dtype"]), n_features=self._run["n_features"])
        act = self._cfg["activation"]
        # inference in float64: a record's outputs then do not depend on which other records
        # share its matrix product (float32 BLAS rounds differently for different row counts)
        layers = [(W.astype(np.float64), b.astype(np.float64)) for W, b in unpack(self._theta, self._sizes)]
        out = np.empty((Xc.shape[0], int(self._sizes[-1])))
        for lo in range(0, Xc.shape[0], 8192):  # in chunks: bounded memory for big (or mapped) X
            a = np.asarray(Xc[lo:lo + 8192], dtype=np.float64)
            for i, (W, b) in enumerate(layers):
                a = a @ W + b
                if i < len(layers) - 1:
                    a = _numpy_backend._activate(ACTIVATION_CODES[act], a)
            out[lo:lo + 8192] = a
        return out

    def decision_function(self, X):
        """The logits (network outputs) for X."""
        return self._forward(X)

    def predict(self, X):
        """Class labels (cross_entropy, binary_crossentropy) or the outputs (mse; 1-D for one output)."""
        z = self._forward(X)
        loss = self._run["loss"]
        if loss == "cross_entropy":
            return z.argmax(axis=1)
        if loss == "binary_crossentropy":
            return (z[:, 0] > 0).astype(np.int64)
        return z[:, 0] if z.shape[1] == 1 else z

    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes); not defined for mse."""
        z = self._forward(X).astype(np.float64)
        loss = self._run["loss"]
        if loss == "cross_entropy":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        if loss == "binary_crossentropy":
            p = _sigmoid(z[:, 0])
            return np.column_stack([1 - p, p])
        raise ValueError("predict_proba needs a classification loss (cross_entropy or binary_crossentropy); "
                         "this run uses mse")

    def evaluate(self, X, y):
        """Mean loss over (X, y) and, for classification, accuracy: ``{"loss": ..., "accuracy": ...}``."""
        if self._theta is None:
            raise NotFittedError("this trainer has not been trained yet: call fit() before evaluate()")
        dtype = np.dtype(self._cfg["dtype"])
        Xc = V.check_X(X, dtype, n_features=self._run["n_features"])
        t, l, _ = V.check_y(y, self._run["loss"], Xc.shape[0], dtype, self._run["n_outputs"])
        return self._evaluate_arrays(Xc, t, l)

    def _evaluate_arrays(self, Xc, targets, labels):
        z = self._forward(Xc)
        code = LOSS_CODES[self._run["loss"]]
        with np.errstate(over="ignore"):
            loss, _ = _numpy_backend.loss_and_grad(code, z, targets if targets.size else None,
                                                   labels if labels.size else None)
        out = {"loss": loss}
        if code == 2:
            out["accuracy"] = float(np.mean(z.argmax(axis=1) == labels))
        elif code == 1:
            out["accuracy"] = float(np.mean((z[:, 0] > 0) == (targets[:, 0] > 0.5)))
        return out

    # ------------------------------------------------------------------ checkpoints

    def save(self, path):
        """Write a checkpoint (config, params, optimizer state, position, history); atomic, no pickle."""
        from .checkpoint import save
        self._check_not_fitting("save")
        save(self, path)

    @classmethod
    def load(cls, path):
        """A Trainer restored from a checkpoint written by :meth:`save`."""
        from .checkpoint import load
        return load(cls, path)

    # pickling (for joblib / Dask): the checkpoint's arrays, never the lock or the cache
    def __getstate__(self):
        from .checkpoint import to_arrays
        return to_arrays(self)

    def __setstate__(self, state):
        from .checkpoint import from_arrays
        from_arrays(self, state)


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _overrides(cb, hook):
    fn = getattr(cb, hook, None)
    return fn is not None and getattr(fn, "__func__", fn) is not getattr(Callback, hook)


def _overrides_any(callbacks, hook):
    return any(_overrides(cb, hook) for cb in callbacks)


def _fire(callbacks, hook, *args):
    stop = False
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            stop |= bool(fn(*args))
    return stop
