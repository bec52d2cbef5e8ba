"""Learning-rate schedules, validation, early stopping and callbacks on the Trainer."""
import os
import tempfile

import numpy as np
import pytest

import fastbatch as fb
from helpers import SEED_RUN
from fastbatch import schedules


def test_schedule_factors():
    steps = np.arange(40)
    assert np.all(schedules.Constant().factors(steps, 10, 40) == 1)
    f = schedules.StepDecay(step_epochs=2, gamma=0.5).factors(steps, 10, 40)
    assert list(f[[0, 19, 20, 39]]) == [1, 1, 0.5, 0.5]
    f = schedules.Exponential(gamma=0.9).factors(steps, 10, 40)
    assert f[10] == pytest.approx(0.9) and f[39] == pytest.approx(0.9 ** 3)
    f = schedules.Cosine(min_factor=0.1).factors(steps, 10, 40)
    assert f[0] == pytest.approx(1) and f[-1] == pytest.approx(0.1) and np.all(np.diff(f) <= 0)
    f = schedules.Constant(warmup_steps=4).factors(steps, 10, 40)
    assert list(f[:5]) == [0.25, 0.5, 0.75, 1, 1]


def test_plateau_reduces_after_patience():
    s = schedules.ReduceOnPlateau(factor=0.5, patience=2)
    for metric in [1.0, 0.9, 0.95, 0.96]:
        s.on_epoch_end(metric)
    assert s.factors([0], 10, 10)[0] == 0.5


@pytest.mark.parametrize("spec", ["bogus", {"name": "step", "gamma": -1}, {"name": "cosine", "min_factor": 2}])
def test_bad_schedules(spec):
    with pytest.raises((ValueError, TypeError), match="^lr_schedule"):   # the error names the parameter
        fb.Trainer(lr_schedule=spec)


def test_every_step_records_its_rate(seed_data):
    X, y = seed_data
    h = fb.Trainer(**{**SEED_RUN, "learning_rate": 0.1, "epochs": 3}, lr_schedule="cosine", warmup_steps=10).fit(X, y)
    expect = 0.1 * schedules.Cosine(warmup_steps=10).factors(np.arange(48), 16, 48)
    np.testing.assert_allclose(h.learning_rate, expect)
    # and the kernel used them: the same run on the numpy reference gives the same losses
    hn = fb.Trainer(**{**SEED_RUN, "learning_rate": 0.1, "epochs": 3}, lr_schedule="cosine", warmup_steps=10,
                    backend="numpy").fit(X, y)
    np.testing.assert_allclose(h.loss, hn.loss, rtol=1e-5)
    flat = fb.Trainer(**{**SEED_RUN, "learning_rate": 0.1, "epochs": 3}).fit(X, y)
    assert not np.allclose(flat.loss[1:], h.loss[1:])


def test_validation_split_is_seeded_and_random(seed_data):
    X, y = seed_data
    tr = fb.Trainer(**{**SEED_RUN, "epochs": 3}, validation_split=0.2)
    h = tr.fit(X, y)
    assert h.n_records == 800 and h.steps_per_epoch == 13
    assert len(h.val_loss) == 3 and len(h.val_accuracy) == 3
    assert np.all(np.isfinite(h.val_loss)) and np.all((h.val_accuracy >= 0) & (h.val_accuracy <= 1))
    # not the last records: the held-out rows are spread over the data
    from fastbatch._data import split_indices
    held = np.asarray(X, np.float32)[split_indices(len(X), 0.2, 0)[1]]
    rows = {tuple(r) for r in np.asarray(X, np.float32)[-200:]}
    assert sum(tuple(r) in rows for r in held) < 120
    assert np.array_equal(fb.Trainer(**{**SEED_RUN, "epochs": 3}, validation_split=0.2).fit(X, y).val_loss, h.val_loss)


def test_validation_data_matches_evaluate(seed_data):
    X, y = seed_data
    tr = fb.Trainer(epochs=2)
    h = tr.fit(X[:800], y[:800], validation_data=(X[800:], y[800:]))
    assert h.val_loss[-1] == pytest.approx(tr.evaluate(X[800:], y[800:])["loss"])
    with pytest.raises(ValueError, match="features"):
        fb.Trainer().fit(X, y, validation_data=(X[:, :3], y))


def test_early_stopping_restores_the_best_params():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20))
    y = rng.integers(0, 2, 60)            # noise: validation loss soon rises
    Xv = rng.normal(size=(200, 20))
    yv = rng.integers(0, 2, 200)
    tr = fb.Trainer(hidden=(64,), optimizer="adam", learning_rate=0.02, batch_size=8, epochs=200, patience=3)
    h = tr.fit(X, y, validation_data=(Xv, yv))
    assert tr.finished and h.n_steps < 200 * 8
    best = int(np.argmin(h.val_loss))
    assert len(h.val_loss) == best + 4     # stopped `patience` epochs after the best
    assert tr.evaluate(Xv, yv)["loss"] == pytest.approx(h.val_loss[best], rel=1e-5)


def test_patience_never_compares_a_validation_loss_with_a_training_loss():
    # validation on the first calls only: its best (a noisy validation set's loss, high) is not the bar for the
    # training losses of later calls (low), nor the other way round; the watched metric's count starts again
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 2, 60)
    Xv, yv = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
    tr = fb.Trainer(hidden=(16,), learning_rate=0.01, batch_size=60, epochs=100, patience=2, shuffle=False)
    tr.fit(X, y, validation_data=(Xv, yv), steps=3)
    best = tr._state.best
    assert best["validated"] and best["metric"] == min(tr.history.val_loss)
    tr.fit(X, y, steps=1)                  # a training loss now: the count starts at this epoch
    assert not tr._state.best["validated"] and tr._state.best["epoch"] == 3
    assert tr._state.best["metric"] == tr.history.epoch_loss[3]
    tr.fit(X, y, steps=5)
    assert not tr.finished                 # the training loss keeps falling: no early stop
    tr.fit(X, y, validation_data=(Xv, yv), steps=1)
    assert tr._state.best["validated"] and tr._state.best["epoch"] == 9
    # a checkpoint keeps which metric the best was of
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "run.fbz")
        tr.save(path)
        assert fb.Trainer.load(path)._state.best["validated"]


def test_validation_added_later_is_not_held_to_the_training_losses_best():
    rng = np.random.default_rng(2)
    X, Xv = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    y, yv = (X[:, 0] + X[:, 1] > 0).astype(int), (Xv[:, 0] + Xv[:, 1] > 0).astype(int)
    tr = fb.Trainer(hidden=(16,), optimizer="sgd", learning_rate=0.1, batch_size=400, epochs=1000, patience=2, seed=3)
    tr.fit(X, y, steps=30)                 # training losses only: a low best
    h = tr.fit(X, y, validation_data=(Xv, yv), steps=4)
    val = h.val_loss[30:]                               # (the epochs before had no validation: NaN)
    assert np.isnan(h.val_loss[:30]).all() and min(val) > min(h.epoch_loss)  # each above that best...
    assert np.all(np.diff(val) < 0)                     # ...and falling: no early stop
    assert not tr.finished and h.n_steps == 34


def test_val_loss_stays_aligned_with_the_epochs_when_validation_comes_and_goes():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 2, 30)
    Xv, yv = rng.normal(size=(20, 4)), rng.integers(0, 2, 20)
    tr = fb.Trainer(hidden=(8,), batch_size=10, epochs=10)
    tr.fit(X, y, steps=6)                                   # epochs 0, 1: no validation
    tr.fit(X, y, validation_data=(Xv, yv), steps=3)         # epoch 2: validated
    h = tr.fit(X, y, steps=6)                               # epochs 3, 4: none
    assert len(h.val_loss) == len(h.val_accuracy) == len(h.epoch_loss) == 5
    assert np.isnan(h.val_loss[[0, 1, 3, 4]]).all() and np.isfinite(h.val_loss[2])
    np.testing.assert_array_equal(h.val_loss, h.metrics["val_loss"])
    np.testing.assert_array_equal(h.val_loss_since(2), h.val_loss[2:])
    np.testing.assert_array_equal(h.val_loss_since(4), h.val_loss[4:])
    assert len(h.val_loss_since(7)) == 0
    tr2 = fb.Trainer(hidden=(8,), batch_size=10, epochs=10)
    assert len(tr2.fit(X, y, steps=6).val_loss) == 0         # no epoch validated: empty, as before


def test_a_new_epoch_budget_continues_an_early_stopped_run_with_patience_counted_afresh():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 20)), rng.integers(0, 2, 60)        # noise: validation loss soon rises
    Xv, yv = rng.normal(size=(200, 20)), rng.integers(0, 2, 200)
    tr = fb.Trainer(hidden=(64,), optimizer="adam", learning_rate=0.02, batch_size=8, epochs=200, patience=3)
    done = len(tr.fit(X, y, validation_data=(Xv, yv)).epoch_loss)
    assert tr.finished and tr._state.stopped_early and done < 200
    with pytest.raises(ValueError):                                   # a refused call changes nothing
        tr.fit(X[:, :3], y, validation_data=(Xv, yv), epochs=300)
    assert tr.finished and tr._state.best is not None
    h = tr.fit(X, y, validation_data=(Xv, yv), epochs=done + 50)      # (below the 200 first asked for)
    more = len(h.epoch_loss) - done
    assert more >= 4 and tr._state.stopped_early                     # (it stopped after one epoch: the old best)
    assert more == 4 + int(np.argmin(h.val_loss[done:]))             # patience counted from the new start


def test_callbacks_at_each_level_and_stopping(seed_data):
    X, y = seed_data
    events = []

    class Spy(fb.Callback):
        def on_run_begin(self, trainer):
            events.append("begin")

        def on_epoch_end(self, trainer, epoch, logs):
            events.append(("epoch", epoch, round(logs["loss"], 6)))
            return epoch == 2

        def on_run_end(self, trainer):
            events.append("end")

    tr = fb.Trainer(**SEED_RUN)
    h = tr.fit(X, y, callbacks=[Spy()])
    assert events[0] == "begin" and [e[1] for e in events[1:]] == [0, 1, 2]
    assert h.n_steps == 48 and not tr.finished and "end" not in events
    assert events[1][2] == round(h.epoch_loss[0], 6)
    tr.fit(X, y)
    assert tr.finished and h.n_steps == 48


def test_step_callback_sees_every_step(seed_data):
    X, y = seed_data
    seen = []
    cb = fb.LambdaCallback(on_step_end=lambda tr, step, loss: seen.append((step, loss)))
    h = fb.Trainer(**{**SEED_RUN, "epochs": 2}).fit(X, y, callbacks=[cb])
    assert [s for s, _ in seen] == list(range(32))
    assert np.array_equal([l for _, l in seen], h.loss)
    with pytest.raises(TypeError):
        fb.LambdaCallback(on_step_end=3)


@pytest.mark.parametrize("form", ["name", "dict", "dict with its warm-up", "object", "assigned later"])
def test_the_warm_up_applies_whatever_form_the_schedule_is_given_in(form):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    kw = dict(hidden=(4,), batch_size=10, epochs=2, learning_rate=0.1)
    ref = fb.Trainer(lr_schedule="cosine", warmup_steps=5, **kw)
    schedule = {"name": "cosine", "dict": {"name": "cosine"}, "dict with its warm-up": {"name": "cosine", "warmup_steps": 5},
                "object": fb.schedules.Cosine(warmup_steps=5), "assigned later": {"name": "cosine"}}[form]
    given = {} if form in ("dict with its warm-up", "object", "assigned later") else {"warmup_steps": 5}
    tr = fb.Trainer(lr_schedule=schedule, **given, **kw)
    if form == "assigned later":
        tr.warmup_steps = 5
    assert tr.warmup_steps == 5  # the parameter says what the run does
    assert np.array_equal(tr.fit(X, y).learning_rate, ref.fit(X, y).learning_rate)
    assert tr.history.learning_rate[0] == pytest.approx(0.1 / 5)


def test_two_different_warm_ups_are_refused():
    with pytest.raises(ValueError, match="warmup_steps=3 but warmup_steps=5"):
        fb.Trainer(lr_schedule={"name": "step", "warmup_steps": 3}, warmup_steps=5)
