"""The kernel's own AVX-512 products of BLAS-sized layers (fb_mm_* in _kernel_dense.h) against the
numpy reference, and against the same kernel on gemm: odd row counts (tiles of 8, 4 and 1 rows),
widths of whole vectors, a vector and a pair of vectors (48, 80, 96), inputs longer than a block of
the shared dimension (600 > 256), batches longer than a block of rows, every optimizer, both team
splits. On a CPU without AVX-512 both runs take gemm (and still must agree)."""
import numpy as np
import pytest

from fastbatch import _kernel
from helpers import make_data
from kernel_run import train

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
OPTIMIZERS = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9), dict(optimizer="adam")]


@pytest.fixture
def gemm_only():
    was = _kernel._use_own_products(False)
    yield
    _kernel._use_own_products(was)


def run(backend, d, hidden, batch, dtype, opt, n=203, epochs=2, **kw):
    X, y = make_data(n=n, d=d, loss="cross_entropy", k=5, seed=3)
    lr = 0.05 if opt["optimizer"] == "sgd" else 0.01
    return train(backend, X, y, hidden=hidden, batch_size=batch, epochs=epochs, lr=lr, seed=4, dtype=dtype,
                 **opt, **kw)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"] + str(o.get("momentum", "")))
@pytest.mark.parametrize("d, hidden, batch", [
    (600, (48,), 13),        # k in 3 blocks; 13 rows: a tile of 8, of 4 and of 1; 48 = a pair of vectors + one
    (40, (96, 80), 45),      # 96 and 80 outputs; 45 rows: more than a block of the gradient's rows
    (70, (64, 32), 203),     # full batch: many blocks of rows
    (300, (16,), 37),        # one vector of outputs
])
def test_own_products_match_the_reference_and_gemm(d, hidden, batch, dtype, opt):
    ref = run("numpy", d, hidden, batch, dtype, opt)
    own = run("cython", d, hidden, batch, dtype, opt)
    was = _kernel._use_own_products(False)
    try:
        gemm = run("cython", d, hidden, batch, dtype, opt)
    finally:
        _kernel._use_own_products(was)
    assert own.done == ref.done == gemm.done > 0
    for got in (own, gemm):
        np.testing.assert_allclose(got.losses, ref.losses, **TOL[dtype])
        np.testing.assert_allclose(got.theta, ref.theta, **TOL[dtype])


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_own_products_in_a_team_match_the_reference(columns, dtype):
    # 2 members: a column split shares 96 outputs as 48 + 48 (a ragged last share goes to gemm)
    opt = dict(optimizer="sgd")
    ref = run("numpy", 40, (96, 40), 24 if columns else 160, dtype, opt)
    got = run("cython", 40, (96, 40), 24 if columns else 160, dtype, opt, n_threads=2, split_columns=columns)
    np.testing.assert_allclose(got.losses, ref.losses, **TOL[dtype])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL[dtype])


def test_turning_them_off_and_on_restores_the_setting(gemm_only):
    assert _kernel._use_own_products(True) == 0
    assert _kernel._use_own_products(False) in (0, 7)  # 7: all products, on an AVX-512 CPU
