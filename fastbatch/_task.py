"""Classification or regression: the one rule, stated once, used by the Trainer, the CLI and the app.

With ``loss="auto"``, a target is a set of class labels when its values are whole
numbers (of an integer, bool or float dtype) with at most ``MAX_AUTO_CLASSES``
distinct values; anything else is a regression target. The choice always comes with
its reason, and where it is not obvious (whole-number floats taken as classes, many
distinct integers taken as a regression target, or labels that leave most of their network's
outputs unused, such as years) the library warns and names ``loss=``.
"""
import dataclasses
import warnings

import numpy as np

from . import _text

MAX_AUTO_CLASSES = 20  # whole-number targets with more distinct values are taken as a quantity


@dataclasses.dataclass(frozen=True)
class Task:
    loss: str          # the concrete loss
    kind: str          # "classification" or "regression"
    reason: str        # one line: what was seen, and how to override
    obvious: bool      # False: a warning is due

    def warn(self):
        if not self.obvious:
            warnings.warn(self.reason, UserWarning, stacklevel=caller_stacklevel())


def caller_stacklevel():
    """The ``stacklevel`` that points a warning at the first frame outside fastbatch (the user's line)."""
    import os
    import sys
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == package:
        frame, level = frame.f_back, level + 1
    return level


def _n_distinct(flat):
    """How many distinct values a vector of whole numbers holds (a count per value when their range is small)."""
    if flat.dtype.kind in "iu" and flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < max(1024, flat.size):
            return int(np.count_nonzero(np.bincount((flat - lo).astype(np.intp, copy=False))))
    return len(np.unique(flat))


def decide(y, loss="auto", name="target", coded=False):
    """The :class:`Task` for targets ``y`` (any array-like of numbers) and the ``loss`` asked for. ``coded``: the
    caller codes whole-number labels as 0..k-1 itself (the CLI), so their values leave no output unused."""
    if loss != "auto":
        kind = "regression" if loss == "mse" else "classification"
        return Task(loss, kind, f"{name}: loss={loss!r} was asked for -> {kind}", True)
    a = np.asarray(y)
    if a.dtype.kind not in "biuf" or a.size == 0:
        return Task("mse", "regression", f"{name}: not numbers", True)  # check_y then says what is wrong
    if a.nbytes > MEMO_BYTES:
        return _decide(a, name, coded)
    global _last
    raw = np.ascontiguousarray(a).tobytes()
    last = _last
    if last[0] == raw and last[1] == a.dtype and last[2] == a.shape and last[3] == (name, coded):
        return last[4]
    task = _decide(a, name, coded)
    _last = (raw, a.dtype, a.shape, (name, coded), task)
    return task


# the last targets decided on (up to MEMO_BYTES): (their bytes, dtype, shape, (name, coded)) and the Task,
# so a new run on the same values (a fresh Trainer, a grid search) does not look at them again
MEMO_BYTES = 1 << 20
_last = (None, None, None, None, None)


def _decide(a, name, coded=False):
    """The rule, for an array of numbers."""
    if a.ndim == 2 and a.shape[1] > 1:
        return _rule(a.shape[1], a.dtype.kind, False, None, name)
    flat = a.reshape(-1)
    whole = a.dtype.kind in "biu" or bool(np.all(np.isfinite(flat)) and np.all(flat == np.round(flat)))
    return _rule(1, a.dtype.kind, whole, _n_distinct(flat) if whole else None, name,
                 top=flat.max() if whole and flat.size and not coded else None)


def _rule(columns, kind, whole, n_distinct, name, more=False, top=None):
    """The rule itself, from what the targets are: their columns, dtype kind, whether every value is a whole
    number, and how many distinct values they hold (``more``: at least that many, the count stopped there),
    and the largest (``top``: a label's network has an output for each of 0..top)."""
    if columns > 1:
        return Task("mse", "regression", f"{name}: {columns} target columns -> regression (mse)", True)
    if whole and n_distinct == 1 and kind == "f":
        return Task("mse", "regression", f"{name}: one value only -> regression (mse)", True)
    if whole and n_distinct <= MAX_AUTO_CLASSES and not more:
        obvious = kind in "biu"
        how = "" if obvious else " (whole-number floats)"
        unused = "" if top is None else _unused_outputs(top, n_distinct)
        return Task("cross_entropy", "classification",
                    f"{name}: {_text.count(n_distinct, 'distinct whole-number value', sep='')}{how} -> "
                    "classification (cross_entropy)"
                    f"{unused}; pass loss='mse' for regression", obvious and not unused)
    if whole:
        count = f"more than {MAX_AUTO_CLASSES}" if more else f"{n_distinct}"
        return Task("mse", "regression",
                    f"{name}: {count} distinct whole-number values{'' if more else f' (more than {MAX_AUTO_CLASSES})'} "
                    "-> regression (mse); pass loss='cross_entropy' to classify", kind not in "biu")
    return Task("mse", "regression", f"{name}: real-valued -> regression (mse); pass loss='cross_entropy' "
                "to classify whole-number labels", True)


def _unused_outputs(top, n_distinct):
    """The words on labels that leave most of their network's outputs unused (a label's network has one per
    0..top: years 1990..2009 as classes make 2,010 outputs for 20 labels), or "" when they do not."""
    try:
        outputs = int(top) + 1
    except (OverflowError, ValueError):
        return ""
    if outputs <= max(2 * n_distinct, 2):
        return ""
    return (f" with {outputs:,} outputs (one per label 0..{outputs - 1:,}), {outputs - n_distinct:,} of them for "
            "labels never seen; encode the labels as 0..k-1 first (np.unique(y, return_inverse=True), or "
            "fastbatch.sklearn.FastBatchClassifier, which does)")


class TaskScan:
    """:func:`decide` over targets seen in parts (``fit_batches``' batches): the Task that ``decide`` gives
    for all of them at once, in bounded memory (distinct values are kept while they could be classes:
    at most ``MAX_AUTO_CLASSES + 1`` of them). Also the largest whole-number value seen (``top``)."""

    def __init__(self, name="target"):
        self.name = name
        self.columns, self.kind, self.whole, self.numbers, self.seen = 1, "b", True, True, False
        self.values, self.more, self.top = set(), False, None  # more: over MAX_AUTO_CLASSES distinct values

    def add(self, y):
        a = np.asarray(y)
        if a.dtype.kind not in "biuf":
            self.numbers = False
        if not self.numbers or not a.size:
            return
        self.seen = True
        if a.ndim == 2 and a.shape[1] > 1:
            self.columns = max(self.columns, a.shape[1])
        if "biuf".index(a.dtype.kind) > "biuf".index(self.kind):  # (the kind np.concatenate of them all has)
            self.kind = a.dtype.kind
        if not self.whole or self.columns > 1:
            return
        flat = a.reshape(-1)
        if a.dtype.kind == "f" and not (np.all(np.isfinite(flat)) and np.all(flat == np.round(flat))):
            self.whole = False
            return
        top = flat.max()
        self.top = top if self.top is None else max(self.top, top)
        if not self.more:
            distinct = np.unique(flat)
            self.values.update(distinct[:MAX_AUTO_CLASSES + 1].tolist())
            self.more = len(distinct) > MAX_AUTO_CLASSES or len(self.values) > MAX_AUTO_CLASSES

    def result(self, loss="auto"):
        """The Task, as ``decide(all of them, loss)`` gives it."""
        if loss != "auto":
            return decide(np.zeros(0), loss, self.name)
        if not self.numbers or not self.seen:
            return Task("mse", "regression", f"{self.name}: not numbers", True)
        return _rule(self.columns, self.kind, self.whole, len(self.values), self.name, self.more,
                     top=self.top if self.whole else None)
