"""The kernel's thread team: a step shared by 2-4 threads trains like one thread does.

Members share a step in one of two ways: each takes some of the batch's rows, or (few
rows through big layers) some of each layer's outputs.

The Trainer picks the team size itself (big steps only, as many threads as the BLAS
is set to). Here the kernel is called with ``n_threads`` forced, so every case runs
on a team whatever the machine: uneven shares, members with no rows at all (a last
batch of 1 record), small-loop and BLAS layers, every optimizer and loss.
"""
import ctypes
import functools
import os
import threading
import time

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _kernel
from helpers import make_data

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
OPTIMIZERS = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.01),
              dict(optimizer="adam"), dict(optimizer="adamw", weight_decay=0.05)]
CASES = [
    # (loss, activation, hidden, batch_size): 40 inputs -> 48 runs on BLAS for >= 17 rows, -> 5 on the small loops
    ("cross_entropy", "relu", (48, 5), 100),
    ("cross_entropy", "relu", (96, 40), 30),  # 96 outputs: 3 members get 32, 32 and 32 columns
    ("cross_entropy", "tanh", (20, 96, 8), 40),  # small, then BLAS, then small layers
    ("mse", "tanh", (48,), 64),
    ("binary_crossentropy", "sigmoid", (20,), 50),
    ("cross_entropy", "relu", (), 301),  # full batch, one layer
]


@pytest.fixture
def team(monkeypatch):
    """Run every kernel call of the test on a team of the given size, sharing rows or columns."""
    def use(n, columns=False):
        monkeypatch.setattr(_kernel, "train_steps", functools.partial(ORIGINAL, n_threads=n, split_columns=columns))
    return use


ORIGINAL = _kernel.train_steps


def train(loss, act, hidden, batch, opt, dtype, backend="cython", n=301, epochs=3):
    X, y = make_data(n=n, d=40, loss=loss, k=4 if loss != "binary_crossentropy" else 1)
    lr = 0.05 if opt["optimizer"] == "sgd" else 0.01
    tr = fb.Trainer(hidden=hidden, activation=act, loss=loss, batch_size=batch, epochs=epochs,
                    learning_rate=lr, seed=5, dtype=dtype, backend=backend, **opt)
    h = tr.fit(X, y)
    return h.loss.copy(), tr.get_params()


@pytest.mark.parametrize("n_threads, columns", [(2, False), (3, False), (2, True), (3, True)],
                         ids=["2rows", "3rows", "2columns", "3columns"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"] + str(o.get("momentum", "")))
@pytest.mark.parametrize("loss, act, hidden, batch", CASES, ids=lambda c: str(c))
def test_a_team_matches_the_numpy_reference(team, n_threads, columns, dtype, opt, loss, act, hidden, batch):
    ref_loss, ref_params = train(loss, act, hidden, batch, opt, dtype, backend="numpy")
    team(n_threads, columns)
    got_loss, got_params = train(loss, act, hidden, batch, opt, dtype)
    assert got_loss.shape == ref_loss.shape
    np.testing.assert_allclose(got_loss, ref_loss, **TOL[dtype])
    for (W, b), (Wr, br) in zip(got_params, ref_params):
        np.testing.assert_allclose(W, Wr, **TOL[dtype])
        np.testing.assert_allclose(b, br, **TOL[dtype])


@pytest.mark.parametrize("columns", [False, True])
def test_more_members_than_rows(team, columns):
    # 4 members, batches of 3 rows and a last one of 1: most members have nothing to do
    team(4, columns)
    got = train("cross_entropy", "relu", (48, 5), 3, OPTIMIZERS[0], "float64", n=10)
    ref = train("cross_entropy", "relu", (48, 5), 3, OPTIMIZERS[0], "float64", n=10, backend="numpy")
    np.testing.assert_allclose(got[0], ref[0], **TOL["float64"])


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_is_deterministic(team, columns):
    team(2, columns)
    a = train("cross_entropy", "relu", (48, 5), 100, OPTIMIZERS[2], "float32")
    b = train("cross_entropy", "relu", (48, 5), 100, OPTIMIZERS[2], "float32")
    assert np.array_equal(a[0], b[0])
    for (Wa, ba), (Wb, bb) in zip(a[1], b[1]):
        assert np.array_equal(Wa, Wb) and np.array_equal(ba, bb)


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_reads_a_memory_mapped_file(team, tmp_path, columns):
    X, y = make_data(n=301, d=40)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(hidden=(48, 5), batch_size=100, epochs=2, seed=1, dtype="float64")
    ref = fb.Trainer(**kw, backend="numpy").fit(X, y).loss
    team(3, columns)
    got = fb.Trainer(**kw).fit(Xm, y).loss
    np.testing.assert_allclose(got, ref, **TOL["float64"])


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_stops_on_a_diverging_loss_with_params_rewound(team, columns):
    team(2, columns)
    X, y = make_data(n=301, d=40)
    X[150:] *= 1e30  # some batches overflow
    tr = fb.Trainer(hidden=(48,), batch_size=100, epochs=2, learning_rate=1.0, dtype="float32")
    with pytest.raises(fb.DivergenceError):
        tr.fit(X, y)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in tr.get_params())


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_stops_when_asked(team, columns):
    team(2, columns)
    X, y = make_data(n=2000, d=40)
    tr = fb.Trainer(hidden=(48,), batch_size=64, epochs=10 ** 6, dtype="float32")
    timer = threading.Timer(0.3, tr.stop)
    timer.start()
    h = tr.fit(X, y)
    timer.join()
    assert 0 < h.n_steps < 10 ** 6 * 32
    assert np.isfinite(h.loss).all()


@pytest.mark.skipif(not _kernel.BLAS_THREADS_CONTROLLED, reason="the BLAS's thread count is not settable")
def test_the_blas_gets_its_thread_count_back():
    get = ctypes.CFUNCTYPE(ctypes.c_int)(_kernel._blas_get)
    set_ = ctypes.CFUNCTYPE(None, ctypes.c_int)(_kernel._blas_set)
    before = get()
    try:
        set_(3)
        X, y = make_data(n=4096, d=40)
        # a big step: the Trainer forms a team of 3, with the BLAS pinned to 1 meanwhile
        fb.Trainer(hidden=(64,), batch_size=1024, epochs=1, dtype="float32").fit(X, y)
        assert get() == 3
    finally:
        set_(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_forms_its_own_team(team):
    # the team's members are kept between calls; a forked child has none of them
    team(2)
    X, y = make_data(n=301, d=40)
    kw = dict(hidden=(48, 5), batch_size=100, epochs=1, seed=1, dtype="float64")
    ref = fb.Trainer(**kw).fit(X, y).loss  # the parent's members now exist
    pid = os.fork()
    if pid == 0:  # the child: train on a team again, exit 0 if it matches
        try:
            got = fb.Trainer(**kw).fit(X, y).loss
            os._exit(0 if np.array_equal(got, ref) else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    pytest.fail("the forked child hung forming a team")
