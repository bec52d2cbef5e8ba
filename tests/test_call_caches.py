"""What is kept between calls to make them cheap never changes a result: the data of each call is
the caller's as it is now, and the memos of fresh runs are keyed by everything they depend on."""
import dataclasses
import gc
import threading
import warnings
import weakref

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _driver, _run, config as _config
from fastbatch.schedule import SHARED_MAX_STEPS, epoch_order
from helpers import make_data

KW = dict(hidden=(8,), batch_size=4, epochs=20, optimizer="sgd", learning_rate=0.05)


def same_params(a, b):
    return all(np.array_equal(x, y) for pa, pb in zip(a.get_params(), b.get_params()) for x, y in zip(pa, pb))


def plain(n=64, seed=0):
    """float32 X and int64 labels: arrays the kernel reads as they are (no converted copy)."""
    X, y = make_data(n=n, seed=seed)
    return X.astype(np.float32), y.astype(np.int64)


def test_a_warm_trainer_keeps_no_reference_to_the_callers_arrays():
    X, y = plain()
    tr = fb.Trainer(**KW)
    for _ in range(3):
        tr.fit(X, y, steps=1)
    refs = weakref.ref(X), weakref.ref(y)
    del X, y
    gc.collect()
    assert refs[0]() is None and refs[1]() is None



@pytest.mark.parametrize("steps", [None, 3])
def test_a_first_fit_keeps_no_reference_to_the_callers_arrays(steps):
    # a first call trains on the caller's float32 X and int64 y as they are (no copy): the run's loss limit
    # remembers which data it is for by a token, never by the call's FitData, which holds them
    X, y = plain()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=steps)
    refs = weakref.ref(X), weakref.ref(y)
    del X, y
    gc.collect()
    assert refs[0]() is None and refs[1]() is None


@pytest.mark.parametrize("hooks", [{}, {"on_progress": lambda h: None}], ids=["quiet", "on_progress"])
def test_a_dropped_trainer_is_freed_at_once(hooks):
    # what a trainer keeps between calls (its run's source, its hook-less Hooks) makes no
    # reference cycle: its buffers go when the last reference does, not at a later GC pass
    # (which left a fresh Trainer's first fit paying page faults for the new run's buffers)
    X, y = plain()
    gc.disable()
    try:
        tr = fb.Trainer(**KW)
        tr.fit(X, y, steps=3, **hooks)
        tr.fit(X, y, steps=1, **hooks)
        ref = weakref.ref(tr)
        del tr
        assert ref() is None
    finally:
        gc.enable()

def test_a_fit_calls_history_keeps_none_of_the_runs_big_buffers():
    # a loop that keeps what fit returns (a list of Histories) must not keep each run's params,
    # optimizer rows and snapshots: a fresh Trainer's buffers would then never be reused
    X, y = plain()
    gc.disable()
    try:
        tr = fb.Trainer(**KW)
        kept = [tr.fit(X, y, steps=1) for _ in range(2)]
        st = tr.run_state
        copied = [s.theta for s in st.snapshots if s.theta is not None]  # (a new run's first snapshot copies none)
        # (plain SGD's opt_state is the zeros every such run of its shape shares, kept: not the run's own buffer)
        own = [st.opt_state] if st.opt_state.flags.writeable else []
        assert own or st.opt_state is _run.shared_zeros(st.opt_state.shape, st.opt_state.dtype)
        refs = [weakref.ref(a) for a in [st.theta] + own + copied]
        del st, copied
        del tr
        assert all(r() is None for r in refs)
        assert [len(h.loss) for h in kept] == [1, 2]
    finally:
        gc.enable()


def test_arrays_edited_in_place_between_one_step_calls_are_trained_on_as_they_are_now():
    X, y = plain()
    X2, y2 = plain(seed=1)
    tr, ref = fb.Trainer(**KW), fb.Trainer(**KW)
    for i in range(6):
        tr.fit(X, y, steps=1)
        ref.fit(X.copy(), y.copy(), steps=1)
        if i == 2:
            X[...], y[...] = X2, y2  # the same objects, new values
    assert same_params(tr, ref) and np.array_equal(tr.history.loss, ref.history.loss)


def test_another_array_of_the_same_shape_is_trained_on():
    X, y = plain()
    X2, y2 = plain(seed=1)
    a, b = fb.Trainer(**KW), fb.Trainer(**KW)
    a.fit(X, y, steps=3)
    a.fit(X2, y2, steps=3)
    b.fit(X, y, steps=3)
    b.fit(X2.copy(), y2.copy(), steps=3)
    c = fb.Trainer(**KW)
    c.fit(X, y, steps=3)
    c.fit(X, y, steps=3)
    assert same_params(a, b) and not same_params(a, c)


_REGRESSION_KW = dict(hidden=(4,), batch_size=8, epochs=10, loss="mse", learning_rate=1e-3)


def _regression():
    """float32 X and 1-D float32 regression targets (64 records)."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=64).astype(np.float32)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_targets_scaled_up_in_place_between_calls_get_the_loss_limit_of_their_new_values(backend):
    # a later call on the same arrays keeps their target peak: targets scaled up in place since must not end the
    # run as a false divergence (the limit is looked at again when a call blows past it), nor hide a real one
    X, y = _regression()
    kw = dict(_REGRESSION_KW, backend=backend, learning_rate=1e-9)
    tr = fb.Trainer(**kw)
    for _ in range(2):
        tr.fit(X, y, steps=2)
    y_then = y.copy()
    y *= 1e5  # in place: the same object, the same layout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr.fit(X, y, steps=2)
        tr.fit(X, y, steps=1)
    fresh = fb.Trainer(**kw)
    for _ in range(2):
        fresh.fit(X, y_then, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh.fit(X, y.copy(), steps=3)  # the same values in a new array: the limit of their own peak
    assert tr.step == fresh.step == 7 and same_params(tr, fresh)
    assert np.array_equal(tr.history.loss, fresh.history.loss)
    if backend != "cython":  # (the numpy backend checks each call's data whole: a new peak every call)
        return
    # the look again happens once per blown-up call, and only raises the limit: unchanged targets keep it
    data = tr._last_arrays.get(X, y)
    try:
        tr._source.bind(data, None, None)
        assert not tr._source.limit_was_stale(tr._state)  # (it has their peak now: a real divergence stays one)
        y *= 10
        assert tr._source.limit_was_stale(tr._state) and not tr._source.limit_was_stale(tr._state)
        y /= 100
        assert not tr._source.limit_was_stale(tr._state)  # (smaller targets: the limit stays where it was)
    finally:
        tr._source.release()
        tr._last_arrays.release()


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_bad_target_in_targets_scaled_up_in_place_is_named_and_leaves_the_divergence_check_on(backend, bad):
    # targets scaled up in place, one made inf or NaN: the call blows past the cached limit first, and the peak of
    # the targets as they are is taken over their finite records (a NaN peak compared with no limit: a false
    # divergence rewound into the call before; an inf one switched the check off for good). The bad record is
    # named, the call undone, and the next call makes its limit from the targets it has: put right, a real
    # divergence is one again
    X, y = _regression()
    tr = fb.Trainer(backend=backend, **_REGRESSION_KW)
    tr.fit(X, y, steps=3)
    tr.fit(X, y, steps=1)  # (a later call: its FitData, with the targets' peak, kept for the next calls)
    y_then = y.copy()
    y *= np.float32(1e5)
    y[5] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=str(bad)):
            tr.fit(X, y, steps=10)
        assert tr.step == 4  # the call undone, nothing before it
        y[:] = y_then  # put right, in place
        tr.fit(X, y, steps=2)
        tr.learning_rate = 1e4
        with pytest.raises(fb.DivergenceError):  # as on a new array of these values, and on the numpy backend
            tr.fit(X, y, steps=20)


def test_a_bad_value_written_between_calls_is_named_and_the_call_undone():
    X, y = plain()
    tr = fb.Trainer(**{**KW, "batch_size": 64})  # every step reads every record
    tr.fit(X, y, steps=2)
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y, steps=2)
    assert tr.step == 2
    X[5, 1] = 0.0
    y[7] = 99
    with pytest.raises(ValueError, match="99"):
        tr.fit(X, y, steps=2)
    assert tr.step == 2


def test_a_memory_maps_file_rewritten_between_calls_is_read_as_it_is_now(tmp_path):
    X, y = plain()
    X2, _ = plain(seed=1)
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xm = np.load(path, mmap_mode="r")
    tr, ref = fb.Trainer(**KW), fb.Trainer(**KW)
    tr.fit(Xm, y, steps=3)
    ref.fit(X, y, steps=3)
    with open(path, "r+b") as f:  # the same file, new values
        f.seek(Xm.offset)
        f.write(X2.tobytes())
    tr.fit(Xm, y, steps=3)
    ref.fit(X2, y, steps=3)
    assert same_params(tr, ref)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_the_first_epochs_order_kept_for_new_runs_is_the_backends_and_changes_nothing(backend):
    X, y = plain(n=300)
    kw = {**KW, "backend": backend, "seed": 7, "epochs": 2}
    _driver._first_orders.clear()
    cold = fb.Trainer(**kw)
    cold.fit(X, y, steps=5)
    kept = [v for k, v in _driver._first_orders.items() if k[1:] == (300, 7, True)]
    assert len(kept) == 1 and np.array_equal(kept[0], epoch_order(300, 7, 0)) and not kept[0].flags.writeable
    warm = fb.Trainer(**kw)  # copies the kept order
    warm.fit(X, y)
    cold.fit(X, y)
    assert same_params(cold, warm) and np.array_equal(cold.history.loss, warm.history.loss)
    other = fb.Trainer(**{**kw, "seed": 8})  # another seed: its own order
    other.fit(X, y, steps=1)
    assert np.array_equal(other.run_state.order_cache[1:], epoch_order(300, 8, 0))



def test_new_runs_in_many_threads_keep_and_take_first_orders_safely():
    # 8 threads make fresh runs of 6 record counts at once: the kept orders are added and
    # evicted concurrently, and every run trains exactly as it does alone
    import threading
    data = {n: plain(n=n, seed=n) for n in (40, 41, 42, 43, 44, 45)}
    alone = {}
    for n, (X, y) in data.items():
        tr = fb.Trainer(**KW, seed=1)
        tr.fit(X, y, steps=12)
        alone[n] = tr.history.loss.copy()
    _driver._first_orders.clear()
    errors, bad = [], []

    def work(t):
        try:
            for i in range(30):
                n = 40 + (t + i) % 6
                tr = fb.Trainer(**KW, seed=1)
                tr.fit(*data[n], steps=12)
                if not np.array_equal(tr.history.loss, alone[n]):
                    bad.append(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not bad
    assert len(_driver._first_orders) <= _driver.FIRST_ORDERS_KEPT

def test_the_task_rule_looks_at_targets_edited_in_place_between_new_runs():
    X, _ = plain()
    y = (np.arange(64) % 3).astype(np.float64)  # whole-number floats: classes (with a warning)
    with pytest.warns(UserWarning, match="whole-number"):
        assert fb.Trainer(**KW).fit(X, y, steps=1) is not None
    tr = fb.Trainer(**KW)
    with pytest.warns(UserWarning, match="whole-number"):  # the same values: warned again
        tr.fit(X, y, steps=1)
    assert tr.run_state.loss == "cross_entropy"
    y += 0.5  # real-valued now: a regression target
    tr = fb.Trainer(**KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.fit(X, y, steps=1)
    assert tr.run_state.loss == "mse"


def test_the_unscaled_warning_looks_at_x_edited_in_place_between_new_runs():
    X, y = plain()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(**KW).fit(X, y, steps=1)
    X[:, 0] *= 1e6
    for _ in range(2):  # and again for the same values
        with pytest.warns(UserWarning, match="unscaled"):
            fb.Trainer(**KW).fit(X, y, steps=1)
    X[:, 0] /= 1e6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(**KW).fit(X, y, steps=1)


def test_memoised_config_checks_still_refuse_what_they_refused():
    assert fb.Trainer(hidden=(1,)).hidden == (1,)
    with pytest.raises(ValueError, match="hidden"):
        fb.Trainer(hidden=(True,))
    assert fb.Trainer(batch_size=1).batch_size == 1
    with pytest.raises(TypeError, match="batch_size"):
        fb.Trainer(batch_size=True)
    for _ in range(2):
        with pytest.raises(ValueError, match="learning_rate"):
            fb.Trainer(learning_rate=-1.0)
    assert np.copysign(1.0, fb.Trainer(momentum=-0.0).momentum) == -1.0
    assert _config.check_config({}) == _config.check_config({}, defaults=dict(_config.DEFAULTS))


def test_equal_runs_share_a_kernel_spec_and_a_negative_zero_gets_its_own():
    X, y = plain()
    a, b = fb.Trainer(**KW), fb.Trainer(**KW)
    a.fit(X, y, steps=1)
    b.fit(X, y, steps=1)
    assert a._spec is b._spec
    c = fb.Trainer(**{**KW, "momentum": -0.0})
    c.fit(X, y, steps=1)
    assert c._spec is not a._spec and np.copysign(1.0, c._spec.momentum) == -1.0
    d = fb.Trainer(**{**KW, "seed": 3})
    d.fit(X, y, steps=1)
    assert d._spec is not a._spec and d._spec.seed == 3


@pytest.mark.parametrize("change", [dict(seed=3), dict(shuffle=False), dict(batch_size=8), dict(activation="tanh"),
                                    dict(optimizer="adam"), dict(optimizer="adam", betas=(0.8, 0.99)),
                                    dict(optimizer="adam", eps=1e-6), dict(optimizer="adamw", weight_decay=0.1),
                                    dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                    dict(optimizer="rmsprop", alpha=0.9), dict(optimizer="rmsprop", centered=True),
                                    dict(n_threads=7)])
def test_a_run_differing_in_any_one_setting_gets_a_spec_of_its_own(change):
    X, y = plain()
    base = fb.Trainer(**KW)
    base.fit(X, y, steps=1)
    other = fb.Trainer(**{**KW, **change})
    other.fit(X, y, steps=1)
    again = fb.Trainer(**{**KW, **change})
    again.fit(X, y, steps=1)
    assert other._spec is not base._spec and again._spec is other._spec
    assert _driver.kernel_spec(other._cfg, other.run_state) is other._spec
    fresh = dataclasses.replace(other._spec)  # every field as the spec holds it: equal fields, equal key
    assert fresh.key == other._spec.key and fresh.key != base._spec.key


def test_a_runs_batch_sizes_are_read_only_and_shared_by_equal_plans():
    from fastbatch.schedule import plan
    a, b = plan(10, 4, 3), plan(10, 4, 7)
    sizes = a.shared_batch_sizes()
    assert sizes.tolist() == [4, 4, 2] == a.batch_sizes().tolist() and not sizes.flags.writeable
    assert b.shared_batch_sizes() is sizes  # the same batches (epochs differ)
    c = plan(10, 4, 3, drop_last=True)
    assert c.shared_batch_sizes().tolist() == [4, 4] and a.batch_sizes().flags.writeable


def test_an_epochs_weights_are_the_plans_shared_batch_sizes_and_a_huge_plans_are_not_kept():
    from fastbatch.history import weighted_sum
    from fastbatch.schedule import plan
    a, b = fb.Trainer(**KW), fb.Trainer(**dict(KW, batch_size=5, drop_last=True))
    X, y = plain()
    for tr in (a, b):
        tr.fit(X, y, steps=40)
        sizes = tr.plan.shared_batch_sizes()
        # the run weighs its epochs' steps by the plan's own read-only int64 array (no float64 copy of an epoch)
        assert tr._source.weights is sizes and not sizes.flags.writeable
        assert tr._source.records == float(sizes.sum()) == tr.plan.records_per_epoch
        spe = tr.plan.steps_per_epoch
        loss = tr._state.loss_buf
        for e, got in enumerate(tr._state.epoch_loss):  # the closed epochs: the same bits as float64 weights give
            want = weighted_sum(loss[e * spe:(e + 1) * spe], sizes.astype(np.float64)) / float(sizes.sum())
            assert got == want
    assert b._source.records == 60.0  # 12 full batches of 5; the last 4 records dropped
    big_plan = plan(SHARED_MAX_STEPS + 1, 1, 1)  # too big to keep after its run: made anew, never kept
    big = big_plan.shared_batch_sizes()
    assert big_plan.shared_batch_sizes() is not big and not big.flags.writeable
    run = fb.Trainer(hidden=(2,), batch_size=1, epochs=1)  # such a run holds one array, its epochs raised or not
    Xb, yb = plain(SHARED_MAX_STEPS + 1)
    run.fit(Xb, yb, steps=2)
    run.epochs = 3
    run.fit(Xb, yb, steps=2)
    assert run._source.weights is run._batch_sizes and len(run._batch_sizes) == SHARED_MAX_STEPS + 1


def test_a_new_runs_labels_are_the_callers_array_on_the_kernel_and_a_copy_on_numpy():
    # the kernel looks at each record it reads (no copy of y is needed); the numpy backend trains on a checked copy
    from fastbatch import _data
    X, y = plain()
    cfg = fb.Trainer(**KW)._cfg
    data = _data.prepare(X, y, cfg, scan=False)
    assert data.labels is y and data.n_outputs == 3
    data = _data.prepare(X, y, cfg, scan=True)
    assert not np.shares_memory(data.labels, y) and np.array_equal(data.labels, y)


def test_one_step_calls_equal_one_call_with_hooks_between():
    X, y = plain()
    seen = []
    ones = fb.Trainer(**KW)
    for i in range(10):
        ones.fit(X, y, steps=1, on_progress=seen.append if i % 3 == 0 else None)
    whole = fb.Trainer(**KW)
    whole.fit(X, y, steps=10)
    assert same_params(ones, whole) and np.array_equal(ones.history.loss, whole.history.loss)
    assert len(seen) == 4


def test_a_call_on_the_same_arrays_reuses_their_checked_data_and_keeps_none_of_them():
    X, y = plain()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=1)
    tr.fit(X, y, steps=1)
    last = tr._last_arrays
    kept = last.data
    assert last.x_ref() is X and last.y_ref() is y and kept.X is None and kept.labels is None
    tr.fit(X, y, steps=1)
    assert last.data is kept and kept.X is None  # reused, and let go again when the call ended
    tr.fit(X.copy(), y, steps=1)  # another X: checked anew
    assert last.data is not kept


def test_the_same_arrays_changed_in_layout_in_place_are_checked_again():
    X, y = plain()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=2)
    tr.fit(X, y, steps=2)
    X.shape = (32, 2 * X.shape[1])  # the same object, other features
    with pytest.raises(ValueError, match="features"):
        tr.fit(X, y, steps=1)
    X.shape = (64, X.shape[1] // 2)
    y.dtype = np.float64  # the same object and memory, read as floats now: labels to convert and check
    ref = fb.Trainer(**KW)
    ref.fit(X, y.view(np.int64).copy(), steps=4)
    with pytest.raises(ValueError, match="cross_entropy"):
        tr.fit(X, y, steps=1)  # (tiny floats: not whole-number labels)
    y.dtype = np.int64
    tr.fit(X, y, steps=1)
    ref.fit(X, y, steps=1)
    assert tr.step == 5 and same_params(tr, ref)


def test_trainers_called_at_once_from_threads_each_train_on_their_own_arrays():
    import threading
    data = [plain(seed=s) for s in range(4)]
    alone = []
    for X, y in data:
        tr = fb.Trainer(**KW)
        for _ in range(40):
            tr.fit(X, y, steps=1)
        alone.append(tr)
    together = [fb.Trainer(**KW) for _ in data]
    errors = []

    def work(tr, X, y):
        try:
            for _ in range(40):
                tr.fit(X, y, steps=1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(tr, X, y)) for tr, (X, y) in zip(together, data)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for a, b in zip(alone, together):
        assert same_params(a, b) and np.array_equal(a.history.loss, b.history.loss)


@pytest.mark.parametrize("optimizer", [dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.9)])
def test_plain_sgds_shared_optimizer_state_changes_no_result(optimizer, tmp_path, monkeypatch):
    # plain SGD's runs share one read-only map of zeros as opt_state (a write to it would fault): the results,
    # a checkpoint's and its resumption's, are those of a run with zeros of its own
    from fastbatch import _run
    X, y = plain(n=64)
    X = np.tile(X, (1, 8))
    kw = {**KW, **optimizer, "hidden": (512,), "epochs": 3}
    shared = fb.Trainer(**kw)
    shared.fit(X, y, steps=5)
    other = fb.Trainer(**kw)
    other.fit(X, y, steps=2)
    plain_sgd = optimizer.get("momentum", 0) == 0
    assert (shared.run_state.opt_state is other.run_state.opt_state) == plain_sgd
    assert shared.run_state.opt_state.flags.writeable != plain_sgd
    shared.save(tmp_path / "ck.npz")
    loaded = fb.Trainer.load(tmp_path / "ck.npz")
    shared.fit(X, y)
    loaded.fit(X, y)
    other.fit(X, y)
    monkeypatch.setattr(_run, "shared_zeros", lambda shape, dtype: np.zeros(shape, dtype))
    zeroed = fb.Trainer(**kw)
    zeroed.fit(X, y)
    assert zeroed.run_state.opt_state.flags.writeable
    assert same_params(shared, zeroed) and same_params(loaded, zeroed) and same_params(other, zeroed)
    assert np.array_equal(shared.run_state.opt_state, zeroed.run_state.opt_state)
    assert np.array_equal(shared.history.loss, zeroed.history.loss)
    if plain_sgd:
        assert not shared.run_state.opt_state.any()


def test_shared_zeros_are_kept_for_a_few_shapes():
    from fastbatch import _run
    made = [_run.shared_zeros((3, n), np.float32) for n in range(1, 3 * _run.SHARED_ZEROS_KEPT)]
    assert len(_run._shared_zeros) <= _run.SHARED_ZEROS_KEPT
    assert all(not a.flags.writeable and a.shape == (3, n + 1) and not a.any() for n, a in enumerate(made))
    assert _run.shared_zeros((3, 5), np.float64) is _run.shared_zeros((3, 5), np.float64)
    assert _run.shared_zeros((3, 5), np.float64) is not _run.shared_zeros((3, 5), np.float32)
    with pytest.raises(ValueError):
        made[-1][0, 0] = 1.0


# ---------------------------------------------------------------- the quick call (_driver.quick)

def spy_quick(monkeypatch):
    """A list of what each fit's _driver.quick gave (None: not taken); quick itself runs as it is."""
    seen, real = [], _driver.quick

    def spy(*args):
        seen.append(real(*args))
        return seen[-1]
    monkeypatch.setattr(_driver, "quick", spy)
    return seen


def run_state_facts(tr):
    st, h = tr._state, tr.history
    return (tr.get_params(), st.opt_state.copy(), h.loss.copy(), h.learning_rate.copy(), list(h.epoch_loss),
            [dict(m) for m in st.epoch_metrics], dict(st.hit_sums or {}), st.step, st.opt_t)


def assert_same_facts(a, b):
    for x, y in zip(a, b):
        if isinstance(x, list) and x and isinstance(x[0], tuple):  # get_params: [(W, b), ...]
            assert all(np.array_equal(p, q) for px, py in zip(x, y) for p, q in zip(px, py))
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert x == y


CASES = {
    "sgd": (dict(optimizer="sgd", learning_rate=0.05), "cross_entropy"),
    "adam, cosine": (dict(optimizer="adam", learning_rate=0.01, lr_schedule="cosine"), "cross_entropy"),
    # (a standardised target is scaled by each call: not the quick call's case)
    "momentum, mse, standardized X": (dict(optimizer="sgd", momentum=0.9, learning_rate=0.01, standardize=True,
                                           standardize_target=False), "mse"),
    "rmsprop, binary": (dict(optimizer="rmsprop", learning_rate=0.01, loss="binary_crossentropy"),
                        "binary_crossentropy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_quick_calls_equal_the_step_loops_bit_for_bit(case, monkeypatch):
    # fit(X, y, steps=k) on the same arrays, inside an epoch, takes _driver.quick; the rest takes run(): the
    # two together give what run() alone gives, step for step (params, optimizer rows, history, epoch metrics)
    kw, loss = CASES[case]
    X, y = make_data(n=50, d=4, loss=loss, k=1 if loss != "cross_entropy" else 3)
    X, y = X.astype(np.float32), (y.astype(np.int64) if loss == "cross_entropy" else y.astype(np.float32))
    kw = dict(hidden=(6,), batch_size=3, epochs=30, seed=3, **kw)
    sizes = np.random.default_rng(0).integers(1, 12, 40)  # 17 steps an epoch: some calls end in one, some past it
    with monkeypatch.context() as m:
        m.setattr(_driver, "quick", lambda *a: None)
        ref = fb.Trainer(**kw)
        for k in sizes:
            ref.fit(X, y, steps=int(k))
    seen = spy_quick(monkeypatch)
    tr = fb.Trainer(**kw)
    for k in sizes:
        tr.fit(X, y, steps=int(k))
    assert seen.count(True) >= 10 and seen.count(None) >= 10  # both paths were taken
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))
    tr.fit(X, y)  # and the rest of the run, as one call
    ref.fit(X, y)
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))


def test_quick_calls_follow_a_rate_changed_between_them(monkeypatch):
    X, y = plain()

    def train(tr):
        tr.fit(X, y, steps=1)
        for rate in (0.05, 0.2, 0.01, 0.01):
            tr.learning_rate = rate
            tr.fit(X, y, steps=2)
        return tr

    with monkeypatch.context() as m:
        m.setattr(_driver, "quick", lambda *a: None)
        ref = train(fb.Trainer(**KW))
    seen = spy_quick(monkeypatch)
    tr = train(fb.Trainer(**KW))
    assert seen.count(True) == 4
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))
    assert list(tr.history.learning_rate) == [0.05] + [0.05] * 2 + [0.2] * 2 + [0.01] * 4


def test_a_bad_record_a_quick_call_meets_is_named_and_the_call_undone(monkeypatch):
    X, y = plain()
    seen = spy_quick(monkeypatch)
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=2)
    before = run_state_facts(tr)
    X[:, 1] = np.nan  # every record: the next step meets one
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y, steps=3)
    assert seen[-1] is None  # quick left it to run(), which named it
    assert_same_facts(run_state_facts(tr), before)
    X[:, 1] = 0.0
    tr.fit(X, y, steps=3)
    assert tr.step == 5 and seen[-1] is True


def test_a_divergence_in_a_quick_call_rewinds_as_the_step_loop_does(monkeypatch):
    X, y = plain()
    X *= 10
    kw = {**KW, "learning_rate": 0.5, "batch_size": 2}  # diverges at step 11 of 32 in the first epoch

    def diverge(tr):
        for _ in range(200):
            try:
                tr.fit(X, y, steps=1)
            except fb.DivergenceError as err:
                return err.step, err.what, run_state_facts(tr)
        raise AssertionError("no divergence")

    with monkeypatch.context() as m:
        m.setattr(_driver, "quick", lambda *a: None)
        ref = diverge(fb.Trainer(**kw))
    seen = spy_quick(monkeypatch)
    got = diverge(fb.Trainer(**kw))
    assert seen.count(True) >= 5 and seen[-1] is None
    assert got[:2] == ref[:2] and got[0] > 5
    assert_same_facts(got[2], ref[2])


def test_a_long_quick_call_goes_on_in_the_step_loop_and_undoes_all_of_itself_on_a_bad_record(monkeypatch):
    # a call whose steps take more than CHUNK_SECONDS: quick's chunk, then run()'s, as one call. A bad record in a
    # later chunk undoes the whole call, quick's chunk too.
    monkeypatch.setattr(_driver, "CHUNK_SECONDS", 0.0)  # one step a chunk (a step this big looks at the clock)
    X, y = plain()  # 64 records, batch 4: 16 steps an epoch
    seen = spy_quick(monkeypatch)
    kw = {**KW, "hidden": (2048, 2048), "learning_rate": 0.001}
    tr, ref = fb.Trainer(**kw), fb.Trainer(**kw)
    for t in (tr, ref):
        t.fit(X, y, steps=1)
        t.fit(X, y, steps=1)
    assert tr.fit(X, y, steps=5).n_steps == 7
    assert isinstance(seen[-1], tuple) and seen[-1][0].step == 2  # quick's chunk, then run() went on
    ref.fit(X.copy(), y.copy(), steps=5)
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))
    before = run_state_facts(tr)
    order = tr._state.order_cache[1:].copy()
    X[order[10 * 4:11 * 4]] = np.nan  # step 10, the next call's 4th, reads these
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y, steps=6)
    assert_same_facts(run_state_facts(tr), before)


def test_a_stop_during_a_quick_call_ends_it_and_the_run_goes_on_bit_for_bit(monkeypatch):
    import threading
    X, y = make_data(n=400_000, d=4)
    X, y = X.astype(np.float32), y.astype(np.int64)
    kw = dict(hidden=(8,), batch_size=1, epochs=2, optimizer="sgd", learning_rate=0.01, seed=1)
    seen = spy_quick(monkeypatch)
    tr = fb.Trainer(**kw)
    tr.fit(X, y, steps=1)
    tr.fit(X, y, steps=1)
    returned = threading.Event()

    def stopper():  # stop() is a no-op until the call runs: asked every millisecond
        while not returned.is_set():
            tr.stop()
            returned.wait(0.001)
    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        tr.fit(X, y, steps=60_000)  # (at most MAX_CHUNK_STEPS, in one epoch: quick)
    finally:
        returned.set()
        thread.join()
    assert seen[-1] is True and 2 < tr.step < 60_002  # stopped in quick's chunk
    done = tr.step
    tr.fit(X, y, steps=500)
    ref = fb.Trainer(**kw)
    ref.fit(X, y, steps=done + 500)
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))


def test_quick_calls_that_end_an_epoch_close_it_as_the_step_loop_does_and_undo_it_on_an_interrupt(monkeypatch):
    X, y = plain()  # 16 steps an epoch
    with monkeypatch.context() as m:
        m.setattr(_driver, "quick", lambda *a: None)
        ref = fb.Trainer(**KW)
        for k in (1, 1, 14, 16, 3):
            ref.fit(X, y, steps=k)
    seen = spy_quick(monkeypatch)
    tr = fb.Trainer(**KW)
    for k in (1, 1, 14):
        tr.fit(X, y, steps=k)
    before = run_state_facts(tr)
    real, calls = _run.RunState.close_epoch, []

    def interrupted(self, *args, **kwargs):
        calls.append(args[0])
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(_run.RunState, "close_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tr.fit(X, y, steps=16)
    assert calls == [1] and len(seen) == 2  # (the interrupt came in quick's closing: it never returned)
    assert_same_facts(run_state_facts(tr), before)  # the chunk undone with its epoch's closing
    assert _run.RunState.close_epoch is real
    tr.fit(X, y, steps=16)
    tr.fit(X, y, steps=3)
    assert seen == [True] * 4  # (the first call starts the run: run())
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))
    assert len(tr.history.epoch_loss) == 3 and tr.history.epoch_loss[1] == ref.history.epoch_loss[1]


def test_a_quick_call_refuses_what_the_step_loop_refuses(monkeypatch):
    X, y = plain()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=2)
    seen = spy_quick(monkeypatch)
    for bad, match in (((X[:, :3], y), "features"), ((X, y[:10]), "entries|records"), ((X[:10], y[:10]), "records")):
        with pytest.raises(ValueError, match=match):
            tr.fit(*bad, steps=1)
    with pytest.raises(ValueError, match="n_outputs=5"):
        tr.fit(X, y, steps=1, n_outputs=5)
    assert tr.step == 2 and seen == []  # each refused inside quick (prepare's error), before any change
    tr.fit(X, y, steps=1, n_outputs=3)  # the run's: fine
    assert tr.step == 3 and seen[-1] is True


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_partial_fit_through_quick_calls_equals_the_step_loop(kind, monkeypatch):
    pytest.importorskip("sklearn")
    from fastbatch.sklearn import FastBatchClassifier, FastBatchRegressor
    rng = np.random.default_rng(4)
    X = rng.normal(size=(90, 5)).astype(np.float32)
    if kind == "classifier":
        y, make, first = rng.integers(0, 3, 90), FastBatchClassifier, {"classes": [0, 1, 2]}
    else:
        y, make, first = rng.normal(size=90), FastBatchRegressor, {}
    kw = dict(hidden=(7,), batch_size=4, learning_rate=0.02, seed=2)

    def train():
        est = make(**kw)
        for i in range(0, 90, 10):  # chunks of 10 records: 3 steps, one epoch, a call
            est.partial_fit(X[i:i + 10], y[i:i + 10], **(first if i == 0 else {}))
        est.set_params(learning_rate=0.005)
        for i in range(0, 90, 10):
            est.partial_fit(X[i:i + 10], y[i:i + 10])
        return est

    with monkeypatch.context() as m:
        m.setattr(_driver, "quick", lambda *a: None)
        ref = train()
    seen = spy_quick(monkeypatch)
    est = train()
    assert seen.count(True) == 17
    assert same_params(est.trainer_, ref.trainer_)
    assert np.array_equal(est.loss_curve_, ref.loss_curve_) and np.array_equal(est.epoch_loss_, ref.epoch_loss_)
    assert (est.n_iter_, est.t_) == (ref.n_iter_, ref.t_) == (18, 180)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_interrupt_as_a_quick_calls_chunk_is_committed_undoes_the_chunk(optimizer, monkeypatch):
    # a Ctrl-C during the kernel (which runs without the GIL) is raised at the first bytecode after it: there
    X, y = plain()
    kw = {**KW, "optimizer": optimizer}
    tr = fb.Trainer(**kw)
    tr.fit(X, y, steps=1)
    tr.fit(X, y, steps=1)
    before = run_state_facts(tr)
    real = _driver._record

    def interrupted(*args):
        monkeypatch.setattr(_driver, "_record", real)
        raise KeyboardInterrupt
    monkeypatch.setattr(_driver, "_record", interrupted)
    seen = spy_quick(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(X, y, steps=5)
    assert seen == []  # (raised inside quick)
    assert_same_facts(run_state_facts(tr), before)
    ref = fb.Trainer(**kw)
    ref.fit(X, y, steps=2)
    tr.fit(X, y, steps=5)
    ref.fit(X, y, steps=5)
    assert_same_facts(run_state_facts(tr), run_state_facts(ref))


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "run only"])
def test_a_long_call_undone_by_a_bad_record_never_leaves_the_next_rewind_its_params(quick, monkeypatch):
    # a call undone by a bad record in its second chunk had overwritten the snapshot of the last call's last chunk
    # (state.carried: where a divergence at the next call's start rewinds into), and the next rewind restored the
    # undone call's params. The carried chunk is given back only while its snapshot is whole: the rewind goes back
    # into it (as if the call was never made), or no further than its own call; never to the undone call's params.
    monkeypatch.setattr(_driver, "CHUNK_SECONDS", 0.0)  # chunks of ~7 steps (this network looks at the clock so)
    if not quick:
        monkeypatch.setattr(_driver, "quick", lambda *a: None)
    rng = np.random.default_rng(0)
    X0, y0 = rng.normal(size=(400, 32)).astype(np.float32), rng.normal(size=400).astype(np.float32)
    kw = dict(hidden=(256, 256), batch_size=16, epochs=4, seed=2, learning_rate=0.001, optimizer="sgd", loss="mse")

    def start():
        tr = fb.Trainer(**kw)
        for k in (1, 1, 6):
            tr.fit(X0, y0, steps=k)
        tr.learning_rate = 0.02
        return tr

    tr = start()
    tr.fit(X0, y0, steps=6)  # one chunk: steps 8..13, its loss jumps at step 9 (not past the limit)
    X = X0.copy()
    order = tr._state.order_cache[1:].copy()
    X[order[22 * 16:23 * 16]] = np.nan  # step 22's batch: in the next call's second chunk
    before = run_state_facts(tr)
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(X, y0, steps=10)
    assert_same_facts(run_state_facts(tr), before)
    tr.learning_rate = 100.0
    with pytest.raises(fb.DivergenceError) as err:
        tr.fit(X0, y0, steps=3)
    ref = start()  # the same run, without the undone call, to where the rewind went
    ref.fit(X0, y0, steps=err.value.step - 8)
    assert err.value.step in (8, 14) and tr.step == err.value.step
    assert same_params(tr, ref) and np.array_equal(tr.history.loss, ref.history.loss)


def test_steps_beyond_int64_are_refused_on_every_call():
    X, y = plain()
    tr = fb.Trainer(**KW)
    for _ in range(3):
        with pytest.raises(ValueError, match="below 2\\*\\*63"):
            tr.fit(X, y, steps=2 ** 63)
        tr.fit(X, y, steps=1)
    assert tr.step == 3


@pytest.mark.parametrize("how", ["callback", "close_epoch"])
def test_a_call_after_one_interrupted_in_its_epochs_closing_keeps_the_carried_chunk(how, monkeypatch):
    # an error after a chunk (in its epoch's closing) leaves the last call's carried snapshot first in the run's
    # buffers: the next call (quick or run()) takes another, so a divergence there still rewinds into that chunk
    # (to its start, whole: none of the last call's steps is run again on this call's arrays)
    rng = np.random.default_rng(0)
    X0, y0 = rng.normal(size=(400, 32)).astype(np.float32), rng.normal(size=400).astype(np.float32)
    kw = dict(hidden=(64, 64), batch_size=16, epochs=4, seed=2, learning_rate=0.001, optimizer="sgd", loss="mse")

    class Boom(fb.callbacks.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    def boom(self, *args, **kwargs):
        raise KeyboardInterrupt

    tr = fb.Trainer(**kw)
    for k in (1, 1, 6):
        tr.fit(X0, y0, steps=k)
    tr.learning_rate = 0.03
    tr.fit(X0, y0, steps=6)  # steps 8..13, carried; the loss blows up at steps 10-11 (13.6, 81.5: 30x its level)
    with pytest.raises(KeyboardInterrupt):
        if how == "callback":  # run()'s closing
            tr.fit(X0, y0, steps=11, callbacks=[Boom()])
        else:  # quick's
            with monkeypatch.context() as m:
                m.setattr(_run.RunState, "close_epoch", boom)
                tr.fit(X0, y0, steps=11)
    assert tr.step == 14
    tr.learning_rate = 100.0
    with pytest.raises(fb.DivergenceError) as err:
        tr.fit(X0, y0, steps=3)
    ref = fb.Trainer(**kw)  # the same run to step 8, the carried chunk's start, where the rewind goes
    for k in (1, 1, 6):
        ref.fit(X0, y0, steps=k)
    assert err.value.step == tr.step == 8
    assert same_params(tr, ref) and np.array_equal(tr.history.loss, ref.history.loss)
    assert len(tr._state.snapshots) <= 4


def test_a_fit_batches_call_that_closes_the_last_calls_epoch_and_meets_a_bad_batch_is_undone_whole():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 8)).astype(np.float32), rng.normal(size=120).astype(np.float32)
    kw = dict(hidden=(16,), batch_size=10, epochs=5, seed=1, optimizer="sgd", learning_rate=0.01, loss="mse")
    bad = []  # [passes over the batches]: the bad call's second pass (after the closing) has a bad first batch

    def batches():
        if bad:
            bad[0] += 1
        for i in range(0, 120, 10):
            xb = X[i:i + 10]
            if bad and bad[0] >= 2 and i == 0:
                xb = xb.copy()
                xb[0, 0] = np.nan
            yield xb, y[i:i + 10]

    class StopAfter(fb.callbacks.Callback):
        def __init__(self, n):
            self.n = n

        def on_step_end(self, trainer, step, loss):
            self.n -= 1
            return self.n <= 0

    def train(undone_call):
        bad.clear()
        tr = fb.Trainer(**kw)
        tr.fit_batches(batches, callbacks=[StopAfter(12)])  # the first epoch's 12 batches, stopped before its closing
        if undone_call:
            bad.append(0)
            with pytest.raises(ValueError, match="NaN"):
                tr.fit_batches(batches, validation_data=(X[:20], y[:20]))  # closes epoch 0, then the bad batch
            bad.clear()
            st = tr._state
            assert (st.step, st.epoch_loss, st.val_loss, st.steps_per_epoch) == (12, [], [], 0)
        tr.fit_batches(batches, callbacks=[StopAfter(3)])
        return run_state_facts(tr)

    assert_same_facts(train(True), train(False))


def test_none_for_an_array_is_a_type_error_after_the_kept_arrays_are_gone():
    X, y = plain()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=1)
    tr.fit(X, y, steps=1)  # kept (weakly)
    X2 = X.copy()
    del X, y
    gc.collect()
    with pytest.raises(TypeError, match="y must be an array"):
        tr.fit(X2, None, steps=1)
    with pytest.raises(TypeError, match="X must be"):
        tr.fit(None, None, steps=1)


@pytest.mark.parametrize("optimizer", [dict(optimizer="adam"), dict(optimizer="sgd", momentum=0.9),
                                       dict(optimizer="rmsprop")])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_plain_sgd_run_adopted_by_an_optimizer_with_state_gets_zeros_of_its_own(optimizer, backend):
    # adopt_run_state takes a run made under another optimizer: plain SGD's shared read-only zeros become the
    # adopting optimizer's rows, which it writes (the kernel faulted on them; numpy refused them)
    X, y = plain(n=64)
    a = fb.Trainer(**{**KW, "epochs": 1, "backend": backend})
    a.fit(X, y)
    assert not a.run_state.opt_state.flags.writeable
    first = a.step
    b = fb.Trainer(**{**KW, **optimizer, "epochs": 2, "backend": backend})
    b.adopt_run_state(a.run_state)
    b.fit(X, y)
    assert b.step == 2 * first and np.isfinite(b.history.loss).all() and b.run_state.opt_state.any()
    assert not _run.shared_zeros(b.run_state.opt_state.shape, b.run_state.opt_state.dtype).any()


def fit_while_changing(tr, X, y, module, name, change, monkeypatch):
    """Start ``tr.fit`` while another thread runs ``change()`` and is held inside ``module.name`` (which it calls):
    the fit must be refused (the change holds the fit lock), then the change finishes."""
    inside, leave = threading.Event(), threading.Event()
    real = getattr(module, name)

    def slow(*args, **kwargs):
        inside.set()
        leave.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)
    worker = threading.Thread(target=change)
    worker.start()
    inside.wait(10)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            tr.fit(X, y, steps=1)
    finally:
        leave.set()
        worker.join()
    monkeypatch.setattr(module, name, real)


def test_a_setting_changed_as_a_first_fit_starts_is_all_or_nothing(monkeypatch):
    # a setter holds the fit lock while it changes the config: a fit starting in another thread meanwhile is
    # refused, never started with the old optimizer's network state and the new one's kernel
    X, y = plain()
    tr = fb.Trainer(**KW)
    fit_while_changing(tr, X, y, _config, "check_config", lambda: setattr(tr, "optimizer", "adam"), monkeypatch)
    tr.fit(X, y, steps=3)
    assert tr.optimizer == "adam" and tr.run_state.opt_state.flags.writeable and tr.run_state.opt_state.any()


@pytest.mark.parametrize("change", ["reset", "set_params"])
def test_a_change_to_the_run_as_a_fit_starts_is_all_or_nothing(change, monkeypatch):
    # reset() and set_params() hold the fit lock while they change the trainer: a fit starting in another thread
    # meanwhile is refused, never started on half of the change
    from fastbatch import _data, trainer as trainer_module
    X, y = plain()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=2)
    params = tr.get_params()
    if change == "reset":
        fit_while_changing(tr, X, y, trainer_module, "make_schedule", tr.reset, monkeypatch)
    else:
        fit_while_changing(tr, X, y, _data, "check_params", lambda: tr.set_params(params), monkeypatch)
    assert tr.step == (0 if change == "reset" else 2)
