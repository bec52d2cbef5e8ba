"""Per-epoch metrics, Keras-style epoch lines, sample weights and class weights."""
import pickle

import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data


def test_regression_epochs_have_r2_and_validation_metrics():
    X, y = make_data(n=300, d=4, loss="mse", k=1)
    h = fb.Trainer(epochs=4, validation_split=0.2, batch_size=16).fit(X, y)
    m = h.metrics
    assert set(m) >= {"loss", "r2", "val_loss", "val_r2", "val_mae"}
    assert all(len(v) == 4 for v in m.values())
    np.testing.assert_allclose(m["loss"], h.epoch_loss)
    np.testing.assert_allclose(m["val_loss"], h.val_loss)


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = make_data(n=200, d=4)
    fb.Trainer(epochs=3, batch_size=50, validation_split=0.25).fit(X, y, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3 - 3 steps - ") and "loss: " in lines[0] and "val_accuracy: " in lines[0]
    fb.Trainer(epochs=2).fit(X, y)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose"):
        fb.Trainer().fit(X, y, verbose=3)


def test_sample_weight_of_ones_changes_nothing_and_zero_weights_drop_records():
    X, y = make_data(n=120, d=4)
    kw = dict(epochs=2, batch_size=120, dtype="float64", shuffle=False)
    plain = fb.Trainer(**kw).fit(X, y)
    ones = fb.Trainer(**kw).fit(X, y, sample_weight=np.ones(120))
    np.testing.assert_allclose(ones.loss, plain.loss, rtol=1e-12)
    w = np.r_[np.ones(60), np.zeros(60)]
    a = fb.Trainer(**{**kw, "batch_size": 120})
    a.fit(X, y, sample_weight=w, n_outputs=3)
    b = fb.Trainer(**{**kw, "batch_size": 60})
    b.fit(X[:60], y[:60], n_outputs=3)
    for (p, q), (r, s) in zip(a.get_params(), b.get_params()):
        np.testing.assert_allclose(p, r, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="sample_weight"):
        fb.Trainer().fit(X, y, sample_weight=-np.ones(120))
    with pytest.raises(ValueError, match="sample_weight"):
        fb.Trainer().fit(X, y, sample_weight=np.ones(3))


def test_a_split_that_leaves_the_training_records_only_weights_0_is_refused_before_the_run_starts():
    """Positive weights only on the records validation_split holds out: every training step's loss is 0 by the
    rule, so the run trained nothing and reported loss 0 (r2 1). A ValueError naming sample_weight and the split,
    and the trainer stays unstarted."""
    X, y = make_data(n=100, d=4)
    tr = fb.Trainer(validation_split=0.2, epochs=2)
    _, va = fb._data.split_indices(100, 0.2, tr.config["seed"])
    w = np.zeros(100)
    w[va] = 1.0
    with pytest.raises(ValueError, match=r"sample_weight.*validation_split=0\.2"):
        tr.fit(X, y, sample_weight=w)
    assert tr.step == 0 and tr.history.epoch_loss.size == 0
    w[np.setdiff1d(np.arange(100), va)[0]] = 1.0   # one training record weighs: it trains
    assert np.isfinite(tr.fit(X, y, sample_weight=w).epoch_loss).all() and tr.step > 0


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("batch_size", [1, 8, 30])
def test_an_epochs_loss_and_accuracy_with_sample_weights_are_the_weighted_means_over_its_records(backend, batch_size):
    """With sample weights an epoch's steps weigh by their batches' weights, not their sizes: a batch of weights 0
    (whose loss is 0 by the rule) counts for nothing. With params that do not move (a rate of 1e-30) each epoch's
    loss and accuracy are then the weighted ones evaluate gives over all the records (a 0/1 mask gave 0.57 where
    the masked records were classified right 100%: every all-0 batch counted as loss 0 and accuracy 0)."""
    X, y = make_data(n=200, d=5, k=3, seed=4)
    rng = np.random.default_rng(5)
    w = (rng.random(200) < 0.2) * rng.uniform(0.5, 2.0, 200)
    tr = fb.Trainer(hidden=(8,), batch_size=batch_size, epochs=3, learning_rate=1e-30, optimizer="sgd",
                    dtype="float64", backend=backend)
    h = tr.fit(X, y, sample_weight=w)
    want = tr.evaluate(X, y, sample_weight=w)
    np.testing.assert_allclose(h.epoch_loss, want["loss"], rtol=1e-9)
    np.testing.assert_allclose(h.metrics["accuracy"], want["accuracy"], rtol=1e-12)
    unweighted = fb.Trainer(hidden=(8,), batch_size=batch_size, epochs=1, learning_rate=1e-30, optimizer="sgd",
                            dtype="float64", backend=backend)
    h1 = unweighted.fit(X, y, sample_weight=np.ones(200))  # (weights of 1: the plain means, by batch size)
    np.testing.assert_allclose(h1.epoch_loss, unweighted.evaluate(X, y)["loss"], rtol=1e-9)


def test_an_epochs_weighting_survives_a_refused_call_and_a_checkpoint_as_the_run_would_have_it(tmp_path):
    """An epoch's step weights are decided by its first call and kept with the run: a call refused for a bad
    record leaves them as they were (its own weights had stayed), and a checkpoint taken mid-epoch carries them,
    so an epoch resumed with other weights closes as it would have in one process (it reported accuracy 1.28)."""
    X, y = make_data(n=120, d=4, k=3, seed=6)
    rng = np.random.default_rng(7)
    w1, w2 = rng.uniform(0.1, 3.0, 120), rng.uniform(0.1, 3.0, 120)
    kw = dict(hidden=(8,), batch_size=10, epochs=3, seed=1)

    def calls(tr, between=None):
        tr.fit(X, y, steps=4, sample_weight=w1)
        if between is not None:
            tr = between(tr)
        tr.fit(X, y, sample_weight=w2)
        return tr.history

    ref = calls(fb.Trainer(**kw))

    def saved(tr):
        tr.save(tmp_path / "mid.npz")
        return fb.Trainer.load(tmp_path / "mid.npz")

    for between in (saved, lambda tr: pickle.loads(pickle.dumps(tr))):
        h = calls(fb.Trainer(**kw), between)
        assert np.array_equal(h.loss, ref.loss) and np.array_equal(h.epoch_loss, ref.epoch_loss)
        assert np.array_equal(h.metrics["accuracy"], ref.metrics["accuracy"]) and max(ref.metrics["accuracy"]) <= 1
    # a call that begins epoch 1 with other weights and is refused at a record late in it: epoch 1 is then
    # weighed by the calls that train it, as if the refused call had not been made
    tr, one = fb.Trainer(**kw), fb.Trainer(**kw)
    for t in (tr, one):
        t.fit(X, y, steps=12, sample_weight=w1)  # (epoch 0 whole)
    bad = X.copy()
    bad[fb.epoch_order(120, 1, 1)[100]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(bad, y, sample_weight=w2)
    for t in (tr, one):
        t.fit(X, y, sample_weight=w1)
    assert np.array_equal(tr.history.epoch_loss, one.history.epoch_loss)
    assert np.array_equal(tr.history.metrics["accuracy"], one.history.metrics["accuracy"])


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_an_epochs_r2_with_sample_weights_is_evaluates_weighted_r2(backend):
    """A regression's epoch r2 takes the weighted variance of the targets, as its weighted loss and evaluate's r2
    do (it took the unweighted one: 0.32 where evaluate gave -3967 for the same loss)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = np.where(np.arange(400) < 200, rng.normal(0, 10, 400), rng.normal(5, 0.1, 400))
    w = np.where(np.arange(400) < 200, 0.0, 1.0)
    tr = fb.Trainer(hidden=(4,), epochs=2, batch_size=50, learning_rate=1e-300, optimizer="sgd", loss="mse",
                    dtype="float64", backend=backend)
    h = tr.fit(X, y, sample_weight=w)
    want = tr.evaluate(X, y, sample_weight=w)
    np.testing.assert_allclose(h.metrics["r2"], want["r2"], rtol=1e-9)


@pytest.mark.parametrize("target", [False, True])
def test_standardisation_is_weighted_by_sample_weight_as_duplicated_records(target):
    """With sample weights, standardize (and standardize_target) take the weighted mean and std, as
    StandardScaler(sample_weight=...) does: a weight of 2 is the record twice, a weight of 0 leaves it out."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 4)) * [1.0, 50.0, 0.01, 7.0] + [0.0, 300.0, -2.0, 1.0]
    y = X @ [0.5, 0.01, 30.0, -0.2] + 5.0
    w = np.ones(90)
    w[::3], w[1::7] = 2.0, 0.0
    reps = w.astype(int)
    kw = dict(hidden=(6,), batch_size=10 ** 6, epochs=4, dtype="float64", standardize=True,
              standardize_target=target, loss="mse", shuffle=False)
    a, b = fb.Trainer(**kw), fb.Trainer(**kw)
    a.fit(X, y, sample_weight=w)
    b.fit(np.repeat(X, reps, axis=0), np.repeat(y, reps))
    sa, sb = a.run_state.scaling, b.run_state.scaling
    assert set(sa) == set(sb) and ("y_shift" in sa) == target
    for key in sa:
        np.testing.assert_allclose(sa[key], sb[key], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.history.loss, b.history.loss, rtol=1e-9)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9, atol=1e-9)
    unweighted = fb.Trainer(**kw)
    unweighted.fit(X, y)
    assert not np.allclose(unweighted.run_state.scaling["x_shift"], sa["x_shift"])  # (the weights do matter here)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_weighted_r2_is_scikit_learns(backend):
    # evaluate and the per-epoch validation weight r2 as they weight the loss and mae (r2_score(sample_weight=))
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = make_data(n=400, d=5, loss="mse", k=2)
    w = np.random.default_rng(1).uniform(0.1, 5.0, 400)
    tr = fb.Trainer(epochs=3, batch_size=16, dtype="float64", backend=backend, seed=0)
    tr.fit(X[:300], y[:300], validation_data=(X[300:], y[300:]))
    res = tr.evaluate(X[300:], y[300:], sample_weight=w[300:])
    p = tr.predict(X[300:])
    assert res["r2"] == pytest.approx(metrics.r2_score(y[300:], p, sample_weight=w[300:]), rel=1e-12)
    assert res["r2"] != pytest.approx(metrics.r2_score(y[300:], p), rel=1e-6)
    assert res["loss"] == pytest.approx(np.average(((p - y[300:]) ** 2).mean(axis=1), weights=w[300:]), rel=1e-12)
    # a weighted validation split: its val_r2 is the weighted r2 of the held-out records at that epoch's end
    tr2 = fb.Trainer(epochs=1, batch_size=16, dtype="float64", backend=backend, seed=0, validation_split=0.25)
    h2 = tr2.fit(X, y, sample_weight=w)
    from fastbatch._data import split_indices
    _, rows = split_indices(400, 0.25, 0)
    assert h2.metrics["val_r2"][-1] == pytest.approx(
        metrics.r2_score(y[rows], tr2.predict(X[rows]), sample_weight=w[rows]), rel=1e-9)


def test_class_weight_is_per_record_weights():
    sk = pytest.importorskip("fastbatch.sklearn")
    from sklearn.utils.class_weight import compute_class_weight
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.where(rng.random(200) < 0.2, "rare", "common")
    a = sk.FastBatchClassifier(class_weight="balanced", epochs=3).fit(X, y)
    cw = compute_class_weight("balanced", classes=np.unique(y), y=y)
    b = sk.FastBatchClassifier(epochs=3).fit(X, y, sample_weight=cw[np.searchsorted(np.unique(y), y)])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = sk.FastBatchClassifier(class_weight={"rare": 5.0}, epochs=3).fit(X, y)
    assert not np.array_equal(c.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="class_weight"):
        sk.FastBatchClassifier(class_weight={"nope": 2.0}).fit(X, y)


def hits_run(backend, loss, n_threads=1, split_columns=None, weights=False):
    from fastbatch import _kernel, _numpy_backend
    from fastbatch._network import init_params
    from kernel_run import data, make_spec
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 40))
    y = rng.integers(0, 5, 600) if loss == "cross_entropy" else (X[:, 0] > 0).astype(float)
    X, T, L, k = data(X, y, loss, np.float64)
    w = rng.random(600) if weights else np.empty(0)
    sizes = np.array([40, 256, k if loss == "cross_entropy" else 1], dtype=np.int64)
    spec = make_spec(sizes, batch_size=32 if split_columns else 300, spe=2 if not split_columns else 19, loss=loss,
                     n_threads=n_threads, split_columns=split_columns)
    theta = init_params(sizes, "relu", 0, np.float64)
    opt = np.zeros((3, len(theta)))
    n = 6
    losses, hits = np.full(n, np.nan, X.dtype), np.full(n, np.nan)
    be = _kernel if backend == "cython" else _numpy_backend
    done, status = be.train_steps(spec, X, T, L, w, theta, opt, np.full(601, -1, np.int64), np.full(n, 0.01),
                                  losses, np.zeros((0, 2)), 0, n, 0, np.zeros(1, np.uint8), 60.0, hits=hits)
    assert done == n
    return hits


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_crossentropy"])
@pytest.mark.parametrize("team", [(1, None), (2, False), (2, True)])
@pytest.mark.parametrize("weights", [False, True])
def test_the_kernels_hits_equal_the_reference(loss, team, weights):
    ref = hits_run("numpy", loss, *team, weights=weights)
    got = hits_run("cython", loss, *team, weights=weights)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert ((0 <= got) & (got <= 1)).all()


def test_training_accuracy_per_epoch_is_the_epochs_batches():
    X, y = make_data(n=300, d=4)
    h = fb.Trainer(epochs=3, batch_size=50, shuffle=False, dtype="float64", learning_rate=1e-300).fit(X, y)
    # with no movement, every epoch's accuracy is that of the initial network on all records
    probe = fb.Trainer(epochs=1, batch_size=50, dtype="float64", learning_rate=1e-300)
    probe.fit(X, y, steps=1)
    expect = probe.evaluate(X, y)["accuracy"]
    np.testing.assert_allclose(h.metrics["accuracy"], [expect] * 3, rtol=1e-12)


# ---------------------------------------------------------------------------- the validation's score in the kernel

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, k", [("cross_entropy", 4), ("binary_crossentropy", 1), ("mse", 3)])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_the_kernels_validation_score_matches_numpys(dtype, loss, k, activation, weighted):
    # _kernel.score: the forward pass and the score in C; _inference.score: the numpy reference.
    # 5,000 records: more than one block of the kernel's rows (4,096), and then the same set in parts
    from fastbatch import _inference, _kernel
    from fastbatch._network import init_params, unpack
    from fastbatch.config import ACTIVATION_CODES, LOSS_CODES
    rng = np.random.default_rng(5)
    sizes = np.array([9, 17, 11, k])
    theta = init_params(sizes, activation, 3, dtype)
    X = rng.normal(size=(5000, 9)).astype(dtype)
    labels = rng.integers(0, k, 5000) if loss == "cross_entropy" else np.zeros(0, np.int64)
    targets = (rng.normal(size=(5000, k)) if loss == "mse" else rng.integers(0, 2, (5000, 1))).astype(dtype)
    w = rng.uniform(0.0, 2.0, 5000).astype(dtype) if weighted else np.zeros(0, dtype)
    codes = (ACTIVATION_CODES[activation], LOSS_CODES[loss])
    got = _inference.score_of_sums(_kernel.score(theta, sizes, *codes, X, targets, labels, w), loss, targets, w)
    ref = _inference.score(_inference.forward_views(unpack(theta, sizes), activation, X), loss, targets, labels, w)
    assert set(got) == set(ref)
    for key in ref:  # the kernel sums in double: within float32's rounding of numpy's float32 arithmetic
        assert got[key] == pytest.approx(ref[key], rel=1e-5 if dtype == "float32" else 1e-12)
    sums = None
    for lo in range(0, 5000, 1234):  # in parts, into the same sums: the same bits
        hi = lo + 1234
        sums = _kernel.score(theta, sizes, *codes, X[lo:hi], targets[lo:hi], labels[lo:hi], w[lo:hi], sums)
    assert _inference.score_of_sums(sums, loss, targets, w) == got


def test_the_kernels_validation_score_checks_its_x():
    from fastbatch import _kernel
    from fastbatch._network import init_params
    sizes = np.array([3, 2])
    theta = init_params(sizes, "relu", 0, "float32")
    for X in (np.zeros((4, 3)), np.zeros((4, 3), np.float32)[:, ::-1], np.zeros((0, 3), np.float32)):
        with pytest.raises(ValueError, match="C-ordered X of theta's dtype"):
            _kernel.score(theta, sizes, 1, 2, X, None, np.zeros(4, np.int64), None)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_validation_metrics_agree_between_the_backends(loss):
    # the cython backend scores its validation set in the kernel, the numpy one with numpy
    X, y = make_data(n=400, d=6, loss=loss, k=3 if loss == "cross_entropy" else 2)
    w = np.random.default_rng(2).uniform(0.5, 1.5, 400)
    hs = [fb.Trainer(epochs=3, batch_size=16, validation_split=0.25, backend=b, seed=1).fit(X, y, sample_weight=w)
          for b in ("cython", "numpy")]
    for key in hs[1].metrics:
        np.testing.assert_allclose(hs[0].metrics[key], hs[1].metrics[key], rtol=1e-4, err_msg=key)


def test_the_kernels_validation_score_refuses_what_would_read_out_of_bounds():
    # an internal call, but one wrong argument must be an error, never a read past an array
    from fastbatch import _kernel
    from fastbatch._network import init_params
    sizes = np.array([5, 8, 3])
    theta = init_params(sizes, "relu", 0, "float32")
    X = np.zeros((10, 5), np.float32)
    labels = np.zeros(10, np.int64)
    bad_calls = {
        "theta": (theta[:-1], sizes, 1, 2, X, None, labels, None),
        "codes": (theta, sizes, 1, 99, X, None, labels, None),
        "labels": (theta, sizes, 1, 2, X, None, labels[:2], None),
        "a label": (theta, sizes, 1, 2, X, None, np.full(10, 3), None),
        "targets": (theta, sizes, 1, 0, X, np.zeros((1, 3), np.float32), labels, None),
        "weights": (theta, sizes, 1, 2, X, None, labels, np.ones(2, np.float32)),
        "sums": (theta, sizes, 1, 2, X, None, labels, None, np.zeros(2)),
    }
    for what, args in bad_calls.items():
        with pytest.raises(ValueError):
            _kernel.score(*args)
