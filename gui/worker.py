"""The training worker: a QObject on its own QThread that runs ``Trainer.fit`` and reports by signals.

Widgets never call the trainer while it trains; the worker does. It trains in chunks sized
by time (about :attr:`TrainingWorker.CHUNK_SECONDS` of steps per ``fit`` call), and between
chunks, while the params are consistent, it measures what the plots need: the loss on all
training records, the decision surface, and what one stepped batch did.
"""
import atexit
import math
import time
import traceback
import weakref
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

import fastbatch as fb

from .batch_map import epoch_order


@dataclass
class Job:
    """One press of Start, Resume or Step: ``steps`` more steps (None: to the end of the run).

    ``train_X``/``train_y`` are the run's training records (after the validation split):
    the full-loss line evaluates them, and a stepped batch is found among them.
    """

    trainer: object
    X: np.ndarray
    y: np.ndarray
    steps: int | None = None
    train_X: np.ndarray | None = None
    train_y: np.ndarray | None = None
    full_loss: bool = False              # measure the loss on all training records
    grid: np.ndarray | None = None       # points at which to evaluate predict_proba, or None
    grid_shape: tuple | None = None      # (rows, cols) of the surface image
    stop_requested: bool = False
    cancelled: bool = False              # the window is closing: nothing more is measured or drawn
    plan: object = None                  # the run's fastbatch.Plan
    seed: int = 0
    shuffle: bool = True

    def request_stop(self):
        """Stop this job within one step, even if the worker has not begun it yet."""
        self.stop_requested = True
        self.trainer.stop()  # a no-op unless fit is running; the worker checks the flag too

    def cancel(self):
        """Stop within one step and skip the measurements a job makes as it ends (the window is closing)."""
        self.cancelled = True
        self.request_stop()


def batch_records(plan, seed, shuffle, step):
    """Indices (into the training records) of the batch of ``step`` (0-based), from ``fb.epoch_order``."""
    epoch, batch = divmod(step, plan.steps_per_epoch)
    order = epoch_order(plan.n_records, seed, epoch, shuffle)
    start = batch * plan.effective_batch_size
    return order[start:start + int(plan.batch_sizes()[batch])]


def training_loss(trainer, X, y):
    """``trainer.evaluate``'s loss on (X, y) in the units of the run's History: a run that standardises its
    regression target (``standardize_target``) trains on, and records, the standardised target's loss, while
    evaluate scores the predictions in the data's units (its loss is then the scale squared times larger)."""
    loss = float(trainer.evaluate(X, y)["loss"])
    scaling = trainer.run_state.scaling or {}
    if "y_scale" not in scaling:
        return loss
    scale = np.asarray(scaling["y_scale"], dtype=np.float64).ravel()
    if scale.size == 1:
        return loss / float(scale[0]) ** 2
    # several outputs, each of its own scale: the mean of the standardised squared errors (the mse itself)
    z = np.asarray(trainer.predict(X), dtype=np.float64).reshape(len(X), -1)
    t = np.asarray(y, dtype=np.float64).reshape(len(X), -1)
    return float(np.mean(((z - t) / scale) ** 2))


def last_epoch_scores(trainer):
    """``(finished epochs, the last one's metrics)``: the library's per-epoch record of the run, by
    ``History.metrics``' names (``loss``, ``accuracy`` or ``r2``, and with validation ``val_loss``,
    ``val_accuracy`` or ``val_r2``, ``val_mae``); ``(0, None)`` before an epoch has finished.

    Read from the run state's list of per-epoch dicts (``RunState.epoch_metrics``, the list History's
    ``metrics`` is made from), its last entry only: O(1). ``History.metrics`` builds an array of every
    epoch, O(epochs), and a run of a few records may have a million. Read between fit calls (on the worker,
    or once it is idle), when an epoch is closed whole with its validation or not at all."""
    state = trainer.run_state
    if state is None or not state.epoch_metrics:
        return 0, None
    logs = state.epoch_metrics
    return len(logs), dict(logs[-1])


def _flat(params):
    return np.concatenate([np.concatenate([W.ravel(), b.ravel()]) for W, b in params]).astype(np.float64)


class TrainingWorker(QObject):
    """Runs one :class:`Job` at a time; ``Job.request_stop()`` may be called from any thread."""

    started = Signal()
    progress = Signal(object)          # History, at most every PROGRESS_SECONDS
    # (step counts travel as object: a Qt int is 32 bits, and a run may have more than 2^31 - 1 steps)
    surface = Signal(object, object)   # (steps done, probabilities of shape (rows, cols, classes))
    fullLoss = Signal(object, float)   # (steps done, mean loss on all training records)
    epochMeans = Signal(int, object)   # (first epoch, the newly finished epochs' mean losses), after epoch ends
    epochScores = Signal(int, object)  # (finished epochs, the last one's metrics): see last_epoch_scores
    stepped = Signal(object)           # a dict describing the one step a Step-1-batch job trained
    finished = Signal(object)          # History, when the job is done (run over, stopped or paused)
    errored = Signal(object)           # the exception fit raised (the traceback goes to stderr)

    CHUNK_SECONDS = 0.03      # steps per fit call: about this long, so a stop or a frame never waits long,
    OVERHEAD_SHARE = 0.05     # ...or longer, so that a call's fixed cost (the data check: O(records)) stays this small
    MAX_CHUNK_SECONDS = 0.5
    PROGRESS_SECONDS = 0.03   # ~30 reports a second at most, however fast the steps are
    SURFACE_SECONDS = 0.25    # the surface is evaluated at most this often,
    SURFACE_SHARE = 0.10      # ...and costs at most this share of the time (a big network's takes seconds)
    SURFACE_ROWS = 1024       # grid points evaluated at a time: a stop request is looked at between them
    QUICK_SURFACE_MACS = 2e8  # a surface of at most this many multiply-adds is drawn as a stopped job ends
    FULL_LOSS_SHARE = 0.10    # the full-loss line costs at most this share of training time
    FULL_LOSS_MACS = 2e8      # training records evaluated at a time: about this many multiply-adds (a stop request
                              # is looked at between them; a big network's full pass takes tens of seconds)
    QUICK_FULL_LOSS_MACS = 2e8   # a full-loss point of at most this many multiply-adds is measured as a stopped job ends
    FULL_LOSS_FREE = 0.05     # ...after this many seconds of it
    LESSON_STEPS = 2000       # runs this short get a full-loss point after every step
    FULL_LOSS_POINTS = 2000   # a longer run gets at most about this many (+ one per epoch while fewer epochs)

    def __init__(self):
        super().__init__()
        self._job = None
        self._full = {}          # per trainer: the full-loss budget's state
        self._means_sent = (None, 0)   # (weakref to the trainer, how many of its finished epochs' means were sent)
        self._means_cost = 0.0   # seconds the last means took (they are sent at most 5% of the time)
        self._scores_sent = (None, -1)   # (weakref to the trainer, its finished epochs when scores were last sent)

    @Slot(object)
    def run(self, job):
        """Train: emits started, progress..., then finished (or errored with the exception)."""
        self._job = job
        self.started.emit()
        try:
            history = self._train(job)
        except Exception as exc:  # reported, never a silent thread death
            traceback.print_exc()
            if not job.cancelled:
                self._send_scores(job, force=True)   # (a divergence's rewind may have undone epochs)
            self.errored.emit(exc)
            return
        finally:
            self._job = None
        self.finished.emit(history)

    def _train(self, job):
        tr = job.trainer
        target = None if job.steps is None else tr.step + job.steps
        stepping = job.steps == 1
        before = self._params(tr) if stepping else None
        last_progress = last_surface = last_means = time.perf_counter()
        surface_cost = None   # seconds the last surface took (None: none yet in this job)
        full = self._full_state(job)
        history = tr.history
        chunk = 1   # every job starts small: the last job's rate says nothing about this one's network or data
        while not job.stop_requested and not tr.finished and (target is None or tr.step < target):
            n = chunk
            if target is not None:
                n = min(n, target - tr.step)
            if job.full_loss:
                n = min(n, self._next_full_point(job, full) - tr.step)
            t0, s0 = time.perf_counter(), tr.step
            history = tr.fit(job.X, job.y, steps=n)
            dt = time.perf_counter() - t0
            done = tr.step - s0
            full["train_seconds"] += dt
            if done >= min(16, job.plan.steps_per_epoch):   # calls long enough to hide a call's fixed cost
                full["rate_seconds"] += dt
                full["rate_steps"] += done
            # next chunk: about CHUNK_SECONDS of steps (more when a call's fixed cost is high), growing at
            # most 4x a call; from the steps done, not asked for: a pause or stop cuts a call short
            if n <= 4:
                full["overhead"] = min(full["overhead"], dt)
            if dt > 0 and done:
                fixed = full["overhead"] if full["overhead"] < float("inf") else 0.0
                target_s = min(max(self.CHUNK_SECONDS, fixed / self.OVERHEAD_SHARE),
                               self.MAX_CHUNK_SECONDS)
                chunk = int(min(4 * done, max(1, done * target_s / dt)))
            if time.perf_counter() - last_means >= max(self.SURFACE_SECONDS, 20 * self._means_cost):
                last_means = time.perf_counter()
                self._send_means(history, job)
                self._send_scores(job)
            if job.full_loss and done and tr.step == self._next_full_point(job, full, after=tr.step - 1):
                self._measure_full_loss(job, full)
            now = time.perf_counter()
            if now - last_progress >= self.PROGRESS_SECONDS:
                last_progress = now
                self.progress.emit(history)
            if job.grid is not None and now - last_surface >= max(self.SURFACE_SECONDS,
                                                                  (surface_cost or 0.0) / self.SURFACE_SHARE):
                surface_cost = self._emit_surface(job)
                last_surface = time.perf_counter()
        history = tr.history
        if job.cancelled:   # nobody will draw them; the window waits for this thread to end
            return history
        self._send_means(history, job)
        self._send_scores(job, force=True)
        if job.full_loss and full["last"] != tr.step and tr.step > 0 and (not job.stop_requested or (
                full["cost"] <= self.SURFACE_SECONDS if full["cost"] is not None
                else len(job.train_X) * tr.run_state.theta.size <= self.QUICK_FULL_LOSS_MACS)):
            # where the job ends: a step, the run's end, or (when quick) a pause or stop
            self._measure_full_loss(job, full, forced=True)
        if job.grid is not None and tr.step > 0 and (not job.stop_requested or (
                surface_cost <= self.SURFACE_SECONDS if surface_cost is not None
                else len(job.grid) * tr.run_state.theta.size <= self.QUICK_SURFACE_MACS)):
            self._emit_surface(job, stoppable=False)   # where the job ends (after a stop: when it is quick)
        if stepping and tr.step == target:
            self._emit_step(job, before)
        return history

    def _send_means(self, history, job):
        """The means of the epochs finished since the last call (the library's ``History.epoch_loss``):
        O(those epochs), never the whole list again (a run of a few records may have a million)."""
        done = history.n_steps // job.plan.steps_per_epoch
        ref, sent = self._means_sent
        if ref is None or ref() is not job.trainer:   # (the object, not its id: a new trainer may reuse an old one's)
            sent = 0
        if done > sent:
            t0 = time.perf_counter()
            means = history.finished_epoch_loss(sent)[:done - sent]
            self._means_sent = (weakref.ref(job.trainer), sent + len(means))
            if len(means):
                self.epochMeans.emit(sent, means)
            self._means_cost = time.perf_counter() - t0

    def _send_scores(self, job, force=False):
        """The last finished epoch's metrics (``last_epoch_scores``, O(1)) when epochs finished since the last
        sending, or ``force`` (where a job ends)."""
        n, logs = last_epoch_scores(job.trainer)
        ref, sent = self._scores_sent
        if force or ref is None or ref() is not job.trainer or n != sent:
            self._scores_sent = (weakref.ref(job.trainer), n)
            self.epochScores.emit(n, logs)

    # ------------------------------------------------------------------ the full-loss line

    def _full_state(self, job):
        key = id(job.trainer)
        st = self._full.get(key)
        if st is None or st["trainer"]() is not job.trainer:
            lesson = job.plan.total_steps <= self.LESSON_STEPS
            st = {"trainer": weakref.ref(job.trainer), "every": 1 if lesson else job.plan.steps_per_epoch,
                  "eval_seconds": 0.0, "train_seconds": 0.0,
                  "rate_seconds": 0.0, "rate_steps": 0, "last": -1, "overhead": float("inf"),
                  "cost": None}   # seconds the last full evaluation took (None: none finished yet)
            self._full = {key: st}
        return st

    def _next_full_point(self, job, st, after=None):
        """The next step count (> ``after``) at which to measure: every ``every`` steps and, while that is
        less than an epoch, each epoch end (else ``every`` is a whole number of epochs)."""
        s = job.trainer.step if after is None else after
        spe = job.plan.steps_per_epoch
        every = st["every"]
        nxt = (s // every + 1) * every
        return nxt if every >= spe else min(nxt, (s // spe + 1) * spe)

    def _measure_full_loss(self, job, st, forced=False):
        over = st["eval_seconds"] > self.FULL_LOSS_FREE + self.FULL_LOSS_SHARE * st["train_seconds"]
        if over and not forced:
            return
        t0 = time.perf_counter()
        loss = self._full_loss(job, stoppable=not job.stop_requested)   # (asked after a stop: it is quick)
        cost = time.perf_counter() - t0
        st["eval_seconds"] += cost
        if loss is None:   # abandoned for a stop request
            return
        st["last"] = job.trainer.step
        st["cost"] = cost
        if job.plan.total_steps <= self.LESSON_STEPS:
            st["every"] = 1          # a lesson-sized run gets a point after every step
        elif st["rate_steps"]:
            per_step = st["rate_seconds"] / st["rate_steps"]
            every = max(1, math.ceil(cost / (self.FULL_LOSS_SHARE * max(per_step, 1e-9))),
                        math.ceil(job.plan.total_steps / self.FULL_LOSS_POINTS))   # a bounded number of points
            spe = job.plan.steps_per_epoch
            st["every"] = every if every < spe else math.ceil(every / spe) * spe   # at epoch ends then
        self.fullLoss.emit(job.trainer.step, float(loss))

    def _full_loss(self, job, stoppable=True):
        """``trainer.evaluate``'s loss on all training records, a block of rows at a time (about FULL_LOSS_MACS
        each), the blocks' mean losses weighted by their rows; None when a stop request (when ``stoppable``)
        abandoned it between blocks."""
        tr, X, y = job.trainer, job.train_X, job.train_y
        n = len(X)
        rows = max(1, int(self.FULL_LOSS_MACS // max(tr.run_state.theta.size, 1)))
        if rows >= n:
            return training_loss(tr, X, y)   # one block: evaluate's own value
        total = 0.0
        for lo in range(0, n, rows):
            if stoppable and job.stop_requested:
                return None
            hi = min(lo + rows, n)
            total += training_loss(tr, X[lo:hi], y[lo:hi]) * (hi - lo)
        return total / n

    # ------------------------------------------------------------------ one stepped batch

    @staticmethod
    def _params(tr):
        try:
            return _flat(tr.get_params())
        except fb.NotFittedError:
            return None   # before the run's first step the params do not exist yet

    def _emit_step(self, job, before):
        tr = job.trainer
        s = tr.step - 1                                  # the 0-based index of the step just done
        h = tr.history
        idx = batch_records(job.plan, job.seed, job.shuffle, s)
        after = self._params(tr)
        loss_after = training_loss(tr, job.train_X[idx], job.train_y[idx])   # (in the units of loss_before)
        spe = job.plan.steps_per_epoch
        self.stepped.emit({
            "step": s + 1, "epoch": s // spe + 1, "batch": s % spe + 1, "batches": spe,
            "batch_size": len(idx), "records": idx, "loss_before": float(h.loss[s]),
            # the rate the app set for this one-step call (History.learning_rate would expand every step's)
            "loss_after": loss_after, "learning_rate": float(tr.learning_rate),
            "update_norm": None if before is None else float(np.linalg.norm(after - before)),
            "param_norm": float(np.linalg.norm(after)),
        })

    def _emit_surface(self, job, stoppable=True):
        """The decision surface now, SURFACE_ROWS grid points at a time; a stop request (when ``stoppable``)
        abandons it between them. Returns the seconds it took (None when it was not drawn)."""
        if job.grid is None or job.trainer.step == 0:
            return None
        t0 = time.perf_counter()
        parts = []
        for lo in range(0, len(job.grid), self.SURFACE_ROWS):
            if stoppable and job.stop_requested:
                return None
            parts.append(job.trainer.predict_proba(job.grid[lo:lo + self.SURFACE_ROWS]))
        proba = np.concatenate(parts)
        self.surface.emit(job.trainer.step, proba.reshape(*job.grid_shape, proba.shape[1]))
        return time.perf_counter() - t0


_parked = []   # (thread, worker) still busy when their window closed: kept referenced until they end


def stop_thread(thread, worker, wait_seconds):
    """Quit ``thread``'s event loop and wait up to ``wait_seconds`` for it; True when it ended.

    A thread still busy then (one step too long to wait for) is parked: it and its worker stay
    referenced until it ends, because destroying a running QThread aborts the process, and the
    interpreter waits for it at exit (its stop flag is set, so at most the rest of one step).
    """
    thread.quit()
    if thread.wait(max(0, round(wait_seconds * 1000))):
        return True
    _parked.append((thread, worker))
    thread.finished.connect(_unpark)   # queued to the GUI thread, while its event loop still runs
    return False


def _unpark():
    _parked[:] = [(t, w) for t, w in _parked if t.isRunning()]


@atexit.register   # registered after PySide6's own exit handler, so it runs before the QApplication goes
def _wait_for_parked():
    while _parked:
        thread, _ = _parked.pop()
        thread.wait()   # releases the GIL: the thread finishes its step and returns


def start_worker_thread():
    """A :class:`TrainingWorker` moved to a new, started QThread: ``(thread, worker)``."""
    thread = QThread()
    thread.setObjectName("trainingThread")
    worker = TrainingWorker()
    worker.moveToThread(thread)
    thread.start()
    return thread, worker
