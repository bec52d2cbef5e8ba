"""The kernel's own products of BLAS-sized layers (fb_mm_* in _kernel_dense.h; AVX-512 or AVX2) against
the numpy reference, and against the same kernel on gemm: every row count's tiles (8 or 6, 4, and 1-3),
widths of whole vectors, a vector and a pair of vectors (48, 80, 96), inputs longer than a block of
the shared dimension (600 > 256), batches longer than a block of rows, every optimizer, both team
splits. On a CPU without AVX2 both runs take gemm (and still must agree)."""
import numpy as np
import pytest

from fastbatch import _kernel
from helpers import make_data
from fastbatch._network import init_params
from kernel_run import data, make_spec, train

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
OPTIMIZERS = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9), dict(optimizer="adam")]


@pytest.fixture
def gemm_only():
    was = _kernel._use_own_products(False)
    yield
    _kernel._use_own_products(was)


def run(backend, d, hidden, batch, dtype, opt, n=203, epochs=2, lr=None, **kw):
    X, y = make_data(n=n, d=d, loss="cross_entropy", k=5, seed=3)
    lr = lr or (0.05 if opt["optimizer"] == "sgd" else 0.01)
    return train(backend, X, y, hidden=hidden, batch_size=batch, epochs=epochs, lr=lr, seed=4, dtype=dtype,
                 **opt, **kw)


def assert_own_and_gemm_match_numpy(d, hidden, batch, dtype, opt, **kw):
    """The run on the own products and on gemm (_use_own_products(False)) both match numpy's."""
    ref = run("numpy", d, hidden, batch, dtype, opt, **kw)
    own = run("cython", d, hidden, batch, dtype, opt, **kw)
    was = _kernel._use_own_products(False)
    try:
        gemm = run("cython", d, hidden, batch, dtype, opt, **kw)
    finally:
        _kernel._use_own_products(was)
    assert own.done == ref.done == gemm.done > 0
    for got in (own, gemm):
        np.testing.assert_allclose(got.losses, ref.losses, **TOL[dtype])
        np.testing.assert_allclose(got.theta, ref.theta, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"] + str(o.get("momentum", "")))
@pytest.mark.parametrize("d, hidden, batch", [
    (600, (48,), 13),        # k in 3 blocks; 13 rows: a tile of 8, of 4 and of 1; 48 = a pair of vectors + one
    (40, (96, 80), 75),      # 96 and 80 outputs; 75 rows: more than a block of the gradient's rows (FB_RC)
    (70, (64, 32), 203),     # full batch: many blocks of rows
    (300, (16,), 37),        # one vector of outputs
])
def test_own_products_match_the_reference_and_gemm(d, hidden, batch, dtype, opt):
    assert_own_and_gemm_match_numpy(d, hidden, batch, dtype, opt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"] + str(o.get("momentum", "")))
@pytest.mark.parametrize("d, hidden, batch", [
    (784, (256, 64), 1),     # a row alone: 8 vectors at a time; its deltas as dot products, not gemm
    (520, (160, 48), 3),     # three rows; 160 outputs: 8 vectors of AVX2's and 2 more, or 10 of 16
])
def test_own_products_of_a_few_rows_match_the_reference_and_gemm(d, hidden, batch, dtype, opt):
    # (a small rate: a step of one record through 784 inputs moves far)
    assert_own_and_gemm_match_numpy(d, hidden, batch, dtype, opt, n=60, epochs=1, lr=0.002)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [*range(1, 15), 17, 32, 39])
def test_every_remainder_of_rows_after_the_big_tiles_matches_the_reference(batch, dtype):
    # rows go into tiles of 8 (AVX-512's forward) or 6, then of 4, then one tile of the last 1-3; after
    # tiles of 6 a remainder of 1, 2 or 5 trades one for 4-row tiles (fb_row_tiles). The batch's rows
    # are the forward's tile rows; the inputs (701 = 6 * 116 + 5, 48 = 6 * 8) the weight gradient's
    assert_own_and_gemm_match_numpy(701, (48,), batch, dtype, OPTIMIZERS[0], n=40, epochs=1, lr=0.002)


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
    assert _kernel._use_own_products(False) in (0, 7)  # 7: all products, on an AVX-512 or AVX2 CPU


@pytest.mark.parametrize("shift", [0, 1, 3])
def test_a_misaligned_theta_is_updated_in_place(shift):
    # theta `shift` floats past a cache line: the kernel runs the call on an aligned copy (several
    # steps through BLAS-sized layers) and copies it back into the caller's array
    X, y = make_data(n=96, d=64, loss="cross_entropy", k=5, seed=3)
    kw = dict(hidden=(48,), batch_size=32, epochs=3, lr=0.05, seed=4, dtype="float32")
    ref = train("numpy", X, y, **kw)
    Xc, targets, labels, k = data(X, y, "cross_entropy", np.float32)
    sizes = np.array([64, 48, k], dtype=np.int64)
    spec = make_spec(sizes, batch_size=32, spe=3, seed=4)
    base = np.empty(ref.theta.size + 32, np.float32)
    start = (-base.ctypes.data % 64) // 4 + shift
    theta = base[start:start + ref.theta.size]
    theta[:] = init_params(sizes, "relu", 4, np.dtype(np.float32))
    steps = 9
    losses = np.full(steps, np.nan, np.float32)
    done, status = _kernel.train_steps(spec, Xc, targets, labels, np.empty(0, np.float32), theta,
                                       np.zeros((3, theta.size), np.float32), np.full(97, -1, np.int64),
                                       np.full(steps, 0.05), losses, np.empty((0, 2)), 0, steps, 0,
                                       np.zeros(1, np.uint8), 3600.0)
    assert done == steps
    np.testing.assert_allclose(losses, ref.losses, **TOL["float32"])
    np.testing.assert_allclose(theta, ref.theta, **TOL["float32"])


@pytest.mark.parametrize("start", ["init", "set_params", "load"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_runs_params_lie_on_a_cache_line(tmp_path, start, dtype):
    # the kernel then trains on them where they lie (no aligned copy in and out of each call)
    import fastbatch as fb
    X, y = make_data(n=64, d=12, loss="cross_entropy", k=3, seed=1)
    tr = fb.Trainer(hidden=(8,), batch_size=16, epochs=2, dtype=dtype, seed=2)
    if start == "set_params":
        rng = np.random.default_rng(0)
        tr.set_params([(rng.normal(size=(12, 8)), np.zeros(8)), (rng.normal(size=(8, 3)), np.zeros(3))])
    tr.fit(X, y, steps=3)
    if start == "load":
        path = str(tmp_path / "run.npz")
        tr.save(path)
        tr = fb.Trainer.load(path)
    theta = tr.run_state.theta
    assert theta.ctypes.data % 64 == 0 and theta.dtype == np.dtype(dtype) and theta.flags.c_contiguous


@pytest.mark.parametrize("hidden, k, batch", [
    ((32,), 2, 40),     # the seed net's last layer: 16 rows at a time, twice, then 8 one by one
    ((48,), 3, 16),     # inputs of three vectors, one block of rows exactly
    ((40,), 2, 37),     # inputs not whole vectors: one row at a time
])
def test_a_narrow_last_layer_matches_the_reference(hidden, k, batch):
    # a layer of few outputs is dot products along its inputs (fb_abt): 16 rows' at a time are
    # summed together (fb_hsum16_f) when the inputs are whole vectors; every row's must be right
    X, y = make_data(n=203, d=12, loss="cross_entropy", k=k, seed=5)
    kw = dict(hidden=hidden, batch_size=batch, epochs=2, lr=0.05, seed=4, dtype="float32", optimizer="sgd")
    ref, got = train("numpy", X, y, **kw), train("cython", X, y, **kw)
    assert got.done == ref.done > 0
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float32"])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL["float32"])


@pytest.mark.parametrize("d, hidden, batch, threads", [
    (10, (32, 24), 1, {}), (10, (32, 24), 5, {}), (10, (32, 24), 32, {}),
    (12, (40,), 64, dict(n_threads=2, split_columns=False)),       # a team sharing rows: no fusing
    (600, (48, 32), 4, dict(n_threads=2, split_columns=True)),     # a team sharing outputs: member 0's small layers
    (600, (48, 32), 1, dict(n_threads=2, split_columns=True)),     # ... and its narrow last layer, a row alone
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plain_sgd_steps_small_layers_in_place_as_numpy(d, hidden, batch, threads, dtype):
    # plain SGD writes W -= lr * A.T @ D into a small layer's W on the own tiles (no gradient in G); a
    # narrow layer (5 outputs) only at batch 1, as a rank-1 update
    opt = dict(optimizer="sgd")
    ref = run("numpy", d, hidden, batch, dtype, opt, n=97, lr=0.01)
    got = run("cython", d, hidden, batch, dtype, opt, n=97, lr=0.01, **threads)
    assert got.done == ref.done > 0
    np.testing.assert_allclose(got.losses, ref.losses, **TOL[dtype])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL[dtype])
