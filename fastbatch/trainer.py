"""The Trainer: one training run of a dense network, driven in steps and epochs.

A thin facade. The parameters are declared in ``config.py``, the data of a call is
checked in ``_data.py``, everything that moves lives in a :class:`~fastbatch._run.RunState`,
the step loop is ``_driver.py``, and using the network is ``_inference.py``.
"""
import contextlib
import functools
import math
import os
import threading
import warnings

import numpy as np

from . import _data, _driver, _inference, _numpy_backend, _validation as V, config as _config
from ._network import aligned, init_params, layer_sizes, unpack
from ._run import RunState
from ._task import caller_stacklevel
from .callbacks import Callback
from .errors import NotFittedError
from .history import History
from .schedule import plan as make_plan
from .schedules import make_schedule

from ._rows import RowSource

try:
    from . import _kernel
except ImportError:  # pragma: no cover - only when the extension was not built
    _kernel = None


def default_threads():
    """The BLAS's thread setting (what ``n_threads=None`` means when a run starts), as the caller
    made it: a team running in another thread pins the BLAS to one thread meanwhile."""
    n = _kernel.blas_threads() if _kernel is not None else 0
    if n:
        return max(1, n)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


class Trainer:
    __doc__ = """One mini-batch training run of a dense network with a budget of ``epochs`` epochs.

    ``fit`` continues the run from where it stands; pieces of ``fit`` give bit-identical
    results to one uninterrupted call. Before the first ``fit`` every parameter can be
    assigned (``tr.batch_size = 8``); once the run has started only ``learning_rate``
    and ``epochs`` can (raising ``epochs`` extends the run); ``reset()`` starts over.

    """ + _config.numpydoc().replace("\n", "\n    ") + """
    """

    def __init__(self, **params):
        cfg = _config.check_config(params)
        _config.warn_ignored(cfg)
        if cfg["backend"] == "cython" and _kernel is None:
            raise ImportError("the Cython kernel is not built; reinstall fastbatch (pip install -e .) "
                              "or use backend='numpy'")
        self._cfg = cfg
        self._fit_lock = threading.Lock()      # held while a fit runs: one fit at a time
        self._state_lock = threading.RLock()   # held by the fit thread except between chunks
        self._readers = 0                      # threads waiting for a consistent point
        self._readers_cv = threading.Condition()
        self._stop_flag = None                 # the running fit's stop flag, its own (None when no fit runs)
        self._pending_params = None
        self._pending_scaling = None           # the standardisation those params were trained under (_continue_network)
        self.info = {}                         # JSON-able facts saved with checkpoints (names, fingerprints)
        self._no_run()  # (reset() without the fit lock: no other thread has this trainer yet)

    __init__.__signature__ = _config.signature()

    # ------------------------------------------------------------------ configuration

    @property
    def config(self):
        """The run's parameters (a copy)."""
        return dict(self._cfg)

    def _set_param(self, name, value, inside_fit=False):
        if inside_fit or name == "learning_rate":  # (the rate may change while fit runs, in another thread)
            return self._apply_param(name, value)
        # (a fit starting meanwhile would read one config for its network and another for its kernel: a plain SGD
        # run's shared zeros under Adam's updates)
        with self._not_fitting(f"cannot change {name} while fit() runs"):
            return self._apply_param(name, value)

    def _apply_param(self, name, value):
        p = _config.BY_NAME[name]
        if self._state is not None and not p.live:
            raise AttributeError(f"cannot change {name} of a run that has started (only "
                                 f"{', '.join(_config.LIVE)} can change); call reset() first, or make a new Trainer")
        if name == "epochs" and self._state is not None:
            value = p.check(value)
            done = self._epochs_done()
            if value < done:
                raise ValueError(f"epochs must be at least the {done} epochs this run has done, got {value}")
            if self._state.stopped_early and value > done:
                # a budget beyond the epochs done: the stopped run goes on (as Keras' fit again), and early stopping
                # counts afresh (the best it stopped on would end the run again at the next epoch)
                self._state.stopped_early, self._state.best = False, None
        self._cfg = _config.check_config({**self._cfg, name: value})
        pending = self._pending_params
        if name == "hidden" and pending is not None and tuple(W.shape[1] for W, _ in pending[:-1]) != self._cfg["hidden"]:
            self._pending_params = self._pending_scaling = None
            warnings.warn(f"hidden={self._cfg['hidden']} drops the params given to set_params (hidden widths "
                          f"{tuple(W.shape[1] for W, _ in pending[:-1])}): the first fit initialises the params from "
                          "the seed; call set_params again for params of the new widths", UserWarning,
                          stacklevel=caller_stacklevel())
        if name == "optimizer" or _config.BY_NAME[name].optimizers:
            _config.warn_ignored(self._cfg, None if name == "optimizer" else (name,))
        elif name in ("backend", "n_threads"):
            _config.warn_ignored(self._cfg, (name,))
        if name in ("lr_schedule", "warmup_steps"):
            self._schedule = make_schedule(self._cfg["lr_schedule"], self._cfg["warmup_steps"])
        if name != "learning_rate":  # (the rate may change while fit runs, in another thread: what fit reads stays)
            self._plan = None
            self._quiet_hooks = None

    def __repr__(self):
        diff = ", ".join(f"{k}={v!r}" for k, v in self._cfg.items()
                         if v != _config.DEFAULTS[k] and not (k == "lr_schedule" and v == {"name": "constant"}))
        return f"Trainer({diff}) at step {self.step}/{self.total_steps or '?'}"

    # ------------------------------------------------------------------ position in the run

    def reset(self):
        """Start the run over: the next ``fit`` initialises the params and trains from step 0."""
        with self._not_fitting("cannot reset() while fit() is running on this trainer"):
            self._no_run()

    def _no_run(self):
        self._state = None
        self._spec = None
        self._plan = self._batch_sizes = None  # the run's plan and one epoch's batch sizes (the plan's), if any
        self._source = self._quiet_hooks = None  # the run's ArraySource and hook-less Hooks, made at its first fit
        self._last_arrays = None  # the run's _data.LastArrays
        self._schedule = make_schedule(self._cfg["lr_schedule"], self._cfg["warmup_steps"])

    def _sync_schedule(self):
        """The schedule object as the run state says (after the driver restored a snapshot)."""
        saved = self._state.schedule_state if self._state is not None else None
        if saved != self._schedule.state():
            self._schedule = make_schedule(self._cfg["lr_schedule"], self._cfg["warmup_steps"])
            if saved:
                self._schedule.load_state(saved)

    @property
    def run_state(self):
        """The run's :class:`~fastbatch._run.RunState` (None before the first fit): what checkpoints save."""
        return self._state

    @property
    def has_params(self):
        """True once the trainer has params: from a run, or set with set_params before it."""
        return self._state is not None or self._pending_params is not None

    def adopt_run_state(self, state):
        """Continue the run ``state`` (a checkpoint's, which becomes this trainer's own: not another trainer's);
        the config must be the one it was made with: a state that does not follow from it is a ValueError."""
        with self._not_fitting("cannot adopt_run_state() while fit() is running on this trainer"):
            cfg = self._cfg
            if tuple(int(s) for s in state.sizes[1:-1]) != cfg["hidden"]:
                raise ValueError(f"the run state's layers {state.sizes.tolist()} do not fit hidden={cfg['hidden']}")
            if state.theta.dtype != np.dtype(cfg["dtype"]):
                raise ValueError(f"the run state's params are {state.theta.dtype}, "
                                 f"the config's dtype is {cfg['dtype']}")
            if cfg["loss"] not in ("auto", state.loss):
                raise ValueError(f"the run state's loss is {state.loss!r}, the config's is {cfg['loss']!r}")
            if len(state.val_loss) > len(state.epoch_loss):
                raise ValueError(f"{len(state.val_loss)} validation losses for {len(state.epoch_loss)} finished epochs")
            scaling = state.scaling or {}
            for name, on, has in (("standardize", cfg["standardize"], "x_shift" in scaling),
                                  ("standardize_target", cfg["standardize_target"] and state.loss == "mse",
                                   "y_shift" in scaling),
                                  ("track_noise", cfg["track_noise"], state.noise_buf is not None)):
                if bool(on) != has:
                    raise ValueError(f"the run state was made {'without' if on else 'with'} {name}, the config has "
                                     f"{name}={cfg[name]!r}")
            # (a split's run; the other way round is a run of validation_data)
            if state.n_records < state.n_records_all and not cfg["validation_split"]:
                raise ValueError("the run state holds records out for validation, the config has "
                                 "validation_split=0.0")
            if not state.generator:
                if state.steps_per_epoch < 1 or state.n_records < 1 or state.n_records_all < state.n_records:
                    raise ValueError("the run state's record counts are inconsistent")
                need, memory = state.steps_per_epoch * EPOCH_BYTES_PER_STEP, _physical_memory()
                if memory is not None and need > memory // 2:  # (a number a file declares allocates nothing unchecked)
                    raise ValueError(f"the run state's {state.steps_per_epoch:,} steps per epoch need "
                                     f"{need / 2**30:,.1f} GB for the epoch's batch sizes; this machine has "
                                     f"{memory / 2**30:,.1f} GB")
                plan = make_plan(state.n_records, cfg["batch_size"], cfg["epochs"], cfg["drop_last"])
                if plan.steps_per_epoch != state.steps_per_epoch:
                    raise ValueError(f"the run state's {state.steps_per_epoch} steps per epoch do not follow from its "
                                     f"{state.n_records} records at batch_size={cfg['batch_size']}, "
                                     f"drop_last={cfg['drop_last']}")
                if state.step > plan.total_steps:
                    raise ValueError(f"the run state's step {state.step} is beyond the {plan.total_steps} steps of "
                                     f"epochs={cfg['epochs']}")
                ended = state.step // state.steps_per_epoch   # (some may wait to be closed: an interrupt came first)
                if len(state.epoch_loss) > ended:
                    raise ValueError(f"{len(state.epoch_loss)} epoch losses for {ended} finished epochs")
            schedule = make_schedule(self._cfg["lr_schedule"], self._cfg["warmup_steps"])
            if state.schedule_state:
                schedule.load_state(state.schedule_state)  # (a ValueError here leaves the trainer as it was)
            if not state.opt_state.flags.writeable and _driver.opt_rows(cfg):  # (a plain SGD run's shared zeros:
                state.opt_state = np.array(state.opt_state)                     # this optimizer writes them)
            self._begin(state)
            self._schedule = schedule

    @property
    def started(self):
        return self._state is not None

    @property
    def step(self):
        """Steps done so far in this run."""
        return self._state.step if self._state else 0

    @property
    def epoch(self):
        """The epoch the next step belongs to (0-based)."""
        st = self._state
        if st is None:
            return 0
        return st.epoch if st.generator else st.step // st.steps_per_epoch

    def _epochs_done(self):
        st = self._state
        if st is None:
            return 0
        if st.generator:
            return st.epoch
        return -(-st.step // st.steps_per_epoch)

    @property
    def plan(self):
        """The run's :class:`~fastbatch.schedule.Plan` (None before the first fit, and for fit_batches runs)."""
        st = self._state
        if st is None or st.generator:
            return None
        if self._plan is None:
            plan = make_plan(st.n_records, self._cfg["batch_size"], self._cfg["epochs"], self._cfg["drop_last"])
            sizes = self._batch_sizes
            if sizes is None or len(sizes) != plan.steps_per_epoch or sizes[-1] != plan.last_batch_size \
                    or sizes[0] != plan.effective_batch_size:  # (the same batches, e.g. epochs raised: kept, one array)
                sizes = plan.shared_batch_sizes()
            self._plan, self._batch_sizes = plan, sizes
        return self._plan

    @property
    def total_steps(self):
        """Steps in the whole run (None before the first fit, and for fit_batches runs)."""
        p = self.plan
        return p.total_steps if p else None

    @property
    def finished(self):
        """True when the epoch budget is spent (or early stopping ended the run)."""
        st = self._state
        if st is None:
            return False
        if st.stopped_early:
            return True
        if st.generator:
            return st.epoch >= self._cfg["epochs"]
        return st.step >= self.plan.total_steps

    @property
    def history(self):
        """The :class:`History` of all steps so far."""
        st = self._state
        if st is None:
            return History(np.empty(0), np.empty(0), [], 0, 0)
        if st.generator:
            return History.of_run(st, [])
        if self._plan is None:
            self.plan  # noqa: B018 - makes _batch_sizes
        return History.of_run(st, self._batch_sizes)

    def stop(self):
        """Ask a running ``fit`` to return after the current step (safe from any thread).

        A no-op when no fit is running: it never stops a later fit (each fit has a flag of its own).
        """
        flag = self._stop_flag
        if flag is not None:
            flag[0] = 1

    # ------------------------------------------------------------------ consistency between threads

    @contextlib.contextmanager
    def _consistent(self):
        """Hold the state at a consistent point: between two kernel calls of a running fit, or while none runs."""
        with self._readers_cv:
            self._readers += 1
        try:
            with self._state_lock:
                yield
        finally:
            with self._readers_cv:
                self._readers -= 1
                self._readers_cv.notify_all()

    def _yield_to_readers(self):
        """Called by the fit thread between chunks: let waiting readers see the state."""
        if self._readers:
            self._state_lock.release()
            try:
                with self._readers_cv:
                    self._readers_cv.wait_for(lambda: self._readers == 0, timeout=1.0)
            finally:
                self._state_lock.acquire()

    @contextlib.contextmanager
    def _not_fitting(self, message):
        """Hold the fit lock while the run or its config changes (RuntimeError(message) while a fit runs): a fit
        starting in another thread meanwhile is refused, never started on half of the change."""
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError(message)
        try:
            yield
        finally:
            self._fit_lock.release()

    # ------------------------------------------------------------------ params

    def get_params(self):
        """Copies of the params, ``[(W, b), ...]`` with W shaped (n_in, n_out)."""
        with self._consistent():
            st = self._state
            if st is None:
                if self._pending_params is not None:  # (in the dtype the run will have, as a run's params are)
                    dtype = np.dtype(self._cfg["dtype"])
                    return [(W.astype(dtype), b.astype(dtype)) for W, b in self._pending_params]
                raise NotFittedError("this trainer has no params yet: call fit() first (or set_params())")
            return [(W.copy(), b.copy()) for W, b in unpack(st.theta, st.sizes)]

    def set_params(self, params):
        """Set the params; before the first ``fit`` they replace the seeded initialisation."""
        with self._not_fitting("cannot set_params() while fit() is running on this trainer"):
            layers = _data.check_params(params, self._cfg["hidden"])
            st = self._state
            if st is not None:
                sizes = [layers[0][0].shape[0]] + [W.shape[1] for W, _ in layers]
                if tuple(sizes) != tuple(int(s) for s in st.sizes):
                    raise ValueError(f"params have layer sizes {tuple(sizes)}, the run has {tuple(st.sizes.tolist())}")
                for (W, b), (W0, b0) in zip(layers, unpack(st.theta, st.sizes)):
                    W0[...] = W
                    b0[...] = b
                st.carried = None  # (a divergence must not rewind to params from before these)
            else:  # kept as given (in float64: exact for float32 and float64 params), rounded to the dtype the run has
                # when it starts: a dtype set after this call applies to them too
                self._pending_params = [(W.astype(np.float64), b.astype(np.float64)) for W, b in layers]
                self._pending_scaling = None

    def _continue_network(self, other):
        """Start this trainer's first run from the network of ``other`` (a trainer with a run): its params, and
        the standardisation they were trained under when this run standardises the same way. A new run on
        other records (scikit-learn's partial_fit on a chunk of another size) then sees its inputs on the
        scale the network learned them, not on one taken from its own first records."""
        with other._consistent():
            st = other._state
            self.set_params(unpack(st.theta, st.sizes))
            scaling = st.scaling or {}
        cfg = self._cfg
        keys = {k for k, on in (("x_shift", cfg["standardize"]),
                                ("y_shift", cfg["standardize_target"] and st.loss == "mse")) if on}
        if keys and keys == {k for k in scaling if k.endswith("_shift")}:
            self._pending_scaling = {k: v.copy() for k, v in scaling.items()}

    # ------------------------------------------------------------------ training

    def _backend(self):
        return _kernel if self._cfg["backend"] == "cython" else _numpy_backend

    def _new_state(self, n_features, loss, n_outputs, n_records, n_records_all, steps_per_epoch, generator,
                   scaling=None, target_var=None):
        cfg = self._cfg
        dtype = np.dtype(cfg["dtype"])
        sizes = layer_sizes(n_features, cfg["hidden"], n_outputs)
        if self._pending_params is not None:
            p = self._pending_params
            if tuple(W.shape[1] for W, _ in p[:-1]) != tuple(cfg["hidden"]):  # (hidden= drops them: never here)
                raise ValueError(f"the params set with set_params have hidden widths "
                                 f"{tuple(W.shape[1] for W, _ in p[:-1])}, but hidden={cfg['hidden']}")
            if p[0][0].shape[0] != n_features or p[-1][0].shape[1] != n_outputs:
                raise ValueError(f"the params set with set_params map {p[0][0].shape[0]} features to "
                                 f"{p[-1][0].shape[1]} outputs, but the data has {n_features} features "
                                 f"and needs {n_outputs} outputs")
            big = max(max(float(np.abs(W).max(initial=0)), float(np.abs(b).max(initial=0))) for W, b in p)
            if big > float(np.finfo(dtype).max):
                raise ValueError(f"the params set with set_params hold values too large for {dtype} (largest "
                                 f"{big:.3g}, max {np.finfo(dtype).max:.3g}): scale them, or use dtype='float64'")

            def make_theta():
                return aligned(np.concatenate([np.concatenate([W.ravel(), b]) for W, b in p]).astype(dtype, copy=False))
        else:
            _check_network_fits(sizes, dtype, cfg["hidden"], _driver.opt_rows(cfg))
            make_theta = functools.partial(init_params, sizes, cfg["activation"], cfg["seed"], dtype)
        theta = make_theta()
        n_threads = cfg["n_threads"] or default_threads()
        state = RunState.new(sizes, loss, theta, n_records, n_records_all, steps_per_epoch, generator, n_threads,
                             opt_untouched=_driver.opt_rows(cfg) == 0)
        state.scaling = scaling
        if target_var is not None:
            state.target_var = target_var
        if cfg["track_noise"]:
            state.noise_buf = np.zeros((0, 2))
        return state, make_theta  # make_theta(): the run's first params again, exactly

    def _begin(self, state):
        """Make ``state`` the run's (the trainer changes from here on)."""
        self._state = state
        self._pending_params = self._pending_scaling = None
        self._plan = None
        self._source = self._quiet_hooks = None
        self._last_arrays = _data.LastArrays()
        if not state.generator:
            self._spec = _driver.kernel_spec(self._cfg, state)

    def _unstart(self, pending_params, pending_scaling):
        """Back to before the run began (a first call refused): no run, and what set_params had set pending."""
        self._state, self._spec, self._plan = None, None, None
        self._pending_params, self._pending_scaling = pending_params, pending_scaling

    def _start_generator_run(self, n_features, loss, n_outputs):
        self._begin(self._new_state(n_features, loss, n_outputs, 0, 0, 0, True)[0])
        return self._state

    @contextlib.contextmanager
    def _fitting(self):
        stop = self._enter_fit()
        try:
            with self._state_lock:
                yield stop
        finally:
            self._exit_fit()

    def _enter_fit(self):
        """Take the fit lock (RuntimeError when another fit runs) and arm a stop flag for this fit only."""
        if not self._fit_lock.acquire(blocking=False):
            raise RuntimeError("fit() is already running on this trainer in another thread; "
                               "use one trainer per thread")
        # a new flag (what the kernel reads) for each fit: a stop() that read the last fit's flag
        # as it ended writes into that one, never into this fit's (no lock needed around it)
        flag = self._stop_flag = np.zeros(1, dtype=np.uint8)
        return flag

    def _exit_fit(self):
        self._stop_flag = None
        self._fit_lock.release()

    def fit(self, X, y, steps=None, on_progress=None, validation_data=None, callbacks=None, n_outputs=None,
            epochs=None, sample_weight=None, verbose=0):
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
            Called from the training thread about every 0.1 s and when the call returns.
        validation_data : (X_val, y_val), optional
            Validated at each epoch end (instead of ``validation_split``).
        callbacks : list of fastbatch.callbacks.Callback, optional
            Step, epoch and run hooks; a hook that returns True stops the run.
        n_outputs : int, optional
            The network's outputs: for cross_entropy the number of classes, when the
            labels of this data do not show the largest one (default: largest label + 1).
        epochs : int, optional
            Shorthand for ``trainer.epochs = epochs`` first: the run's budget of epochs (raising it
            extends a finished run; it may not go below the epochs already done).
        sample_weight : array-like (n_records,), optional
            Per-record weights: a step's loss is ``sum(w_i * l_i) / sum(w_i)`` over its batch.
        verbose : {0, 1} or callable(str)
            1 prints one line per finished epoch (epoch, steps, time, loss, metrics, validation);
            a callable gets each line instead (e.g. a progress bar's ``write``).

        Notes
        -----
        Each call checks the arguments' types and shapes. Values are looked at as they are
        read: the Cython kernel looks at every record a step reads, and a record it cannot
        train on (NaN or inf, a label out of range, a binary target not 0 / 1) is a
        ``ValueError`` naming it, with the run put back where the call began (a first call
        leaves the trainer unstarted). So a call costs O(its steps), not O(records), and an
        array edited in place between calls is seen as it is now.
        """
        # the usual call in a loop (fit(X, y, steps=k), with no hook): _driver.quick, when it can
        quick = steps.__class__ is int and 0 < steps < V.INT_LIMIT and self._source is not None \
            and on_progress is None and validation_data is None and callbacks is None and epochs is None \
            and sample_weight is None and verbose.__class__ is int and verbose == 0
        if steps is not None and not quick:
            steps = V.check_int("steps", steps, 1)
        if n_outputs is not None:
            n_outputs = V.check_int("n_outputs", n_outputs, 1)
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable, got {on_progress!r}")
        if verbose.__class__ is not int or not 0 <= verbose <= 1:
            if not callable(verbose):
                verbose = V.check_int("verbose", verbose, 0, 1)
        callbacks = _check_callbacks(callbacks) if callbacks else ()
        stop = self._enter_fit()
        try:
            with self._state_lock:
                first = _driver.quick(self, X, y, steps, stop, n_outputs) if quick else None
                if first is True:
                    return self.history
                if first is not None:  # (its steps took long: run() goes on, with the steps left)
                    steps -= self._state.step - first[0].step
                return self._fit(X, y, steps, on_progress, validation_data, callbacks, n_outputs, epochs,
                                 sample_weight, verbose, stop, first)
        finally:
            self._exit_fit()

    def _fit(self, X, y, steps, on_progress, validation_data, callbacks, n_outputs, epochs, sample_weight, verbose,
             stop, first=None):
        """fit's body, under the fit lock: prepare the data, start the run if new, drive it.

        A refused call (bad arguments or data, or a bad record the kernel met) leaves the trainer
        as it was: its epochs too, and a first call leaves it unstarted.
        """
        cfg, st, pending, last = self._cfg, self._state, self._pending_params, self._last_arrays
        pending_scaling = self._pending_scaling
        undo = make_theta = None
        if epochs is not None:
            _config.BY_NAME["epochs"].check(epochs)
            if epochs != cfg["epochs"]:
                undo = (cfg, None if st is None else (st.stopped_early, st.best))
                self._set_param("epochs", epochs, inside_fit=True)
                cfg = self._cfg
        source = None
        try:
            if st is not None and st.generator:
                raise ValueError("this run was started with fit_batches(); call reset() before fit(X, y)")
            backend = self._backend()
            # the kernel looks at each record it reads: the data's values need no pass here
            # validation_data replaces the split: a run it starts trains on every record (and goes on so)
            split = cfg["validation_split"] if (validation_data is None if st is None
                                                else st.n_records < st.n_records_all) else 0.0
            data = _data.prepare(X, y, cfg, st, n_outputs, sample_weight,
                                 scan=not getattr(backend, "CHECKS_RECORDS", False), last=last, split=split,
                                 scaling=pending_scaling)
            val = data.val
            if validation_data is not None:
                val = _data.prepare_validation(validation_data, data.loss, data.n_outputs, cfg["dtype"],
                                               data.X.shape[1], st.scaling if st is not None else data.scaling)
            if st is None:
                try:
                    plan = make_plan(data.n_records, cfg["batch_size"], cfg["epochs"], cfg["drop_last"])
                except ValueError as exc:  # (n_records: the split's training part, not the records passed)
                    if data.n_records == data.n_records_all:
                        raise
                    raise ValueError(f"{exc} (the {data.n_records} records are the training part that "
                                     f"validation_split={split} leaves of the {data.n_records_all} passed)") from None
                new, make_theta = self._new_state(data.X.shape[1], data.loss, data.n_outputs, data.n_records,
                                      data.n_records_all, plan.steps_per_epoch, False, data.scaling,
                                      _data.pooled_variance(data.targets, data.weights))
            elif self.finished and not _driver.unclosed_epochs(st):  # (else its last epoch is closed, below)
                warnings.warn(f"this run is finished ({self.step} of {self.total_steps} steps); fit() trains "
                              "nothing. Raise epochs to continue it, or call reset() to start over.",
                              RuntimeWarning, stacklevel=3)
                return self.history
            rows = RowSource.open(data.X) if isinstance(data.X, np.memmap) else None  # (else: read in memory)
            try:
                if st is None:
                    self._begin(new)
                    self._plan, self._batch_sizes = plan, plan.shared_batch_sizes()
                state = self._state
                plan = self.plan
                bound = self._source
                if bound is None or bound.state is not state or bound.backend is not backend:  # (once a run)
                    state.ensure_order_cache()
                    bound = self._source = _driver.ArraySource(backend, self._batch_sizes, plan.records_per_epoch,
                                                                self._spec, state)
                bound.bind(data, rows, (X, y, cfg, state, n_outputs, sample_weight, True, None, split))
                source = bound
                if on_progress is None and val is None and not callbacks and not verbose:
                    hooks = self._quiet_hooks
                    if hooks is None:
                        hooks = self._quiet_hooks = _driver.Hooks(self, None, None, ())
                else:
                    hooks = _driver.Hooks(self, on_progress, val, callbacks, verbose)
                end = plan.total_steps if steps is None else min(plan.total_steps, state.step + steps)
                _driver.run(self, source, end, hooks, stop, make_theta, first)
            finally:
                if source is not None:
                    source.release()
                if last is not None:
                    last.release()
                if rows is not None:
                    rows.close()
        except BaseException:
            if source is None or source.bad_input:  # refused: as if never called
                if st is None:
                    self._unstart(pending, pending_scaling)
                if undo is not None:
                    self._cfg, self._plan = undo[0], None
                    if st is not None:
                        st.stopped_early, st.best = undo[1]
            raise
        return self.history

    def fit_batches(self, batches, on_progress=None, validation_data=None, callbacks=None, n_outputs=None):
        """Train from ``batches()``, a callable returning a fresh iterable of (X_batch, y_batch) each epoch.

        The seed's ``data_generator``: each batch is one step, each pass over the
        iterable one epoch, up to ``epochs`` epochs. With ``drop_last=True`` a batch
        smaller than ``batch_size`` (the last, partial one) is skipped; otherwise it
        is trained on like any other. A run stopped mid-epoch resumes by skipping the
        batches it already trained on. A new run makes a first pass over the batches when
        it needs their targets whole (loss="auto": the task rule over all of them; a
        classification without ``n_outputs``: the largest label) or standardisation's
        statistics. A batch its checks refuse undoes the call (a first call leaves the
        trainer unstarted).
        """
        if not callable(batches):
            hint = (" (a generator can be iterated only once: pass a function that makes a new one, "
                    "e.g. lambda: my_batches())") if hasattr(batches, "__next__") or hasattr(batches, "__iter__") else ""
            raise TypeError(f"batches must be a callable returning an iterable of (X, y) batches, "
                            f"got {batches!r}{hint}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable, got {on_progress!r}")
        if n_outputs is not None:
            n_outputs = V.check_int("n_outputs", n_outputs, 1)
        if self._cfg["validation_split"]:  # (it held nothing out: every record trained, no validation said so)
            raise ValueError(f"validation_split={self._cfg['validation_split']} cannot hold records out of "
                             "fit_batches()' batches (they come from your generator): pass "
                             "validation_data=(X_val, y_val), or set validation_split=0.0")
        callbacks = _check_callbacks(callbacks)
        with self._fitting() as stop:
            if self._state is not None and not self._state.generator:
                raise ValueError("this run was started with fit(X, y); call reset() before fit_batches()")
            if self.finished:
                warnings.warn("this run is finished; fit_batches() trains nothing. Raise epochs to continue it, "
                              "or call reset() to start over.", RuntimeWarning, stacklevel=2)
                return self.history
            hooks = _driver.Hooks(self, on_progress, None, callbacks)
            source = _driver.BatchSource(self, batches, n_outputs, validation_data, self._backend())
            pending = None if self._state is not None else (self._pending_params, self._pending_scaling)
            try:
                _driver.run(self, source, math.inf, hooks, stop)
            except BaseException:
                if pending is not None and source.bad_input:  # a refused batch: the call is undone, its run unbegun
                    self._unstart(*pending)
                raise
            return self.history

    # ------------------------------------------------------------------ using the model

    def _checked_X(self, X):
        st = self._state
        if st is None:
            raise NotFittedError("this trainer has not been trained yet: call fit() before using it")
        return V.check_X(X, np.dtype(self._cfg["dtype"]), n_features=st.n_features)

    def _outputs(self, X):
        """The network's outputs for X in the data's units (standardisation applied and undone)."""
        Xc = self._checked_X(X)
        with self._consistent():
            st = self._state
            scaling = st.scaling or {}
            affine = (scaling["x_shift"], scaling["x_scale"]) if "x_shift" in scaling else None
            z = _inference.forward(st.theta, st.sizes, self._cfg["activation"], Xc, affine)
        if "y_shift" in scaling:
            z = z * scaling["y_scale"] + scaling["y_shift"]
        return z

    def decision_function(self, X):
        """The logits (network outputs) for X."""
        return self._outputs(X)

    def predict(self, X):
        """Class labels (cross_entropy, binary_crossentropy) or the outputs (mse; 1-D for one output)."""
        return _inference.predict(self._outputs(X), self._state.loss)

    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes); not defined for mse."""
        return _inference.predict_proba(self._outputs(X), self._state.loss)

    def evaluate(self, X, y, sample_weight=None):
        """Mean loss over (X, y), and accuracy (classification) or r2 and mae (regression)."""
        Xc = self._checked_X(X)
        st = self._state
        dtype = np.dtype(self._cfg["dtype"])
        t, lab, _ = V.check_y(y, st.loss, Xc.shape[0], dtype, st.n_outputs, run_outputs="")
        w = _data.check_weights(sample_weight, Xc.shape[0], np.float64)
        return _inference.score(self._outputs(Xc), st.loss, t, lab, w)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path):
        """Write a checkpoint (config, run state, info); atomic, no pickle. Works from a callback."""
        from .checkpoint import save
        with self._consistent():
            save(self, path)

    @classmethod
    def load(cls, path):
        """A Trainer restored from a checkpoint written by :meth:`save`."""
        from .checkpoint import load
        return load(cls, path)

    # pickling (for joblib / Dask): the checkpoint's arrays, never the locks
    def __getstate__(self):
        from .checkpoint import to_arrays
        with self._consistent():
            return to_arrays(self)

    def __setstate__(self, state):
        from .checkpoint import from_arrays
        from_arrays(self, state)


# what a run holds per step of an epoch: the batch sizes as int64 (the plan's; the driver weighs the steps by them)
EPOCH_BYTES_PER_STEP = 8


def _check_network_fits(sizes, dtype, hidden, rows):
    """ValueError naming hidden when a run of this network (``rows``: its optimizer's rows) could not fit in the
    memory the machine has free (read only for a network of over a quarter of the machine's memory)."""
    need = _run_bytes(sizes.tobytes(), dtype.itemsize, rows)
    memory = _physical_memory()
    if memory is not None and need > memory // 4:
        free = _available_memory() or memory
        if need > free:
            from ._network import n_params
            raise ValueError(f"hidden={hidden} makes a network of layers {tuple(int(v) for v in sizes)} for these "
                             f"data ({n_params(sizes):,} params), which needs about {need / 2**30:,.1f} GB to train "
                             f"with its optimizer state; this machine has {free / 2**30:,.1f} GB free "
                             f"({memory / 2**30:,.1f} GB in all)")


@functools.lru_cache(maxsize=64)
def _run_bytes(sizes_bytes, itemsize, rows):
    """The memory a run of these int64 layer sizes needs at its peak, with ``rows`` optimizer rows: the params,
    their gradient and the kernel's aligned copy (3), the optimizer rows, the driver's three snapshots of the
    params and rows (a chunk's, the one before, the call's first), and the initialisation's float64 draws."""
    from ._network import n_params
    return n_params(np.frombuffer(sizes_bytes, dtype=np.int64)) * (itemsize * (3 + rows + 3 * (1 + rows)) + 8)


def _available_memory():
    """The memory free for a new allocation (Linux' MemAvailable), in bytes; None where the OS does not say."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@functools.lru_cache(maxsize=1)
def _physical_memory():
    """The machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _check_callbacks(callbacks):
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        one = " (one callback: pass [callback])" if isinstance(callbacks, Callback) else ""
        raise TypeError(f"callbacks must be a list of fastbatch.callbacks.Callback objects, got {callbacks!r}{one}")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not any(callable(getattr(cb, h, None)) for h in ("on_run_begin", "on_step_end", "on_epoch_end",
                                                             "on_run_end")):
            raise TypeError(f"callbacks must be fastbatch.callbacks.Callback objects, got {cb!r}")
    return callbacks


def _param_property(name):
    def get(self):
        return self._cfg[name]

    def set_(self, value):
        self._set_param(name, value)

    return property(get, set_, doc=_config.BY_NAME[name].help)


for _p in _config.PARAMS:
    setattr(Trainer, _p.name, _param_property(_p.name))
del _p
