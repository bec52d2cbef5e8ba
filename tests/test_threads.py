"""The kernel's thread team: a step shared by 2-4 threads trains like one thread does.

Members share a step in one of two ways: each takes some of the batch's rows, or (few
rows through big layers) some of each layer's outputs.

The kernel picks the team size from ``spec.n_threads`` and the step's shapes (big steps
only). Here ``split_columns`` forces a team of ``n_threads`` and its split, so every case
runs on a team whatever the machine: uneven shares, members with no rows at all (a last
batch of 1 record), small-loop and BLAS layers, every optimizer and loss.
"""
import ctypes
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _kernel
from helpers import make_data
from kernel_run import train

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
OPTIMIZERS = [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.01),
              dict(optimizer="adam"), dict(optimizer="adamw", weight_decay=0.05)]
CASES = [
    # (loss, activation, hidden, batch_size): 40 inputs -> 48 runs on BLAS for >= 17 rows, -> 5 on the small loops
    ("cross_entropy", "relu", (48, 5), 100),
    ("cross_entropy", "relu", (96, 40), 30),  # 96 outputs: 3 members get 32, 32 and 32 columns; 96 -> 40 by rows
    ("cross_entropy", "tanh", (48, 96, 40), 30),  # split by columns twice (a partial delta), then 96 -> 40 by rows
    ("cross_entropy", "tanh", (20, 96, 8), 40),  # small, then BLAS, then small layers
    ("mse", "tanh", (48,), 64),
    ("binary_crossentropy", "sigmoid", (20,), 50),
    ("cross_entropy", "relu", (), 301),  # full batch, one layer
]


def run(loss, act, hidden, batch, opt, dtype, backend="cython", n=301, epochs=3, **kw):
    X, y = make_data(n=n, d=40, loss=loss, k=4 if loss != "binary_crossentropy" else 1)
    lr = 0.05 if opt["optimizer"] == "sgd" else 0.01
    return train(backend, X, y, hidden=hidden, activation=act, loss=loss, batch_size=batch, epochs=epochs,
                 lr=lr, seed=5, dtype=dtype, **opt, **kw)


@pytest.mark.parametrize("n_threads, columns", [(2, False), (3, False), (2, True), (3, True)],
                         ids=["2rows", "3rows", "2columns", "3columns"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"] + str(o.get("momentum", "")))
@pytest.mark.parametrize("loss, act, hidden, batch", CASES, ids=lambda c: str(c))
def test_a_team_matches_the_numpy_reference(n_threads, columns, dtype, opt, loss, act, hidden, batch):
    ref = run(loss, act, hidden, batch, opt, dtype, backend="numpy")
    got = run(loss, act, hidden, batch, opt, dtype, n_threads=n_threads, split_columns=columns)
    assert got.done == ref.done > 0
    np.testing.assert_allclose(got.losses, ref.losses, **TOL[dtype])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL[dtype])


@pytest.mark.parametrize("n_threads, columns", [(2, False), (3, False), (2, True), (3, True)],
                         ids=["2rows", "3rows", "2columns", "3columns"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, act, hidden, batch", CASES, ids=lambda c: str(c))
def test_a_team_weighs_records_and_tracks_noise_as_the_numpy_reference(n_threads, columns, dtype, loss, act, hidden,
                                                                        batch):
    w = np.random.default_rng(2).uniform(0.2, 2.0, 301)
    kw = dict(weights=w, noise=True, epochs=2)
    # (not RMSprop: its first steps are near g / |g|, so a team's sums in another order move
    # near-zero gradients' steps far beyond these tolerances)
    ref = run(loss, act, hidden, batch, OPTIMIZERS[1], dtype, backend="numpy", **kw)
    got = run(loss, act, hidden, batch, OPTIMIZERS[1], dtype, n_threads=n_threads, split_columns=columns, **kw)
    np.testing.assert_allclose(got.losses, ref.losses, **TOL[dtype])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL[dtype])
    np.testing.assert_allclose(got.noise, ref.noise, **TOL[dtype])


@pytest.mark.parametrize("columns", [False, True])
def test_more_members_than_rows(columns):
    # 4 members, batches of 3 rows and a last one of 1: most members have nothing to do
    got = run("cross_entropy", "relu", (48, 5), 3, OPTIMIZERS[0], "float64", n=10, n_threads=4,
              split_columns=columns)
    ref = run("cross_entropy", "relu", (48, 5), 3, OPTIMIZERS[0], "float64", n=10, backend="numpy")
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float64"])


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_is_deterministic(columns):
    a = run("cross_entropy", "relu", (48, 5), 100, OPTIMIZERS[2], "float32", n_threads=2, split_columns=columns)
    b = run("cross_entropy", "relu", (48, 5), 100, OPTIMIZERS[2], "float32", n_threads=2, split_columns=columns)
    assert np.array_equal(a.losses, b.losses) and np.array_equal(a.theta, b.theta)


RMSPROP = dict(optimizer="rmsprop", momentum=0.5, centered=True, weight_decay=0.01)


@pytest.mark.parametrize("opt", OPTIMIZERS + [RMSPROP, dict(optimizer="rmsprop")],
                         ids=lambda o: o["optimizer"] + str(o.get("momentum", "")))
def test_a_column_split_in_any_pieces_is_one_call(opt):
    # Sharing outputs, each member trains on its own copy of its columns of W and of the
    # optimizer state kept for them (m, v, ga), taken at a call's start and put back at its
    # end: however a run is cut into calls, it ends with the same bits. 283 records in batches of 40 end each
    # epoch with 3 rows (whose products would not go to the BLAS on their own: the layers stay
    # on the members' copies), and 96 outputs give 3 members 32 columns each.
    kw = dict(n_threads=3, split_columns=True, epochs=2, n=283)
    whole = run("cross_entropy", "relu", (96, 40), 40, opt, "float32", **kw)
    cut = run("cross_entropy", "relu", (96, 40), 40, opt, "float32", pieces=[1, 2, 5, 1, 7], **kw)
    assert whole.done == cut.done == 16
    assert np.array_equal(whole.losses, cut.losses) and np.array_equal(whole.theta, cut.theta)
    assert np.array_equal(whole.opt_state, cut.opt_state)


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
def test_a_team_matches_the_numpy_reference_with_centered_rmsprop(columns):
    # RMSprop's gradient average (ga) is the state only it keeps; float64, as its first steps
    # (near g / |g|) magnify a team's other order of sums in float32
    ref = run("cross_entropy", "relu", (96, 40), 30, RMSPROP, "float64", backend="numpy")
    got = run("cross_entropy", "relu", (96, 40), 30, RMSPROP, "float64", n_threads=2, split_columns=columns)
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float64"])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL["float64"])

@pytest.mark.parametrize("batch, split", [(1, "columns"), (40, "columns"), (256, "columns"), (512, "rows")])
def test_the_kernel_shares_a_big_layer_by_outputs_up_to_256_rows(batch, split):
    # 300 -> 256 is a big W: batches of 1-256 rows share its outputs (each member on its own
    # copy of its columns), bigger ones the rows (256 a member); either trains as the reference
    X, y = make_data(n=1100, d=300, k=4)
    kw = dict(hidden=(256,), batch_size=batch, steps=12, lr=0.01, seed=3, dtype="float64", optimizer="adam")
    ref = train("numpy", X, y, **kw)
    got = train("cython", X, y, n_threads=2, **kw)
    ws = [w for w in _kernel._local.workspaces.values() if repr(w).startswith("Workspace(n=1100, dtype=float64")
          and "batch_size=" + str(batch) + "," in repr(w) and "n_threads=2" in repr(w)]
    assert len(ws) == 1 and "members=2" in repr(ws[0]) and f"split={split}" in repr(ws[0])
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float64"])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL["float64"])


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_reads_a_memory_mapped_file(tmp_path, columns):
    X, y = make_data(n=301, d=40)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(hidden=(48, 5), batch_size=100, epochs=2, seed=1, dtype="float64")
    ref = train("numpy", X, y, **kw)
    fd = os.open(tmp_path / "X.npy", os.O_RDONLY)
    try:
        got = train("cython", X, y, X_read=Xm, fd=fd, data_offset=Xm.offset, n_threads=3, split_columns=columns,
                    **kw)
    finally:
        os.close(fd)
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float64"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_column_split_from_memory_equals_the_same_run_read_from_the_file(tmp_path, dtype):
    # from memory each member gathers the whole batch into its own copy; from a file they share
    # the reads: the same rows, standardised as they are read (x_affine), give the same bits
    X, y = make_data(n=301, d=300, k=5)
    X = (X * 7 + 3).astype(dtype)
    affine = np.stack([X.mean(0), 1 / X.std(0)]).astype(np.float64)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(hidden=(256, 40), batch_size=24, epochs=2, seed=1, dtype=dtype, optimizer="adam", noise=True,
              n_threads=3, split_columns=True, x_affine=affine)
    mem = train("cython", X, y, **kw)
    fd = os.open(tmp_path / "X.npy", os.O_RDONLY)
    try:
        read = train("cython", X, y, X_read=Xm, fd=fd, data_offset=Xm.offset, **kw)
    finally:
        os.close(fd)
    assert mem.done == read.done == 26 and np.isfinite(mem.losses).all()
    for a, b in ((mem.losses, read.losses), (mem.theta, read.theta), (mem.noise, read.noise)):
        assert np.array_equal(a, b)


def test_a_column_split_over_its_copies_memory_shares_one_copy_with_the_same_bits(monkeypatch):
    # the members' own copies of the batch are bounded (X_OWN_MAX_BYTES): past it, one copy, its
    # rows gathered by the members in shares, the same bits
    X, y = make_data(n=301, d=300, k=5)
    kw = dict(hidden=(256, 40), batch_size=24, epochs=2, seed=5, dtype="float32", optimizer="adam", noise=True,
              n_threads=3, split_columns=True)

    def run_on_a_new_workspace():
        monkeypatch.setattr(_kernel._local, "workspaces", {})
        monkeypatch.delattr(_kernel._local, "last", raising=False)
        r = train("cython", X, y, **kw)
        (ws,) = _kernel._local.workspaces.values()
        return r, repr(ws)

    own, own_ws = run_on_a_new_workspace()
    monkeypatch.setattr(_kernel, "X_OWN_MAX_BYTES", 2 * 24 * 300 * 4 - 1)  # (one byte short of 2 copies)
    shared, shared_ws = run_on_a_new_workspace()
    assert "members=3, split=columns, own_copies=True" in own_ws
    assert "members=3, split=columns, own_copies=False" in shared_ws
    assert own.done == shared.done == 26 and np.isfinite(shared.losses).all()
    for a, b in ((own.losses, shared.losses), (own.theta, shared.theta), (own.noise, shared.noise)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("hidden, n_threads, shared, batch", [
    ((96, 40), 2, 1, 30), ((96, 40), 3, 1, 30), ((48, 96, 40), 3, 2, 30), ((256, 10), 2, -1, 30),
    ((64, 48), 3, -1, 30),
    # whole vectors of rows, up to 64: the delta through the shared rows on the own tiles (rows_delta)
    ((96, 40), 2, 1, 32), ((48, 96, 40), 3, 2, 64),
    # small layers before the shared one, 32 -> 12 narrow (its W.T kept in member 0's WT from its forward to its
    # delta): rows_delta's scratch is not there
    ((32, 12, 64, 256, 96), 2, 4, 32)])
def test_a_column_split_shares_the_layer_before_its_tail_by_rows_when_every_member_has_rows(
        monkeypatch, hidden, n_threads, shared, batch):
    # the layer before the tail is shared by the rows of its W (the columns of its input the members made) when
    # the layer before it is shared by columns and every member has some: (256, 10)'s tail is the 10-class
    # output and the 256 -> 10 layer (member 0's: 10 columns); (64, 48) on 3 members leaves member 2 no rows.
    # Either way the team trains as the numpy reference
    monkeypatch.setattr(_kernel._local, "workspaces", {}, raising=False)
    monkeypatch.delattr(_kernel._local, "last", raising=False)
    got = run("cross_entropy", "relu", hidden, batch, OPTIMIZERS[3], "float64", n_threads=n_threads,
              split_columns=True, noise=True)
    (ws,) = _kernel._local.workspaces.values()
    assert f"members={n_threads}, split=columns, own_copies=True, rows_shared_layer={shared}," in repr(ws)
    ref = run("cross_entropy", "relu", hidden, batch, OPTIMIZERS[3], "float64", backend="numpy", noise=True)
    assert got.done == ref.done == 3 * -(-301 // batch)
    for a, b in ((got.losses, ref.losses), (got.theta, ref.theta), (got.noise, ref.noise)):
        np.testing.assert_allclose(a, b, **TOL["float64"])


@pytest.mark.parametrize("loss, act", [("cross_entropy", "relu"), ("mse", "tanh")])
def test_a_column_split_with_no_tail_shares_its_output_layer_by_rows_without_activating_its_outputs(
        monkeypatch, loss, act):
    # 20 outputs on 2 members: member 1 has columns of the output layer, so there is no tail and the layer
    # shared by rows is the output layer itself; its summed partials are the logits (the outputs), which
    # once went through the hidden layers' activation (relu'd logits: wrong losses from the first step)
    monkeypatch.setattr(_kernel._local, "workspaces", {}, raising=False)
    monkeypatch.delattr(_kernel._local, "last", raising=False)
    X, y = make_data(n=301, d=40, loss=loss, k=20)
    kw = dict(hidden=(64,), activation=act, loss=loss, batch_size=30, epochs=2, lr=0.01, seed=5, dtype="float64",
              optimizer="adam", noise=True)
    got = train("cython", X, y, n_threads=2, split_columns=True, **kw)
    (ws,) = _kernel._local.workspaces.values()
    assert "members=2, split=columns, own_copies=True, rows_shared_layer=1," in repr(ws)
    ref = train("numpy", X, y, **kw)
    assert got.done == ref.done == 22
    for a, b in ((got.losses, ref.losses), (got.theta, ref.theta), (got.noise, ref.noise)):
        np.testing.assert_allclose(a, b, **TOL["float64"])


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_stops_on_a_diverging_loss(columns):
    X, y = make_data(n=301, d=40)
    X[150:] *= 1e30  # some batches overflow
    r = train("cython", X, y, hidden=(48,), batch_size=100, epochs=2, lr=1.0, dtype="float32", n_threads=2,
              split_columns=columns)
    assert r.status == 2 and r.done < 6  # NONFINITE


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_stops_when_asked(columns):
    X, y = make_data(n=2000, d=40)
    stop = np.zeros(1, np.uint8)
    timer = threading.Timer(0.3, stop.fill, (1,))
    timer.start()
    r = train("cython", X, y, hidden=(48,), batch_size=64, epochs=10 ** 5, dtype="float32", n_threads=2,
              split_columns=columns, stop=stop)
    timer.join()
    assert r.status == 1 and r.done < 10 ** 5 * 32  # STOPPED (done may be 0 on a slow machine: the stop came first)
    assert np.isfinite(r.losses[:r.done]).all()


@pytest.mark.skipif(not _kernel.BLAS_THREADS_CONTROLLED, reason="the BLAS's thread count is not settable")
def test_the_blas_gets_its_thread_count_back():
    get = ctypes.CFUNCTYPE(ctypes.c_int)(_kernel._blas_get)
    set_ = ctypes.CFUNCTYPE(None, ctypes.c_int)(_kernel._blas_set)
    before = get()
    try:
        set_(3)
        X, y = make_data(n=4096, d=40)
        # a big step: a team of 3, with the BLAS pinned to 1 meanwhile
        train("cython", X, y, hidden=(64,), batch_size=1024, dtype="float32", n_threads=3)
        assert get() == 3
    finally:
        set_(before)


@pytest.mark.skipif(not _kernel.BLAS_THREADS_CONTROLLED, reason="the BLAS's thread count is not settable")
def test_a_run_started_while_another_threads_team_runs_gets_the_callers_thread_count():
    # a team pins the BLAS to one thread while it runs; a run started in another thread meanwhile
    # took that 1 for n_threads=None's default (another team size, other sums: a race on results)
    from fastbatch.trainer import default_threads
    get = ctypes.CFUNCTYPE(ctypes.c_int)(_kernel._blas_get)
    set_ = ctypes.CFUNCTYPE(None, ctypes.c_int)(_kernel._blas_set)
    before = get()
    seen, done = set(), threading.Event()
    try:
        set_(3)
        X, y = make_data(n=4096, d=40)
        team = threading.Thread(target=lambda: (train("cython", X, y, hidden=(64,), batch_size=1024, epochs=20,
                                                      dtype="float32", n_threads=3), done.set()))
        team.start()
        while not done.is_set():
            seen.add((get(), default_threads()))
        team.join()
        assert (1, 3) in seen  # the team held the BLAS at 1 while we looked, and the default stayed 3
        assert {d for _, d in seen} == {3}
    finally:
        set_(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_forms_its_own_team():
    # the team's members are kept between calls; a forked child has none of them
    X, y = make_data(n=301, d=40)
    kw = dict(hidden=(48, 5), batch_size=100, seed=1, dtype="float64", n_threads=2, split_columns=False)
    ref = train("cython", X, y, **kw).losses  # the parent's members now exist
    pid = os.fork()
    if pid == 0:  # the child: train on a team again, exit 0 if it matches
        try:
            got = train("cython", X, y, **kw).losses
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


def side_by_side(fn, args):
    """fn(*a) for each a in args, each in its own thread, started together."""
    go = threading.Barrier(len(args))
    out = [None] * len(args)

    def one(k):
        go.wait()
        out[k] = fn(*args[k])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("columns", [None, True], ids=["auto", "columns"])
def test_trainers_side_by_side_each_get_their_team_and_end_as_alone(columns):
    # batch 256 through 40 -> 64 -> 4: the shapes call for a team of 2 sharing rows (128 each)
    X, y = make_data(n=1200, d=40, k=4)

    def fit(seed):
        return train("cython", X, y, hidden=(64,), batch_size=256, epochs=6, seed=seed, dtype="float32",
                     optimizer="adam", lr=0.01, n_threads=2, split_columns=columns, pieces=[3] * 10)

    blas_before = _blas_threads()
    alone = [fit(seed) for seed in (1, 2, 3)]
    together = side_by_side(fit, [(1,), (2,), (3,)])
    for a, b in zip(alone, together):
        assert np.array_equal(a.losses, b.losses) and np.array_equal(a.theta, b.theta)
    assert _blas_threads() == blas_before  # the pin is counted: the last team out restores it


def _child_run(conn, kw):
    X, y = make_data(n=1200, d=40, k=4)
    r = train("cython", X, y, **kw)
    conn.send((r.losses, r.theta, _blas_threads()))
    conn.close()


def _blas_threads():
    return ctypes.CFUNCTYPE(ctypes.c_int)(_kernel._blas_get)() if _kernel.BLAS_THREADS_CONTROLLED else None


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_child_forked_during_a_team_run_trains_as_its_parent():
    # fork while another thread's team runs (members busy, BLAS pinned): the child starts clean
    X, y = make_data(n=1200, d=40, k=4)
    kw = dict(hidden=(64,), batch_size=256, epochs=3, seed=7, dtype="float64", optimizer="adam", lr=0.01,
              n_threads=2)
    ref = train("cython", X, y, **kw)
    blas_before = _blas_threads()
    stop = np.zeros(1, np.uint8)
    busy = threading.Thread(target=train, args=("cython", X, y),
                            kwargs=dict(hidden=(64,), batch_size=256, epochs=10 ** 6, n_threads=2, stop=stop))
    busy.start()
    try:
        time.sleep(0.2)
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_run, args=(child, kw))
        proc.start()
        assert parent.poll(60), "the forked child hung"
        losses, theta, blas_child = parent.recv()
        proc.join(10)
    finally:
        stop[0] = 1
        busy.join()
    assert np.array_equal(losses, ref.losses) and np.array_equal(theta, ref.theta)
    assert blas_child == blas_before  # not left pinned at 1 by the parent's team
    assert _blas_threads() == blas_before


@pytest.mark.parametrize("way", ["one", "alternate"])
@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("loss, act, hidden, batch", CASES, ids=lambda c: str(c))
def test_one_thread_running_a_teams_members_gives_the_teams_bits(monkeypatch, way, n_threads, loss, act, hidden,
                                                                  batch):
    # on busy cores one thread runs all the members of a row split, one after the other; a call
    # runs in pieces, each by the team or by one thread, whichever was faster lately
    kw = dict(n_threads=n_threads, split_columns=False, weights=np.linspace(0.5, 2, 301), noise=True, epochs=2)
    monkeypatch.setattr(_kernel, "_FORCE_WAY", "team")
    team = run(loss, act, hidden, batch, OPTIMIZERS[2], "float32", **kw)
    monkeypatch.setattr(_kernel, "_FORCE_WAY", way)
    monkeypatch.setattr(_kernel, "_PIECE_STEPS", 3)  # pieces of 3 steps: "alternate" changes way every 3 steps
    alone = run(loss, act, hidden, batch, OPTIMIZERS[2], "float32", **kw)
    assert team.done == alone.done and team.status == alone.status
    assert np.array_equal(team.losses, alone.losses) and np.array_equal(team.theta, alone.theta)
    assert np.array_equal(team.noise, alone.noise)


def _train_with_hits(**kw):
    X, y = make_data(n=301, d=40, k=4)
    sizes = np.array([40, 64, 4], np.int64)
    from kernel_run import make_spec
    spec = make_spec(sizes, batch_size=100, spe=4, n_threads=2, split_columns=False, **kw)
    from fastbatch._network import init_params
    theta = init_params(sizes, "relu", 3, np.dtype("float32"))
    opt_state = np.zeros((3, theta.shape[0]), np.float32)
    steps = 12
    out = dict(losses=np.full(steps, np.nan, np.float32), hits=np.full(steps, np.nan))
    done, status = _kernel.train_steps(spec, X.astype(np.float32), np.empty((0, 0), np.float32), y.astype(np.int64),
                                       np.empty(0, np.float32), theta, opt_state, np.full(302, -1, np.int64),
                                       np.full(steps, 0.05), out["losses"], np.empty((0, 2)), 0, steps, 0,
                                       np.zeros(1, np.uint8), 3600.0, hits=out["hits"])
    return done, status, theta, out


def test_pieces_run_either_way_record_the_teams_hits(monkeypatch):
    monkeypatch.setattr(_kernel, "_FORCE_WAY", "team")
    ref = _train_with_hits()
    monkeypatch.setattr(_kernel, "_FORCE_WAY", "alternate")
    monkeypatch.setattr(_kernel, "_PIECE_STEPS", 5)
    got = _train_with_hits()
    assert ref[:2] == got[:2] == (12, 0)
    assert np.array_equal(ref[2], got[2])
    for k in ("losses", "hits"):
        assert np.array_equal(ref[3][k], got[3][k]) and np.isfinite(got[3][k]).all()


def test_pieces_either_way_stop_on_a_diverging_loss_as_the_team(monkeypatch):
    X, y = make_data(n=301, d=40)
    X[150:] *= 1e30
    kw = dict(hidden=(48,), batch_size=100, epochs=2, lr=1.0, dtype="float32", n_threads=2, split_columns=False)
    monkeypatch.setattr(_kernel, "_FORCE_WAY", "team")
    ref = train("cython", X, y, **kw)
    monkeypatch.setattr(_kernel, "_FORCE_WAY", "alternate")
    monkeypatch.setattr(_kernel, "_PIECE_STEPS", 1)
    got = train("cython", X, y, **kw)
    assert got.status == ref.status == 2 and got.done == ref.done
    assert np.array_equal(got.losses, ref.losses, equal_nan=True) and np.array_equal(got.theta, ref.theta)


def test_a_row_split_starts_as_the_run_queue_says(monkeypatch):
    # a new workspace starts on one thread when other threads want the cores, else on its team
    X, y = make_data(n=1200, d=40, k=4)
    kw = dict(hidden=(64,), batch_size=256, epochs=1, dtype="float32", n_threads=2)  # 128 rows a member
    for others, way in ((10 ** 6, "one"), (-10 ** 6, "team")):
        monkeypatch.setattr(_kernel, "_runnable_others", lambda: others)
        _kernel._forget_workspaces()  # a new workspace (equal specs share one)
        r = train("cython", X, y, **kw)
        assert r.done == 5
        got = _workspace_of(r.spec).way
        assert got["begun"] and got["switches"] == 0 and got["way"] == way


def _workspace_of(spec):
    for key, ws in _kernel._local.workspaces.items():
        if key[0] == spec.key:
            return ws
    raise LookupError(spec)


def test_the_way_follows_the_faster_and_comes_back_when_the_load_goes():
    # made-up pieces: the team does 1000 steps/s on free cores, 300 next to a busy process;
    # one thread 700 either way
    w = _kernel._WayForTests(True)
    team_rate = 1000

    def feed(seconds, room):
        spent = {True: 0.0, False: 0.0}
        t = 0.0
        while t < seconds:
            team, piece = w.next(room)
            w.note(team, max(1, round(piece * (team_rate if team else 700))), piece)
            spent[team] += piece
            t += piece
        return spent

    spent = feed(5, True)
    assert w.team and spent[False] < 0.02 * 5  # tries of one thread: under 2% of the time
    team_rate = 300  # load came: the team falls behind one thread's last rate
    spent = feed(0.1, False)
    assert not w.team and spent[True] <= 0.025 + 0.005
    spent = feed(10, False)
    assert not w.team and spent[True] < 0.02 * 10  # tries of the team, rarer and rarer
    team_rate = 1000  # the load went away: the run queue says so, a try comes soon and wins
    spent = feed(0.1, True)
    assert w.team
    team_rate = 300  # a slow team is left even when the run queue says there is room
    feed(1, True)
    assert not w.team


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_that_sees_busy_cores_waits_otherwise_with_the_same_bits(monkeypatch, columns):
    # the run queue says the cores are taken: the barriers spin only briefly, the members between
    # jobs and the caller waiting for them sleep at once; the results do not change
    kw = dict(n_threads=2, split_columns=columns, weights=np.linspace(0.5, 2, 301), noise=True, epochs=3)
    monkeypatch.setattr(_kernel, "_FORCE_WAY", "team")
    monkeypatch.setattr(_kernel, "_runnable_others", lambda: -10 ** 6)
    free = run("cross_entropy", "relu", (96, 40), 30, OPTIMIZERS[2], "float32", **kw)
    monkeypatch.setattr(_kernel, "_runnable_others", lambda: 10 ** 6)
    monkeypatch.setattr(_kernel, "_PIECE_STEPS", 2)
    taken = run("cross_entropy", "relu", (96, 40), 30, OPTIMIZERS[2], "float32", **kw)
    assert np.array_equal(free.losses, taken.losses) and np.array_equal(free.theta, taken.theta)
    assert np.array_equal(free.noise, taken.noise)


def test_a_run_started_on_one_thread_tries_its_team_soon_once():
    # the run queue said the cores were taken (it may be stale: threads that were busy just before):
    # the team is tried within a tenth of a second and taken when faster; on cores that really
    # are taken it loses that try, and the next ones come rarely
    for team_rate, taken in ((1000, True), (300, False)):
        w = _kernel._WayForTests(False)
        t = 0.0
        while t < 0.09:  # (pieces of 0.025 s; the try after 0.05 s, the next one not before 0.1)
            team, piece = w.next(False)
            w.note(team, max(1, round(piece * (team_rate if team else 700))), piece)
            t += piece
        assert w.team == taken and w.tries == 1
        if not taken:
            while t < 1.9:
                team, piece = w.next(False)
                w.note(team, max(1, round(piece * (team_rate if team else 700))), piece)
                t += piece
            assert w.tries == 1  # no second try before FB_TRY_LAST


@pytest.mark.parametrize("hidden", [(129,), (257,), (225, 64)])
@pytest.mark.parametrize("batch", [1, 4, 16])
def test_two_threads_on_odd_widths_train_as_numpy(hidden, batch):
    # a big W at a small batch runs a team sharing each layer's outputs; widths of 32k + 1 (257 as
    # 144 + 113) once gave wrong outputs from the first step (see the test below)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 784))
    y = rng.integers(0, 3, 64)
    kw = dict(hidden=hidden, batch_size=batch, epochs=1, optimizer="sgd", learning_rate=0.01, dtype="float64", seed=1)
    got = fb.Trainer(n_threads=2, **kw).fit(X, y, steps=6)
    ref = fb.Trainer(backend="numpy", **kw).fit(X, y, steps=6)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-9)


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("hidden", [(97,), (129, 33), (257,), (48, 161)])
@pytest.mark.parametrize("opt", [OPTIMIZERS[0], OPTIMIZERS[2]], ids=["sgd", "adam"])
def test_members_copies_of_their_columns_are_sized_by_their_share(n_threads, hidden, opt):
    # a column split's members keep their columns of W (and m, v) in copies sized by member 0's
    # share; the size came from -(-n // nt), which under C division truncates (257 / 2 gave 128,
    # the share 144), so member 0's copy ran into member 1's and outputs were wrong from the first step
    X, y = make_data(n=80, d=40, loss="cross_entropy", k=3)
    kw = dict(hidden=hidden, batch_size=16, epochs=2, lr=0.01, seed=3, dtype="float64", **opt)  # (each BLAS-sized)
    ref = train("numpy", X, y, **kw)
    got = train("cython", X, y, n_threads=n_threads, split_columns=True, **kw)
    assert got.done == ref.done > 0
    np.testing.assert_allclose(got.losses, ref.losses, **TOL["float64"])
    np.testing.assert_allclose(got.theta, ref.theta, **TOL["float64"])


def test_a_big_w_without_a_team_has_the_same_bits_on_free_and_busy_cores(monkeypatch):
    # n_threads=2, a big W (300 x 256) and 300 rows: too few rows for a team, so the BLAS runs
    # the products on its own threads. Their number once came from the run queue (one thread
    # when busy), and OpenBLAS's sums differ with its threads: the same run gave other bits next
    # to a busy process. It comes from the spec and the shapes only now.
    X, y = make_data(n=700, d=300, loss="cross_entropy", k=3, seed=1)
    kw = dict(hidden=(256,), batch_size=300, steps=4, lr=0.05, seed=3, dtype="float64", n_threads=2)
    monkeypatch.setattr(_kernel, "_runnable_others", lambda: -10 ** 6)
    free = train("cython", X, y, **kw)
    monkeypatch.setattr(_kernel, "_runnable_others", lambda: 10 ** 6)
    taken = train("cython", X, y, **kw)
    assert free.done == taken.done == 4
    assert np.array_equal(free.losses, taken.losses) and np.array_equal(free.theta, taken.theta)


def test_the_learning_rate_set_from_another_thread_while_fit_runs_never_breaks_it():
    # learning_rate is live: another thread may set it during a fit (it used to drop the plan fit was reading)
    import sys
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(500, 6)).astype(np.float32), rng.integers(0, 3, 500)
    tr = fb.Trainer(hidden=(4,), batch_size=500, epochs=100_000, learning_rate=0.01, validation_split=0.1)
    done = threading.Event()

    def setter():
        v = 0.01
        while not done.is_set():
            tr.learning_rate = v
            v *= 0.9999
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)   # threads interleave densely
    th = threading.Thread(target=setter)
    th.start()
    try:
        for _ in range(20):
            tr.fit(X, y, steps=50)
    finally:
        done.set()
        th.join()
        sys.setswitchinterval(old)
    assert tr.step == 1000 and np.isfinite(tr.history.loss).all()


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_the_system_refuses_threads_trains_on_one_as_a_row_split(monkeypatch, columns):
    # a row split's members run on the threads there are (the same sums); a column split's copies are sized for
    # its planned members, so it runs all or none of them: without its threads, a row split of the same members
    kw = dict(hidden=(96, 40), batch_size=30, epochs=2, seed=5, dtype="float64", optimizer="adam", noise=True,
              n_threads=3)
    X, y = make_data(n=301, d=40)
    rows = train("cython", X, y, split_columns=False, **kw)
    try:
        _kernel._refuse_threads(True)
        got = train("cython", X, y, split_columns=columns, **kw)
    finally:
        _kernel._refuse_threads(False)
    assert got.done == rows.done == 22 and got.status == rows.status
    for a, b in ((got.losses, rows.losses), (got.theta, rows.theta), (got.noise, rows.noise)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("columns", [False, True])
def test_a_team_whose_threads_were_refused_trains_on_its_workspace_as_before(columns):
    # a refused column split runs as a row split, whose members leave their shares of the loss in the workspace:
    # the column split's loss is member 0's alone (it counted the others' shares: every later loss off by the
    # last one's, or NONFINITE at its first step after a refused call that diverged)
    from fastbatch._codes import Status
    kw = dict(hidden=(96, 40), batch_size=32, epochs=1, seed=5, n_threads=2, split_columns=columns)
    X, y = make_data(n=301, d=40)
    fresh = train("cython", X, y, **kw)
    for lr in (0.05, 1e200):
        try:
            _kernel._refuse_threads(True)
            refused = train("cython", X, y, lr=lr, **kw)
        finally:
            _kernel._refuse_threads(False)
        assert refused.status == (Status.DONE if lr < 1 else Status.NONFINITE)
        got = train("cython", X, y, **kw)
        assert got.done == fresh.done == 10 and got.status == fresh.status == Status.DONE
        for a, b in ((got.losses, fresh.losses), (got.theta, fresh.theta)):
            assert np.array_equal(a, b)
