"""The run controller's state machine, without a window: a fake trainer and a fake worker."""
import pytest

import fastbatch as fb
from fastbatch_gui.run_controller import IDLE, PAUSED, RUNNING, RunController


class FakeTrainer:
    """Just what the controller reads: step, finished, learning_rate."""

    def __init__(self, plan, learning_rate=0.1):
        self.plan_ = plan
        self.step = 0
        self.learning_rate = learning_rate

    @property
    def finished(self):
        return self.step >= self.plan_.total_steps


class FakeJob:
    def __init__(self, trainer, steps):
        self.trainer, self.steps, self.stop_requested = trainer, steps, False

    def request_stop(self):
        self.stop_requested = True


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def rig():
    """A controller whose jobs are kept in ``rig.jobs``; ``rig.finish(n)`` plays the worker."""
    class Rig:
        pass
    r = Rig()
    r.plan = fb.plan(1000, 64, 5)      # 16 steps per epoch, 80 steps
    r.jobs, r.events, r.fail = [], [], None
    r.clock = Clock()

    def make_run():
        if r.fail:
            raise r.fail
        return FakeTrainer(r.plan), r.plan

    def launch(trainer, steps):
        job = FakeJob(trainer, steps)
        r.jobs.append(job)
        return job

    r.c = RunController(make_run, launch, clock=r.clock)
    r.c.stateChanged.connect(lambda s: r.events.append(("state", s)))
    r.c.runEnded.connect(lambda how: r.events.append(("ended", how)))
    r.c.rateChanged.connect(lambda s, lr: r.events.append(("rate", s, lr)))

    def finish(steps=None):
        """The worker trains the newest job (``steps``, default what it asked for) and returns."""
        job = r.jobs[-1]
        tr = job.trainer
        n = steps if steps is not None else (job.steps or tr.plan_.total_steps - tr.step)
        tr.step = min(tr.step + n, tr.plan_.total_steps)
        r.c.fit_returned()
    r.finish = finish
    return r


def test_start_runs_to_the_end(rig):
    c = rig.c
    assert c.state == IDLE and c.can("start") and not c.can("stop") and not c.can("reset")
    assert c.start()
    assert c.state == RUNNING and rig.jobs[-1].steps is None
    assert not c.can("start") and not c.can("step") and c.can("stop") and not c.can("edit_rate")
    rig.clock.t += 2.0
    rig.finish()
    assert c.state == IDLE and c.ended == "finished" and c.status_word() == "done"
    assert rig.events[-1] == ("ended", "finished")
    assert c.elapsed() == pytest.approx(2.0)
    assert c.can("reset") and c.can("export") and c.can("start")


def test_step_batch_then_pause_state_then_step_epoch(rig):
    c = rig.c
    assert c.step_batch()
    assert rig.jobs[-1].steps == 1
    rig.finish()
    assert c.state == PAUSED and c.status_word() == "paused"
    assert c.can("pause") and c.can("step") and c.can("stop") and c.can("edit_rate") and not c.can("start")
    assert not c.can("edit_settings")
    c.step_epoch()
    assert rig.jobs[-1].steps == 15       # to the end of epoch 1
    rig.finish()
    assert c.trainer.step == 16
    c.step_epoch()
    assert rig.jobs[-1].steps == 16       # a whole epoch


def test_paused_time_is_not_counted(rig):
    c = rig.c
    c.step_batch()
    rig.clock.t += 1.0
    rig.finish()
    rig.clock.t += 50.0                   # paused
    assert c.elapsed() == pytest.approx(1.0)
    c.pause_or_resume()                   # Resume
    assert c.state == RUNNING
    rig.clock.t += 0.5
    assert c.elapsed() == pytest.approx(1.5)


def test_pause_asks_the_job_to_stop_and_the_run_goes_on_later(rig):
    c = rig.c
    c.start()
    job = rig.jobs[-1]
    c.pause_or_resume()
    assert job.stop_requested and c.state == RUNNING   # until the fit returns
    rig.finish(10)
    assert c.state == PAUSED and c.trainer.step == 10
    c.pause_or_resume()
    assert c.state == RUNNING and rig.jobs[-1].steps is None
    rig.finish()
    assert c.ended == "finished"


def test_stop_while_running_and_while_paused(rig):
    c = rig.c
    c.start()
    c.stop()
    assert rig.jobs[-1].stop_requested
    rig.finish(3)
    assert c.state == IDLE and c.ended == "stopped" and c.trainer.step == 3
    c.reset()
    c.step_batch()
    rig.finish()
    c.stop()                               # paused: ends at once
    assert c.state == IDLE and c.ended == "stopped" and c.status_word() == "stopped"


def test_a_stop_that_arrives_after_the_last_step_still_finishes(rig):
    c = rig.c
    c.start()
    c.stop()
    rig.finish()                           # the run ended before the stop took effect
    assert c.ended == "finished"


def test_reset_discards_the_run_but_not_while_training(rig):
    c = rig.c
    assert not c.reset()                   # nothing to discard
    c.start()
    assert not c.reset() and c.trainer is not None
    rig.finish(5)
    assert c.reset()
    assert c.trainer is None and c.plan is None and c.state == IDLE and c.ended is None
    assert c.elapsed() == 0.0 and not c.can("reset")


def test_error_ends_the_run_and_keeps_the_exception(rig):
    c = rig.c
    c.start()
    exc = fb.DivergenceError(7, 0, 7, 10.0, "the loss")
    c.errored(exc)
    assert c.state == IDLE and c.ended == "errored" and c.error is exc and c.status_word() == "failed"
    assert rig.events[-1] == ("ended", "errored")


def test_a_launch_that_raises_never_leaves_a_job_less_running_state(rig):
    c = rig.c
    assert c.step_batch()
    rig.finish()
    assert c.state == PAUSED
    real = c._launch_fn
    c._launch_fn = lambda trainer, steps: [][0]        # what a data file changed meanwhile once raised
    assert not c.pause_or_resume()                     # Resume
    assert c.state == PAUSED and c.job is None and isinstance(c.error, IndexError)
    assert not c.step_batch() and c.state == PAUSED
    assert c.can("stop") and c.can("reset") and c.can("step")
    c.stop()                                           # no job to ask: it ends at once
    assert c.state == IDLE and c.ended == "stopped"
    c.reset()
    discarded = []
    c.runDiscarded.connect(lambda: discarded.append(c.state))
    assert not c.start()                               # a new run whose first launch fails is discarded
    assert c.state == IDLE and c.trainer is None and c.job is None and isinstance(c.error, IndexError)
    assert discarded == [IDLE] and not c.can("reset") and c.can("start") and c.can("edit_settings")
    c._launch_fn = real
    assert c.start() and c.state == RUNNING


def test_a_start_whose_slot_raises_is_undone_whole(rig):
    c = rig.c
    fail = {"on": RUNNING}

    def slot(state):   # a window slot that fails on the way to running (once: OverflowError in a progress bar)
        if state == fail["on"]:
            fail["on"] = None
            raise OverflowError("a count beyond a C int")
    c.stateChanged.connect(slot)
    assert not c.start()
    assert c.state == IDLE and c.trainer is None and c.job is None and not rig.jobs   # no job was ever handed over
    assert isinstance(c.error, OverflowError) and c.can("start") and not c.can("stop") and not c.can("pause")
    c.stop()                                           # nothing to stop: no AttributeError on a missing job
    assert c.start() and c.state == RUNNING and len(rig.jobs) == 1
    rig.finish(3)
    fail["on"] = RUNNING                               # a resume that fails the same way stays paused
    assert not c.pause_or_resume() and c.state == PAUSED and c.trainer.step == 3 and len(rig.jobs) == 1
    c.runStarted.connect(lambda trainer: [][0])        # a failing runStarted slot: the new run is discarded
    c.stop()
    assert c.reset() and not c.step_batch() and c.trainer is None and c.state == IDLE


def test_invalid_settings_start_nothing(rig):
    c = rig.c
    rig.fail = ValueError("batch_size must be >= 1, got 0")
    assert not c.start() and not c.step_batch() and not c.step_epoch()
    assert c.state == IDLE and c.trainer is None and not rig.jobs
    assert isinstance(c.error, ValueError)
    assert not c.can("start", settings_ok=False) and not c.can("step", settings_ok=False)


def test_rate_change_applies_from_the_next_step(rig):
    c = rig.c
    c.step_batch()
    rig.finish()
    c.set_learning_rate(0.05)
    assert c.trainer.learning_rate == 0.1  # not before the next fit call
    c.step_batch()
    assert c.trainer.learning_rate == 0.05
    assert ("rate", 1, 0.05) in rig.events
    rig.finish()
    c.set_learning_rate(0.05)              # unchanged: no marker
    c.step_batch()
    assert [e for e in rig.events if e[0] == "rate"] == [("rate", 1, 0.05)]


def test_steps_per_second_from_progress(rig):
    c = rig.c
    c.start()
    for i in range(5):
        rig.clock.t += 0.1
        c.progressed(100 * (i + 1))
    assert c.steps_per_second == pytest.approx(1000.0)


def test_unknown_action_is_a_value_error(rig):
    with pytest.raises(ValueError, match="action must be one of"):
        rig.c.can("jump")


def test_a_finished_run_continues_when_epochs_are_raised(rig):
    c = rig.c
    c.start()
    rig.finish()
    assert c.ended == "finished"
    more = fb.plan(1000, 64, 8)
    assert not c.extend(5, rig.plan)             # not more epochs
    rig.plan = more                              # what the fake trainer's new budget becomes
    c.trainer.plan_ = more
    assert c.extend(8, more)
    assert c.state == RUNNING and c.plan is more and c.trainer.epochs == 8 and rig.jobs[-1].steps is None
    rig.finish()
    assert c.ended == "finished" and c.trainer.step == 128
    c.reset()
    assert not c.extend(10, more)                 # nothing to continue


def test_a_rate_change_before_the_first_step_is_reported_too(rig):
    # paused at step 0 (a pause that won the race with the first step), then a new rate: the run's rate is it
    c = rig.c
    c.start()
    c.pause_or_resume()
    rig.finish(0)
    assert c.state == PAUSED and c.trainer.step == 0
    c.set_learning_rate(0.01)
    c.pause_or_resume()
    assert ("rate", 0, 0.01) in rig.events and c.trainer.learning_rate == 0.01



def test_pause_pressed_after_stop_leaves_the_run_stopped(rig):
    c = rig.c
    c.start()
    c.stop()                                           # the fit call has not returned yet
    assert c.state == RUNNING and c.stopping and not c.can("pause") and rig.jobs[-1].stop_requested
    assert rig.events[-1] == ("state", RUNNING)        # (the window redraws its buttons: Pause goes off)
    c.pause_or_resume()                                # a click that got through: Stop wins
    rig.finish(5)
    assert c.state == IDLE and c.ended == "stopped" and not c.can("pause") and c.can("start")
    assert rig.events[-1] == ("ended", "stopped")
    c.reset()
    c.start()
    c.pause_or_resume()                                # Pause, then Stop before the fit returns: stopped too
    c.stop()
    rig.finish(5)
    assert c.state == IDLE and c.ended == "stopped"
