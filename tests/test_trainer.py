"""The Trainer API: a run of epochs, continued in pieces, stopped, reset, used."""
import threading
import time

import numpy as np
import pytest

import fastbatch as fb
from helpers import SEED_RUN, make_data

BACKENDS = ["cython", "numpy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_run_history(seed_data, backend):
    X, y = seed_data
    tr = fb.Trainer(batch_size=64, epochs=5, backend=backend)
    h = tr.fit(X, y)
    assert h.n_steps == 80 and h.steps_per_epoch == 16 and h.n_records == 1000
    assert list(h.epoch_starts) == [0, 16, 32, 48, 64]
    assert list(h.batch_size[:16]) == [64] * 15 + [40]
    assert list(np.bincount(h.epoch)) == [16] * 5
    assert list(h.batch[14:18]) == [14, 15, 0, 1]
    assert h.records_seen[-1] == 5000
    w = h.batch_size[:16] / 1000
    assert h.epoch_loss[0] == pytest.approx(np.sum(h.loss[:16] * w))
    assert len(h.epoch_loss) == 5
    assert np.all(h.learning_rate == 0.01)
    assert tr.finished and tr.step == 80


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pieces", [[1, 1, 5, 13, 100], [16, 16, 48], [79, 1], [3] * 26 + [2]])
def test_fit_in_pieces_is_bit_identical(seed_data, backend, pieces):
    X, y = seed_data
    kw = dict(hidden=(16, 8), optimizer="adam", learning_rate=0.01, batch_size=64, epochs=5, backend=backend)
    whole = fb.Trainer(**kw)
    hw = whole.fit(X, y)
    tr = fb.Trainer(**kw)
    for p in pieces:
        before = tr.step
        h = tr.fit(X, y, steps=p)
        assert h.n_steps == min(before + p, 80)
    assert np.array_equal(h.loss, hw.loss)
    for (a, b), (c, d) in zip(tr.get_params(), whole.get_params()):
        assert np.array_equal(a, c) and np.array_equal(b, d)


def test_finished_run_warns_and_trains_nothing(seed_data):
    X, y = seed_data
    tr = fb.Trainer(**{**SEED_RUN, "epochs": 1})
    tr.fit(X, y)
    p = tr.get_params()
    with pytest.warns(RuntimeWarning, match="finished"):
        h = tr.fit(X, y)
    assert h.n_steps == 16
    assert np.array_equal(p[0][0], tr.get_params()[0][0])


def test_reset_starts_over(seed_data):
    X, y = seed_data
    tr = fb.Trainer(epochs=2)
    h1 = tr.fit(X, y).loss.copy()
    tr.reset()
    assert tr.step == 0 and not tr.finished
    assert np.array_equal(tr.fit(X, y).loss, h1)


def test_batch_larger_than_data_is_one_step_per_epoch(seed_data):
    X, y = seed_data
    h = fb.Trainer(batch_size=10**9, epochs=3).fit(X, y)
    assert h.n_steps == 3 and list(h.batch_size) == [1000] * 3


def test_drop_last(seed_data):
    X, y = seed_data
    h = fb.Trainer(batch_size=64, epochs=2, drop_last=True).fit(X, y)
    assert h.n_steps == 30 and set(h.batch_size) == {64}
    with pytest.raises(ValueError, match="drop_last"):
        fb.Trainer(batch_size=2000, drop_last=True).fit(X, y)


def test_stop_from_another_thread_then_continue_bit_identically():
    X, y = make_data(n=2000, d=10)
    kw = dict(hidden=(32,), batch_size=1, epochs=1000, learning_rate=0.01)
    tr = fb.Trainer(**kw)

    def stop_soon():
        while not tr._fit_lock.locked():
            time.sleep(0.001)
        time.sleep(0.05)
        tr.stop()

    t = threading.Thread(target=stop_soon)
    t.start()
    h = tr.fit(X, y)
    t.join()
    stopped_at = tr.step
    assert 0 < stopped_at < tr.total_steps and h.n_steps == stopped_at
    tr.fit(X, y, steps=1000)
    ref = fb.Trainer(**kw)
    assert np.array_equal(tr.history.loss, ref.fit(X, y, steps=stopped_at + 1000).loss)
    assert np.array_equal(tr.get_params()[0][0], ref.get_params()[0][0])


def test_stop_takes_effect_within_a_step():
    # a long run is stopped from the progress hook; fit returns right after the step it was on
    X, y = make_data(n=5000, d=10)
    tr = fb.Trainer(batch_size=1, epochs=100000)
    calls = []

    def on_progress(h):
        calls.append(h.n_steps)
        tr.stop()

    h = tr.fit(X, y, on_progress=on_progress)
    assert len(calls) >= 1 and h.n_steps == calls[-1] < tr.total_steps


@pytest.mark.parametrize("where", ["array", "generator"])
def test_a_stop_during_an_epochs_validation_returns_at_once_and_resumes_exactly(monkeypatch, where):
    """A big validation set took up to 1.2 s to score before stop() took effect. Now the set is scored in parts
    with a look at the stop between them; the epoch is closed whole or not at all, so the chunk that ended it is
    undone and the next call does both again: the same run, bit for bit."""
    from fastbatch import _driver, _inference
    monkeypatch.setattr(_inference, "CHUNK", 64)            # parts of 64 records (8192 in use)
    X, y = make_data(n=200, d=4)
    Xv, yv = make_data(n=1000, d=4, seed=1)
    kw = dict(batch_size=16, epochs=3, hidden=(8,))

    def train(tr, **extra):
        if where == "array":
            return tr.fit(X, y, validation_data=(Xv, yv), **extra)
        batches = lambda: ((X[i:i + 16], y[i:i + 16]) for i in range(0, 200, 16))
        return tr.fit_batches(batches, validation_data=(Xv, yv), n_outputs=3, **extra)

    ref = fb.Trainer(**kw)
    train(ref)
    tr = fb.Trainer(**kw)
    parts, real = [], _driver._validation_parts

    def stop_in_the_second_epochs_validation(Xv_):
        for i, part in enumerate(real(Xv_)):
            parts.append(i)
            if len(tr.history.epoch_loss) == 2 and i == 3:
                tr.stop()                                    # mid-set: parts 4.. are never scored
            yield part

    monkeypatch.setattr(_driver, "_validation_parts", stop_in_the_second_epochs_validation)
    h = train(tr)
    assert len(h.val_loss) == 1                               # the second epoch is not closed, nor half closed:
    if where == "array":                                      # the chunk that ended it is undone
        assert len(h.epoch_loss) == 1 and h.n_steps < 2 * h.steps_per_epoch
    else:                                                     # its batches are kept, the closing is not made
        assert tr.run_state.epoch == 1 and h.n_steps == 2 * h.steps_per_epoch
    assert parts.count(4) == 1                                # (the first epoch's set, whole; the second's cut)
    monkeypatch.setattr(_driver, "_validation_parts", real)
    train(tr)
    assert np.array_equal(tr.history.loss, ref.history.loss)
    assert np.array_equal(tr.history.val_loss, ref.history.val_loss)
    assert np.array_equal(tr.get_params()[0][0], ref.get_params()[0][0])


def test_stops_at_the_same_epochs_validation_again_and_again_still_get_past_it(monkeypatch):
    """Time-slicing models (a fit call, then stop()) met every epoch's closing on a big validation set: each call
    was stopped there and undone, and the run never got past its first epoch. The second try at an epoch's
    closing goes through whatever stops come (then the stop ends the call)."""
    from fastbatch import _driver, _inference
    monkeypatch.setattr(_inference, "CHUNK", 64)
    X, y = make_data(n=200, d=4)
    Xv, yv = make_data(n=1000, d=4, seed=1)
    tr = fb.Trainer(batch_size=16, epochs=3, hidden=(8,))
    real = _driver._validation_parts

    def always_stopped(Xv_):
        for i, part in enumerate(real(Xv_)):
            if i == 1:
                tr.stop()
            yield part

    monkeypatch.setattr(_driver, "_validation_parts", always_stopped)
    epochs = []
    for _ in range(8):
        epochs.append(len(tr.fit(X, y, validation_data=(Xv, yv)).val_loss))
    assert epochs[-1] == 3 and tr.finished, epochs     # every epoch closed, at its second try
    ref = fb.Trainer(batch_size=16, epochs=3, hidden=(8,))
    monkeypatch.setattr(_driver, "_validation_parts", real)
    ref.fit(X, y, validation_data=(Xv, yv))
    assert np.array_equal(tr.history.loss, ref.history.loss) and np.array_equal(tr.history.val_loss,
                                                                               ref.history.val_loss)


def test_progress_hook_sees_the_end_and_reports_often():
    X, y = make_data(n=300, d=4)
    seen = []
    h = fb.Trainer(batch_size=32, epochs=4).fit(X, y, on_progress=lambda h: seen.append((h.n_steps,
                                                                                         len(h.epoch_loss))))
    assert seen[-1] == (40, 4) and h.n_steps == 40
    # a slow run still reports at least every 0.1 s
    X, y = make_data(n=20000, d=10)
    stamps = []
    fb.Trainer(batch_size=1, epochs=2, backend="numpy").fit(
        X, y, steps=6000, on_progress=lambda h: stamps.append(time.perf_counter()))
    assert len(stamps) >= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_learns_the_seed_problem(seed_data, backend):
    # random labels: learning them means fitting the 1000 records, well below chance (ln 2)
    X, y = seed_data
    tr = fb.Trainer(hidden=(64,), optimizer="adam", learning_rate=0.01, batch_size=32, epochs=150,
                    backend=backend)
    h = tr.fit(X, y)
    assert h.epoch_loss[0] > 0.65
    assert h.epoch_loss[-1] < 0.45
    assert tr.evaluate(X, y)["accuracy"] > 0.8


def test_learns_a_real_pattern():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2))
    y = ((X[:, 0] * X[:, 1]) > 0).astype(int)  # XOR of signs: needs the hidden layer
    tr = fb.Trainer(hidden=(16,), optimizer="adam", learning_rate=0.02, batch_size=32, epochs=30)
    tr.fit(X[:1500], y[:1500])
    assert tr.evaluate(X[1500:], y[1500:])["accuracy"] > 0.9


def test_predict_proba_and_losses():
    X, y = make_data(n=100, loss="cross_entropy", k=4)
    tr = fb.Trainer(epochs=2).fit(X, y) and None
    tr = fb.Trainer(epochs=2)
    tr.fit(X, y)
    p = tr.predict_proba(X)
    assert p.shape == (100, 4) and np.allclose(p.sum(axis=1), 1)
    assert np.array_equal(tr.predict(X), p.argmax(axis=1))
    # binary_crossentropy: one logit, proba has two columns
    Xb, yb = make_data(n=100, loss="binary_crossentropy")
    tb = fb.Trainer(loss="binary_crossentropy", epochs=2)
    tb.fit(Xb, yb)
    assert tb.get_params()[-1][0].shape[1] == 1
    pb = tb.predict_proba(Xb)
    assert pb.shape == (100, 2) and set(np.unique(tb.predict(Xb))) <= {0, 1}
    # mse with float targets: "auto" picks mse
    Xr, yr = make_data(n=100, loss="mse", k=1)
    trr = fb.Trainer(epochs=2)
    trr.fit(Xr, yr)
    assert trr.predict(Xr).shape == (100,)
    assert set(trr.evaluate(Xr, yr)) == {"loss", "mae", "r2"}
    with pytest.raises(ValueError, match="predict_proba"):
        trr.predict_proba(Xr)


def test_evaluate_loss_equals_a_full_batch_step_loss(seed_data):
    X, y = seed_data
    tr = fb.Trainer(epochs=1)
    tr.fit(X, y)
    probe = fb.Trainer(batch_size=1000, epochs=1, learning_rate=1e-30)
    probe.set_params(tr.get_params())
    assert probe.fit(X, y).loss[0] == pytest.approx(tr.evaluate(X, y)["loss"], rel=1e-5)


def test_set_params_before_fit_and_get_params_copies(seed_data):
    X, y = seed_data
    rng = np.random.default_rng(1)
    params = [(rng.normal(size=(10, 32)), np.zeros(32)), (rng.normal(size=(32, 2)), np.zeros(2))]
    tr = fb.Trainer(**{**SEED_RUN, "epochs": 1, "learning_rate": 1e-30})
    tr.set_params(params)
    tr.fit(X, y)
    got = tr.get_params()
    assert np.allclose(got[0][0], params[0][0].astype(np.float32))
    got[0][0][:] = 0
    assert not np.allclose(tr.get_params()[0][0], 0)


def test_a_dtype_assigned_after_set_params_applies_to_them_exactly(seed_data, tmp_path):
    """set_params keeps the params as given until the run starts: dtype='float64' assigned after it trains on
    them exactly, as a trainer made with dtype='float64' does (they were rounded to float32 at set_params);
    params too large for the run's dtype are a ValueError naming them, not an overflow to inf."""
    X, y = seed_data
    rng = np.random.default_rng(1)
    params = [(rng.normal(size=(10, 5)), rng.normal(size=5)), (rng.normal(size=(5, 2)), rng.normal(size=2))]
    late = fb.Trainer(**{**SEED_RUN, "hidden": (5,), "epochs": 1})
    late.set_params(params)
    assert late.get_params()[0][0].dtype == np.float32  # (in the dtype the run would have now)
    late.dtype = "float64"
    assert all(np.array_equal(W, P) and W.dtype == np.float64 for (W, _), (P, _) in zip(late.get_params(), params))
    made = fb.Trainer(**{**SEED_RUN, "hidden": (5,), "epochs": 1, "dtype": "float64"})
    made.set_params(params)
    assert np.array_equal(late.fit(X, y).loss, made.fit(X, y).loss)
    saved = fb.Trainer(**{**SEED_RUN, "hidden": (5,), "epochs": 1})
    saved.set_params(params)
    saved.save(tmp_path / "pending.npz")  # (a checkpoint keeps them in the run's dtype, as before)
    assert np.array_equal(fb.Trainer.load(tmp_path / "pending.npz").get_params()[0][0], params[0][0].astype(np.float32))
    params[0][0][0, 0] = 1e39
    big = fb.Trainer(**{**SEED_RUN, "hidden": (5,), "epochs": 1})
    big.set_params(params)
    with pytest.raises(ValueError, match="too large for float32"):
        big.fit(X, y)
    assert not big.started
    big.dtype = "float64"
    big.fit(X, y, steps=1)


def test_hidden_assigned_after_set_params_drops_them_with_a_warning(seed_data):
    """Before the first fit every parameter can be assigned and applies: hidden= of other widths than the
    params set_params took drops them, saying so (fit raised "theta must have shape (59,), got (43,)")."""
    X, y = seed_data
    rng = np.random.default_rng(1)
    params = [(rng.normal(size=(10, 5)), np.zeros(5)), (rng.normal(size=(5, 2)), np.zeros(2))]
    tr = fb.Trainer(**{**SEED_RUN, "hidden": (5,), "epochs": 1})
    tr.set_params(params)
    tr.hidden = (5,)                                   # the same widths: kept
    tr.fit(X, y, steps=1)
    assert tr.run_state.sizes.tolist() == [10, 5, 2]
    tr = fb.Trainer(**{**SEED_RUN, "hidden": (5,), "epochs": 1})
    tr.set_params(params)
    with pytest.warns(UserWarning, match=r"hidden=\(7,\) drops the params given to set_params"):
        tr.hidden = (7,)
    tr.fit(X, y, steps=1)
    fresh = fb.Trainer(**{**SEED_RUN, "hidden": (7,), "epochs": 1})
    fresh.fit(X, y, steps=1)
    assert np.array_equal(tr.get_params()[0][0], fresh.get_params()[0][0])   # the seed's params


def test_learning_rate_change_applies_from_next_step(seed_data):
    X, y = seed_data
    tr = fb.Trainer(epochs=1)
    tr.fit(X, y, steps=5)
    tr.learning_rate = 0.5
    h = tr.fit(X, y)
    assert np.all(h.learning_rate[:5] == 0.01) and np.all(h.learning_rate[5:] == 0.5)


def test_linear_model_with_no_hidden_layer(seed_data):
    X, y = seed_data
    tr = fb.Trainer(hidden=(), epochs=2)
    tr.fit(X, y)
    assert [W.shape for W, _ in tr.get_params()] == [(10, 2)]


def test_repr_and_config():
    tr = fb.Trainer(batch_size=8)
    assert "batch_size=8" in repr(tr)
    assert tr.batch_size == 8 and tr.config["epochs"] == fb.Trainer().epochs


def test_n_outputs_for_labels_that_do_not_show_every_class():
    X, y = make_data(n=50, loss="cross_entropy", k=2)
    tr = fb.Trainer(epochs=1)
    tr.fit(X, y, n_outputs=4)
    assert tr.predict_proba(X).shape == (50, 4)
    tr.reset()
    with pytest.raises(ValueError, match="label"):
        tr.fit(X, y + 3, n_outputs=4)
    with pytest.raises(ValueError, match="n_outputs"):
        fb.Trainer().fit(X, y, n_outputs=0)


def test_validation_data_replaces_the_split_for_the_whole_run():
    rng = np.random.default_rng(3)
    X, Xv = rng.normal(size=(100, 3)), rng.normal(size=(30, 3))
    y, yv = (X[:, 0] > 0).astype(int), (Xv[:, 0] > 0).astype(int)
    kw = dict(hidden=(4,), epochs=2, batch_size=10, seed=1)
    tr = fb.Trainer(validation_split=0.2, **kw)
    h = tr.fit(X, y, validation_data=(Xv, yv))
    ref = fb.Trainer(**kw).fit(X, y, validation_data=(Xv, yv))
    assert h.n_records == 100 and h.n_steps == 20  # every record trains (20 were held out for nothing before)
    assert np.array_equal(h.loss, ref.loss) and np.array_equal(h.val_loss, ref.val_loss)
    h = tr.fit(X, y, epochs=3)  # the run goes on as it started: on every record
    assert h.n_records == 100 and tr.step == 30
    split = fb.Trainer(validation_split=0.2, **kw)  # a run started with the split keeps its training rows
    split.fit(X, y, steps=3)
    h = split.fit(X, y, validation_data=(Xv, yv))
    assert h.n_records == 80 and len(h.val_loss) == 2


def test_repr_names_a_learning_rate_schedule():
    # it left lr_schedule out always: Trainer(lr_schedule="cosine") showed as Trainer()
    assert "lr_schedule='cosine'" in repr(fb.Trainer(lr_schedule="cosine"))
    assert "'step_epochs': 3" in repr(fb.Trainer(lr_schedule={"name": "step", "step_epochs": 3}))
    assert repr(fb.Trainer(lr_schedule={"name": "constant"})).startswith("Trainer() ")


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_params_drawn_in_chunks_are_one_whole_draw_per_layer(activation, dtype):
    # init_params draws a wide layer in chunks of rows (INIT_CHUNK): the same stream, so the same bits, as one
    # draw of each whole layer, a layer of one row wider than a chunk included
    from fastbatch import _network
    sizes = np.array([300, _network.INIT_CHUNK + 3, 70, 3])
    got = _network.init_params(sizes, activation, 5, np.dtype(dtype))
    rng = np.random.default_rng([5, 0x1417])
    want = np.zeros_like(got)
    for W, _ in _network.unpack(want, sizes):
        fan_in, fan_out = W.shape
        if activation == "relu":
            W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=W.shape)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
    assert got.dtype == np.dtype(dtype) and got.tobytes() == want.tobytes()


def test_the_params_made_again_are_a_new_copy_of_the_same_bits():
    # init_params keeps the last networks' params (a fresh Trainer per fold): the same network again is a copy of
    # them, bit for bit what a new draw gives, that the caller may write into without changing the next one's
    from fastbatch import _network
    sizes = np.array([7, 13, 3])
    a = _network.init_params(sizes, "tanh", 11, np.dtype("float64"))
    b = _network.init_params(sizes, "tanh", 11, np.dtype("float64"))
    assert a is not b and a.flags.writeable and b.flags.writeable and a.ctypes.data % 64 == 0
    assert a.tobytes() == b.tobytes() == _network._draw_params(sizes, "tanh", 11, np.dtype("float64")).tobytes()
    a[:] = 5.0
    c = _network.init_params(sizes, "tanh", 11, np.dtype("float64"))
    assert c.tobytes() == b.tobytes()
    # another seed, activation or dtype is another network
    assert _network.init_params(sizes, "tanh", 12, np.dtype("float64")).tobytes() != b.tobytes()
    assert _network.init_params(sizes, "relu", 11, np.dtype("float64")).tobytes() != b.tobytes()
    assert _network.init_params(sizes, "tanh", 11, np.dtype("float32")).dtype == np.float32


def test_the_params_kept_are_bounded():
    from fastbatch import _network
    for seed in range(3 * _network.INIT_KEPT):
        _network.init_params(np.array([5, 4, 2]), "relu", seed, np.dtype("float32"))
    assert len(_network._kept_params) <= _network.INIT_KEPT
    big = np.array([1000, 1200, 2])  # (1.2M float64 params: 9.6 MB, more than all that is kept)
    assert n_bytes(big) > _network.INIT_KEPT_BYTES
    _network.init_params(big, "relu", 0, np.dtype("float64"))
    for seed in range(4):
        _network.init_params(np.array([500, 900, 2]), "relu", seed, np.dtype("float64"))  # 3.6 MB each
    assert sum(a.nbytes for a in _network._kept_params.values()) <= _network.INIT_KEPT_BYTES
    assert all(not a.flags.writeable for a in _network._kept_params.values())


def n_bytes(sizes):
    from fastbatch import _network
    return _network.n_params(sizes) * 8


def test_trainers_of_one_network_start_from_the_same_params():
    # the second Trainer's params come from what init_params kept: the first one's starting params, which its
    # training (in place) did not change
    from fastbatch import _network
    X, y = make_data(200, 6, k=3, seed=1)
    starts = []

    class Keep(fb.callbacks.Callback):
        def on_run_begin(self, trainer):
            starts.append(np.concatenate([np.concatenate([W.ravel(), b]) for W, b in trainer.get_params()]))

    first = fb.Trainer(hidden=(9,), seed=4, epochs=2)
    first.fit(X, y, callbacks=[Keep()])
    fb.Trainer(hidden=(9,), seed=4, epochs=1).fit(X, y, callbacks=[Keep()])
    trained = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in first.get_params()])
    drawn = _network._draw_params(np.array([6, 9, 3]), "relu", 4, np.dtype("float32"))
    assert not np.array_equal(trained, starts[0])
    assert starts[0].tobytes() == starts[1].tobytes() == drawn.tobytes()


def test_no_params_are_kept_when_init_kept_is_zero(monkeypatch):
    from fastbatch import _network
    monkeypatch.setattr(_network, "INIT_KEPT", 0)
    monkeypatch.setattr(_network, "_kept_params", {})
    a = _network.init_params(np.array([4, 6, 2]), "tanh", 1, np.dtype("float32"))
    assert _network._kept_params == {}
    assert a.tobytes() == _network._draw_params(np.array([4, 6, 2]), "tanh", 1, np.dtype("float32")).tobytes()


def test_a_seed_the_draw_refuses_is_refused_when_an_integer_one_is_kept():
    # the key took int(seed): after seed 3 was kept, seed 3.7 (which the draw refuses) was given seed 3's params
    from fastbatch import _network
    sizes = np.array([3, 4, 2])
    _network.init_params(sizes, "relu", 3, np.dtype("float64"))
    for seed in (3.0, 3.7, np.float64(3.2)):
        with pytest.raises(TypeError):
            _network.init_params(sizes, "relu", seed, np.dtype("float64"))
    assert _network.init_params(sizes, "relu", np.uint64(3), np.dtype("float64")).tobytes() == \
        _network._draw_params(sizes, "relu", 3, np.dtype("float64")).tobytes()


def test_a_setters_warnings_point_at_the_callers_line():
    # a setter's warnings (hidden dropping the params set_params gave; a setting the optimizer ignores) name the
    # line that set it, whatever calls the setter goes through inside fastbatch
    tr = fb.Trainer(hidden=(4,))
    tr.set_params([(np.zeros((3, 4)), np.zeros(4)), (np.zeros((4, 2)), np.zeros(2))])
    with pytest.warns(UserWarning, match="drops the params") as record:
        tr.hidden = (5,)
    with pytest.warns(UserWarning, match="no effect") as record2:
        tr.momentum = 0.5
        tr.optimizer = "adam"
    assert {w.filename for w in [*record, *record2]} == {__file__}
