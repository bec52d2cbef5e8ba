"""Using a trained network: outputs, predictions, probabilities, loss and metrics.

Inference runs in float64, in chunks of records: a record's outputs then do not depend
on which other records share its matrix product, and memory stays bounded for big
(or memory-mapped) inputs.
"""
import numpy as np

from . import _numpy_backend
from .config import ACTIVATION_CODES
from ._network import unpack

CHUNK = 8192  # records per matrix product


def forward(theta, sizes, activation, X, x_scaling=None):
    """The network's outputs (logits) for a checked X, float64, shape (n, n_outputs). ``x_scaling``:
    the run's (shift, scale), standardising each record first, ``(x - shift) / scale`` in float64, a
    chunk at a time (a standardised copy of all of X would take twice its size in float64)."""
    code = ACTIVATION_CODES[activation]
    layers = unpack(theta if theta.dtype == np.float64 else theta.astype(np.float64), sizes)

    def records(part):
        part = np.asarray(part, dtype=np.float64)
        return part if x_scaling is None else (part - x_scaling[0]) / x_scaling[1]

    if X.shape[0] <= CHUNK and not isinstance(X, np.memmap):  # the common small case: no copies but the products
        return _forward_chunk(layers, code, records(X))
    out = np.empty((X.shape[0], int(sizes[-1])))
    if isinstance(X, np.memmap):  # read through the row source: a file cut short is an OSError, not SIGBUS
        from ._rows import RowSource
        with RowSource.open(X) as src:
            for lo in range(0, X.shape[0], CHUNK):
                out[lo:lo + CHUNK] = _forward_chunk(layers, code, records(src.read(lo, min(lo + CHUNK, X.shape[0]))))
        return out
    for lo in range(0, X.shape[0], CHUNK):
        out[lo:lo + CHUNK] = _forward_chunk(layers, code, records(X[lo:lo + CHUNK]))
    return out


def forward_views(layers, activation, X):
    """The outputs for X through ``layers`` (views into the params, in their dtype): the per-epoch
    validation's path, with no copy of the params (the validation set is fixed, so its products
    do not depend on other records)."""
    return _forward_chunk(layers, ACTIVATION_CODES[activation], X)


def _forward_chunk(layers, code, a):
    last = len(layers) - 1
    for i, (W, b) in enumerate(layers):
        a = a @ W
        a += b
        if i < last:
            a = _numpy_backend._activate(code, a)
    return a


def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def predict(z, loss):
    """Class labels (cross_entropy, binary_crossentropy) or the outputs (mse; 1-D for one output)."""
    if loss == "cross_entropy":
        return z.argmax(axis=1)
    if loss == "binary_crossentropy":
        return (z[:, 0] > 0).astype(np.int64)
    return z[:, 0] if z.shape[1] == 1 else z


def predict_proba(z, loss):
    """Class probabilities, shape (n, n_classes); not defined for mse."""
    if loss == "cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if loss == "binary_crossentropy":
        p = sigmoid(z[:, 0])
        return np.column_stack([1 - p, p])
    raise ValueError("predict_proba needs a classification loss (cross_entropy or binary_crossentropy); "
                     "this run uses mse")


def score(z, loss, targets, labels, weights=None):
    """``{"loss": ...}`` plus accuracy (classification) or r2 and mae (regression).

    The loss is the training loss over all records (weighted by ``weights`` when given).
    """
    w = None if weights is None or not len(weights) else np.asarray(weights, dtype=np.float64)
    if loss == "cross_entropy":
        shifted = z - z.max(axis=1, keepdims=True)
        per = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(z)), labels]
        hit = z.argmax(axis=1) == labels
        return {"loss": _mean(per, w), "accuracy": _mean(hit, w)}
    if loss == "binary_crossentropy":
        y = targets[:, 0].astype(np.float64)
        zz = z[:, 0]
        per = np.maximum(zz, 0) - zz * y + np.log1p(np.exp(-np.abs(zz)))
        return {"loss": _mean(per, w), "accuracy": _mean((zz > 0) == (y > 0.5), w)}
    t = targets.astype(np.float64)
    err = z - t
    per = np.mean(err * err, axis=1)
    out = {"loss": _mean(per, w), "mae": _mean(np.mean(np.abs(err), axis=1), w)}
    out["r2"] = _r2(np.sum(err * err, axis=0) if w is None else np.dot(w, err * err), t, w)
    return out


def score_of_sums(sums, loss, targets, weights=None):
    """``score``'s dict from the kernel's sums (``_kernel.score``): sums[0] of the weighted losses,
    sums[1] of the weighted hits (classification) or absolute errors (mse), sums[2] of the weights,
    then (mse) each output's weighted sum of squared errors; ``weights``: the records' (None or empty: 1 each)."""
    if loss != "mse":
        return {"loss": float(sums[0] / sums[2]), "accuracy": float(sums[1] / sums[2])}
    t = targets.astype(np.float64)
    w = None if weights is None or not len(weights) else np.asarray(weights, dtype=np.float64)
    return {"loss": float(sums[0] / sums[2]), "mae": float(sums[1] / sums[2]),
            "r2": _r2(sums[3:3 + t.shape[1]], t, w)}


def _r2(ss_res, t, w=None):
    """The mean over outputs of 1 - ss_res / ss_tot (NaN for an output whose targets are constant); with
    weights ``w``, ss_tot is weighted around the weighted mean (and ss_res must be weighted so), as
    scikit-learn's ``r2_score(sample_weight=w)``."""
    if w is None:
        ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    else:
        ss_tot = np.dot(w, (t - np.dot(w, t) / w.sum()) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)
    return float(np.mean(r2))


def _mean(values, w):
    if w is None:
        return float(np.add.reduce(values, dtype=np.float64)) / len(values)
    return float(np.dot(np.asarray(values, dtype=np.float64), w) / w.sum())
