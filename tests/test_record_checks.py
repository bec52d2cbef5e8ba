"""The kernel looks at each record it reads; the driver turns a bad one into an error naming it.

A call no longer passes over every value of the data (that made each call O(records)): the
Cython kernel checks the X row and the label or target of every record a step gathers, and a
bad one ends the call before that step changes anything. The Trainer then restores the run
to where the call began and raises the full check's ValueError, which names the value.
"""
import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _kernel_spec  # noqa: F401 - the kernel's spec module must import
from fastbatch._codes import Status
from helpers import make_data
from kernel_run import BACKENDS, data, make_spec

_kernel = BACKENDS["cython"]
pytestmark = pytest.mark.skipif(_kernel is None, reason="the Cython kernel is not built")


def kernel_call(X, y, loss, dtype="float32", batch_size=4, n_threads=1, split_columns=None, hidden=(6,),
                steps=20):
    """Run ``steps`` steps from fresh params in one call, records in order; (done, status, bad, theta, theta0)."""
    Xc, targets, labels, k = data(X, y, loss, dtype)
    if loss == "cross_entropy":
        k = 3  # labels 0..2 are valid whatever the data holds
    sizes = np.array([Xc.shape[1], *hidden, k], dtype=np.int64)
    spec = make_spec(sizes, batch_size=batch_size, spe=-(-len(Xc) // batch_size), loss=loss, shuffle=False,
                     n_threads=n_threads, split_columns=split_columns)
    theta = np.random.default_rng(0).normal(size=spec.n_params).astype(dtype) * 0.1
    theta0 = theta.copy()
    bad = np.full(2, -7, dtype=np.int64)
    done, status = _kernel.train_steps(spec, Xc, targets, labels, np.empty(0, dtype), theta,
                                       np.zeros((3, len(theta)), dtype), np.full(len(Xc) + 1, -1, np.int64),
                                       np.full(steps, 0.05), np.zeros(steps, dtype), np.empty((0, 2)), 0, steps, 0,
                                       np.zeros(1, np.uint8), 60.0, bad=bad)
    return done, status, bad, theta, theta0


BAD_CASES = [  # (loss, what to spoil, expected part: 0 X / 1 y)
    ("cross_entropy", "nan_x", 0), ("cross_entropy", "inf_x", 0), ("cross_entropy", "label_high", 1),
    ("cross_entropy", "label_negative", 1), ("mse", "nan_target", 1), ("mse", "inf_target", 1),
    ("binary_crossentropy", "half_target", 1), ("binary_crossentropy", "nan_x", 0),
]


def spoil(X, y, what, record):
    X, y = X.copy(), y.copy()
    if what == "nan_x":
        X[record, 2] = np.nan
    elif what == "inf_x":
        X[record, 0] = -np.inf
    elif what == "label_high":
        y[record] = 3
    elif what == "label_negative":
        y[record] = -1
    elif what == "nan_target":
        y[record] = np.nan
    elif what == "inf_target":
        y[record] = np.inf
    elif what == "half_target":
        y[record] = 0.5
    return X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, what, part", BAD_CASES)
def test_the_kernel_stops_at_the_first_step_reading_a_bad_record(loss, what, part, dtype):
    X, y = make_data(n=40, loss=loss, k=1 if loss == "mse" else 3)
    X, y = spoil(X, y, what, record=21)  # in the batch of step 5 (records 20..23, in order)
    done, status, bad, theta, _ = kernel_call(X, y, loss, dtype)
    assert (done, status) == (5, Status.BAD_INPUT)
    assert bad.tolist() == [21, part]
    # the params are those of the first 5 steps: the bad step changed nothing
    assert np.array_equal(theta, kernel_call(X, y, loss, dtype, steps=5)[3])


@pytest.mark.parametrize("split_columns", [False, True])
@pytest.mark.parametrize("part", [0, 1])
def test_a_team_stops_the_same_way(split_columns, part):
    # (a column split's members each gather the whole batch from memory and look at their own
    # copies: a bad X value in a record every member gathers is reported as one record)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(512, 300)), rng.integers(0, 3, 512)
    if part:
        y[300] = 9  # step 2 at batch 128 (split_columns: batch 16, step 18)
    else:
        X[300, 7] = np.nan
    batch = 16 if split_columns else 128
    done, status, bad, theta, _ = kernel_call(X, y, "cross_entropy", batch_size=batch, n_threads=2,
                                              split_columns=split_columns, hidden=(256,), steps=25)
    assert (done, status, bad.tolist()) == (300 // batch, Status.BAD_INPUT, [300, part])
    ref = kernel_call(X, y, "cross_entropy", batch_size=batch, n_threads=2, split_columns=split_columns,
                      hidden=(256,), steps=300 // batch)
    assert np.array_equal(theta, ref[3])


@pytest.mark.parametrize("split_columns", [False, True])
def test_two_bad_records_in_a_teams_batch_are_reported_as_the_least_every_time(split_columns):
    # members that find different bad records in one batch (a row split: each looks at its own rows) report the
    # least (record, part) whichever flags first, never one record with the other's part
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(512, 300)), rng.integers(0, 3, 512)
    y[260] = 9          # member 0's rows of step 2 at batch 128 (records 256..383, in order)
    X[370, 7] = np.nan  # member 1's
    batch = 16 if split_columns else 128
    got = {tuple(kernel_call(X, y, "cross_entropy", batch_size=batch, n_threads=2, split_columns=split_columns,
                             hidden=(256,), steps=25)[:3][2].tolist()) for _ in range(30)}
    assert got == {(260, 1)}


def test_clean_records_are_not_flagged_and_bad_is_left_alone():
    X, y = make_data(n=40, loss="cross_entropy")
    X[5, 1], X[6, 2], X[7, 3] = 1e4, 1e-40, -0.0  # large, subnormal in float32 and negative zero: all fine
    done, status, bad, _, _ = kernel_call(X, y, "cross_entropy", steps=10)
    assert (done, status) == (10, Status.DONE)
    assert bad.tolist() == [-7, -7]


def test_params_made_non_finite_by_the_last_update_are_reported():
    X, y = make_data(n=40, loss="mse", k=1)
    Xc, targets, labels, k = data(X, y * 1e15, "mse", "float32")
    sizes = np.array([5, 1], dtype=np.int64)
    spec = make_spec(sizes, batch_size=40, spe=1, loss="mse", shuffle=False)
    theta = np.zeros(spec.n_params, np.float32)
    losses = np.zeros(1, np.float32)
    # one full-batch step whose loss is finite in float32 but whose update overflows it
    done, status = _kernel.train_steps(spec, Xc, targets, labels, np.empty(0, np.float32), theta,
                                       np.zeros((3, len(theta)), np.float32), np.full(41, -1, np.int64),
                                       np.full(1, 1e30), losses, np.empty((0, 2)), 0, 1, 0,
                                       np.zeros(1, np.uint8), 60.0)
    assert not np.isfinite(theta).all()
    assert (done, status) == (1, Status.NONFINITE)
    assert np.isfinite(losses[0]) and losses[0] > 1e28


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_loss_beyond_float32_is_non_finite_before_its_update(backend):
    # a float32 run's loss of ~1e60 (finite in the float64 it is summed in) cannot be held by its
    # history: the call ends there, as for an infinite loss, and the params stay as they were
    X, y = make_data(n=40, loss="mse", k=1)
    Xc, targets, labels, k = data(X, y * 1e30, "mse", "float32")
    spec = make_spec(np.array([5, 1], dtype=np.int64), batch_size=40, spe=1, loss="mse", shuffle=False)
    theta = np.zeros(spec.n_params, np.float32)
    losses = np.zeros(1, np.float32)
    done, status = BACKENDS[backend].train_steps(spec, Xc, targets, labels, np.empty(0, np.float32), theta,
                                                 np.zeros((3, len(theta)), np.float32), np.full(41, -1, np.int64),
                                                 np.full(1, 1e-42), losses, np.empty((0, 2)), 0, 1, 0,
                                                 np.zeros(1, np.uint8), 60.0)
    assert (done, status) == (0, Status.NONFINITE) and not theta.any()
    with pytest.raises(fb.DivergenceError):  # through the Trainer: a divergence, not a history of inf
        fb.Trainer(loss="mse", hidden=(), epochs=2, batch_size=40, learning_rate=1e-42,
                   optimizer="sgd").fit(X, y * 1e30)


# ---------------------------------------------------------------- through the Trainer


def trainer(**kw):
    return fb.Trainer(**{**dict(hidden=(8,), batch_size=4, epochs=3, optimizer="sgd", learning_rate=0.05,
                                shuffle=False, n_threads=1), **kw})


def test_an_array_edited_in_place_between_calls_is_an_error_naming_the_value():
    X, y = make_data(n=40, loss="cross_entropy")
    tr = trainer()
    tr.fit(X, y, steps=3)
    params = tr.get_params()
    X[30, 4] = np.inf  # read by step 8 (records 28..31); the call begins at step 3
    with pytest.raises(ValueError, match=r"X\[30, 4\] is inf"):
        tr.fit(X, y)
    assert tr.step == 3  # back where the call began
    for (W, b), (W0, b0) in zip(tr.get_params(), params):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)
    X[30, 4] = 0.0
    y[37] = 7
    with pytest.raises(ValueError, match="label 7"):
        tr.fit(X, y)
    assert tr.step == 3
    y[37] = 1
    tr.fit(X, y)
    assert tr.finished and np.isfinite(tr.history.loss).all()


def test_a_bad_record_in_a_first_call_leaves_the_trainer_unstarted():
    X, y = make_data(n=40, loss="cross_entropy")
    X[33, 0] = np.nan
    tr = trainer()
    pending = [(np.full((5, 8), 0.1), np.zeros(8)), (np.full((8, 3), 0.1), np.zeros(3))]
    tr.set_params(pending)
    with pytest.raises(ValueError, match=r"X\[33, 0\] is NaN"):
        tr.fit(X, y)
    assert not tr.started and tr.step == 0
    assert tr.batch_size == 4 and tr.has_params  # still configurable, the params set are still there
    tr.batch_size = 8  # (a started run would refuse this)
    assert np.array_equal(tr.get_params()[0][0], pending[0][0].astype(np.float32))


def test_a_bad_record_the_call_never_reads_is_not_an_error():
    X, y = make_data(n=40, loss="cross_entropy")
    X[39, 0] = np.nan  # in the last batch of the epoch
    tr = trainer()
    tr.fit(X, y, steps=2)
    assert tr.step == 2 and np.isfinite(tr.history.loss).all()
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y)
    assert tr.step == 2


def test_the_numpy_backend_still_checks_every_value_first():
    X, y = make_data(n=40, loss="cross_entropy")
    X[39, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trainer(backend="numpy").fit(X, y, steps=1)


def test_labels_changed_by_another_thread_mid_fit_never_write_out_of_bounds():
    import threading
    X, y = make_data(n=64, loss="cross_entropy")
    tr = trainer()
    tr.epochs = 400
    tr.fit(X, y, steps=1)
    done = threading.Event()

    def flip():  # one label goes out of range and back, over and over, while the kernel reads it
        keep = y[5]
        while not done.is_set():
            y[5] = 99
            y[5] = keep

    t = threading.Thread(target=flip)
    t.start()
    errors = 0
    try:
        for _ in range(40):
            try:
                tr.fit(X, y, steps=150)
            except ValueError as e:
                assert "label" in str(e) or "record" in str(e)
                errors += 1
    finally:
        done.set()
        t.join()
    assert len(tr.history.loss) == tr.step and np.isfinite(tr.history.loss).all()
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in tr.get_params())
    step = tr.step
    tr.fit(X, y, steps=150)  # the labels left alone again: it trains
    assert tr.step == step + 150


def test_an_x_value_made_non_finite_by_another_thread_mid_call_never_trains_a_column_splits_member():
    # From memory each member of a column split gathers the whole batch into its own copy. A value
    # another thread makes non-finite meanwhile can reach member 1's copy and not member 0's: it is
    # still a bad record, ending the call before that step changes anything (its relu outputs are 0,
    # so the loss stays finite: unchecked, it went into member 1's columns of W as NaN)
    import threading
    rng = np.random.default_rng(4)
    X = rng.normal(size=(64, 300)).astype(np.float32)
    labels = rng.integers(0, 3, 64)
    spec = make_spec(np.array([300, 256, 3], dtype=np.int64), batch_size=32, spe=2, shuffle=False, n_threads=2,
                     split_columns=True)
    done_flipping = threading.Event()

    def flip():  # one column goes non-finite and back, over and over, while the members gather it
        while not done_flipping.is_set():
            X[:, 5] = np.nan
            X[:, 5] = 0.5

    t = threading.Thread(target=flip)
    t.start()
    seen = set()
    try:
        for _ in range(300):
            theta = np.random.default_rng(0).normal(size=spec.n_params).astype(np.float32) * 0.05
            done, status = _kernel.train_steps(spec, X, np.empty((0, 0), np.float32), labels,
                                               np.empty(0, np.float32), theta, np.zeros((3, len(theta)), np.float32),
                                               np.full(65, -1, np.int64), np.full(50, 0.05), np.zeros(50, np.float32),
                                               np.empty((0, 2)), 0, 50, 0, np.zeros(1, np.uint8), 60.0)
            seen.add((Status(status).name, bool(np.isfinite(theta).all())))
    finally:
        done_flipping.set()
        t.join()
    assert seen <= {("DONE", True), ("BAD_INPUT", True)}


def test_equal_specs_share_a_key_and_different_ones_never_do():
    import threading
    from kernel_run import make_spec
    specs = {}

    def make(t):
        for i in range(200):
            specs[(t, i)] = make_spec(np.array([3, 4 + i % 50, 2]), batch_size=1 + i % 7, spe=3)

    threads = [threading.Thread(target=make, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_key = {}
    for s in specs.values():
        by_key.setdefault(s.key, set()).add((tuple(s.sizes.tolist()), s.batch_size))
    assert all(len(v) == 1 for v in by_key.values())  # one key, one spec's contents
    assert len(by_key) == len({(tuple(s.sizes.tolist()), s.batch_size) for s in specs.values()})


def test_a_refused_call_puts_back_a_plateau_schedule_and_the_epochs_it_asked_for():
    X, y = make_data(n=40, loss="cross_entropy")
    kw = dict(lr_schedule="plateau", epochs=4)
    ref, tr = trainer(**kw), trainer(**kw)
    ref.fit(X, y, steps=5)
    tr.fit(X, y, steps=5)
    bad = X.copy()
    bad[30, 0] = np.nan  # read in epoch 2 (step 18): the call closes epoch 1 first
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(bad, y, epochs=9)
    assert tr.epochs == 4 and tr.total_steps == ref.total_steps and tr.step == 5
    assert tr._schedule.state() == ref._schedule.state()
    ref.fit(X, y)
    tr.fit(X, y)
    assert np.array_equal(tr.history.loss, ref.history.loss)
    assert np.array_equal(tr.history.learning_rate, ref.history.learning_rate)


def test_a_first_call_looks_at_the_held_out_rows():
    X, y = make_data(n=40, loss="cross_entropy")
    from fastbatch._data import split_indices
    held_out = split_indices(40, 0.25, 0)[1]
    X[held_out[0], 2] = np.nan  # the kernel never reads a held-out row
    tr = trainer(validation_split=0.25)
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y)
    assert not tr.started


def test_mse_targets_beyond_float32_are_named():
    X, y = make_data(n=40, loss="mse", k=1)
    y[17] = 1e300
    with pytest.raises(ValueError, match=r"too large for float32.*entry 17 is 1e\+300"):
        trainer(loss="mse").fit(X, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_non_finite_value_anywhere_in_a_batch_of_any_width_is_found(dtype):
    # the finiteness test runs in vectors of 32 bytes, four at a time, then one by one: every width
    # (below, at and past each of those) and every position of the bad value in the gathered batch
    rng = np.random.default_rng(8)
    big = np.finfo(dtype).max
    for n_feat in (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40):
        X = rng.normal(size=(8, n_feat))
        X[0, 0], X[-1, -1] = -0.0, big / 2  # finite extremes are fine (x * 0 is 0 for them)
        X[1, n_feat // 2] = np.finfo(dtype).tiny / 4  # a subnormal
        y = rng.integers(0, 3, 8)
        done, status, _, _, _ = kernel_call(X, y, "cross_entropy", dtype, batch_size=8, hidden=(), steps=1)
        assert (done, status) == (1, Status.DONE)
        for pos in range(8 * n_feat):
            for bad_value in (np.nan, np.inf, -np.inf):
                Xb = X.copy()
                Xb.flat[pos] = bad_value
                done, status, bad, _, _ = kernel_call(Xb, y, "cross_entropy", dtype, batch_size=8, hidden=(), steps=1)
                assert (done, status, bad.tolist()) == (0, Status.BAD_INPUT, [pos // n_feat, 0]), (n_feat, pos)
