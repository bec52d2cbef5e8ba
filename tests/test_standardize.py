"""standardize / standardize_target: statistics of the training records, kept and applied."""
import warnings

import numpy as np
import pytest

import fastbatch as fb


def unscaled(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * np.array([1e-3, 1.0, 100.0, 1e4]) + np.array([0, 5, -300, 2e4])
    y = (X[:, 0] * 1e3 + X[:, 2] / 100 > 0).astype(int)
    return X, y


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_standardize_equals_training_on_standardised_data(backend):
    X, y = unscaled()
    tr = fb.Trainer(standardize=True, epochs=3, backend=backend, dtype="float64")
    tr.fit(X, y)
    Z = (X - X.mean(0)) / X.std(0)
    ref = fb.Trainer(epochs=3, backend=backend, dtype="float64")
    ref.fit(Z, y)
    for (a, b), (c, d) in zip(tr.get_params(), ref.get_params()):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.predict_proba(X), ref.predict_proba(Z), rtol=1e-9, atol=1e-12)
    assert tr.evaluate(X, y)["accuracy"] == ref.evaluate(Z, y)["accuracy"]


def test_statistics_come_from_the_training_records_and_survive_a_checkpoint(tmp_path):
    X, y = unscaled()
    tr = fb.Trainer(standardize=True, validation_split=0.25, epochs=2)
    tr.fit(X, y)
    from fastbatch._data import split_indices
    train_rows = split_indices(len(X), 0.25, 0)[0]
    # float32 training: the statistics are those of the float32 records
    np.testing.assert_allclose(tr._state.scaling["x_shift"], X[train_rows].astype(np.float32).mean(0, dtype=np.float64),
                               rtol=1e-9)
    tr.save(tmp_path / "s.npz")
    back = fb.Trainer.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.predict_proba(X), tr.predict_proba(X))


def test_standardize_target_predicts_in_the_datas_units():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = 1000 + 300 * X[:, 0] - 50 * X[:, 1]
    tr = fb.Trainer(standardize=True, standardize_target=True, hidden=(), epochs=30, learning_rate=0.05)
    tr.fit(X, y)
    assert tr.evaluate(X, y)["r2"] > 0.99
    assert abs(np.mean(tr.predict(X)) - 1000) < 20
    assert np.mean(tr.history.loss[-10:]) < 0.05  # losses in standardised units


def test_memmap_statistics_are_streamed(tmp_path):
    X, y = unscaled(n=2000)
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    tr = fb.Trainer(standardize=True, epochs=1)
    tr.fit(Xm, y)
    np.testing.assert_allclose(tr._state.scaling["x_scale"], X.astype(np.float32).std(0), rtol=1e-5)


def test_unscaled_inputs_warn_once_when_standardize_is_off():
    X, y = unscaled()
    with pytest.warns(UserWarning, match="standardize=True"):
        tr = fb.Trainer(epochs=3)
        tr.fit(X, y, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.fit(X, y, steps=2)  # the run has started: no second warning
        fb.Trainer(epochs=1, standardize=True).fit(X, y)


def test_fit_batches_streams_the_statistics_first():
    X, y = unscaled(n=320)

    def batches():
        for i in range(0, 320, 32):
            yield X[i:i + 32], y[i:i + 32]

    a = fb.Trainer(standardize=True, epochs=3, shuffle=False, dtype="float64")
    a.fit_batches(batches)
    b = fb.Trainer(standardize=True, epochs=3, shuffle=False, dtype="float64")
    b.fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_standardise_each_record_as_they_read_it(dtype):
    from kernel_run import data, make_spec
    from fastbatch import _kernel, _numpy_backend
    from fastbatch._network import init_params
    X, y = unscaled(n=90)
    Xc, targets, labels, k = data(X, y, "cross_entropy", dtype)
    shift, scale = Xc.astype(np.float64).mean(0), Xc.astype(np.float64).std(0)
    affine = np.ascontiguousarray(np.stack([shift, 1 / scale]))
    Z = ((Xc - affine[0]) * affine[1]).astype(dtype)  # the same operations, in float64, rounded to dtype
    sizes = np.array([4, 6, k], dtype=np.int64)
    results = {}
    for name, backend, X_in, aff in (("kernel", _kernel, Xc, affine), ("numpy", _numpy_backend, Xc, affine),
                                     ("kernel on Z", _kernel, Z, None)):
        spec = make_spec(sizes, batch_size=8, spe=12, seed=1)
        theta = init_params(sizes, "relu", 0, np.dtype(dtype))
        losses = np.zeros(36, dtype)
        kw = {} if aff is None else {"x_affine": aff}
        done, status = backend.train_steps(spec, X_in, targets, labels, np.empty(0, dtype), theta,
                                           np.zeros((3, len(theta)), dtype), np.full(91, -1, np.int64),
                                           np.full(36, 0.05), losses, np.empty((0, 2)), 0, 36, 0,
                                           np.zeros(1, np.uint8), 60.0, **kw)
        assert (done, int(status)) == (36, 0)
        results[name] = (losses, theta)
    assert np.array_equal(results["kernel"][1], results["kernel on Z"][1])  # bit for bit
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results["kernel"][0], results["numpy"][0], **tol)
    np.testing.assert_allclose(results["kernel"][1], results["numpy"][1], **tol)


def test_a_standardised_run_hands_the_kernel_the_callers_array(monkeypatch):
    from helpers import spy_row_sources
    X, y = unscaled(n=200)
    X = X.astype(np.float32)
    seen = spy_row_sources(monkeypatch)
    tr = fb.Trainer(standardize=True, epochs=2)
    tr.fit(X, y, steps=3)
    tr.fit(X, y, steps=3)
    assert len(seen) >= 2 and all(a is X for a in seen)  # no standardised copy of X, for stats or training


@pytest.mark.parametrize("what", ["huge scale", "subnormal values"])
def test_standardisation_keeps_features_whose_numbers_are_extreme_in_float32(what):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int)
    X[:, 0] *= 1e38 if what == "huge scale" else 1e-39  # 1 / scale, or the values, are float32 subnormals
    kw = dict(standardize=True, epochs=5, batch_size=16, learning_rate=0.1, hidden=(8,))
    res = {}
    for backend in ("cython", "numpy"):
        tr = fb.Trainer(backend=backend, **kw)
        tr.fit(X, y)
        res[backend] = tr
    assert res["cython"].evaluate(X, y)["accuracy"] > 0.95  # the feature that decides y is not flushed to 0
    np.testing.assert_allclose(res["cython"].history.loss, res["numpy"].history.loss, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_validation_data_is_standardised_as_the_training_records(task):
    # unscaled features (scales 1 .. 1e5, far from 0): validation_data given raw must be scored as the
    # run scores its training records, i.e. as a run on data standardised by hand scores the same rows
    rng = np.random.default_rng(5)
    scale, shift = np.array([1.0, 10.0, 1e3, 1e5]), np.array([0.0, 5.0, -300.0, 1e6])
    X, Xv = (rng.normal(size=(n, 4)) * scale + shift for n in (240, 60))
    z, zv = ((A - shift) / scale @ [1.0, -2.0, 0.5, 1.5] for A in (X, Xv))
    if task == "classification":
        y, yv = (z > 0).astype(int) + (z > 1), (zv > 0).astype(int) + (zv > 1)
    else:
        y, yv = 50.0 * z + 1e3, 50.0 * zv + 1e3
    kw = dict(hidden=(8,), epochs=4, batch_size=16, seed=0, dtype="float64", learning_rate=0.05)
    raw = fb.Trainer(standardize=True, standardize_target=task == "regression", **kw)
    h = raw.fit(X, y, validation_data=(Xv, yv))
    m, s = X.mean(axis=0), X.std(axis=0)
    if task == "regression":
        ym, ys = y.mean(), y.std()
        y, yv = (y - ym) / ys, (yv - ym) / ys
    ref = fb.Trainer(**kw).fit((X - m) / s, y, validation_data=((Xv - m) / s, yv))
    assert len(h.val_loss) == 4
    np.testing.assert_allclose(h.val_loss, ref.val_loss, rtol=1e-8)
    if task == "classification":
        np.testing.assert_allclose(h.val_accuracy, ref.val_accuracy, rtol=1e-12)
        assert h.val_accuracy[-1] > 0.8


def test_predicting_with_standardisation_takes_a_chunk_of_memory_not_a_copy_of_X():
    import tracemalloc
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(100_000, 16)) * 100 + 50).astype(np.float32)  # 6.4 MB
    y = (X[:, 0] > 50).astype(int)
    tr = fb.Trainer(standardize=True, hidden=(8,), epochs=1, batch_size=256)
    tr.fit(X[:2000], y[:2000])
    expected = tr.predict_proba(X[:5000])
    tracemalloc.start()
    try:
        proba = tr.predict_proba(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = proba.nbytes  # the answer itself, and the logits it comes from
    assert peak < 3 * out + 4 * 8192 * 16 * 8, peak  # a standardised float64 copy of X alone is 12.8 MB
    np.testing.assert_array_equal(proba[:5000], expected)  # by chunks: the same numbers


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_val_mae_of_a_standardised_target_is_in_the_datas_units_as_evaluates(backend, outputs):
    """With standardize_target, History's val_mae was the standardised targets' (0.70 on diabetes, where evaluate
    on the same records said 53.9): the losses are documented as standardised, the mae is not. It is evaluate's
    now, in the data's units; val_r2 is the same either way."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5))
    y = X @ rng.normal(size=(5, outputs)) * [100.0, 5.0, 2000.0][:outputs] + [150.0, -3.0, 1e4][:outputs]
    y = y[:, 0] if outputs == 1 else y
    Xv, yv = X[240:], y[240:]
    tr = fb.Trainer(hidden=(8,), epochs=3, dtype="float64", standardize=True, standardize_target=True,
                    backend=backend)
    h = tr.fit(X[:240], y[:240], validation_data=(Xv, yv))
    ev = tr.evaluate(Xv, yv)
    np.testing.assert_allclose(h.metrics["val_mae"][-1], ev["mae"], rtol=1e-9)
    np.testing.assert_allclose(h.metrics["val_r2"][-1], ev["r2"], rtol=1e-9)
    assert h.metrics["val_mae"][-1] > 1.0   # (the standardised one is below 1 here)


def test_standardize_target_on_a_classification_warns_that_it_changes_nothing():
    """standardize_target=True on class labels was dropped without a word; a new run now says so, from fit and
    fit_batches, and a regression (or a classification without it) does not."""
    from sklearn.datasets import load_diabetes, load_iris
    X, y = load_iris(return_X_y=True)
    with pytest.warns(UserWarning, match=r"standardize_target=True has no effect with loss='cross_entropy'"):
        fb.Trainer(standardize=True, standardize_target=True, epochs=1).fit(X, y)
    with pytest.warns(UserWarning, match=r"standardize_target=True has no effect with loss='binary_crossentropy'"):
        fb.Trainer(standardize=True, standardize_target=True, epochs=1, loss="binary_crossentropy").fit(X, y > 0)
    with pytest.warns(UserWarning, match="standardize_target=True has no effect"):
        fb.Trainer(standardize=True, standardize_target=True, epochs=1).fit_batches(lambda: [(X, y)])
    Xd, yd = load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(standardize=True, standardize_target=True, epochs=1).fit(Xd, yd)
        fb.Trainer(standardize=True, epochs=1).fit(X, y)
