"""The training worker: a QObject on its own QThread that runs ``Trainer.fit`` and reports by signals.

Widgets never call the trainer while it trains; the worker does, and it is also the one
that evaluates the decision surface (between kernel calls, so the params are consistent).
"""
import time
import traceback
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot


@dataclass
class Job:
    """One ``fit`` call: ``steps`` more steps (None: to the end of the run) of ``trainer`` on (X, y)."""

    trainer: object
    X: np.ndarray
    y: np.ndarray
    steps: int | None = None
    grid: np.ndarray | None = None       # points at which to evaluate predict_proba, or None
    grid_shape: tuple | None = None      # (rows, cols) of the surface image
    stop_requested: bool = False

    def request_stop(self):
        """Stop this job within one step, even if the worker has not begun it yet."""
        self.stop_requested = True
        self.trainer.stop()  # a no-op unless fit is running; the worker checks the flag too


class TrainingWorker(QObject):
    """Runs one :class:`Job` at a time; ``Job.request_stop()`` may be called from any thread."""

    started = Signal()
    progress = Signal(object)          # History, at most every PROGRESS_SECONDS (and at epoch ends)
    surface = Signal(int, object)      # (steps done, probabilities of shape (rows, cols, classes))
    finished = Signal(object)          # History, when fit returns (run over, stopped or paused)
    errored = Signal(str)              # fit raised: the message (the traceback goes to stderr)

    PROGRESS_SECONDS = 0.03   # ~30 reports a second at most, however fast the steps are
    SURFACE_SECONDS = 0.25    # the surface is evaluated at epoch ends, at most this often

    def __init__(self):
        super().__init__()
        self._job = None
        self._last_progress = 0.0
        self._last_surface = -1.0
        self._surface_epoch = -1

    @Slot(object)
    def run(self, job):
        """Train: emits started, progress..., surface..., then finished or errored."""
        self._job = job
        self._last_progress = 0.0
        self.started.emit()
        try:
            if job.stop_requested:  # stopped before it began
                history = job.trainer.history
            else:
                history = job.trainer.fit(job.X, job.y, steps=job.steps, on_progress=self._on_progress)
                self._emit_surface(history.n_steps)
        except Exception as exc:  # reported, never a silent thread death
            traceback.print_exc()
            self.errored.emit(f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._job = None
        self.finished.emit(history)

    # runs on the worker thread, between kernel calls
    def _on_progress(self, history):
        if self._job.stop_requested:  # asked between the check in run() and fit taking its lock
            self._job.trainer.stop()
        now = time.perf_counter()
        n, spe = history.n_steps, history.steps_per_epoch
        epoch_end = spe and n and n % spe == 0
        if epoch_end and n // spe != self._surface_epoch and now - self._last_surface >= self.SURFACE_SECONDS:
            self._surface_epoch = n // spe
            self._emit_surface(n)
        if now - self._last_progress >= self.PROGRESS_SECONDS:
            self._last_progress = now
            self.progress.emit(history)

    def _emit_surface(self, n_steps):
        job = self._job
        if job is None or job.grid is None or n_steps == 0:
            return
        self._last_surface = time.perf_counter()
        proba = job.trainer.predict_proba(job.grid)
        self.surface.emit(n_steps, proba.reshape(*job.grid_shape, proba.shape[1]))


def start_worker_thread():
    """A :class:`TrainingWorker` moved to a new, started QThread: ``(thread, worker)``."""
    thread = QThread()
    thread.setObjectName("trainingThread")
    worker = TrainingWorker()
    worker.moveToThread(thread)
    thread.start()
    return thread, worker
