"""The scikit-learn estimators: sklearn's own checks, label encoding, partial_fit, and one training loop."""
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbatch as fb  # noqa: E402
from fastbatch.sklearn import FastBatchClassifier, FastBatchRegressor  # noqa: E402


def _expected_failures(estimator):
    # weight 2 against a repeated record: the same maths, but float32 sums round differently (~1e-6);
    # the float64 estimators pass this check
    if estimator.dtype == "float32":
        return {"check_sample_weight_equivalence_on_dense_data": "float32 rounding (the float64 estimators pass)"}
    return {}


@parametrize_with_checks([FastBatchClassifier(), FastBatchRegressor(),
                          FastBatchClassifier(dtype="float64"), FastBatchRegressor(dtype="float64")],
                         expected_failed_checks=_expected_failures)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


def blobs(n=300, k=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_importing_fastbatch_does_not_import_sklearn():
    code = "import sys, fastbatch; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_sklearn_gives_a_clear_import_error():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastbatch.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install fastbatch[sklearn]" in out.stdout


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([-1, 1, 7]), np.array([30, 10, 20])])
def test_classifier_encodes_any_labels(labels):
    X, yi = blobs()
    y = labels[yi]
    clf = FastBatchClassifier(epochs=10).fit(X, y)
    assert list(clf.classes_) == sorted(labels)
    pred = clf.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(labels)
    assert clf.score(X, y) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], pred)


def test_binary_decision_function_is_the_log_odds_of_classes_1():
    X, yi = blobs(k=2)
    y = np.array([-1, 1])[yi]
    clf = FastBatchClassifier(epochs=5).fit(X, y)
    d = clf.decision_function(X)
    assert d.shape == (300,)
    assert np.array_equal(np.where(d > 0, 1, -1), clf.predict(X))
    assert np.allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-d)))


@pytest.mark.parametrize("Est, loss", [(FastBatchClassifier, "cross_entropy"), (FastBatchRegressor, "mse")])
def test_fit_is_the_trainers_run(Est, loss):
    """One training loop: the estimator's fit is exactly Trainer.fit with the same parameters."""
    X, y = blobs()
    yt = y if loss == "cross_entropy" else X @ np.arange(4.0)
    kw = dict(hidden=(8, 4), batch_size=16, epochs=3, learning_rate=0.05, optimizer="sgd", momentum=0.9, seed=3)
    est = Est(**kw).fit(X, yt)
    h = fb.Trainer(loss=loss, **kw).fit(X, yt)
    assert np.array_equal(est.loss_curve_, h.loss)
    assert np.array_equal(est.epoch_loss_, h.epoch_loss)
    assert est.n_iter_ == 3 and est.t_ == 900 and est.n_features_in_ == 4
    assert est.history_.n_steps == len(est.loss_curve_) == 3 * 19
    assert isinstance(est.trainer_, fb.Trainer) and est.trainer_.finished


def test_fit_starts_over():
    X, y = blobs()
    clf = FastBatchClassifier(epochs=2)
    first = clf.fit(X, y).loss_curve_.copy()
    t1 = clf.trainer_
    assert np.array_equal(clf.fit(X, y).loss_curve_, first)
    assert clf.trainer_ is not t1 and clf.n_iter_ == 2


def test_partial_fit_on_the_same_data_continues_one_run_exactly():
    """k partial_fit calls on the same records == fit with epochs=k (optimizer state carried)."""
    X, y = blobs()
    kw = dict(optimizer="adam", batch_size=32, seed=1)
    clf = FastBatchClassifier(**kw)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    ref = FastBatchClassifier(epochs=3, **kw).fit(X, y)
    assert np.array_equal(clf.loss_curve_, ref.loss_curve_)
    assert np.array_equal(clf.predict_proba(X), ref.predict_proba(X))
    assert clf.n_iter_ == 3 and clf.t_ == 900 and len(clf.epoch_loss_) == 3


def test_parameters_set_between_partial_fit_calls_apply():
    """set_params between partial_fit calls is not ignored (as SGDClassifier's eta0 is not): the learning rate
    applies from the next step of the same run (the run with that rate set by hand on its trainer); batch_size
    makes a new run from the network; hidden, which the network cannot follow, is a ValueError naming it."""
    X, y = blobs()
    kw = dict(optimizer="sgd", batch_size=32, seed=1, learning_rate=0.01)
    clf = FastBatchClassifier(**kw)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.set_params(learning_rate=0.5)
    clf.partial_fit(X, y)
    ref = FastBatchClassifier(**kw)
    ref.partial_fit(X, y, classes=[0, 1, 2])
    ref.trainer_.learning_rate = 0.5
    ref.partial_fit(X, y)
    assert clf.trainer_.learning_rate == 0.5 and clf.trainer_.history.learning_rate[-1] == 0.5
    assert np.array_equal(clf.loss_curve_, ref.loss_curve_) and clf.t_ == ref.t_ == 600
    clf.set_params(batch_size=7)
    clf.partial_fit(X, y)
    assert clf.trainer_.batch_size == 7 and clf.trainer_.step == -(-len(X) // 7)
    clf.set_params(hidden=(5,))
    for _ in range(2):  # (the second call too: it trained the old network, hidden=(5,) ignored)
        with pytest.raises(ValueError, match=r"hidden=\(5,\) differs from the network's hidden=\(64,\)"):
            clf.partial_fit(X, y)
    clf.set_params(hidden=(64,), standardize=True)     # inputs standardised now: not what the network learned on
    with pytest.raises(ValueError, match="standardize=True differs from the network's standardize=False"):
        clf.partial_fit(X, y)
    clf.set_params(standardize=False)
    clf.partial_fit(X, y)
    clf.fit(X, y)
    clf.set_params(activation="tanh")                 # after fit too: partial_fit goes on with its network
    with pytest.raises(ValueError, match="activation='tanh' differs"):
        clf.partial_fit(X, y)


def test_partial_fit_after_fit_and_after_a_failed_call_sees_what_changed():
    """What partial_fit compares the parameters with is fit's trainer after fit (a standardize_target set back
    after fit trained its network on raw targets: r2 0.9955 -> -0.72), and the rate a failed call already applied
    (set back, it stayed at the failed call's 0.5)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X @ [1.0, 2.0, 3.0, 4.0]) * 100 + 500
    reg = FastBatchRegressor(hidden=(16,), standardize_target=False, epochs=3, seed=0)
    reg.partial_fit(X, y)
    reg.set_params(standardize_target=True)
    reg.fit(X, y)
    reg.set_params(standardize_target=False)
    with pytest.raises(ValueError, match="standardize_target=False differs from the network's standardize_target=True"):
        reg.partial_fit(X, y)
    reg = FastBatchRegressor(hidden=(16,), learning_rate=0.01, seed=0)
    reg.partial_fit(X, y)
    reg.set_params(learning_rate=0.5)
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.partial_fit(bad, y)
    reg.set_params(learning_rate=0.01)
    reg.partial_fit(X, y)
    assert reg.trainer_.learning_rate == 0.01 and reg.trainer_.history.learning_rate[-1] == 0.01


def test_partial_fit_sees_a_list_parameter_edited_in_place():
    # what partial_fit compares the parameters with is a copy of a list's or a dict's values, not the same object
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    reg = FastBatchRegressor(hidden=[5], seed=0)
    reg.partial_fit(X, y)
    reg.partial_fit(X, y)
    reg.hidden.append(3)
    with pytest.raises(ValueError, match=r"hidden=\(5, 3\) differs from the network.s hidden=\(5,\)"):
        reg.partial_fit(X, y)
    reg.hidden.pop()
    reg.partial_fit(X, y)
    assert reg.n_iter_ == 3


def test_partial_fit_chunks_of_equal_size_stay_in_one_run():
    X, y = blobs(n=400)
    clf = FastBatchClassifier()
    clf.partial_fit(X[:200], y[:200], classes=np.unique(y))
    tr = clf.trainer_
    for _ in range(4):
        clf.partial_fit(X[200:], y[200:])
        clf.partial_fit(X[:200], y[:200])
    assert clf.trainer_ is tr and tr.step == 9 * 7
    assert clf.n_iter_ == 9 and clf.t_ == 1800
    assert clf.score(X, y) > 0.95


def test_partial_fit_first_chunk_may_miss_classes():
    X, y = blobs(n=400, k=4)
    labels = np.array(["a", "b", "c", "d"])
    clf = FastBatchClassifier(batch_size=16)
    first = np.flatnonzero(y < 2)[:100]  # only "a" and "b"
    clf.partial_fit(X[first], labels[y[first]], classes=labels)
    assert clf.predict_proba(X).shape == (400, 4)
    tr = clf.trainer_
    for _ in range(5):
        clf.partial_fit(X[:100], labels[y[:100]])  # same record count: the same run, now with all classes
    assert clf.trainer_ is tr
    assert clf.score(X[:100], labels[y[:100]]) > 0.9
    for _ in range(5):
        clf.partial_fit(X, labels[y])  # another record count: a new run from the current params
    assert clf.trainer_ is not tr
    assert clf.score(X, labels[y]) > 0.95
    assert set(clf.predict(X)) == set(labels)


def test_partial_fit_new_record_count_carries_the_params():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    y = X @ [1.0, -2.0, 0.5]
    reg = FastBatchRegressor(batch_size=64)
    for _ in range(20):
        reg.partial_fit(X[:100], y[:100])
    before = reg.trainer_.evaluate(X[100:], y[100:])["loss"]
    reg.partial_fit(X[100:], y[100:])  # 50 records: one batch, a new run
    assert reg.loss_curve_[-1] == pytest.approx(before, rel=1e-5)
    assert reg.loss_curve_[-1] < reg.loss_curve_[0] / 5
    assert len(reg.loss_curve_) == 20 * 2 + 1 and reg.n_iter_ == 21


@pytest.mark.parametrize("Est", [FastBatchClassifier, FastBatchRegressor])
def test_a_new_partial_fit_run_keeps_the_networks_standardisation(Est):
    # a chunk of another size starts a new run from the network: on the scale the network learned its inputs
    # (and targets) on, not on statistics of that chunk alone
    from sklearn.datasets import load_breast_cancer, load_diabetes
    X, y = (load_breast_cancer if Est is FastBatchClassifier else load_diabetes)(return_X_y=True)
    kw = dict(classes=[0, 1]) if Est is FastBatchClassifier else {}
    est = Est(standardize=True, standardize_target=True, seed=0)
    for _ in range(3):
        est.partial_fit(X[:200], y[:200], **kw)
    scaling = {k: v.copy() for k, v in est.trainer_.run_state.scaling.items()}
    before = est.predict(X[200:])
    est.set_params(learning_rate=1e-12)          # the new run's step barely moves the params
    est.partial_fit(X[:10], y[:10])              # 10 records: a new run
    assert est.trainer_.run_state.step == 1      # (one batch: the new run's first step)
    after = est.trainer_.run_state.scaling
    assert after.keys() == scaling.keys() and all(np.array_equal(after[k], scaling[k]) for k in scaling)
    np.testing.assert_allclose(est.predict(X[200:]), before, rtol=1e-5)   # (it was 0.97 -> 0.78 accuracy)


def test_partial_fit_applies_class_weight_and_sample_weight():
    X, y = blobs()
    classes = np.unique(y)
    heavy = {classes[0]: 50.0, **{c: 1.0 for c in classes[1:]}}

    def trained(**kw):
        fit_kw = {k: kw.pop(k) for k in list(kw) if k == "sample_weight"}
        est = FastBatchClassifier(seed=0, **kw)
        for _ in range(3):
            est.partial_fit(X, y, classes=classes, **fit_kw)
        return est

    plain, weighted = trained(), trained(class_weight=heavy)
    assert not np.allclose(plain.predict_proba(X), weighted.predict_proba(X))   # (it was ignored: equal)
    assert weighted.predict_proba(X)[:, 0].mean() > plain.predict_proba(X)[:, 0].mean()
    # a class weight is a per-record weight: the same run as sample_weight of those weights
    by_sample = trained(sample_weight=np.where(y == classes[0], 50.0, 1.0))
    np.testing.assert_array_equal(by_sample.predict_proba(X), weighted.predict_proba(X))
    with pytest.raises(ValueError, match="balanced"):
        FastBatchClassifier(class_weight="balanced").partial_fit(X, y, classes=classes)
    reg = FastBatchRegressor(seed=0)
    reg.partial_fit(X, y.astype(float), sample_weight=np.ones(len(y)))
    assert reg.n_iter_ == 1


def test_partial_fit_after_fit_continues_from_the_fitted_network():
    X, y = blobs()
    clf = FastBatchClassifier(epochs=3).fit(X, y)
    last = clf.epoch_loss_[-1]
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 4 and len(clf.epoch_loss_) == 4
    assert clf.epoch_loss_[-1] < last * 1.5  # continued, not restarted (the first epoch's loss is far higher)
    assert clf.epoch_loss_[-1] < clf.epoch_loss_[0] / 2


def test_partial_fit_checks_classes():
    X, y = blobs()
    clf = FastBatchClassifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, np.where(y == 2, 5, y))
    with pytest.raises(ValueError, match="4 features"):
        clf.partial_fit(X[:, :3], y)


def test_bad_parameters_raise_at_fit_naming_them():
    X, y = blobs()
    clf = FastBatchClassifier(batch_size=0, activation="softplus")  # __init__ only stores
    with pytest.raises(ValueError, match="activation"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="batch_size"):
        FastBatchRegressor(batch_size=0).fit(X, y.astype(float))
    with pytest.raises(TypeError, match="seed"):
        FastBatchClassifier(seed=1.5).fit(X, y)
    assert not hasattr(clf, "trainer_")


def test_regressor_multi_output_and_validation_history():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    Y = np.column_stack([X @ [1.0, -2.0, 0.5], X[:, 0] - X[:, 2]])
    reg = FastBatchRegressor(epochs=30, validation_split=0.2).fit(X, Y)
    assert reg.predict(X).shape == (300, 2) and reg.predict(X).dtype == np.float64
    assert reg.score(X, Y) > 0.95
    assert len(reg.history_.val_loss) == 30 and reg.history_.n_records == 240
    assert reg.t_ == 30 * 240


def test_early_stopping_ends_before_the_budget():
    X, y = blobs()
    clf = FastBatchClassifier(epochs=200, validation_split=0.3, patience=2, learning_rate=0.05).fit(X, y)
    assert clf.n_iter_ < 200 and clf.trainer_.finished


def test_pickled_estimator_continues_identically():
    X, y = blobs()
    clf = FastBatchClassifier(optimizer="adam")
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X[:100], y[:100])
    curve = clf.loss_curve_  # (its cache is not pickled, and the live estimator keeps it)
    twin = pickle.loads(pickle.dumps(clf))
    assert "_curves_kept" not in vars(twin) and clf.loss_curve_ is curve and np.array_equal(twin.loss_curve_, curve)
    for est in (clf, twin):
        est.partial_fit(X[:100], y[:100])
    assert np.array_equal(clf.loss_curve_, twin.loss_curve_)
    assert np.array_equal(clf.predict_proba(X), twin.predict_proba(X))


def test_grid_search_and_cross_validation():
    X, y = blobs()
    search = GridSearchCV(FastBatchClassifier(epochs=5), {"hidden": [(4,), (16,)], "learning_rate": [0.01, 0.001]},
                          cv=3).fit(X, y)
    assert search.best_score_ > 0.9 and set(search.best_params_) == {"hidden", "learning_rate"}
    scores = cross_val_score(FastBatchRegressor(epochs=10), X, X @ np.ones(4), cv=3)
    assert scores.min() > 0.8


def test_a_failed_partial_fit_run_leaves_the_estimator_as_it_was():
    X, y = blobs()
    clf = FastBatchClassifier(epochs=3).fit(X * 1e3, y)
    before = clf.predict_proba(X)
    tr, curve = clf.trainer_, clf.loss_curve_.copy()
    clf.set_params(learning_rate=1e12, optimizer="sgd")
    with pytest.raises(fb.DivergenceError):
        clf.partial_fit(X[:100] * 1e3, y[:100])  # another record count: a new run, which diverges
    assert clf.trainer_ is tr and np.array_equal(clf.loss_curve_, curve)
    assert np.array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize("how", ["divergence", "bad value"])
def test_a_refused_fit_leaves_every_fitted_attribute_as_it_was(how):
    """scikit-learn's validate_data sets n_features_in_ (and fit sets classes_) before the Trainer runs: a fit the
    Trainer then refuses must not leave the new labels paired with the old network (predict naming the refused
    fit's labels from the old outputs)."""
    X, y = blobs()
    clf = FastBatchClassifier(epochs=3, seed=0).fit(X, y)
    proba, curve = clf.predict_proba(X), clf.loss_curve_
    before = {k: v for k, v in vars(clf).items()}
    X2, y2 = (X * 1e3, np.array(["a", "b"])[y % 2]) if how == "divergence" else (X.copy(), np.array(["a", "b"])[y % 2])
    if how == "divergence":
        clf.set_params(learning_rate=1e12, optimizer="sgd")
        before["learning_rate"], before["optimizer"] = 1e12, "sgd"
        with pytest.raises(fb.DivergenceError):
            clf.fit(X2, y2)
    else:
        X2[5, 0] = 1e39  # beyond float32: the Trainer's refusal, after validate_data passed it
        with pytest.raises(ValueError, match="too large"):
            clf.fit(X2, y2)
    assert vars(clf).keys() == before.keys() and all(vars(clf)[k] is v for k, v in before.items())
    assert clf.classes_.tolist() == [0, 1, 2] and clf.n_features_in_ == 4
    assert np.array_equal(clf.predict_proba(X), proba) and np.array_equal(clf.loss_curve_, curve)
    reg = FastBatchRegressor(epochs=2, seed=0).fit(X, X[:, :2])  # (2 outputs)
    Xbad = X[:, :3].copy()
    Xbad[0, 0] = np.inf
    with pytest.raises(ValueError):
        reg.fit(Xbad, X[:, 0])
    assert reg.n_features_in_ == 4 and reg.predict(X).shape == (300, 2)


def test_fitted_attributes_follow_the_run_after_a_call_that_ends_mid_epoch():
    """n_iter_, t_, loss_curve_ and epoch_loss_ are the run's as it is: a call that ended inside an epoch (its
    trainer driven by hand, a divergence's rewind) counts that epoch once, and undone steps are not in the curve."""
    X, y = blobs()
    clf = FastBatchClassifier(batch_size=32, seed=0, optimizer="sgd", learning_rate=0.01)  # 10 steps an epoch
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.trainer_.fit(X, y, steps=3)  # the run now ends inside its second epoch
    for calls in range(1, 4):
        clf.partial_fit(X, y)
        tr = clf.trainer_
        assert tr.step == 13 + 10 * calls and clf.n_iter_ == calls + 2 == len(clf.epoch_loss_)
        assert np.array_equal(clf.loss_curve_, tr.history.loss.astype(np.float64))
        assert np.array_equal(clf.epoch_loss_, tr.history.epoch_loss)
        assert clf.t_ == int(tr.history.records_seen[-1])
    clf.set_params(learning_rate=1e9)
    with pytest.raises(fb.DivergenceError):
        clf.partial_fit(X * 1e3, y)  # the same record count: the same run, rewound before its blow-up
    tr = clf.trainer_
    assert len(clf.loss_curve_) == tr.step and clf.n_iter_ == -(-tr.step // 10) == len(clf.epoch_loss_)
    assert clf.t_ == int(tr.history.records_seen[-1])
    small = FastBatchClassifier(batch_size=32, seed=0)
    small.partial_fit(X[:64], y[:64], classes=[0, 1, 2])  # a run of 2 steps an epoch, then one of 10
    small.partial_fit(X, y)
    assert small.n_iter_ == 2 and small.t_ == 64 + 300 and len(small.loss_curve_) == 2 + 10


def _hold_trainer_fit(monkeypatch):
    """(entered, release): every Trainer.fit sets ``entered``, then waits for ``release`` before it trains."""
    entered, release = threading.Event(), threading.Event()
    real = fb.Trainer.fit

    def held(self, *args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fb.Trainer, "fit", held)
    return entered, release


def test_a_call_from_another_thread_during_a_call_is_refused_and_changes_nothing(monkeypatch):
    X, y = blobs()
    clf = FastBatchClassifier(batch_size=32, seed=0).partial_fit(X, y, classes=[0, 1, 2])
    entered, release = _hold_trainer_fit(monkeypatch)
    errors = []
    worker = threading.Thread(target=lambda: errors.append(clf.partial_fit(X, y) and None))
    worker.start()
    try:
        assert entered.wait(30)
        state = (clf.n_iter_, clf.t_, len(clf.loss_curve_), clf.trainer_)
        for call in (lambda: clf.partial_fit(X, y), lambda: clf.fit(X, y), lambda: clf.partial_fit(X[:50], y[:50])):
            with pytest.raises(RuntimeError, match="already running on this FastBatchClassifier"):
                call()
        assert (clf.n_iter_, clf.t_, len(clf.loss_curve_), clf.trainer_) == state
    finally:
        release.set()
        worker.join()
    assert errors == [None] and clf.n_iter_ == 2 == len(clf.epoch_loss_) and len(clf.loss_curve_) == 20
    monkeypatch.undo()
    clf.partial_fit(X, y)  # (the estimator is free again)
    assert clf.n_iter_ == 3


def test_predict_during_a_refit_gives_the_old_networks_labels_and_the_curves_are_kept_until_the_run_moves(
        monkeypatch):
    """The network and the labels it was fit on are committed together, at the end of a call: a predict while a
    refit on other labels runs answers with the old network's own labels (it named the new fit's labels from the
    old outputs). loss_curve_ and epoch_loss_ are made again only when the run has moved (a stream reading them
    after each call paid for the whole run each time)."""
    X, y = blobs()
    clf = FastBatchClassifier(epochs=2, seed=0).fit(X, np.array(["cat", "dog", "cow"])[y])
    old = clf.predict(X)
    curve = clf.loss_curve_
    assert clf.loss_curve_ is curve and clf.epoch_loss_ is clf.epoch_loss_ and not curve.flags.writeable
    entered, release = _hold_trainer_fit(monkeypatch)
    wider = np.column_stack([X, X[:, :1]])
    worker = threading.Thread(target=lambda: clf.fit(wider, np.array(["apple", "pear", "fig"])[y]))
    worker.start()
    try:
        assert entered.wait(30)
        assert np.array_equal(clf.predict(X), old) and clf.loss_curve_ is curve
        assert clf.n_features_in_ == 4 and clf.classes_.tolist() == ["cat", "cow", "dog"]  # (the last fit, whole)
        snapshot = pickle.loads(pickle.dumps(clf))
    finally:
        release.set()
        worker.join()
    assert np.array_equal(snapshot.predict(X), old)  # (a pickle taken during the refit is the last fit)
    assert set(clf.predict(wider)) <= {"apple", "pear", "fig"} and clf.loss_curve_ is not curve
    assert clf.n_features_in_ == 5


def test_reading_the_curves_during_partial_fit_loses_no_step():
    """loss_curve_ read in another thread while partial_fit calls append: every step is there at the end (the
    curve was once joined in place, and an append between the read and the join was lost)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 3)), np.arange(8) % 2
    clf = FastBatchClassifier(batch_size=8, seed=0).partial_fit(X, y, classes=[0, 1])
    done = threading.Event()

    def read():
        while not done.is_set():
            clf.loss_curve_, clf.epoch_loss_, clf.n_iter_

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(1500):
            clf.partial_fit(X, y)
    finally:
        done.set()
        reader.join()
    assert len(clf.loss_curve_) == len(clf.epoch_loss_) == clf.n_iter_ == clf.trainer_.step == 1501


@pytest.mark.parametrize("Est", [FastBatchClassifier, FastBatchRegressor])
def test_partial_fit_plain_arrays_train_as_validated_ones(Est):
    # later partial_fit calls with plain float arrays skip scikit-learn's validation: same numbers
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) if Est is FastBatchClassifier else X[:, 0] * 2.0
    kw = {"classes": [0, 1]} if Est is FastBatchClassifier else {}
    a, b = Est(hidden=(6,), batch_size=4, seed=1), Est(hidden=(6,), batch_size=4, seed=1)
    a.partial_fit(X[:8], y[:8], **kw)
    b.partial_fit(X[:8], y[:8], **kw)
    for i in range(8, 40, 8):
        a.partial_fit(X[i:i + 8], y[i:i + 8])                       # plain arrays
        b.partial_fit(X[i:i + 8].tolist(), y[i:i + 8].tolist())     # lists: validated and converted
    assert np.array_equal(a.loss_curve_, b.loss_curve_) and len(a.loss_curve_) == 10
    assert np.array_equal(a.epoch_loss_, b.epoch_loss_) and a.n_iter_ == b.n_iter_ == 5 and a.t_ == b.t_ == 40
    assert np.array_equal(a.predict(X), b.predict(X))
    bad = X[:8].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        a.partial_fit(bad, y[:8])
    with pytest.raises(ValueError, match="features"):
        a.partial_fit(X[:8, :2].copy(), y[:8])
    if Est is FastBatchClassifier:
        with pytest.raises(ValueError, match="not in classes"):
            a.partial_fit(X[:8], np.full(8, 7))


def test_a_classifier_fitted_on_one_class_gives_it_probability_one():
    X = np.random.default_rng(0).normal(size=(40, 3))
    clf = FastBatchClassifier(epochs=2, hidden=(4,), seed=0).fit(X, np.full(40, "only"))
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 1) and np.array_equal(proba, np.ones((5, 1)))  # a row of probabilities sums to 1
    assert clf.predict(X[:5]).tolist() == ["only"] * 5
    assert np.array_equal(clf.predict_log_proba(X[:5]), np.zeros((5, 1)))


@pytest.mark.parametrize("weights, error", [({0: -1.0}, ValueError), ({0: float("nan")}, ValueError),
                                            ({0: "heavy"}, TypeError)])
def test_a_bad_class_weight_is_named_as_class_weight(weights, error):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(error, match="class_weight"):
        FastBatchClassifier(class_weight=weights, epochs=1).fit(X, np.arange(20) % 2)


def test_partial_fit_sees_an_array_parameter_edited_in_place_and_takes_an_equal_new_one():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    reg = FastBatchRegressor(hidden=np.array([5, 4]), seed=0)
    reg.partial_fit(X, y)
    reg.hidden[0] = 7
    with pytest.raises(ValueError, match=r"hidden=\(7, 4\) differs from the network's hidden=\(5, 4\)"):
        reg.partial_fit(X, y)
    reg.hidden[0] = 5
    reg.set_params(betas=np.array([0.9, 0.99]))
    reg.partial_fit(X, y)
    reg.set_params(betas=np.array([0.9, 0.99]))  # an equal new array: no "truth value is ambiguous"
    reg.partial_fit(X, y)
    assert reg.trainer_.config["betas"] == (0.9, 0.99) and reg.n_iter_ == 3
