"""The run's one owner: settings on a live trainer, stop without a race, data checked every call,
consistent state across threads, exact restore on errors, divergence recovery, epoch-hook cost."""
import gc
import pickle
import threading
import weakref

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _kernel, config as _config
from fastbatch._codes import Status
from helpers import make_data

BACKENDS = ["cython", "numpy"]


def same_params(a, b):
    return all(np.array_equal(x, y) for pa, pb in zip(a.get_params(), b.get_params()) for x, y in zip(pa, pb))


# ---------------------------------------------------------------------------- settings


def test_parameters_assigned_before_the_first_fit_apply():
    X, y = make_data(n=100)
    tr = fb.Trainer()
    tr.epochs, tr.batch_size = 3, 8
    h = tr.fit(X, y)
    assert h.steps_per_epoch == 13 and h.n_steps == 39 and tr.plan.batch_size == 8
    ref = fb.Trainer(epochs=3, batch_size=8)
    ref.fit(X, y)
    assert same_params(tr, ref)


def test_assignment_is_checked_like_the_constructor():
    tr = fb.Trainer()
    with pytest.raises(ValueError, match="batch_size"):
        tr.batch_size = 0
    with pytest.raises(TypeError, match="optimizer"):
        tr.optimizer = 3
    tr.optimizer = "sgd"
    assert tr.optimizer == "sgd"
    assert tr.batch_size == fb.Trainer().batch_size


@pytest.mark.parametrize("name, value", [("batch_size", 8), ("hidden", (4,)), ("optimizer", "adam"),
                                         ("seed", 3), ("shuffle", False), ("dtype", "float64")])
def test_a_started_run_refuses_other_settings(name, value):
    X, y = make_data(n=100)
    tr = fb.Trainer(epochs=2)
    tr.fit(X, y, steps=1)
    before = tr.config
    with pytest.raises(AttributeError, match="reset"):
        setattr(tr, name, value)
    assert tr.config == before


def test_unknown_attributes_are_not_invented():
    tr = fb.Trainer()
    with pytest.raises(AttributeError):
        tr.no_such_setting  # noqa: B018
    with pytest.raises(TypeError, match="unknown"):
        fb.Trainer(epoch=3)


def test_signature_shows_every_parameter():
    import inspect
    sig = inspect.signature(fb.Trainer)
    assert sig.parameters["batch_size"].default == fb.Trainer().batch_size
    assert list(sig.parameters) == [p.name for p in _config.PARAMS]
    assert "learning_rate" in fb.Trainer.__doc__


@pytest.mark.parametrize("backend", BACKENDS)
def test_raising_epochs_continues_bit_identically(backend):
    X, y = make_data(n=200)
    kw = dict(optimizer="adam", batch_size=16, backend=backend)
    whole = fb.Trainer(epochs=6, **kw)
    hw = whole.fit(X, y)
    tr = fb.Trainer(epochs=2, **kw)
    tr.fit(X, y)
    assert tr.finished
    tr.epochs = 4
    assert not tr.finished
    tr.fit(X, y)
    h = tr.fit(X, y, epochs=6)
    assert np.array_equal(h.loss, hw.loss) and same_params(tr, whole)
    with pytest.raises(ValueError, match="at least"):
        tr.epochs = 5


# ---------------------------------------------------------------------------- stop


def test_a_stop_outside_a_fit_never_stops_a_later_fit():
    X, y = make_data(n=200)
    tr = fb.Trainer(batch_size=8, epochs=1000)
    tr.stop()
    assert tr.fit(X, y, steps=10).n_steps == 10


def test_stop_under_contention_never_leaks_into_the_next_fit():
    X, y = make_data(n=64)
    tr = fb.Trainer(batch_size=8, epochs=100000)
    for trial in range(100):
        stop_now = threading.Event()
        hammer = [threading.Thread(target=lambda: [tr.stop() for _ in range(200)] and None) for _ in range(4)]
        fitter = threading.Thread(target=lambda: tr.fit(X, y, steps=3))
        for t in hammer + [fitter]:
            t.start()
        for t in hammer + [fitter]:
            t.join()
        stop_now.set()
        before = tr.step
        assert tr.fit(X, y, steps=5).n_steps == before + 5, f"trial {trial}"


# ---------------------------------------------------------------------------- data


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_place_edits_are_seen_by_the_next_fit(backend):
    X, y = make_data(n=100)
    tr = fb.Trainer(epochs=5, backend=backend)
    tr.fit(X, y, steps=2)
    X *= 1000
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y, steps=2)
    assert tr.step == 2
    X[0, 0] = 0.0
    Xs = X.copy()
    a = fb.Trainer(epochs=5, backend=backend)
    a.fit(make_data(n=100)[0], y, steps=2)
    a.fit(Xs, y, steps=3)  # trains on the scaled data, as the edited X says
    tr.fit(X, y, steps=3)
    assert same_params(a, tr)


def test_fit_keeps_no_reference_to_the_callers_arrays():
    X, y = make_data(n=100)
    X = X.astype(np.float32)
    tr = fb.Trainer(epochs=2, validation_split=0.2)
    tr.fit(X, y, steps=3)
    refs = weakref.ref(X), weakref.ref(y)
    del X, y
    gc.collect()
    assert refs[0]() is None and refs[1]() is None


# ---------------------------------------------------------------------------- consistency


def test_pickling_during_a_fit_gives_a_consistent_trainer():
    X, y = make_data(n=256)
    kw = dict(batch_size=1, epochs=400, optimizer="adam")
    tr = fb.Trainer(**kw)
    t = threading.Thread(target=tr.fit, args=(X, y))
    t.start()
    copies = []
    while t.is_alive() and len(copies) < 3:
        copies.append(pickle.loads(pickle.dumps(tr)))
    tr.stop()
    t.join()
    assert copies
    for c in copies:
        ref = fb.Trainer(**kw)
        if c.step:
            ref.fit(X, y, steps=c.step)
        assert ref.step == c.step and same_params(ref, c)
        assert np.array_equal(ref.history.loss, c.history.loss)


def test_get_params_during_a_fit_waits_for_a_consistent_point():
    X, y = make_data(n=256)
    tr = fb.Trainer(batch_size=2, epochs=2000)
    t = threading.Thread(target=tr.fit, args=(X, y))
    t.start()
    try:
        for _ in range(3):
            p = tr.get_params()
            assert all(np.isfinite(W).all() for W, _ in p)
    finally:
        tr.stop()
        t.join()


def test_save_from_an_epoch_callback(tmp_path):
    X, y = make_data(n=100)
    saved = []

    def save(trainer, epoch, logs):
        path = tmp_path / f"epoch{epoch}.npz"
        trainer.save(path)
        saved.append((path, trainer.step))

    tr = fb.Trainer(epochs=3, batch_size=16)
    tr.fit(X, y, callbacks=[fb.LambdaCallback(on_epoch_end=save)])
    assert [s for _, s in saved] == [7, 14, 21]
    back = fb.Trainer.load(saved[1][0])
    assert back.step == 14
    back.fit(X, y)
    assert same_params(back, tr)


# ---------------------------------------------------------------------------- errors restore the state


class FailingBackend:
    """A backend that runs the real steps, then fails as a file read or an interrupt would."""

    def __init__(self, real, after, how):
        self.real, self.after, self.how, self.calls = real, after, how, 0

    def train_steps(self, spec, X, targets, labels, weights, theta, opt_state, order, lrs, losses, noise,
                    start, n, opt_t, stop, max_seconds, **kw):
        self.calls += 1
        if self.calls < self.after:
            return self.real.train_steps(spec, X, targets, labels, weights, theta, opt_state, order, lrs, losses,
                                         noise, start, n, opt_t, stop, max_seconds, **kw)
        done, _ = self.real.train_steps(spec, X, targets, labels, weights, theta, opt_state, order, lrs, losses,
                                        noise, start, n, opt_t, stop, max_seconds, **kw)
        if self.how == "read":
            return done // 2, Status.READ_ERROR
        raise KeyboardInterrupt


@pytest.mark.parametrize("how, error", [("read", OSError), ("interrupt", KeyboardInterrupt)])
def test_an_error_mid_fit_restores_the_state_exactly(monkeypatch, how, error):
    X, y = make_data(n=200)
    kw = dict(batch_size=4, epochs=50, optimizer="adam")
    tr = fb.Trainer(**kw)
    tr.fit(X, y, steps=30)
    fake = FailingBackend(_kernel, 1, how)
    monkeypatch.setattr(tr, "_backend", lambda: fake)
    with pytest.raises(error):
        tr.fit(X, y)
    assert tr.step == 30
    monkeypatch.undo()
    ref = fb.Trainer(**kw)
    ref.fit(X, y, steps=30)
    assert same_params(tr, ref) and np.array_equal(tr.history.loss, ref.history.loss)
    tr.fit(X, y, steps=10)
    ref.fit(X, y, steps=10)
    assert same_params(tr, ref)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("pending", [False, True], ids=["seeded", "set_params"])
@pytest.mark.parametrize("how, error", [("read", OSError), ("interrupt", KeyboardInterrupt)])
def test_an_error_in_a_new_runs_first_chunk_restores_its_first_params_exactly(monkeypatch, how, error, pending,
                                                                               optimizer):
    # that snapshot copies no params: restore() makes them again (the seed's, or those set with set_params)
    X, y = make_data(n=200)
    kw = dict(batch_size=4, epochs=50, optimizer=optimizer, seed=3)
    first = fb.Trainer(**{**kw, "seed": 4})  # other params to set
    first.fit(X, y, steps=2)
    tr, ref = fb.Trainer(**kw), fb.Trainer(**kw)
    if pending:
        tr.set_params(first.get_params())
        ref.set_params(first.get_params())
    fake = FailingBackend(_kernel, 1, how)
    monkeypatch.setattr(tr, "_backend", lambda: fake)
    with pytest.raises(error):
        tr.fit(X, y, steps=20)
    assert tr.step == 0 and tr.started and not tr.run_state.opt_state.any()
    monkeypatch.undo()
    ref.fit(X, y, steps=1)
    tr.fit(X, y, steps=1)
    assert same_params(tr, ref) and np.array_equal(tr.history.loss, ref.history.loss)
    tr.fit(X, y, steps=30)
    ref.fit(X, y, steps=30)
    assert same_params(tr, ref) and np.array_equal(tr.history.loss, ref.history.loss)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_divergence_in_a_new_runs_first_chunk_rewinds_as_from_a_copied_snapshot(monkeypatch, optimizer):
    from fastbatch._run import RunState
    copy_first = RunState.snapshot_into

    lazy = RunState.snapshot_start
    starts = []

    def outcome(X, y, kw, copied):
        with monkeypatch.context() as m:
            if copied:  # the first snapshot a copy, as every other one
                m.setattr(RunState, "snapshot_start", lambda st, snap, make_theta: copy_first(st, snap))
            else:
                m.setattr(RunState, "snapshot_start", lambda st, *a: starts.append(1) or lazy(st, *a))
            tr = fb.Trainer(**kw)
            try:
                tr.fit(X, y)
            except fb.DivergenceError as exc:
                return tr, (exc.step, exc.bad_step)
            return tr, None

    settings = [(dtype, loss, seed) for seed in range(6) for dtype in ("float64", "float32")
                for loss in ("mse", "cross_entropy")]
    for dtype, loss, seed in settings:  # the first setting that diverges in its first call's first chunk
        X, y, kw = diverging(optimizer, loss, dtype, seed)
        a, where_a = outcome(X, y, kw, copied=False)
        if where_a is not None:
            break
    assert where_a is not None and starts
    b, where_b = outcome(X, y, kw, copied=True)
    assert where_a == where_b
    assert same_params(a, b) and np.array_equal(a.history.loss, b.history.loss)
    assert np.array_equal(a.run_state.opt_state, b.run_state.opt_state)


# ---------------------------------------------------------------------------- divergence


def diverging(optimizer, loss, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 5)) * 10
    y = rng.integers(0, 3, 200) if loss == "cross_entropy" else rng.normal(size=200) * 10
    # Adam's steps are bounded by its learning rate: one near the dtype's range overflows the params
    # (1e5 only diverged through the AVX-512 update's approximate sqrt of an infinite v)
    big = 1e30 if dtype == "float32" else 1e300
    lr = {"sgd": 2.0, "momentum": 1.0, "adam": big, "adamw": big}[optimizer]
    kw = dict(optimizer="sgd" if optimizer == "momentum" else optimizer, momentum=0.9 if optimizer == "momentum" else 0.0,
              learning_rate=lr, dtype=dtype, batch_size=8, epochs=50, loss=loss, seed=seed, hidden=(16,))
    return X, y, kw


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_rewinds_to_params_that_can_go_on(backend):
    runs = recovered = 0
    for optimizer in ("sgd", "momentum", "adam", "adamw"):
        for loss in ("mse", "cross_entropy"):
            for dtype in ("float32", "float64"):
                X, y, kw = diverging(optimizer, loss, dtype, seed=runs)
                tr = fb.Trainer(backend=backend, **kw)
                try:
                    tr.fit(X, y)
                    continue
                except fb.DivergenceError as exc:
                    err = exc
                runs += 1
                assert tr.step == err.step <= max(err.bad_step - 1, 0)
                assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in tr.get_params())
                assert len(tr.history.loss) == tr.step and np.isfinite(tr.history.loss).all()
                # 100 times smaller; Adam's rate overflows by design (diverging), so a usual one there
                tr.learning_rate = 1e-3 if optimizer.startswith("adam") else tr.learning_rate / 100
                try:
                    tr.fit(X, y, steps=err.bad_step - tr.step + 1)
                    recovered += 1
                except fb.DivergenceError as again:
                    recovered += again.bad_step > err.bad_step
    assert runs >= 8
    assert recovered >= 0.9 * runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_that_blows_up_without_overflowing_is_a_divergence(backend):
    """Unscaled diabetes targets at SGD's usual rate: the float32 loss went 7.3e3 -> 4.3e13 -> 7.3e36 and drifted
    there, never inf, and fit returned an r2 of -3e17 without a word. A step loss over a million times the run's
    first ends the run as a divergence, rewound to params that go on at a smaller rate."""
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_diabetes(scaled=False, return_X_y=True)
    tr = fb.Trainer(optimizer="sgd", learning_rate=0.01, seed=0, backend=backend, epochs=5)
    with pytest.raises(fb.DivergenceError, match=r"the loss grew beyond 1.2e\+11 \(a million times the run's "
                                                 r"first loss or the largest its data gives\) at step 2") as info:
        tr.fit(X, y)
    assert info.value.limit == pytest.approx(1e6 * y.max() ** 2, rel=1e-6)   # (the first loss: 7.3e3)
    assert tr.step == info.value.step and np.isfinite(tr.history.loss).all()
    assert "the last params whose batch loss was within that" in str(info.value)   # (not "was finite")
    assert all(loss <= info.value.limit for loss in tr.history.loss)
    tr.learning_rate = 1e-6
    tr.fit(X, y)                                      # goes on, at a rate that trains
    assert tr.finished and tr.history.loss[-1] < 1e5


@pytest.mark.parametrize("standardize, standardize_target, advice", [
    (False, False, "or scale the inputs (standardize=True)."),
    (True, False, "or scale the targets (standardize_target=True)."),
    (True, True, "trainer.learning_rate /= 100)."),
])
def test_a_divergences_advice_names_only_a_scaling_the_run_does_not_do(standardize, standardize_target, advice):
    """It said "or scale the inputs (standardize=True)" to a run that had them standardised (the CLI's default),
    diverging on unscaled regression targets, which standardize_target scales."""
    import pickle
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_diabetes(scaled=False, return_X_y=True)
    tr = fb.Trainer(optimizer="sgd", learning_rate=0.01 if not standardize_target else 1e3, seed=0, epochs=5,
                    standardize=standardize, standardize_target=standardize_target)
    with pytest.raises(fb.DivergenceError) as info:
        tr.fit(X, y)
    assert str(info.value).endswith(advice)
    assert ("standardize=True" in str(info.value)) == (not standardize)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_a_record_of_weight_0_does_not_raise_the_loss_limit():
    """A masked record (sample_weight 0) with a target of 1e15 is in no loss: it lifted the limit to 1e36, and a
    diverging run went on to losses of 1e20 unstopped."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X[:, 0].copy()
    y[5] = 1e15
    w = np.ones(200)
    w[5] = 0.0
    kw = dict(hidden=(16,), loss="mse", optimizer="sgd", learning_rate=0.4, dtype="float64", epochs=5, seed=0)
    with pytest.raises(fb.DivergenceError) as info:
        fb.Trainer(**kw).fit(X, y, sample_weight=w)
    assert info.value.limit < 1e9


@pytest.mark.parametrize("how", ["fit", "fit_batches", "partial_fit"])
def test_a_rare_large_target_is_not_a_divergence(how):
    """1% insurance claims of $5,000-20,000: a first batch without one has a loss near 1, a batch with one 1e7 or
    more. That is the data's, not a divergence: the limit counts the largest loss a record's targets give (for a
    stream, its batches' so far), so the run goes on at any rate, as scikit-learn's MLPRegressor's does."""
    rng = np.random.default_rng(0)
    n = 3000
    X = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.where(rng.random(n) < 0.01, rng.uniform(5000, 20000, n), 0.0)
    y = np.concatenate([y[y == 0], y[y > 0]])        # the claims last: the first batches hold none
    kw = dict(hidden=(16,), epochs=2, seed=0, loss="mse", learning_rate=1e-9, batch_size=32, shuffle=False)
    if how == "fit":
        tr = fb.Trainer(**kw)
        h = tr.fit(X, y)
    elif how == "fit_batches":
        tr = fb.Trainer(**kw)
        h = tr.fit_batches(lambda: ((X[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)))
    else:
        from fastbatch.sklearn import FastBatchRegressor
        est = FastBatchRegressor(**{k: v for k, v in kw.items() if k not in ("loss", "epochs")})
        for i in range(0, n, 300):
            est.partial_fit(X[i:i + 300], y[i:i + 300])
        tr, h = est.trainer_, est.trainer_.history
    assert h.loss.max() > 1e6 * h.loss[0] and np.isfinite(h.loss).all()


# ---------------------------------------------------------------------------- epoch hooks


class CountingBackend:
    def __init__(self, real):
        self.real, self.calls = real, 0

    def train_steps(self, *args, **kw):
        self.calls += 1
        return self.real.train_steps(*args, **kw)


def test_on_progress_does_not_cut_the_run_into_epochs(monkeypatch):
    X, y = make_data(n=300, d=4)
    tr = fb.Trainer(batch_size=1, epochs=200)
    counter = CountingBackend(_kernel)
    monkeypatch.setattr(tr, "_backend", lambda: counter)
    seen = []
    h = tr.fit(X, y, on_progress=lambda h: seen.append((h.n_steps, len(h.epoch_loss))))
    assert h.n_steps == 60000 and len(h.epoch_loss) == 200
    assert counter.calls < 50  # not one call per epoch
    assert seen[-1] == (60000, 200)
    ref = fb.Trainer(batch_size=1, epochs=200).fit(X, y)
    assert np.allclose(h.epoch_loss, ref.epoch_loss, rtol=1e-12)


def test_epoch_loss_is_the_weighted_mean_of_each_epoch():
    X, y = make_data(n=100)
    h = fb.Trainer(batch_size=32, epochs=3, validation_split=0.1).fit(X, y)
    w = h.batch_size.astype(float)
    expect = [np.dot(h.loss[e * 3:(e + 1) * 3], w[e * 3:(e + 1) * 3]) / w[e * 3:(e + 1) * 3].sum() for e in range(3)]
    assert np.allclose(h.epoch_loss, expect, rtol=1e-12)
    assert len(h.val_loss) == 3


# ---------------------------------------------------------------------------- threads


def test_n_threads_is_a_parameter_and_trainers_side_by_side_match_their_runs_alone():
    X, y = make_data(n=4096, d=64, k=10)
    kw = dict(hidden=(256,), batch_size=1024, epochs=2, n_threads=2)
    alone = [fb.Trainer(seed=s, **kw) for s in range(2)]
    for tr in alone:
        tr.fit(X, y)
    together = [fb.Trainer(seed=s, **kw) for s in range(2)]
    threads = [threading.Thread(target=tr.fit, args=(X, y)) for tr in together]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        assert same_params(a, b)


def test_a_network_too_big_for_memory_is_a_clear_error():
    X, y = make_data(n=10, d=16)
    tr = fb.Trainer(hidden=(10**9,))
    with pytest.raises(ValueError, match="hidden="):
        tr.fit(X, y, steps=1)
    assert not tr.started


def test_warnings_point_at_the_callers_line():
    X, y = make_data(n=100)
    with pytest.warns(UserWarning) as record:
        fb.Trainer(epochs=1).fit(X * np.array([1e-3, 1, 1, 1, 1e4]), (X[:, 0] > 0).astype(float))
    assert {w.filename for w in record} == {__file__}


def test_a_divergence_rewinds_before_the_blow_up_even_past_a_lucky_zero_loss():
    # a blown-up network can still classify one record with full confidence (a loss of exactly 0):
    # that sane-looking loss after the blow-up must not be where the run goes back to
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    cb = fb.LambdaCallback(on_epoch_end=lambda t, e, logs: setattr(t, "learning_rate", 1e9) if e == 1 else None)
    tr = fb.Trainer(hidden=(4,), epochs=5, batch_size=1, learning_rate=0.5, optimizer="sgd", validation_split=0.25)
    with pytest.raises(fb.DivergenceError):
        tr.fit(X, y, callbacks=[cb])
    assert max(np.abs(W).max() for W, _ in tr.get_params()) < 100  # (3e18 before)
    tr.learning_rate = 0.005
    tr.fit(X, y)
    assert tr.evaluate(X, y)["loss"] < 1.0  # it trains on (1e35 before)


@pytest.mark.parametrize("rate", [5.0, 1e3])
def test_a_batch_1_run_that_blows_up_after_training_well_goes_back_to_where_it_was_well(rate):
    """One record's loss varies 1000-fold in a healthy batch-1 run (a record classified right with confidence
    scores ~1e-6): measured against the lowest single loss so far, every step after it looked blown up, and a run
    that trained well for 2,000 steps and then blew up (the rate raised) went back to its first step. Levels are
    means over ~64 records now: it goes back to the step before the blow-up, the rate's change."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 8))
    y = (X[:, :3] @ [1.0, -2.0, 1.5] > 0).astype(int) + (X[:, 3] > 1).astype(int)
    tr = fb.Trainer(hidden=(32,), batch_size=1, learning_rate=0.01, epochs=10, optimizer="sgd")
    tr.fit(X, y, steps=2000)
    assert np.median(tr.history.loss[1000:2000]) < 0.1 * tr.history.loss[:1000].max()   # (a spread of losses)
    tr.learning_rate = rate
    with pytest.raises(fb.DivergenceError) as info:
        tr.fit(X, y, steps=3000)
    err = info.value
    assert err.sane and 2000 <= err.step <= 2003 and err.step < err.bad_step and tr.step == err.step


def _digits_blown_up_after(steps, kw, sample_weight=None, calls=None):
    """A digits run trained ``steps`` steps well (in calls of ``calls`` steps, or one), then at a rate 10,000x
    higher: its DivergenceError (and the trainer)."""
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    tr = fb.Trainer(**kw)
    for k in ([steps] if calls is None else [calls] * (steps // calls)):
        tr.fit(X, y, steps=k, sample_weight=sample_weight)
    tr.learning_rate *= 1e4
    with pytest.raises(fb.DivergenceError) as info:
        for _ in range(30):
            tr.fit(X, y, steps=100 if calls else 3000, sample_weight=sample_weight)
    return info.value, tr, X, y


@pytest.mark.parametrize("calls", [None, 100])
def test_a_run_fit_near_zero_loss_that_blows_up_goes_back_to_where_the_rate_was_raised(calls):
    """A run whose loss fell from 2.3 to ~1e-4 varies 10-fold there (and did on its way down): the first level
    10x over the lowest so far was one of those, thousands of steps before the blow-up, so a run trained 3,000
    steps and then blown up (the rate raised 10,000x) went back to its first step (one call), or said it could
    not go back far enough (sane False, in calls of 100). The blow-up is the blown levels after the last sane one
    now, and a level a tenth of the first one's is never blown: it goes back to the rate's change."""
    kw = dict(hidden=(64,), batch_size=64, learning_rate=1e-2, epochs=500, optimizer="adam", seed=0)
    err, tr, X, y = _digits_blown_up_after(3000, kw, calls=calls)
    assert err.sane and 3000 <= err.step < err.bad_step <= 3010 and tr.step == err.step
    assert np.median(tr.history.loss[2500:3000]) < 1e-3   # (fit near 0: the case)
    tr.learning_rate /= 100
    tr.fit(X, y, steps=200)  # (it trains on)


def test_a_weighted_run_of_many_zero_weights_that_blows_up_goes_back_to_where_the_rate_was_raised():
    """A batch whose sample weights are all 0 has a loss of 0 (its records count for nothing): a window of them had
    a level of 0 as the lowest so far, and every later level was 'blown', so a run trained 3,000 steps on 10% of
    the records (90% weights 0) and then blown up went back to its first step. Losses of 0 are no measure now."""
    w = (np.random.default_rng(0).random(1797) > 0.9).astype(float)
    kw = dict(hidden=(32,), batch_size=8, learning_rate=0.05, epochs=200, optimizer="sgd", seed=0)
    for calls in (None, 100):
        err, tr, _, _ = _digits_blown_up_after(3000, kw, sample_weight=w, calls=calls)
        assert err.sane and 3000 <= err.step < err.bad_step <= 3010 and tr.step == err.step


def diverge_in_calls_of_3_steps(dtype, learning_rate=0.5):
    """(trainer, X, y, its DivergenceError): an mse run at a rate far too high, trained 3 steps a call."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 4))
    y = X @ [1.0, 2.0, 3.0, 4.0]
    tr = fb.Trainer(hidden=(16,), loss="mse", epochs=20, batch_size=8, optimizer="sgd", momentum=0.9,
                    learning_rate=learning_rate, dtype=dtype)
    with pytest.raises(fb.DivergenceError) as info:
        while True:
            tr.fit(X, y, steps=3)
    return tr, X, y, info.value


def test_a_divergence_in_a_run_of_short_calls_rewinds_into_the_call_before():
    # the app's Step 1 batch and partial_fit make calls of a few steps: a divergence at a call's first
    # step could not go back before it (the run stayed at params that diverge at any rate)
    tr, X, y, err = diverge_in_calls_of_3_steps("float32")
    assert err.step < (err.bad_step // 3) * 3  # back into the call before the one that diverged
    assert err.sane and "last params whose batch loss was " in str(err)
    for _ in range(3):  # and it trains on, with the rate cut as the message says (0.005 diverged once more)
        tr.learning_rate /= 100
        try:
            tr.fit(X, y)
            break
        except fb.DivergenceError:
            continue
    assert tr.finished and np.isfinite(tr.evaluate(X, y)["loss"])


def test_a_divergence_that_cannot_go_back_far_enough_says_so_and_pickles():
    import pickle
    err = diverge_in_calls_of_3_steps("float64", 0.1)[3]   # (a slow blow-up: 10x, 100x... over several calls)
    assert not err.sane and "reset() starts the run over" in str(err)  # not "the last params ... finite"
    back = pickle.loads(pickle.dumps(err))  # (a Dask or joblib worker's error reaches the caller)
    assert (back.step, back.bad_step, back.sane, str(back)) == (err.step, err.bad_step, err.sane, str(err))
