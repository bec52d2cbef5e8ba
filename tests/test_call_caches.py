"""What is kept between calls to make them cheap never changes a result: the data of each call is
the caller's as it is now, and the memos of fresh runs are keyed by everything they depend on."""
import dataclasses
import gc
import warnings
import weakref

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _driver, config as _config
from fastbatch.schedule import epoch_order
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
        refs = [weakref.ref(a) for a in [st.theta, st.opt_state] + copied]
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
def test_plain_sgds_mapped_optimizer_state_changes_no_result(optimizer, tmp_path, monkeypatch):
    from fastbatch import _run
    X, y = plain(n=64)
    X = np.tile(X, (1, 8))  # 80 features, hidden 512: 3 optimizer rows of ~42k params, past MAPPED_ZEROS_BYTES
    kw = {**KW, **optimizer, "hidden": (512,), "epochs": 3}
    mapped = fb.Trainer(**kw)
    mapped.fit(X, y, steps=5)
    assert mapped.run_state.opt_state.nbytes >= _run.MAPPED_ZEROS_BYTES
    assert (mapped.run_state.opt_state.base is not None) == (optimizer.get("momentum", 0) == 0)
    mapped.save(tmp_path / "ck.npz")
    loaded = fb.Trainer.load(tmp_path / "ck.npz")
    mapped.fit(X, y)
    loaded.fit(X, y)
    monkeypatch.setattr(_run, "MAPPED_ZEROS_BYTES", 1 << 62)
    zeroed = fb.Trainer(**kw)
    zeroed.fit(X, y)
    assert same_params(mapped, zeroed) and same_params(loaded, zeroed)
    assert np.array_equal(mapped.run_state.opt_state, zeroed.run_state.opt_state)
    assert np.array_equal(mapped.history.loss, zeroed.history.loss)
