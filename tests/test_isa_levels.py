"""The kernel's vector code of each ISA this CPU runs: AVX-512 (level 2), AVX2 + FMA (1), baseline (0).

Each ISA has its own rendering of the vector functions, in its own register width (_kernel_dense.h.tp);
the kernel runs the widest one. The rest of the suite tests that one; here every narrower one this CPU
can run is made the kernel's (``_kernel._use_isa_level``) and held to the numpy reference too.
"""
import numpy as np
import pytest

import test_backends as B
from helpers import make_data
from kernel_run import train

from fastbatch import _kernel

TOP = _kernel._isa_level()
NARROWER = list(range(TOP))  # the levels the rest of the suite does not run (none on a baseline CPU)


@pytest.fixture(params=NARROWER or [pytest.param(None, marks=pytest.mark.skip(reason="no narrower ISA"))],
                ids=lambda level: f"level{level}")
def level(request):
    was = _kernel._use_isa_level(request.param)
    assert _kernel._isa_level() == request.param
    yield request.param
    _kernel._use_isa_level(was)
    assert _kernel._isa_level() == TOP


# every optimizer, loss, activation and dtype, with the depths and batchings cycling (a third of CASES)
CASES = B.CASES[::3]


@pytest.mark.parametrize("loss, act, opt, dt, hidden, batching", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]['optimizer']}-{c[3]}-{len(c[4])}h-b{c[5]['batch_size']}"
                              for c in CASES])
def test_each_isa_matches_numpy(level, loss, act, opt, dt, hidden, batching):
    B.test_cython_matches_numpy(loss, act, opt, dt, hidden, batching)


@pytest.mark.parametrize("dt", B.DTYPES)
@pytest.mark.parametrize("loss", B.LOSSES)
def test_each_isas_weights_and_noise_norms_match_numpy(level, loss, dt):
    B.test_weights_and_noise_norms_match_numpy(loss, "relu", dt)


@pytest.mark.parametrize("batch", [1, 5, 8, 15, 16, 17, 40])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_each_isas_two_class_softmax_matches_numpy(level, batch, weighted):
    # its blocks of rows are 16 (AVX-512), 8 (AVX2) or 4 (baseline) wide: partial ones on each side
    B.test_two_class_softmax_matches_numpy(batch, weighted, 1.0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("batch, weighted", [(1, False), (7, True), (32, False), (40, True)])
def test_each_isas_two_class_path_has_the_general_paths_bits(level, optimizer, batch, weighted):
    B.test_the_two_class_path_trains_with_the_general_paths_bits(optimizer, batch, weighted)


@pytest.mark.parametrize("label", [0, 1])
def test_each_isas_two_class_path_stops_on_an_infinite_logit(level, label):
    B.test_the_two_class_path_stops_on_an_infinite_logit_as_the_general_path(label)


@pytest.mark.parametrize("hidden", [(), (32,), (64, 32)])
def test_each_isas_blas_sized_layers_agree(level, hidden):
    B.test_large_batches_use_the_blas_path_and_still_agree(hidden)


@pytest.mark.parametrize("dt", B.DTYPES)
def test_each_isa_is_bit_identical_run_to_run_and_close_to_the_widest(level, dt):
    # one ISA gives the same bits every time; another ISA sums in another order, within rounding
    X, y = make_data(n=300, d=13, loss="cross_entropy", k=3, seed=4)
    kw = dict(hidden=(40, 24), batch_size=32, epochs=3, lr=0.05, seed=2, dtype=dt, optimizer="adam")
    a, b = train("cython", X, y, **kw), train("cython", X, y, **kw)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.losses, b.losses)
    _kernel._use_isa_level(2)
    try:
        widest = train("cython", X, y, **kw)
    finally:
        _kernel._use_isa_level(level)
    B.assert_same(a, widest, B.TOL[dt])


def test_the_level_is_checked():
    for bad in (-1, 3):
        with pytest.raises(ValueError, match="cap must be 0, 1 or 2"):
            _kernel._use_isa_level(bad)
    assert _kernel._isa_level() == TOP
    was = _kernel._use_isa_level(2)  # a cap above the CPU's: its own level
    assert _kernel._isa_level() == TOP
    _kernel._use_isa_level(was)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("d, hidden, batch", [(600, (48,), 13), (40, (96, 80), 45)])
def test_each_isas_own_products_match_the_reference_and_gemm(level, d, hidden, batch, dtype):
    # AVX2's tiles are 6 rows (AVX-512's 8) by 2 vectors of 8 lanes; at level 0 both runs take gemm
    import test_kernel_products as P
    P.test_own_products_match_the_reference_and_gemm(d, hidden, batch, dtype, dict(optimizer="adam"))
