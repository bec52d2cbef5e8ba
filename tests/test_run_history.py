"""The run's history in little memory: losses in the run's dtype, rates as runs of equal rates,
training accuracy from per-epoch sums. Same numbers as before, and through checkpoints."""
import json
import pickle

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import checkpoint
from fastbatch._run import RateLog
from helpers import make_data, run_interrupted_before_closing


def test_rate_log_records_runs_and_gives_every_step():
    log = RateLog()
    log.record(0, np.full(5, 0.1))
    log.record(5, np.full(3, 0.1))            # the same rate goes on: no new run
    log.record(8, np.array([0.1, 0.2, 0.2, 0.3]))
    log.record(12, np.array([0.3]))
    assert log.n == 3
    assert np.array_equal(log.per_step(13), [0.1] * 9 + [0.2, 0.2] + [0.3] * 2)
    assert np.array_equal(log.per_step(4), [0.1] * 4)
    assert log.per_step(0).shape == (0,)
    for i in range(40):                        # growing past its first capacity
        log.record(13 + i, np.array([float(i)]))
    assert np.array_equal(log.per_step(53)[13:], np.arange(40.0))


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "plateau"])
def test_rates_per_step_follow_the_schedule_and_live_changes(schedule):
    X, y = make_data(n=90, d=4, loss="cross_entropy", k=3)
    tr = fb.Trainer(hidden=(8,), batch_size=10, epochs=6, lr_schedule=schedule, warmup_steps=4, seed=1)
    tr.fit(X, y, steps=25)
    tr.learning_rate = 0.003                   # a live change between calls
    h = tr.fit(X, y)
    sched = tr._schedule
    expected = np.concatenate([0.01 * sched.factors(np.arange(25), 9, 54)[:25],
                               0.003 * sched.factors(np.arange(25, 54), 9, 54)])
    if schedule != "plateau":                  # plateau's factors depend on the epochs' losses
        assert np.allclose(h.learning_rate, expected, rtol=1e-12)
    assert h.learning_rate.shape == (54,) and h.learning_rate.dtype == np.float64
    assert h.learning_rate[24] != h.learning_rate[25] or schedule == "plateau"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_are_kept_in_the_run_dtype(dtype):
    X, y = make_data(n=64, d=4, loss="cross_entropy", k=2)
    h = fb.Trainer(hidden=(8,), batch_size=8, epochs=2, dtype=dtype, backend="numpy").fit(X, y)
    assert h.loss.dtype == np.dtype(dtype) and h.loss.shape == (16,)
    ref = fb.Trainer(hidden=(8,), batch_size=8, epochs=2, dtype=dtype).fit(X, y)
    assert np.allclose(h.loss, ref.loss, rtol=1e-5 if dtype == "float32" else 1e-10)


def test_epoch_accuracy_equals_the_fraction_of_records_classified_right_per_step():
    # the accuracy of an epoch is the batch-size-weighted mean of its steps' hit fractions; with a
    # rate too small to move a float32 param every step classifies with the same params, so it is
    # predict's accuracy
    X, y = make_data(n=70, d=4, loss="cross_entropy", k=3)
    tr = fb.Trainer(hidden=(8,), batch_size=16, epochs=3, learning_rate=1e-30, optimizer="sgd")
    h = tr.fit(X, y)
    right = float(np.mean(tr.predict(X) == y))
    assert np.allclose(h.metrics["accuracy"], right, rtol=1e-12)


@pytest.mark.parametrize("at", [3, 7, 12])  # mid-epoch (the open epoch's hit sum is saved), a boundary, later
def test_checkpoint_mid_epoch_keeps_the_epoch_accuracy(tmp_path, at):
    X, y = make_data(n=70, d=4, loss="cross_entropy", k=3)
    kw = dict(hidden=(8,), batch_size=10, epochs=3, seed=3, lr_schedule="cosine")
    ref = fb.Trainer(**kw).fit(X, y)
    tr = fb.Trainer(**kw)
    tr.fit(X, y, steps=at)
    tr.save(tmp_path / "run.npz")
    back = fb.Trainer.load(tmp_path / "run.npz")
    h = back.fit(X, y)
    assert np.array_equal(h.metrics["accuracy"], ref.metrics["accuracy"])
    assert np.array_equal(h.learning_rate, ref.learning_rate) and np.array_equal(h.loss, ref.loss)


def _as_version_2(arrays, dtype):
    """A version-3 checkpoint's arrays rewritten as version 2 wrote them (per-step float64 arrays)."""
    facts = json.loads(str(arrays["state"]))
    step = facts["step"]
    rates = RateLog(arrays.pop("lr_starts"), arrays.pop("lr_values"))
    arrays["lr"] = rates.per_step(step)
    arrays["loss"] = arrays["loss"].astype(np.float64)
    arrays["hits"] = np.full(step, 0.5)
    facts.pop("rate_runs")
    facts.pop("hit_sums")
    arrays["state"] = np.array(json.dumps(facts))
    return arrays


def test_version_2_checkpoints_still_load(tmp_path):
    X, y = make_data(n=70, d=4, loss="cross_entropy", k=3)
    kw = dict(hidden=(8,), batch_size=10, epochs=3, seed=3, lr_schedule="cosine")
    ref = fb.Trainer(**kw)
    ref.fit(X, y, steps=14)
    path = tmp_path / "v3.npz"
    ref.save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "header"}
    arrays = _as_version_2(arrays, np.float32)
    header = {"format": checkpoint.FORMAT, "version": 2, "sha256": checkpoint._digest(arrays)}
    arrays["header"] = np.array(json.dumps(header))
    old = tmp_path / "v2.npz"
    with open(old, "wb") as f:
        np.savez(f, **arrays)
    back = fb.Trainer.load(old)
    assert back.step == 14
    h_back, h_ref = back.fit(X, y), ref.fit(X, y)
    assert np.array_equal(h_back.loss, h_ref.loss) and np.array_equal(h_back.learning_rate, h_ref.learning_rate)


@pytest.mark.parametrize("change", [
    lambda f, a: a.__setitem__("lr_starts", a["lr_starts"][::-1].copy()),     # not rising from 0
    lambda f, a: a.__setitem__("lr_values", -a["lr_values"]),                 # negative rates
    lambda f, a: f.__setitem__("hit_sums", {"0": 1.0}),                       # a closed epoch's sum
    lambda f, a: f.__setitem__("hit_sums", {"1": float("nan")}),
    lambda f, a: f.__setitem__("rate_runs", 10 ** 9),                         # more runs than steps
    lambda f, a: f.__setitem__("epoch_weights", {"epoch": 0, "weighted": False}),  # a closed epoch's
    lambda f, a: f.__setitem__("epoch_weights", {"epoch": 1, "weighted": "yes"}),
    lambda f, a: (f.__setitem__("epoch_weights", {"epoch": 1, "weighted": True}),  # its weights: < 0, or none
                  a.__setitem__("epoch_step_weights", -np.ones(8))),
    lambda f, a: f.__setitem__("epoch_weights", {"epoch": 1, "weighted": True}),
])
def test_forged_rate_runs_and_hit_sums_are_refused(tmp_path, change):
    X, y = make_data(n=70, d=4, loss="cross_entropy", k=3)
    tr = fb.Trainer(hidden=(8,), batch_size=10, epochs=3, lr_schedule="cosine")
    tr.fit(X, y, steps=12)
    path = tmp_path / "run.npz"
    tr.save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "header"}
    facts = json.loads(str(arrays["state"]))
    change(facts, arrays)
    arrays["state"] = np.array(json.dumps(facts))
    header = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "sha256": checkpoint._digest(arrays)}
    arrays["header"] = np.array(json.dumps(header))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="not a valid fastbatch checkpoint"):
        fb.Trainer.load(path)


@pytest.mark.parametrize("how", ["fit", "fit_batches"])
def test_a_history_is_the_run_as_it_stood_when_taken_even_when_first_read_later(how):
    X, y = make_data(n=40, seed=3)
    X = X.astype(np.float32)
    kw = dict(hidden=(4,), batch_size=8, epochs=6, optimizer="sgd", learning_rate=0.05, track_noise=True,
              validation_split=0.25 if how == "fit" else 0.0)
    batches = lambda: ((X[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8))  # noqa: E731

    def train(tr, epochs):
        tr.epochs = epochs
        return tr.fit(X, y) if how == "fit" else tr.fit_batches(batches)

    eager, lazy = fb.Trainer(**kw), fb.Trainer(**kw)
    h_eager = train(eager, 2)
    expected = {k: np.array(v, copy=True) for k, v in h_eager.as_dict().items()}
    expected.update(epoch_loss=h_eager.epoch_loss.copy(), val_loss=h_eager.val_loss.copy(),
                    noise=h_eager.noise.copy(), metrics=h_eager.metrics, n=(h_eager.steps_per_epoch,
                                                                             h_eager.n_records, len(h_eager)))
    h_lazy = train(lazy, 2)  # read only after the run went on (and grew its buffers)
    train(lazy, 6)
    copied = pickle.loads(pickle.dumps(h_lazy))
    for h in (h_lazy, copied):
        for k, v in h.as_dict().items():
            assert np.array_equal(v, expected[k]), k
        assert np.array_equal(h.epoch_loss, expected["epoch_loss"])
        assert np.array_equal(h.val_loss, expected["val_loss"]) and np.array_equal(h.noise, expected["noise"])
        assert h.metrics.keys() == expected["metrics"].keys()
        assert all(np.array_equal(h.metrics[k], expected["metrics"][k]) for k in h.metrics)
        assert (h.steps_per_epoch, h.n_records, len(h)) == expected["n"]
    with pytest.raises(AttributeError):
        h_lazy.no_such_attribute  # noqa: B018


def test_a_history_read_first_by_many_threads_at_once_is_whole_in_each():
    # a fit's History makes its attributes on first use: threads that read it first at the same
    # time each see all of them (never a missing one, never another moment's)
    X, y = make_data(n=40, seed=3)
    tr = fb.Trainer(hidden=(4,), batch_size=8, epochs=4, optimizer="sgd", learning_rate=0.05,
                    validation_split=0.25)
    ref = tr.fit(X, y, steps=7)
    expected = (ref.loss.copy(), ref.val_loss.copy(), ref.epoch_loss.copy())
    import sys
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch within the first read
    try:
        _read_at_once(tr, expected)
    finally:
        sys.setswitchinterval(interval)


def _read_at_once(tr, expected):
    import threading
    for _ in range(50):
        h = tr.history
        start, seen, errors = threading.Barrier(8), [], []

        def read():
            start.wait()
            try:
                seen.append((h.val_loss.copy(), h.epoch_loss.copy(), h.loss.copy()))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert all(np.array_equal(v, expected[1]) and np.array_equal(e, expected[2]) and np.array_equal(loss, expected[0])
                   for v, e, loss in seen)


def test_a_history_cannot_write_into_its_run():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    tr = fb.Trainer(hidden=(4,), epochs=2, batch_size=8, track_noise=True)
    h = tr.fit(X, y)
    for name in ("loss", "noise"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(h, name)[:] = np.nan  # (it set the trainer's own losses, then its epoch means, to NaN)
    assert np.isfinite(tr.history.loss).all()
    g = fb.Trainer(hidden=(4,), epochs=1, batch_size=8).fit_batches(lambda: [(X[:8], y[:8]), (X[8:], y[8:])],
                                                                     n_outputs=2)
    with pytest.raises(ValueError, match="read-only"):
        g.batch_size[:] = 0


# ---------------------------------------------------------------------- an epoch is closed whole, or not at all

def _same_run(a, b):
    ha, hb = a.history, b.history
    assert np.array_equal(ha.loss, hb.loss) and np.array_equal(ha.epoch_loss, hb.epoch_loss)
    assert np.array_equal(ha.val_loss, hb.val_loss) and ha.metrics.keys() == hb.metrics.keys()
    assert all(np.array_equal(ha.metrics[k], hb.metrics[k]) for k in ha.metrics)
    assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(a.get_params(), b.get_params()))


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_an_error_while_an_epoch_closes_undoes_its_chunk_and_the_run_goes_on_exactly(error):
    # a Ctrl-C (or a validation file cut short) between an epoch's mean loss and its validation, schedule and
    # early-stopping step: the epoch used to stay half closed, its val_loss missing for good
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 6)).astype(np.float32), rng.integers(0, 3, 300)
    cfg = dict(hidden=(16,), batch_size=16, epochs=6, seed=0, validation_split=0.3, patience=3,
               lr_schedule={"name": "plateau", "patience": 1})
    ref = fb.Trainer(**cfg)
    ref.fit(X, y)

    class Once(fb.Callback):
        fired = False

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2 and not self.fired:
                Once.fired = True
                raise error("at the end of epoch 3")
    tr = fb.Trainer(**cfg)
    with pytest.raises(error):
        tr.fit(X, y, callbacks=[Once()])
    h = tr.history
    assert len(h.epoch_loss) == len(h.val_loss) == 2 and tr.step == 2 * h.steps_per_epoch  # the chunk undone
    tr.fit(X, y)
    _same_run(tr, ref)


def test_a_resumed_generator_run_with_dropped_batches_skips_only_the_batches_it_trained():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)).astype(np.float32), rng.integers(0, 3, 200)
    sizes = [32, 10, 32, 32, 32]                   # the 10-record batch is dropped

    def batches():
        i = 0
        for n in sizes:
            yield X[i:i + n], y[i:i + n]
            i += n
    cfg = dict(hidden=(8,), batch_size=32, epochs=3, seed=0, drop_last=True)
    ref = fb.Trainer(**cfg)
    ref.fit_batches(batches, n_outputs=3)
    tr = fb.Trainer(**cfg)
    tr.fit_batches(batches, n_outputs=3, callbacks=[fb.LambdaCallback(on_step_end=lambda t, s, loss: s == 1)])
    assert tr.step == 2
    tr.fit_batches(batches, n_outputs=3)           # (it trained the third batch twice: 13 steps)
    assert tr.step == ref.step == 12 and tr.history.epoch.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(ref.get_params(), tr.get_params()))


def test_an_epoch_left_unclosed_by_an_interrupt_after_its_chunk_is_closed_first_by_the_next_call(monkeypatch):
    # Ctrl-C landing between a chunk's commit and its epoch's closing (outside either's undo): the next fit call
    # closes that epoch first, at the params it ended with, so the run is the uninterrupted one exactly
    tr, ref, X, y = run_interrupted_before_closing(monkeypatch, epochs=5, at_chunk=3)
    assert tr.step == 3 * 8 and len(tr.history.epoch_loss) == 3 and len(tr.run_state.epoch_loss) == 2
    tr.fit(X, y)
    _same_run(tr, ref)


def test_an_interrupt_before_a_runs_last_epoch_closed_is_made_good_by_the_next_call(monkeypatch):
    # the run's last chunk done, its epoch not closed: the run is finished, and a fit call still closes it
    tr, ref, X, y = run_interrupted_before_closing(monkeypatch, epochs=2, at_chunk=2)
    assert tr.finished and len(tr.run_state.epoch_loss) == 1
    tr.fit(X, y)                                   # (it warned "finished, trains nothing" and left it open)
    _same_run(tr, ref)
    assert len(tr.history.val_loss) == 2


def test_a_step_callback_that_stops_the_run_at_an_epochs_end_still_closes_that_epoch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 4)).astype(np.float32), rng.integers(0, 2, 100)
    Xv, yv = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 2, 40)
    seen = []
    stop = fb.LambdaCallback(on_step_end=lambda tr, step, loss: step == 9,
                             on_epoch_end=lambda tr, epoch, logs: seen.append(epoch))
    tr = fb.Trainer(hidden=(8,), batch_size=20, epochs=3, seed=0)
    h = tr.fit(X, y, validation_data=(Xv, yv), callbacks=[stop])
    assert tr.step == 10 and seen == [0, 1] and len(h.val_loss) == len(h.metrics["loss"]) == 2  # (epoch 2: none)


def test_a_generator_run_resumed_after_an_epochs_last_batch_still_validates_that_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 4))
    y = (X[:, 0] > 0).astype(int)

    def batches():
        for i in range(0, 256, 32):
            yield X[i:i + 32], y[i:i + 32]
    kw = dict(hidden=(8,), batch_size=32, epochs=3, seed=0, patience=2)
    ref = fb.Trainer(**kw)
    ref.fit_batches(batches, validation_data=(X[:64], y[:64]))
    tr = fb.Trainer(**kw)
    tr.fit_batches(batches, validation_data=(X[:64], y[:64]),
                   callbacks=[fb.LambdaCallback(on_step_end=lambda t, step, loss: step == 7)])
    tr.fit_batches(batches, validation_data=(X[:64], y[:64]))   # (epoch 1 closed with no validation: NaN)
    assert np.array_equal(tr.history.val_loss, ref.history.val_loss) and np.isfinite(tr.history.val_loss).all()
    assert np.array_equal(tr.run_state.theta, ref.run_state.theta)


def test_an_interrupt_while_the_history_buffers_grow_leaves_them_whole(monkeypatch):
    # Ctrl-C between growing one per-step buffer and the next: the noise buffer stayed empty for good (the
    # loss buffer, grown first, said there was room), noise_scale failed and the checkpoint would not load
    import types
    from fastbatch import _run
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    cfg = dict(hidden=(8,), batch_size=4, epochs=400, seed=0, track_noise=True)
    ref = fb.Trainer(**cfg)
    ref.fit(X, y, steps=50)
    real, real_reserve, made, raised = np.zeros, _run.RunState.reserve, [], []

    def zeros(shape, *a, **k):
        if made and made[0] == "in reserve":   # its second buffer is where the interrupt comes
            made.append(shape)
            if len(made) == 3 and not raised:
                raised.append(shape)
                raise KeyboardInterrupt
        return real(shape, *a, **k)

    def reserve(self, *a, **k):
        made[:] = ["in reserve"]
        try:
            return real_reserve(self, *a, **k)
        finally:
            made.clear()
    monkeypatch.setattr(_run, "np", types.SimpleNamespace(**{**vars(np), "zeros": zeros}))
    monkeypatch.setattr(_run.RunState, "reserve", reserve)
    tr = fb.Trainer(**cfg)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(X, y, steps=1)
    monkeypatch.undo()
    assert raised and tr.step == 0
    tr.fit(X, y, steps=50)
    assert tr.history.noise.shape == (50, 2) and np.array_equal(tr.history.noise, ref.history.noise)
    assert np.array_equal(tr.history.loss, ref.history.loss)


def test_a_history_a_call_returned_keeps_its_steps_when_a_divergence_rewinds_into_that_call():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ [1.0, 2.0, -1.0]
    tr = fb.Trainer(hidden=(), optimizer="sgd", learning_rate=1.2, batch_size=64, epochs=1000, seed=0)
    h = tr.fit(X, y, steps=12)                 # a rate too high: the loss grows, still finite (and below the limit)
    loss, epochs, rates = h.loss.copy(), h.epoch_loss.copy(), h.learning_rate.copy()
    with pytest.raises(fb.DivergenceError) as err:
        tr.fit(X, y)
    assert err.value.step < 12                  # back into the first call's steps
    tr.learning_rate = 0.01
    tr.fit(X, y, steps=30)                      # new steps over the ones h holds
    assert np.array_equal(h.loss, loss) and np.array_equal(h.epoch_loss, epochs)   # (they changed under it)
    assert np.array_equal(h.learning_rate, rates)


def test_epoch_sums_do_not_call_a_blas_dot_over_a_chunk(monkeypatch):
    """A fit call's hit fractions and an epoch's mean loss are summed without numpy's BLAS dot: a dot of a
    chunk's length wakes OpenBLAS's thread pool, whose threads then spin, and one per chunk kept a second
    core busy for the whole run (training, and the app's GUI thread, lost it on two cores)."""
    X, y = make_data(n=6000, d=4, loss="cross_entropy", k=3)
    tr = fb.Trainer(hidden=(8,), batch_size=1, epochs=3, seed=0)
    tr.fit(X, y, steps=100)                    # the run begun: the calls below are the chunks of a running app
    real_dot, lengths = np.dot, []

    def dot(a, b, *args, **kwargs):
        lengths.append(max(np.size(a), np.size(b)))
        return real_dot(a, b, *args, **kwargs)
    monkeypatch.setattr(np, "dot", dot)
    while not tr.finished:
        tr.fit(X, y, steps=2500)               # through two epoch ends
        tr.history.epoch_loss                  # noqa: B018 - the epoch in progress's mean so far (a display polls it)
    monkeypatch.setattr(np, "dot", real_dot)
    assert max(lengths, default=0) < 1000      # (theta's finiteness check may dot the params: 71 here)
    h = tr.history
    assert len(h.epoch_loss) == 3 and np.allclose(h.epoch_loss, [np.mean(h.loss[e * 6000:(e + 1) * 6000])
                                                                 for e in range(3)])


def test_epoch_losses_of_a_run_rewound_past_an_epochs_end_before_its_closing_are_each_epochs_own():
    """A divergence rewinds the run to before its blow-up, which may leave an epoch that ended but is not closed
    yet (the next call closes it) and the next one begun: History.epoch_loss gives each its own mean, not one
    mean over both."""
    from fastbatch.schedule import epoch_order
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 4))
    y = rng.integers(0, 3, 300)
    X = centers[y] + rng.normal(size=(300, 4))
    tr = fb.Trainer(batch_size=32, seed=0, optimizer="sgd", learning_rate=0.01, epochs=100)  # 10 steps an epoch
    tr.fit(X, y, steps=33)
    later = set(epoch_order(300, 0, 3)[3 * 32:].tolist())  # (epoch 3's records after step 33)
    X[next(i for i in epoch_order(300, 0, 4)[2 * 32:3 * 32] if i not in later)] = 1e30  # met at step 42 only
    with pytest.raises(fb.DivergenceError):
        tr.fit(X, y, steps=20)
    st, h = tr.run_state, tr.history
    assert st.step == 41 and len(st.epoch_loss) == 3  # (the case: epoch 3 ended, not closed; epoch 4 begun)
    assert len(h.epoch_loss) == 5
    w = h.batch_size.astype(np.float64)
    for e, mean in enumerate(h.epoch_loss):
        part = slice(10 * e, min(10 * e + 10, st.step))
        np.testing.assert_allclose(mean, np.sum(h.loss[part] * w[part]) / w[part].sum(), rtol=1e-12)
    X[np.abs(X) > 1e20] = 0.0
    tr.fit(X, y, steps=5)  # the next call closes epoch 3 first: the same mean
    assert tr.history.epoch_loss[3] == h.epoch_loss[3]


@pytest.mark.parametrize("edit", ["new array", "in place"])
def test_a_rewind_into_the_last_call_runs_none_of_its_steps_again_on_this_calls_data(edit):
    """A divergence may rewind into the last fit call's steps; those are never run again on this call's arrays
    (another chunk of a stream, or the same arrays edited in place since): the run goes back to the start of that
    call's chunk, exactly as it was then (it was replayed on the new data: the history held losses of steps never
    trained so, and the params were another run's)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 4))
    y = rng.integers(0, 3, 300)
    X0 = centers[y] + rng.normal(size=(300, 4))  # (float64, trained as float64: the kernel reads it in place)
    for backend in ("cython", "numpy"):
        X = X0.copy()
        runs = []
        for calls in ((10, 3, 10, 10, 10), (10, 3, 10, 10)):
            tr = fb.Trainer(batch_size=32, seed=0, optimizer="sgd", learning_rate=0.01, epochs=100, backend=backend,
                            dtype="float64")
            for steps in calls:
                tr.fit(X, y, steps=steps)
            runs.append(tr)
        tr, ref = runs
        tr.learning_rate = 1e9
        with pytest.raises(fb.DivergenceError, match="back to 33 steps done"):
            if edit == "new array":
                tr.fit(X * 1e3, y, steps=10)  # its blow-up is found in the last call's steps (after 33)
            else:
                X *= 1e3
                tr.fit(X, y, steps=10)
        X[...] = X0
        assert tr.step == ref.step == 33 and np.array_equal(tr.history.loss, ref.history.loss)
        assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(tr.get_params(), ref.get_params()))
        tr.learning_rate = ref.learning_rate = 0.01
        tr.fit(X, y, steps=20)
        ref.fit(X, y, steps=20)
        assert np.array_equal(tr.history.loss, ref.history.loss)
        assert np.array_equal(tr.history.epoch_loss, ref.history.epoch_loss)
        m, r = tr.history.metrics, ref.history.metrics
        assert m.keys() == r.keys() and all(np.array_equal(m[k], r[k]) for k in m)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_an_epochs_accuracy_is_the_same_however_its_steps_were_cut_into_calls(backend):
    """Without sample weights a step's hits are a whole count of records, added as one: an epoch's accuracy is
    count / records exactly, the same bits for a run fit in pieces of any size as in one call (it differed in
    the last bits: fractions summed per call round differently)."""
    X, y = make_data(n=450, d=6, k=4, seed=3)
    cfg = dict(hidden=(16,), batch_size=50, epochs=4, optimizer="adam", learning_rate=0.01, backend=backend)
    ref = fb.Trainer(**cfg)
    ref.fit(X, y)
    acc = ref.history.metrics["accuracy"]
    assert np.array_equal(acc, np.round(acc * 450) / 450)  # (whole counts over the epoch's records)
    for k in (1, 3, 7, 13):
        tr = fb.Trainer(**cfg)
        while not tr.finished:
            tr.fit(X, y, steps=k)
        assert np.array_equal(tr.history.loss, ref.history.loss)
        assert np.array_equal(tr.history.metrics["accuracy"], acc)
