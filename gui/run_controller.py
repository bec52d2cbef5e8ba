"""The run's state machine, without widgets: start, pause/resume, step a batch or an epoch, stop, reset.

    idle --start/step--> running --fit returns--> paused --resume/step--> running
    running --run over--> idle ("finished"), --stop--> idle ("stopped"), --error--> idle ("errored")

Starting is all or nothing: when anything raises while a new run is set up or its first fit call
handed over (a window slot included), the run is discarded (``runDiscarded``) and the controller
is idle again, with ``error`` saying why; it is never left running without a job.

The window turns buttons into these calls and draws what the controller says; the worker
tells it when a fit call returned (:meth:`fit_returned`) or raised (:meth:`errored`).
Nothing here imports Qt, so the rules are unit-tested without a window.
"""
import collections
import time
import traceback

IDLE, RUNNING, PAUSED = "idle", "running", "paused"


class Event:
    """A minimal signal: ``connect(fn)``, then ``emit(*args)`` calls every connected function."""

    def __init__(self):
        self._slots = []

    def connect(self, fn):
        self._slots.append(fn)

    def emit(self, *args):
        for fn in list(self._slots):
            fn(*args)


class RunController:
    """Owns the run: its trainer, its state, its clock and its measured rate.

    Parameters
    ----------
    make_run : callable() -> (Trainer, Plan)
        A new trainer for the current settings and the plan it will follow; raises
        ValueError / TypeError / OSError / ImportError when they are invalid (no run starts).
    launch : callable(trainer, steps) -> job
        Hands one fit call (``steps`` more steps, None: to the end) to the worker; the job
        returned has ``request_stop()``. When it raises (or a ``stateChanged`` slot does as the run
        goes to running), no job runs: the error is kept and the run goes back to paused, ends
        "errored" (a finished run continued), or, a new run that has trained nothing, is discarded.
    clock : callable() -> float, optional
        Seconds (``time.perf_counter``); tests pass a fake.
    """

    def __init__(self, make_run, launch, clock=time.perf_counter):
        self._make_run = make_run
        self._launch_fn = launch
        self._clock = clock
        self.state = IDLE
        self.trainer = None
        self.plan = None            # the run's fastbatch.Plan
        self.job = None
        self.ended = None           # how the last run ended: "finished", "stopped", "errored" (None: not ended)
        self.error = None           # the exception of the last failed start or fit
        self.learning_rate = None   # the rate the next fit call uses (None: the trainer's own)
        self._after_fit = None      # "pause" or "stop" once the user asked the running fit to return
        self._elapsed, self._t0 = 0.0, None
        self._samples = collections.deque()   # (seconds, steps done) over the last second of training
        self.steps_per_second = float("nan")
        self.stateChanged = Event()   # (state)
        self.runStarted = Event()     # (trainer), before its first fit call
        self.rateChanged = Event()    # (steps done, new rate): a rate change between fit calls
        self.runEnded = Event()       # ("finished" | "stopped" | "errored")
        self.runDiscarded = Event()   # () the run is gone: reset, or a new run whose start failed

    def __repr__(self):
        step = self.trainer.step if self.trainer is not None else 0
        return f"RunController({self.state}, step {step}, ended={self.ended!r})"

    # ------------------------------------------------------------------ what may be done now

    def can(self, action, settings_ok=True):
        """Whether a button is enabled: start, pause, step, stop, reset, export, edit_settings, edit_rate."""
        idle, running, paused = self.state == IDLE, self.state == RUNNING, self.state == PAUSED
        rules = {
            "start": idle and settings_ok,
            "pause": (running and not self.stopping) or paused,   # Pause, or Resume while paused; never after Stop
            "step": (idle and settings_ok) or paused,
            "stop": running or paused,
            "reset": not running and self.trainer is not None,
            "export": not running and self.trainer is not None and self.trainer.step > 0,
            "edit_settings": idle,
            "edit_rate": not running,
        }
        if action not in rules:
            raise ValueError(f"action must be one of {sorted(rules)}, got {action!r}")
        return rules[action]

    # ------------------------------------------------------------------ the buttons

    def start(self):
        """Start a new run (idle only); False when the settings could not make a trainer."""
        if self.state != IDLE or not self._new_run():
            return False
        return self._launch(None)

    def extend(self, epochs, plan, steps=None):
        """Continue a finished run to ``epochs`` epochs (more than it had), following ``plan``: ``steps`` more
        steps (Step 1 batch, Step 1 epoch), or None to its new end (Start)."""
        if self.state != IDLE or self.trainer is None or self.ended != "finished" or epochs <= self.plan.epochs:
            return False
        self.trainer.epochs = epochs     # the library extends the run's budget
        self.plan = plan
        self.ended = None
        return self._launch(steps)

    @property
    def stopping(self):
        """Stop was pressed and the running fit call has not returned yet."""
        return self.state == RUNNING and self._after_fit == "stop"

    def pause_or_resume(self):
        """Pause while running, resume while paused; False when the resume could not launch (see ``error``).
        A pause asked for after Stop does nothing: the run ends stopped."""
        if self.stopping:
            return True
        if self.state == RUNNING:
            self._after_fit = "pause"
            self.job.request_stop()
        elif self.state == PAUSED:
            return self._launch(None)
        return True

    def step_batch(self):
        """Train one step, starting a new run when none is in progress."""
        if self.state == IDLE and not self._new_run():
            return False
        if self.state in (IDLE, PAUSED):
            return self._launch(1)
        return False

    def step_epoch(self):
        """Train to the end of the current epoch, starting a new run when none is in progress."""
        if self.state == IDLE and not self._new_run():
            return False
        if self.state in (IDLE, PAUSED):
            spe = self.plan.steps_per_epoch
            return self._launch(spe - self.trainer.step % spe)
        return False

    def stop(self):
        """End the run: within one step while it trains, at once while paused."""
        if self.state == RUNNING:
            self._after_fit = "stop"
            self.job.request_stop()
            self.stateChanged.emit(self.state)   # (still running, but Pause is off from now on)
        elif self.state == PAUSED:
            self._end("stopped")

    def reset(self):
        """Discard the run (not while training); True when there was one."""
        if self.state == RUNNING or self.trainer is None:
            return False
        self._clear(None)
        self.runDiscarded.emit()
        self.stateChanged.emit(self.state)
        return True

    def _clear(self, error):
        """No run: idle, nothing ended, ``error`` kept (None, or why a start failed), the clock at zero."""
        self.trainer = self.plan = None
        self.job = None
        self.state = IDLE
        self.ended = None
        self.error = error
        self._elapsed, self._t0 = 0.0, None
        self._samples.clear()
        self.steps_per_second = float("nan")

    def set_learning_rate(self, rate):
        """The rate from the next step on (applied when the next fit call starts)."""
        self.learning_rate = float(rate)

    # ------------------------------------------------------------------ from the worker

    def fit_returned(self):
        """The worker's fit call returned: the run is over, stopped, or paused between steps."""
        if self.state != RUNNING:
            return
        self._stop_clock()
        self.job = None
        after, self._after_fit = self._after_fit, None
        if self.trainer.finished:
            self._end("finished")
        elif after == "stop":
            self._end("stopped")
        else:
            self.state = PAUSED
            self.stateChanged.emit(self.state)

    def errored(self, exc):
        """The worker's fit call raised ``exc``: the run ends (its steps so far stay)."""
        self._stop_clock()
        self.job = None
        self._after_fit = None
        self.error = exc
        self._end("errored")

    def progressed(self, steps_done):
        """Steps done so far (from the worker's progress): updates the measured steps/s."""
        now = self._clock()
        self._samples.append((now, steps_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > 1.0:
            self._samples.popleft()
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if t1 > t0 and s1 > s0:
            self.steps_per_second = (s1 - s0) / (t1 - t0)

    # ------------------------------------------------------------------ the clock

    def elapsed(self):
        """Seconds spent training in this run (paused time not counted)."""
        return self._elapsed + (self._clock() - self._t0 if self._t0 is not None else 0.0)

    def status_word(self):
        """What the status bar says: running, paused, done, stopped, failed or idle."""
        if self.state != IDLE:
            return self.state
        return {"finished": "done", "stopped": "stopped", "errored": "failed"}.get(self.ended, "idle")

    # ------------------------------------------------------------------ internals

    def _new_run(self):
        try:
            trainer, plan = self._make_run()
        except (ValueError, TypeError, OSError, ImportError) as exc:
            self.error = exc
            return False
        self.trainer, self.plan = trainer, plan
        self.error = None
        self.ended = None
        self.learning_rate = None
        self._elapsed, self._t0 = 0.0, None
        self._samples.clear()
        self.steps_per_second = float("nan")
        try:
            self.runStarted.emit(trainer)
        except Exception as exc:   # a slot failed half-way: no half-drawn run is left behind
            self._discard_failed_start(exc)
            return False
        return True

    def _launch(self, steps):
        """One fit call to the worker; False when the launch raised (the state is then never a job-less RUNNING)."""
        tr = self.trainer
        before = self.state
        if self.learning_rate is not None and self.learning_rate != tr.learning_rate:
            tr.learning_rate = self.learning_rate
            self.rateChanged.emit(tr.step, self.learning_rate)  # (at step 0 too: the run's rate is then this one)
        self._after_fit = None
        self._t0 = self._clock()
        self._samples.clear()
        self._samples.append((self._t0, tr.step))
        self.state = RUNNING
        try:   # the job is made last: when anything before it raises, no job runs
            self.stateChanged.emit(self.state)
            self.job = self._launch_fn(tr, steps)
        except Exception as exc:   # no job would ever report back: a RUNNING state here could not be left
            self._stop_clock()
            if before == PAUSED:   # the run's steps so far stay; it can be resumed, stopped or reset
                self.error = exc
                self.state = PAUSED
                _quietly(self.stateChanged.emit, self.state)
            elif tr.step == 0:     # a new run that never trained: gone, as if Start had not been pressed
                self._discard_failed_start(exc)
            else:                  # a finished run continued: it ends where it was
                self.error = exc
                self.state = IDLE
                self.ended = "errored"
                _quietly(self.stateChanged.emit, self.state)
                _quietly(self.runEnded.emit, "errored")
            return False
        return True

    def _discard_failed_start(self, exc):
        """A new run whose start raised ``exc``: the run is discarded and the controller idle, ``error`` = exc."""
        if not isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
            traceback.print_exception(exc)   # a bug, not a setting: its traceback for the report
        self._clear(exc)
        _quietly(self.runDiscarded.emit)
        _quietly(self.stateChanged.emit, self.state)

    def _stop_clock(self):
        if self._t0 is not None:
            self._elapsed += self._clock() - self._t0
            self._t0 = None

    def _end(self, how):
        self.state = IDLE
        self.ended = how
        self.stateChanged.emit(self.state)
        self.runEnded.emit(how)


def _quietly(fn, *args):
    """``fn(*args)`` while undoing a failed launch: a slot that raises again is reported on stderr, and the
    controller's state (already set) stands."""
    try:
        fn(*args)
    except Exception:
        traceback.print_exc()
