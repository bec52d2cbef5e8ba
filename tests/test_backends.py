"""The Cython kernel against the numpy reference: same per-step losses and params."""
import itertools

import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data

LOSSES = ["mse", "binary_crossentropy", "cross_entropy"]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "identity"]
OPTIMIZERS = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9),
              dict(optimizer="sgd", momentum=0.8, nesterov=True, weight_decay=0.01),
              dict(optimizer="adam", weight_decay=0.01), dict(optimizer="adamw", weight_decay=0.05)]
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
DEPTHS = [(), (7,), (9, 4)]
BATCHING = [dict(shuffle=True, drop_last=False, batch_size=16), dict(shuffle=False, drop_last=True, batch_size=16),
            dict(shuffle=True, drop_last=True, batch_size=7), dict(shuffle=True, batch_size=500)]

CASES = [(loss, act, opt, dt, DEPTHS[i % 3], BATCHING[i % 4])
         for i, (loss, act, opt, dt) in enumerate(itertools.product(LOSSES, ACTIVATIONS, OPTIMIZERS, DTYPES))]


def run(backend, loss, act, opt, dt, hidden, batching, n=61):
    X, y = make_data(n=n, loss=loss, k=3 if loss != "mse" else 2)
    lr = 0.01 if opt["optimizer"] != "sgd" else 0.05
    tr = fb.Trainer(hidden=hidden, activation=act, loss=loss, epochs=3, learning_rate=lr, seed=3,
                    dtype=dt, backend=backend, **opt, **batching)
    h = tr.fit(X, y)
    return h, tr.get_params()


@pytest.mark.parametrize("loss, act, opt, dt, hidden, batching", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]['optimizer']}{c[2].get('momentum', '')}-{c[3]}-{len(c[4])}h-"
                              f"b{c[5]['batch_size']}" for c in CASES])
def test_cython_matches_numpy(loss, act, opt, dt, hidden, batching):
    hc, pc = run("cython", loss, act, opt, dt, hidden, batching)
    hn, pn = run("numpy", loss, act, opt, dt, hidden, batching)
    assert hc.n_steps == hn.n_steps > 0
    np.testing.assert_allclose(hc.loss, hn.loss, **TOL[dt])
    for (Wc, bc), (Wn, bn) in zip(pc, pn):
        assert Wc.dtype == np.dtype(dt)
        np.testing.assert_allclose(Wc, Wn, **TOL[dt])
        np.testing.assert_allclose(bc, bn, **TOL[dt])


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_float32_tracks_float64(backend):
    res = {}
    for dt in DTYPES:
        X, y = make_data(n=200, loss="cross_entropy")
        tr = fb.Trainer(hidden=(16,), batch_size=32, epochs=4, learning_rate=0.05, dtype=dt, backend=backend)
        res[dt] = tr.fit(X, y).loss
    np.testing.assert_allclose(res["float32"], res["float64"], rtol=1e-4)


@pytest.mark.parametrize("hidden", [(), (32,), (64, 32)])
def test_large_batches_use_the_blas_path_and_still_agree(hidden):
    # 784-wide input: the kernel's gemm (BLAS) path rather than its small loops
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 784))
    y = rng.integers(0, 10, 300)
    out = {}
    for be in ("cython", "numpy"):
        tr = fb.Trainer(hidden=hidden, batch_size=128, epochs=2, learning_rate=0.01, dtype="float64", backend=be)
        out[be] = (tr.fit(X, y).loss, tr.get_params())
    np.testing.assert_allclose(out["cython"][0], out["numpy"][0], rtol=1e-10)
    for (a, _), (b, _) in zip(out["cython"][1], out["numpy"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
