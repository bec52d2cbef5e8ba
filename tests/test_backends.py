"""The Cython kernel against the numpy reference: same per-step losses and params."""
import itertools

import numpy as np
import pytest

from helpers import make_data
from kernel_run import train

LOSSES = ["mse", "binary_crossentropy", "cross_entropy"]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "identity"]
OPTIMIZERS = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9),
              dict(optimizer="sgd", momentum=0.8, nesterov=True, weight_decay=0.01),
              dict(optimizer="adam", weight_decay=0.01), dict(optimizer="adamw", weight_decay=0.05),
              dict(optimizer="rmsprop"), dict(optimizer="rmsprop", momentum=0.5, centered=True, weight_decay=0.01)]
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
DEPTHS = [(), (7,), (9, 4)]
BATCHING = [dict(shuffle=True, drop_last=False, batch_size=16), dict(shuffle=False, drop_last=True, batch_size=16),
            dict(shuffle=True, drop_last=True, batch_size=7), dict(shuffle=True, batch_size=500)]

CASES = [(loss, act, opt, dt, DEPTHS[i % 3], BATCHING[i % 4])
         for i, (loss, act, opt, dt) in enumerate(itertools.product(LOSSES, ACTIVATIONS, OPTIMIZERS, DTYPES))]


def run(backend, loss, act, opt, dt, hidden, batching, n=61, **kw):
    X, y = make_data(n=n, loss=loss, k=3 if loss != "mse" else 2)
    lr = 0.01 if opt["optimizer"] != "sgd" else 0.05
    return train(backend, X, y, hidden=hidden, activation=act, loss=loss, epochs=3, lr=lr, seed=3, dtype=dt,
                 **opt, **batching, **kw)


def assert_same(a, b, tol):
    assert a.done == b.done > 0 and a.status == b.status
    np.testing.assert_allclose(a.losses, b.losses, **tol)
    np.testing.assert_allclose(a.theta, b.theta, **tol)


@pytest.mark.parametrize("loss, act, opt, dt, hidden, batching", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]['optimizer']}{c[2].get('momentum', '')}-{c[3]}-{len(c[4])}h-"
                              f"b{c[5]['batch_size']}" for c in CASES])
def test_cython_matches_numpy(loss, act, opt, dt, hidden, batching):
    c = run("cython", loss, act, opt, dt, hidden, batching)
    assert c.theta.dtype == np.dtype(dt)
    assert_same(c, run("numpy", loss, act, opt, dt, hidden, batching), TOL[dt])


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_float32_tracks_float64(backend):
    X, y = make_data(n=200, loss="cross_entropy")
    res = {dt: train(backend, X, y, hidden=(16,), batch_size=32, epochs=4, lr=0.05, dtype=dt).losses
           for dt in DTYPES}
    np.testing.assert_allclose(res["float32"], res["float64"], rtol=1e-4)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_calls_in_pieces_are_bit_identical_to_one_call(backend):
    X, y = make_data(n=61, loss="cross_entropy")
    kw = dict(hidden=(7,), batch_size=8, epochs=4, optimizer="adam", seed=2, dtype="float32")
    one = train(backend, X, y, **kw)
    cut = train(backend, X, y, pieces=[1, 5, 2, 9, 3], **kw)
    assert np.array_equal(one.losses, cut.losses) and np.array_equal(one.theta, cut.theta)


@pytest.mark.parametrize("hidden", [(), (32,), (64, 32)])
def test_large_batches_use_the_blas_path_and_still_agree(hidden):
    # 784-wide input: the kernel's gemm (BLAS) path rather than its small loops
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 784))
    y = rng.integers(0, 10, 300)
    kw = dict(hidden=hidden, batch_size=128, epochs=2, lr=0.01, dtype="float64")
    c, n = train("cython", X, y, **kw), train("numpy", X, y, **kw)
    np.testing.assert_allclose(c.losses, n.losses, rtol=1e-10)
    np.testing.assert_allclose(c.theta, n.theta, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_non_finite_loss_stops_before_its_update(backend):
    X, y = make_data(n=64, loss="mse")
    y[40:48] = 1e200  # finite targets whose squared error overflows float64: step 5's loss is inf
    kw = dict(hidden=(5,), activation="tanh", loss="mse", batch_size=8, shuffle=False, lr=0.01)
    r = train(backend, X, y, **kw)
    assert (r.done, r.status) == (5, 2)  # NONFINITE at step 5, which made no update
    assert np.array_equal(r.theta, train(backend, X, y, steps=5, **kw).theta)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("loss, act", [(loss, act) for loss in LOSSES for act in ACTIVATIONS])
def test_weights_and_noise_norms_match_numpy(loss, act, dt):
    X, y = make_data(n=61, loss=loss, k=3 if loss != "mse" else 2)
    w = np.random.default_rng(1).uniform(0.0, 2.0, 61)
    w[:5] = 0  # records that count for nothing
    kw = dict(hidden=(9, 4), activation=act, loss=loss, batch_size=8, epochs=2, lr=0.05, seed=3, dtype=dt,
              optimizer="adam", weights=w, noise=True)
    c, n = train("cython", X, y, **kw), train("numpy", X, y, **kw)
    assert_same(c, n, TOL[dt])
    assert np.isfinite(c.noise).all() and (c.noise >= 0).all()
    np.testing.assert_allclose(c.noise, n.noise, **TOL[dt])


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_unit_weights_and_noise_tracking_change_nothing(backend):
    X, y = make_data(n=61, loss="cross_entropy")
    kw = dict(hidden=(7,), batch_size=8, epochs=2, seed=2, dtype="float64")
    plain = train(backend, X, y, **kw)
    tracked = train(backend, X, y, weights=np.full(61, 2.5), noise=True, **kw)
    np.testing.assert_allclose(tracked.losses, plain.losses, rtol=1e-13)
    np.testing.assert_allclose(tracked.theta, plain.theta, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_noise_norms_of_one_record_batches(backend):
    # with one record, the mean gradient is the record's: S = |G_B|^2
    X, y = make_data(n=10, loss="mse", k=2)
    r = train(backend, X, y, hidden=(5,), loss="mse", batch_size=1, epochs=1, noise=True, dtype="float64")
    np.testing.assert_allclose(r.noise[:, 1], r.noise[:, 0], rtol=1e-12)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_batch_of_zero_weights_has_zero_loss_and_gradient(backend):
    X, y = make_data(n=16, loss="cross_entropy")
    w = np.ones(16)
    w[:8] = 0
    r = train(backend, X, y, hidden=(5,), batch_size=8, steps=1, shuffle=False, weights=w, noise=True)
    assert r.losses[0] == 0 and np.array_equal(r.noise[0], [0.0, 0.0])


def test_the_kernel_names_a_misshapen_or_mistyped_array():
    X, y = make_data(n=20, loss="cross_entropy")
    r = train("cython", X, y, hidden=(4,), batch_size=5, steps=1, dtype="float32")
    base = dict(spec=r.spec, X=np.ascontiguousarray(X, np.float32), targets=np.empty((0, 0), np.float32),
                labels=np.asarray(y, np.int64), weights=np.empty(0, np.float32), theta=r.theta,
                opt_state=r.opt_state, order_cache=np.full(21, -1, np.int64), lrs=np.ones(1), losses=np.zeros(1, np.float32),
                noise=np.empty((0, 2)), start_step=0, n_steps=1, opt_t=0, stop=np.zeros(1, np.uint8),
                max_seconds=1.0)
    from fastbatch import _kernel
    with pytest.raises(ValueError, match="theta must have shape"):
        _kernel.train_steps(**{**base, "theta": np.zeros(len(r.theta) + 1, np.float32)})
    with pytest.raises(TypeError, match="theta must be a 1-D float32"):
        _kernel.train_steps(**{**base, "theta": r.theta.astype(np.float64)})
    with pytest.raises(ValueError, match="losses must have shape"):
        _kernel.train_steps(**{**base, "n_steps": 2, "lrs": np.ones(2)})
    with pytest.raises(TypeError, match="losses must be a 1-D float32"):  # the run's dtype: its history buffer
        _kernel.train_steps(**{**base, "losses": np.zeros(1)})


def test_the_callers_floating_point_mode_is_restored():
    # the kernel flushes subnormals to zero during a call, on every thread; the caller's mode comes back
    X, y = make_data(n=300, d=40, loss="cross_entropy")
    tiny = np.array([1e-39], np.float32)
    assert (tiny * np.float32(1.0))[0] != 0  # subnormals survive here
    train("cython", X, y, hidden=(48,), batch_size=128, dtype="float32", n_threads=2, split_columns=False)
    train("cython", X, y, hidden=(48,), batch_size=8, dtype="float32")
    assert (tiny * np.float32(1.0))[0] != 0


@pytest.mark.parametrize("dt", DTYPES)
def test_adam_over_many_steps_in_pieces_is_bit_identical_and_matches_numpy(dt):
    # Adam's bias corrections are beta ** t: pow at multiples of 64, products between (any chunking,
    # the same bits); the float32 update uses refined reciprocal estimates on AVX-512 CPUs
    X, y = make_data(n=61, loss="cross_entropy")
    kw = dict(hidden=(24,), batch_size=2, epochs=7, optimizer="adam", seed=2, dtype=dt, lr=0.01)
    one = train("cython", X, y, **kw)
    cut = train("cython", X, y, pieces=[1, 63, 2, 64, 65, 7, 30], **kw)
    assert one.done == 7 * 31 and np.array_equal(one.losses, cut.losses) and np.array_equal(one.theta, cut.theta)
    ref = train("numpy", X, y, **kw)
    np.testing.assert_allclose(one.losses, ref.losses, **TOL[dt])
    np.testing.assert_allclose(one.theta, ref.theta, **TOL[dt])


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_whose_gradient_squares_overflow_float32_goes_on_as_numpy(optimizer):
    # gradients near 1e22: (1 - b2) g^2 is past float32's range, so v is infinite and the update
    # m / (sqrt(v) + eps) is 0, as in torch; the AVX-512 update's estimates of 1/sqrt(v) and 1/d must
    # give that 0 too, not inf * 0 = NaN (a DivergenceError where numpy and torch go on)
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=40) * 1e11, rng.normal(size=40)].astype(np.float32)
    y = (X[:, 0] * 2.0 + 1e10).astype(np.float32)
    X = np.tile(X, (1, 12))  # 24 inputs: a vector and a half of weights on the AVX-512 path
    kw = dict(hidden=(), loss="mse", batch_size=4, epochs=2, optimizer=optimizer, lr=1e-3, seed=1, dtype="float32")
    got, ref = train("cython", X, y, **kw), train("numpy", X, y, **kw)
    assert got.done == ref.done == 20 and np.isfinite(got.theta).all() and np.isfinite(got.losses).all()
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float32"])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL["float32"])


@pytest.mark.parametrize("batch", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("scale", [1.0, 300.0], ids=["moderate", "gaps-past-exp-range"])
def test_two_class_softmax_matches_numpy(batch, weighted, scale):
    # two classes take their own float32 path (fb_ce2_f: 16 rows at a time, in vectors); partial
    # chunks of rows, weights, and logit gaps whose exp underflows (> 87) must all agree
    X, y = make_data(n=203, d=6, loss="cross_entropy", k=2, seed=7)
    w = np.random.default_rng(8).uniform(0.0, 2.0, len(y)) if weighted else None
    # (huge gaps: a few steps, as later ones amplify rounding; the float64 reference differs as much)
    kw = dict(hidden=(9,), batch_size=batch, epochs=2, lr=0.05 / scale, seed=5, dtype="float32", weights=w,
              steps=None if scale == 1.0 else 6)
    ref, got = train("numpy", X * scale, y, **kw), train("cython", X * scale, y, **kw)
    assert got.done == ref.done > 0 and np.isfinite(got.losses).all()
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float32"])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL["float32"])


def test_two_class_accuracy_counts_ties_as_the_first_class():
    # equal logits: numpy's argmax says class 0, so exactly the label-0 records are classified right
    import fastbatch as fb
    X, y = make_data(n=256, d=4, loss="cross_entropy", k=2, seed=2)
    accs = []
    for backend in ("cython", "numpy"):
        tr = fb.Trainer(hidden=(), batch_size=256, epochs=1, optimizer="sgd", seed=0, backend=backend,
                        n_threads=1)  # one step: its accuracy is of the params before its update
        tr.set_params([(np.zeros((4, 2)), np.zeros(2))])
        accs.append(tr.fit(X, y).metrics["accuracy"][0])
    assert accs[0] == accs[1] == pytest.approx(np.mean(y == 0))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("batch, weighted", [(1, False), (7, True), (32, False), (40, True)])
def test_the_two_class_path_trains_with_the_general_paths_bits(optimizer, batch, weighted):
    # fb_ce2_f does the general softmax's arithmetic in vectors: the same params, bit for bit, and the
    # same hit fractions (Adam would amplify any change in a near-zero gradient into a different run)
    import fastbatch as fb
    from fastbatch import _kernel
    X, y = make_data(n=203, d=6, loss="cross_entropy", k=2, seed=9)
    w = np.random.default_rng(3).uniform(0.2, 3.0, len(y)) if weighted else None
    runs = []
    for on in (True, False):
        was = _kernel._use_two_class_path(on)
        try:
            tr = fb.Trainer(hidden=(16,), batch_size=batch, epochs=4, optimizer=optimizer, learning_rate=0.02,
                            seed=1, n_threads=1)
            h = tr.fit(X, y, sample_weight=w)
        finally:
            _kernel._use_two_class_path(was)
        runs.append((tr.run_state.theta.copy(), h.metrics["accuracy"], h.loss))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    np.testing.assert_allclose(runs[0][2], runs[1][2], rtol=1e-6)  # (the losses' sums may round in another order)


@pytest.mark.parametrize("label", [0, 1])
def test_the_two_class_path_stops_on_an_infinite_logit_as_the_general_path(label):
    # logits +inf and -inf (finite params, records near float32's largest): the general path's
    # z - max is inf - inf, a NaN loss, and the call ends before its first update; so must this one
    from fastbatch import _kernel
    from fastbatch._codes import Status
    X = np.full((8, 4), 1e38, np.float32)
    W = np.zeros((4, 2), np.float32)
    W[:, 1], W[:, 0] = 1.0, -1.0
    runs = []
    for on in (True, False):
        was = _kernel._use_two_class_path(on)
        try:
            runs.append(train("cython", X, np.full(8, label), batch_size=8, steps=3, lr=0.01, dtype="float32",
                              params=[(W, np.zeros(2, np.float32))]))
        finally:
            _kernel._use_two_class_path(was)
    for r in runs:
        assert r.done == 0 and r.status == Status.NONFINITE and np.isnan(r.losses[0])
    assert np.array_equal(runs[0].theta, runs[1].theta)
