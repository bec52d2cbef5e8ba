"""The training worker called directly (no thread): chunks, stops, the full-loss schedule, a stepped batch."""
import types

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import datasets
from fastbatch_gui.worker import Job, TrainingWorker, batch_records


def make_job(steps=None, **kw):
    X, y = datasets.make("moons", 1000, 2, seed=0)
    tr = fb.Trainer(batch_size=10, epochs=3, learning_rate=0.1, optimizer="sgd")
    return Job(tr, X, y, steps, train_X=X, train_y=y, plan=fb.plan(1000, 10, 3), **kw)


def record_fit_steps(monkeypatch):
    """The ``steps`` of every Trainer.fit call from here on, in a list."""
    calls = []
    real = fb.Trainer.fit

    def fit(self, X, y, steps=None, **kw):
        calls.append(steps)
        return real(self, X, y, steps=steps, **kw)
    monkeypatch.setattr(fb.Trainer, "fit", fit)
    return calls


def test_batch_records_are_the_epochs_order():
    plan = fb.plan(100, 30, 2)
    assert np.array_equal(batch_records(plan, 5, True, 5), fb.epoch_order(100, 5, 1, True)[30:60])
    assert np.array_equal(batch_records(plan, 5, True, 3), fb.epoch_order(100, 5, 0, True)[90:100])


def test_trains_to_the_end_in_growing_chunks(qtbot, monkeypatch):
    job = make_job()
    calls = record_fit_steps(monkeypatch)
    w = TrainingWorker()
    with qtbot.waitSignal(w.finished) as blocker:
        w.run(job)
    assert job.trainer.step == 300 and blocker.args[0].n_steps == 300
    assert calls[:3] == [1, 4, 16]          # each call at most 4x the last, towards ~30 ms of steps


def test_each_job_starts_with_a_small_chunk(qtbot, monkeypatch):
    calls = record_fit_steps(monkeypatch)
    w = TrainingWorker()
    X, y = datasets.make("moons", 200, 2, seed=0)
    tr = fb.Trainer(batch_size=1, epochs=100, learning_rate=0.1, hidden=(4,))   # 20,000 fast steps
    with qtbot.waitSignal(w.finished, timeout=30_000):
        w.run(Job(tr, X, y, None, train_X=X, train_y=y, plan=fb.plan(200, 1, 100)))
    assert max(calls) > 64                   # the chunks grew in that job
    calls.clear()
    with qtbot.waitSignal(w.finished):       # a new job, maybe far slower a step: it starts small again
        w.run(make_job())
    assert calls[:3] == [1, 4, 16]


def test_a_chunk_cut_short_grows_the_next_from_the_steps_it_did(qtbot, monkeypatch):
    asked, done = [], []
    real = fb.Trainer.fit

    def fit(self, X, y, steps=None, **kw):   # each call cut short after half its steps (a pause would cut it)
        asked.append(steps)
        s0 = self.step
        history = real(self, X, y, steps=max(1, steps // 2), **kw)
        done.append(self.step - s0)
        return history
    monkeypatch.setattr(fb.Trainer, "fit", fit)
    w = TrainingWorker()
    with qtbot.waitSignal(w.finished):
        w.run(make_job())
    assert all(nxt <= 4 * d for nxt, d in zip(asked[1:], done))   # never 4x the steps asked and not done


def test_a_stop_before_the_job_begins_trains_nothing(qtbot):
    job = make_job()
    job.request_stop()
    w = TrainingWorker()
    with qtbot.waitSignal(w.finished):
        w.run(job)
    assert job.trainer.step == 0


def test_full_loss_points_for_a_long_run_are_spaced_and_epoch_aligned():
    w = TrainingWorker()
    job = types.SimpleNamespace(trainer=types.SimpleNamespace(step=0), plan=fb.plan(1000, 1, 5))
    st = {"every": 300}
    assert [w._next_full_point(job, st, after=s) for s in (0, 299, 300, 999)] == [300, 300, 600, 1000]
    st["every"] = 2000                       # two epochs: at every other epoch end
    assert [w._next_full_point(job, st, after=s) for s in (0, 2000)] == [2000, 4000]


def test_a_stepped_batch_is_reported(qtbot):
    job = make_job(steps=1)
    w = TrainingWorker()
    with qtbot.waitSignal(w.stepped) as blocker:
        w.run(job)
    info = blocker.args[0]
    assert (info["step"], info["epoch"], info["batch"], info["batch_size"]) == (1, 1, 1, 10)
    assert np.array_equal(info["records"], fb.epoch_order(1000, 0, 0)[:10])
    assert info["update_norm"] is None       # the params did not exist before the first step
    job.trainer.learning_rate = 0.05         # a new rate (set between calls, as the window does)
    with qtbot.waitSignal(w.stepped) as blocker:
        w.run(Job(job.trainer, job.X, job.y, 1, train_X=job.X, train_y=job.y, plan=job.plan))
    info = blocker.args[0]
    assert info["step"] == 2 and info["learning_rate"] == job.trainer.history.learning_rate[1] == 0.05


def test_epoch_means_are_sent_once_each_in_order(qtbot):
    job = make_job()
    w = TrainingWorker()
    w.SURFACE_SECONDS = 0.0                   # a check after every chunk
    sent = []
    w.epochMeans.connect(lambda start, means: sent.append((start, np.array(means))))
    with qtbot.waitSignal(w.finished):
        w.run(job)
    starts = [s for s, _ in sent]
    assert starts[0] == 0 and all(b == a + len(m) for (a, m), b in zip(sent, starts[1:]))   # only what is new
    assert np.array_equal(np.concatenate([m for _, m in sent]), job.trainer.history.epoch_loss)
    job2 = make_job()                         # a new trainer starts from its first epoch again
    sent.clear()
    with qtbot.waitSignal(w.finished):
        w.run(job2)
    assert sent[0][0] == 0


def test_full_loss_points_of_a_long_run_are_bounded(qtbot):
    X, y = datasets.make("moons", 20, 2, seed=0)
    tr = fb.Trainer(batch_size=1, epochs=500, learning_rate=0.1)
    job = Job(tr, X, y, None, train_X=X, train_y=y, plan=fb.plan(20, 1, 500), full_loss=True)
    w = TrainingWorker()
    w.FULL_LOSS_POINTS = 50
    w.FULL_LOSS_SHARE = 1.0                   # evaluation is cheap here: the cap is what spaces the points
    points = []
    w.fullLoss.connect(lambda step, loss: points.append(step))
    with qtbot.waitSignal(w.finished, timeout=30_000):
        w.run(job)
    assert tr.step == 10_000 and points[-1] == 10_000
    assert len(points) <= 50 + 10 and points == sorted(set(points))


def test_a_costly_surface_keeps_to_its_share_and_never_holds_up_a_stop(qtbot, monkeypatch):
    # a big network's decision surface (14,400 points) can take seconds: it may take SURFACE_SHARE of the time,
    # is abandoned between its parts when a stop comes, and a stopped job's last surface is drawn only when quick
    import threading
    import time
    real = fb.Trainer.predict_proba
    parts, stopped_at = [], []

    def slow(self, X):                      # 30 ms a part of the grid: a surface of 15 parts takes 0.45 s
        if len(X) > 64:
            time.sleep(0.03)
            parts.append(time.perf_counter())
        return real(self, X)
    monkeypatch.setattr(fb.Trainer, "predict_proba", slow)
    xs = np.linspace(-2, 2, 120)
    grid = np.array(np.meshgrid(xs, xs)).reshape(2, -1).T
    X, y = datasets.make("moons", 1000, 2, seed=0)
    tr = fb.Trainer(batch_size=1, epochs=100_000, learning_rate=0.01, optimizer="sgd", hidden=(8,))
    job = Job(tr, X, y, None, train_X=X, train_y=y, plan=fb.plan(1000, 1, 100_000), grid=grid,
              grid_shape=(120, 120))
    w = TrainingWorker()
    drawn = []
    w.surface.connect(lambda step, proba: drawn.append(step))
    timer = threading.Timer(3.0, lambda: (stopped_at.append(time.perf_counter()), job.request_stop()))
    t0 = time.perf_counter()
    timer.start()
    w.run(job)
    timer.join()
    assert drawn and tr.step > 0 and tr.step < tr.total_steps        # surfaces were drawn, and it stopped...
    # ...within their share: surfaces start SURFACE_SHARE of their cost apart (+ the one in progress)
    assert 0.03 * len(parts) <= (stopped_at[0] - t0) * w.SURFACE_SHARE * 1.5 + 0.45
    # a stop abandons the surface between parts; the stopped job's last surface (0.45 s: not quick) is not drawn
    assert sum(p > stopped_at[0] for p in parts) <= 1


def test_a_job_stopped_before_its_first_step_ends_cleanly_with_a_surface_to_draw(qtbot):
    # (it read the run's params to cost the surface while there was no run yet: the job errored)
    xs = np.linspace(-2, 2, 20)
    grid = np.array(np.meshgrid(xs, xs)).reshape(2, -1).T
    job = make_job(grid=grid, grid_shape=(20, 20))
    job.request_stop()
    w = TrainingWorker()
    errors = []
    w.errored.connect(errors.append)
    with qtbot.waitSignal(w.finished):
        w.run(job)
    assert not errors and job.trainer.step == 0


def slow_evaluate(monkeypatch, seconds_per_record):
    """Trainer.evaluate taking ``seconds_per_record`` a record (a big network's full pass takes tens of seconds)."""
    import time
    real = fb.Trainer.evaluate

    def slow(self, X, y, **kw):
        time.sleep(seconds_per_record * len(X))
        return real(self, X, y, **kw)
    monkeypatch.setattr(fb.Trainer, "evaluate", slow)


def test_a_stop_or_pause_never_waits_for_the_loss_on_all_training_records(qtbot, monkeypatch):
    import threading
    import time
    slow_evaluate(monkeypatch, 0.003)            # all 1,000 training records: 3 s
    X, y = datasets.make("moons", 1000, 2, seed=0)
    tr = fb.Trainer(batch_size=1, epochs=100_000, learning_rate=0.01, optimizer="sgd", hidden=(8,))
    job = Job(tr, X, y, None, train_X=X, train_y=y, plan=fb.plan(1000, 1, 100_000), full_loss=True)
    w = TrainingWorker()
    w.FULL_LOSS_MACS = 42 * 50                   # 50 records a block (the network has 42 params): 0.15 s each
    w.QUICK_FULL_LOSS_MACS = 0                   # (the sleep makes this small network slow: its size would say quick)
    points = []
    w.fullLoss.connect(lambda step, loss: points.append(step))
    stopped_at = []
    timer = threading.Timer(1.0, lambda: (stopped_at.append(time.perf_counter()), job.request_stop()))
    timer.start()                                # the first point (after an epoch's 1,000 steps) is under way then
    w.run(job)
    ended = time.perf_counter()
    timer.join()
    assert 0 < tr.step < tr.total_steps and not points
    assert ended - stopped_at[0] < 0.5           # a block and a step, not the rest of the evaluation (2 s)
    # a stopped job's last point is measured only when it is known to be quick: not a 3 s pass
    job = Job(tr, X, y, None, train_X=X, train_y=y, plan=job.plan, full_loss=True)
    job.request_stop()
    t0 = time.perf_counter()
    w.run(job)
    assert time.perf_counter() - t0 < 0.5 and not points


def test_the_loss_on_all_training_records_in_blocks_is_evaluates(qtbot):
    X, y = datasets.make("moons", 1000, 2, seed=0)
    tr = fb.Trainer(batch_size=10, epochs=3, learning_rate=0.1, optimizer="sgd", hidden=(8,))
    job = Job(tr, X, y, 150, train_X=X, train_y=y, plan=fb.plan(1000, 10, 3), full_loss=True)
    w = TrainingWorker()
    w.FULL_LOSS_MACS = 42 * 64                   # blocks of 64 records (the last of 40)
    points = []
    w.fullLoss.connect(lambda step, loss: points.append((step, loss)))
    w.run(job)
    assert points and points[-1][0] == 150
    # the blocks' means weighted by their records: evaluate's mean within float rounding (float64 sums of
    # float32 losses: 1e-12 relative)
    assert points[-1][1] == pytest.approx(tr.evaluate(X, y)["loss"], rel=1e-12)
