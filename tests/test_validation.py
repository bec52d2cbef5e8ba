"""Bad input gets a clear error naming the parameter and value, and leaves no trace."""
import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data

BAD_PARAMS = [
    ("batch_size", 0, ValueError), ("batch_size", -3, ValueError), ("batch_size", 2.5, TypeError),
    ("batch_size", True, TypeError), ("batch_size", "64", TypeError), ("batch_size", None, TypeError),
    ("epochs", 0, ValueError), ("epochs", 1.5, TypeError), ("epochs", False, TypeError), ("epochs", "5", TypeError),
    ("learning_rate", 0.0, ValueError), ("learning_rate", -0.1, ValueError), ("learning_rate", float("nan"), ValueError),
    ("learning_rate", float("inf"), ValueError), ("learning_rate", "0.1", TypeError),
    ("momentum", -0.5, ValueError), ("weight_decay", -1e-3, ValueError),
    ("betas", (1.0, 0.999), ValueError), ("betas", (0.9, -0.1), ValueError), ("betas", 0.9, TypeError),
    ("eps", -1e-8, ValueError),
    ("optimizer", "lbfgs", ValueError), ("loss", "hinge", ValueError), ("activation", "gelu", ValueError),
    ("backend", "cuda", ValueError), ("dtype", "float16", ValueError), ("dtype", int, TypeError),
    ("hidden", (0,), ValueError), ("hidden", (32, -1), ValueError), ("hidden", (2.5,), ValueError),
    ("hidden", "32", TypeError), ("hidden", (2 ** 63,), ValueError), ("hidden", (8, 10 ** 30), ValueError),
    ("seed", -1, ValueError), ("seed", 1.5, TypeError), ("seed", "0", TypeError),
    ("shuffle", "yes", TypeError), ("drop_last", 1, TypeError), ("nesterov", True, ValueError),  # needs momentum
    ("validation_split", 1.0, ValueError), ("patience", 0, ValueError),
]


@pytest.mark.parametrize("name, value, exc", BAD_PARAMS, ids=[f"{n}={v!r}" for n, v, _ in BAD_PARAMS])
def test_bad_parameter_is_named(name, value, exc):
    with pytest.raises(exc) as info:
        fb.Trainer(**{name: value})
    msg = str(info.value)
    assert name.split("[")[0] in msg or (name == "nesterov" and "nesterov" in msg)
    if name in ("optimizer", "loss", "activation", "backend", "dtype") and exc is ValueError:
        assert "'" in msg and "one of" in msg  # the choices are listed


def test_unknown_parameter():
    with pytest.raises(TypeError, match="lr"):
        fb.Trainer(lr=0.1)


def state_of(tr):
    if not tr.started:
        return None
    st = tr._state
    return (tr.step, [p.copy() for pair in tr.get_params() for p in pair], st.opt_state[0].copy(),
            st.opt_state[1].copy(), tr.history.loss.copy(), st.opt_t)


def assert_same_state(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    assert a[0] == b[0] and a[5] == b[5]
    for x, y in zip(a[1], b[1]):
        assert np.array_equal(x, y)
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3]) and np.array_equal(a[4], b[4])


X0, Y0 = make_data(n=50, d=4, loss="cross_entropy", k=3)
BAD_DATA = [
    ("X 1-D", np.zeros(50), Y0, ValueError, "2-D"),
    ("X 3-D", np.zeros((50, 4, 1)), Y0, ValueError, "2-D"),
    ("X empty", np.zeros((0, 4)), Y0[:0], ValueError, "at least one"),
    ("X no features", np.zeros((50, 0)), Y0, ValueError, "at least one"),
    ("X NaN", np.where(np.arange(200).reshape(50, 4) == 7, np.nan, X0), Y0, ValueError, "NaN"),
    ("X inf", np.where(np.arange(200).reshape(50, 4) == 7, np.inf, X0), Y0, ValueError, "infinite"),
    ("X strings", np.array([["a"] * 4] * 50), Y0, TypeError, "strings"),
    ("X objects", np.array([[object()] * 4] * 50), Y0, TypeError, "objects"),
    ("X complex", X0 + 1j, Y0, TypeError, "complex"),
    ("X None", None, Y0, TypeError, "X"),
    ("X ragged", [[1, 2], [3]], [0, 1], TypeError, "X"),
    ("y short", X0, Y0[:-1], ValueError, "49"),
    ("y 3-D", X0, Y0.reshape(50, 1, 1), ValueError, "y"),
    ("y negative label", X0, np.where(np.arange(50) == 3, -1, Y0), ValueError, "negative"),
    ("y NaN", X0, np.where(np.arange(50) == 3, np.nan, Y0.astype(float)), ValueError, "NaN"),
    ("y strings", X0, np.array(["a"] * 50), TypeError, "y"),
]


@pytest.mark.parametrize("what, X, y, exc, words", BAD_DATA, ids=[c[0] for c in BAD_DATA])
@pytest.mark.parametrize("started", [False, True])
def test_bad_data_is_refused_and_leaves_no_trace(what, X, y, exc, words, started):
    tr = fb.Trainer(epochs=3, batch_size=8)
    if started:
        tr.fit(X0, Y0, steps=5)
    before = state_of(tr)
    with pytest.raises(exc, match=words):
        tr.fit(X, y)
    assert_same_state(before, state_of(tr))
    tr.fit(X0, Y0)  # still usable
    assert tr.finished


@pytest.mark.parametrize("loss, y, words", [
    ("cross_entropy", np.full(50, 0.5), "fractional"),
    ("binary_crossentropy", np.full(50, 2.0), "0 or 1"),
    ("binary_crossentropy", np.zeros((50, 2)), "one 0/1 label"),
])
def test_labels_that_do_not_fit_the_loss(loss, y, words):
    with pytest.raises(ValueError, match=words):
        fb.Trainer(loss=loss).fit(X0, y)


def test_continuing_with_other_shapes_is_refused():
    tr = fb.Trainer(epochs=3, batch_size=8)
    tr.fit(X0, Y0, steps=3)
    before = state_of(tr)
    with pytest.raises(ValueError, match="features"):
        tr.fit(X0[:, :3], Y0)
    with pytest.raises(ValueError, match="label 7"):
        tr.fit(X0, np.where(np.arange(50) == 1, 7, Y0))
    with pytest.raises(ValueError, match="records"):
        tr.fit(X0[:40], Y0[:40])
    with pytest.raises(ValueError, match="steps"):
        tr.fit(X0, Y0, steps=0)
    with pytest.raises(TypeError, match="on_progress"):
        tr.fit(X0, Y0, on_progress=5)
    assert_same_state(before, state_of(tr))


def test_a_new_label_on_a_started_run_names_the_runs_outputs_not_an_argument():
    """A label beyond a started run's outputs is the run's limit: the message says so and how to start over,
    and never shows an n_outputs the caller did not pass."""
    tr = fb.Trainer(epochs=3, batch_size=8)
    tr.fit(X0, Y0, steps=3)
    y = np.where(np.arange(50) == 1, 3, Y0)
    for call in (lambda: tr.fit(X0, y), lambda: tr.fit(X0, y, steps=200), lambda: tr.evaluate(X0, y)):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert "label 3" in msg and "this run's network has 3 outputs" in msg and "n_outputs=" not in msg
    with pytest.raises(ValueError, match="reset()"):
        tr.fit(X0, y)
    with pytest.raises(ValueError, match=r"\(n_outputs=3\)"):  # an argument the caller passed is named as such
        fb.Trainer(epochs=1).fit(X0, y, n_outputs=3)


def test_predict_before_training_and_with_wrong_features():
    tr = fb.Trainer()
    with pytest.raises(fb.NotFittedError, match="fit"):
        tr.predict(X0)
    with pytest.raises(ValueError, match="fit"):
        tr.evaluate(X0, Y0)
    tr.fit(X0, Y0)
    with pytest.raises(ValueError, match="5 features"):
        tr.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        tr.predict(np.zeros(4))


def test_set_params_checks_shapes():
    tr = fb.Trainer(hidden=(3,))
    with pytest.raises(ValueError, match="layers"):
        tr.set_params([(np.zeros((4, 3)), np.zeros(3))])
    with pytest.raises(ValueError, match="layer 1"):
        tr.set_params([(np.zeros((4, 3)), np.zeros(3)), (np.zeros((2, 3)), np.zeros(3))])
    with pytest.raises(ValueError, match="NaN"):
        tr.set_params([(np.full((4, 3), np.nan), np.zeros(3)), (np.zeros((3, 3)), np.zeros(3))])
    tr.set_params([(np.zeros((4, 3)), np.zeros(3)), (np.zeros((3, 5)), np.zeros(5))])
    with pytest.raises(ValueError, match="5 outputs|outputs"):
        tr.fit(X0, Y0)  # labels 0..2 need 3 outputs, the params have 5: refused, not silently used
    assert not tr.started


@pytest.mark.parametrize("layout", ["fortran", "strided", "int", "float64-for-float32", "list", "bool-y"])
def test_other_layouts_and_dtypes_are_converted(layout):
    X, y = X0, Y0
    ref = fb.Trainer(epochs=2, batch_size=8).fit(X, y).loss
    if layout == "fortran":
        X = np.asfortranarray(X)
    elif layout == "strided":
        big = np.zeros((50, 8))
        big[:, ::2] = X
        X = big[:, ::2]
    elif layout == "int":
        X = (X * 100).astype(np.int32)
        ref = fb.Trainer(epochs=2, batch_size=8).fit(X.astype(np.float32), y).loss
    elif layout == "list":
        X, y = X.tolist(), y.tolist()
    elif layout == "bool-y":
        y = y > 0
        ref = fb.Trainer(epochs=2, batch_size=8).fit(X, y.astype(int)).loss
    h = fb.Trainer(epochs=2, batch_size=8).fit(X, y)
    assert np.array_equal(h.loss, ref)


def test_c_contiguous_input_of_the_right_dtype_is_not_copied(monkeypatch):
    from helpers import spy_row_sources
    X = np.ascontiguousarray(X0, dtype=np.float32)
    seen = spy_row_sources(monkeypatch)
    fb.Trainer(epochs=1, batch_size=8).fit(X, Y0)
    assert seen[-1] is X


def test_divergence_raises_and_keeps_a_finite_state():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) * 1e3
    y = rng.normal(size=200) * 1e3
    tr = fb.Trainer(hidden=(8,), optimizer="sgd", learning_rate=10.0, batch_size=10, epochs=50)
    with pytest.raises(fb.DivergenceError, match="learning.rate") as info:
        tr.fit(X, y)
    assert isinstance(info.value, FloatingPointError)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in tr.get_params())
    assert np.isfinite(tr.history.loss).all() and tr.history.n_steps == tr.step
    tr.reset()
    tr.learning_rate = 1e-7
    assert np.isfinite(tr.fit(X, y, steps=5).loss).all()


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_divergence_found_in_the_params_too(backend):
    # relu can hide NaN weights from the loss; the params check still catches the step
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    y = rng.integers(0, 2, 100)
    tr = fb.Trainer(hidden=(4,), batch_size=10, epochs=5, learning_rate=0.1, backend=backend)
    tr.fit(X, y, steps=3)
    params = tr.get_params()
    tr2 = fb.Trainer(hidden=(4,), batch_size=10, epochs=5, learning_rate=1e38, backend=backend)
    tr2.set_params(params)
    with pytest.raises(fb.DivergenceError):
        tr2.fit(X * 1e30, y)
    assert all(np.isfinite(W).all() for W, _ in tr2.get_params())


def test_two_fits_at_once_on_one_trainer_are_refused():
    import threading
    X, y = make_data(n=5000, d=10)
    tr = fb.Trainer(batch_size=1, epochs=200)
    errors = []
    started = threading.Event()

    def second():
        started.wait()
        while not tr._fit_lock.locked():
            pass
        try:
            tr.fit(X, y)
        except RuntimeError as exc:
            errors.append(str(exc))
        finally:
            tr.stop()

    t = threading.Thread(target=second)
    t.start()
    started.set()
    tr.fit(X, y)
    t.join()
    assert errors and "already running" in errors[0]
    assert np.isfinite(tr.history.loss).all()


# ---------------------------------------------------------------------- messages say what the value is (issue 11)

def test_a_huge_uint64_label_is_reported_as_itself():
    y = np.zeros(50, dtype=np.uint64)
    y[3] = 2 ** 63 + 5
    with pytest.raises(ValueError, match=f"label {2 ** 63 + 5};.*100,000 classes.*loss='mse'"):
        fb.Trainer().fit(X0, y)


@pytest.mark.parametrize("label", [10 ** 11, 1e11, 100_000])
def test_too_many_classes_suggests_regression(label):
    y = np.zeros(50, dtype=type(label))
    y[7] = label
    with pytest.raises(ValueError, match=f"label {int(label)};.*regression"):
        fb.Trainer(loss="cross_entropy").fit(X0, y)


def test_values_beyond_float32_are_called_too_large():
    X = X0.copy()
    X[4, 2] = 1e39
    with pytest.raises(ValueError, match=r"too large for float32 \(max 3.4028235e\+38\): X\[4, 2\] is 1e\+39"):
        fb.Trainer().fit(X, Y0)
    from fastbatch._validation import check_X
    assert check_X(X, np.float64)[4, 2] == 1e39  # float64 holds them
    X[4, 2] = -np.inf
    with pytest.raises(ValueError, match=r"infinite values \(X\[4, 2\] is -inf\)"):
        fb.Trainer().fit(X, Y0)


def test_text_labels_point_to_the_classifier():
    with pytest.raises(TypeError, match="FastBatchClassifier.*LabelEncoder"):
        fb.Trainer().fit(X0, np.array(["cat", "dog"] * 25))
    with pytest.raises(TypeError, match="FastBatchClassifier"):
        fb.Trainer().fit(X0, ["cat", "dog"] * 25)


def test_sparse_input_is_densified_or_explained():
    sparse = pytest.importorskip("scipy.sparse")
    Xs = sparse.csr_matrix(np.where(np.abs(X0) > 1, X0, 0.0))
    kw = dict(epochs=2, batch_size=8)
    assert np.array_equal(fb.Trainer(**kw).fit(Xs, Y0).loss, fb.Trainer(**kw).fit(Xs.toarray(), Y0).loss)
    big = sparse.csr_matrix(([1.0], ([5], [7])), shape=(10 ** 6, 10 ** 4))
    with pytest.raises(TypeError, match=r"scipy.sparse csr_matrix of shape \(1000000, 10000\).*toarray"):
        fb.Trainer().fit(big, np.zeros(10 ** 6, int))


def test_a_dataframe_with_bool_columns_is_accepted():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": X0[:, 0], "flag": X0[:, 1] > 0, "n": np.arange(50)})
    ref = np.column_stack([X0[:, 0], (X0[:, 1] > 0).astype(float), np.arange(50)])
    kw = dict(epochs=2, batch_size=8)
    assert np.array_equal(fb.Trainer(**kw).fit(df, Y0).loss, fb.Trainer(**kw).fit(ref, Y0).loss)
    with pytest.raises(TypeError, match="column 'city' holds (str|object) values.*get_dummies"):
        fb.Trainer().fit(df.assign(city=["x"] * 50), Y0)
    with pytest.raises(ValueError, match="missing values|NaN values"):
        fb.Trainer().fit(df.assign(n=pd.array([1, None] * 25, dtype="Int64")), Y0)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64])
def test_labels_checked_whole_are_a_copy_of_their_own(dtype):
    # what a first call checks is what it trains on: one copy (not two), never the caller's memory
    y = np.arange(12, dtype=dtype) % 3
    from fastbatch import _validation as V
    _, labels, k = V.check_y(y, "cross_entropy", 12, np.float32)
    assert k == 3 and labels.dtype == np.int64 and not np.shares_memory(labels, y)
    assert np.array_equal(labels, np.arange(12) % 3)


def test_callbacks_must_be_a_list_and_the_error_names_it(seed_data):
    X, y = seed_data
    tr = fb.Trainer(epochs=1)
    with pytest.raises(TypeError, match=r"callbacks must be a list .*one callback: pass \[callback\]"):
        tr.fit(X, y, callbacks=fb.Callback())      # ('Callback' object is not iterable)
    assert not tr.started


@pytest.mark.parametrize("name", ["learning_rate", "eps", "momentum", "weight_decay", "validation_split"])
def test_an_integer_beyond_floats_range_is_a_value_error_naming_the_parameter(name):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number, got an integer of 401 digits"):
        fb.Trainer(**{name: 10 ** 400})    # (OverflowError: int too large to convert to float)


def test_sample_weights_beyond_the_dtype_are_named_as_such():
    """1e300 is finite: it overflows float32 (the message said 'NaN or infinite'); 1e-300 underflows to zeros."""
    X, y = np.random.default_rng(0).random((20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match=r"too large for float32 .* sample_weight\[0\] is 1e\+300"):
        fb.Trainer(epochs=1).fit(X, y, sample_weight=np.full(20, 1e300))
    with pytest.raises(ValueError, match="as given is positive, but below float32's smallest number"):
        fb.Trainer(epochs=1).fit(X, y, sample_weight=np.full(20, 1e-300))
    with pytest.raises(ValueError, match=r"NaN or infinite values \(sample_weight\[3\] is nan\)"):
        fb.Trainer(epochs=1).fit(X, y, sample_weight=np.r_[np.ones(3), np.nan, np.ones(16)])


def test_float16_labels_train_without_an_overflow_warning():
    """float16 labels 0..2 are valid whole-number labels; the class-count check compared them with 100,000 in
    float16, which overflowed: a RuntimeWarning 'overflow encountered in cast' on a valid fit."""
    import warnings
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 3, 60).astype(np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # (whole-number floats taken as classes: said, as it should be)
        tr = fb.Trainer(hidden=(4,), epochs=1)
        tr.fit(X, y)
        assert tr.run_state.n_outputs == 3
        assert set(tr.evaluate(X, y)) == {"loss", "accuracy"}


def test_drop_last_with_a_split_names_the_split_that_left_too_few_records():
    """150 records, validation_split=0.5, batch 100, drop_last: the error said n_records=75 with no word of the
    split (the user passed 150). It names the split and the records passed, and the trainer stays unstarted."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(150, 3)), rng.integers(0, 3, 150)
    tr = fb.Trainer(batch_size=100, drop_last=True, validation_split=0.5)
    with pytest.raises(ValueError, match=r"drop_last=True .*n_records=75.*validation_split=0\.5 leaves of the 150"):
        tr.fit(X, y)
    assert tr.run_state is None
    with pytest.raises(ValueError, match=r"n_records=60 leaves no full batch; use a smaller batch_size or "
                                         r"drop_last=False$"):  # (no split: as before)
        fb.Trainer(batch_size=100, drop_last=True).fit(X[:60], y[:60])
