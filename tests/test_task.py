"""One task rule: what loss='auto' picks, why, and when it warns."""
import warnings

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _task


@pytest.mark.parametrize("y, loss, warns", [
    (np.arange(100) % 3, "cross_entropy", False),                      # integer labels
    (np.arange(100) % 2 == 0, "cross_entropy", False),                 # bool labels
    ((np.arange(100) % 2).astype(float), "cross_entropy", True),       # float 0/1: classes, with a warning
    (np.arange(100) * 1.0 + 25, "mse", False),                         # 100 whole-number floats: a quantity
    (np.arange(100), "mse", True),                                     # 100 distinct integers: regression, warned
    (np.linspace(0, 1, 100), "mse", False),                            # real values
    (np.zeros(100), "mse", False),                                     # one value
    (np.random.default_rng(0).normal(size=(100, 3)), "mse", False),    # several targets
])
def test_auto_picks_by_the_one_rule(y, loss, warns):
    task = _task.decide(y)
    assert task.loss == loss and task.reason
    assert task.obvious != warns


def test_the_trainer_warns_where_the_choice_is_not_obvious():
    X = np.random.default_rng(0).normal(size=(100, 3))
    with pytest.warns(UserWarning, match="loss='mse'"):
        tr = fb.Trainer(epochs=1)
        tr.fit(X, (X[:, 0] > 0).astype(float))
    assert tr.predict(X).dtype.kind == "i"  # classes, not 1.07 and -0.07
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(epochs=1).fit(X, (X[:, 0] > 0).astype(int))  # integer labels: no warning
        fb.Trainer(epochs=1, loss="mse").fit(X, (X[:, 0] > 0).astype(float))  # asked for: no warning


@pytest.mark.parametrize("y, outputs, unseen", [
    (np.repeat(np.arange(1990, 2010), 5), "2,010", "1,990"),  # years as classes: 20 labels, 2,010 outputs
    (np.array([0, 1000] * 30), "1,001", "999"),
    (np.repeat([10.0, 20.0, 30.0], 10), "31", "28"),           # (whole-number floats warn anyway: now with why)
])
def test_labels_that_leave_most_outputs_unused_are_warned_about(y, outputs, unseen):
    """Whole-number labels are classes with one output per 0..largest: labels far from 0..k-1 make a softmax of
    mostly unused outputs, which the rule now says (with how to code them), where it was silent."""
    task = _task.decide(y, name="y")
    assert task.loss == "cross_entropy" and not task.obvious
    assert f"{outputs} outputs" in task.reason and f"{unseen} of them" in task.reason and "0..k-1" in task.reason
    X = np.random.default_rng(0).normal(size=(len(y), 3))
    with pytest.warns(UserWarning, match="outputs"):
        fb.Trainer(epochs=1).fit(X, y)
    assert _task.decide(y, name="y", coded=True).reason.endswith("pass loss='mse' for regression")  # (the CLI's)
    scan = _task.TaskScan("y")
    for i in range(0, len(y), 7):
        scan.add(y[i:i + 7])
    assert scan.result().reason == task.reason  # fit_batches' rule says the same
    for fine in (np.arange(60) % 3, np.arange(60) % 3 + 1, np.arange(60) % 10 + 1):  # (1..k: one output unused)
        assert _task.decide(fine).obvious


def test_diabetes_like_targets_are_regression():
    y = np.random.default_rng(0).integers(25, 347, 400).astype(float)
    task = _task.decide(y, name="target 'target'")
    assert task.loss == "mse" and "regression" in task.reason and "cross_entropy" in task.reason


@pytest.mark.parametrize("y", [
    np.repeat([0.0, 1.0, 2.0], 50),                                    # iris' float labels, sorted by class
    np.sort(np.random.default_rng(1).integers(25, 347, 442))[::-1],    # diabetes' integer targets, sorted
    np.random.default_rng(2).normal(size=100),
    np.zeros(40),
    np.repeat(np.arange(21), 3), np.repeat(np.arange(20), 3),          # either side of MAX_AUTO_CLASSES
    np.random.default_rng(3).normal(size=(50, 2)),
    np.arange(60) % 2 == 0,
    np.concatenate([np.arange(10), np.arange(10) + 0.5]),              # whole numbers first, then fractions
])
@pytest.mark.parametrize("part", [1, 7, 16, 1000])
def test_a_scan_of_parts_decides_as_decide_does_on_them_all(y, part):
    scan = _task.TaskScan("y")
    for i in range(0, len(y), part):
        scan.add(y[i:i + part])
    whole, parts = _task.decide(y, name="y"), scan.result()
    assert (parts.loss, parts.kind, parts.obvious) == (whole.loss, whole.kind, whole.obvious)
    if part >= len(y):  # one part: the same words too
        assert parts.reason == whole.reason or "more than" in parts.reason


def test_the_last_decision_is_kept_for_equal_values_of_the_same_dtype_only():
    # decide keeps its last targets and Task: the same values again are the same Task; the same numbers in
    # another dtype, another name, or one value changed in place are decided again
    y = np.arange(60) % 3
    first = _task.decide(y, "auto", "y")
    assert _task.decide(y.copy(), "auto", "y") is first
    as_float = _task.decide(y.astype(np.float64), "auto", "y")
    assert as_float is not first and as_float.loss == first.loss == "cross_entropy"
    assert first.obvious and not as_float.obvious  # (whole-number floats as classes: warned)
    assert _task.decide(y, "auto", "labels") is not first
    y[:] = np.arange(60) * 7  # (in place: the same object, 60 distinct values now)
    assert _task.decide(y, "auto", "y").loss == "mse"
