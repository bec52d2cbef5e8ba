"""The data of one fit call: checked, converted and split, every call.

Every ``fit`` sees the data as it is now: an array edited in place between calls is
checked again and converted again (a later call on the very same arrays, unchanged in
layout, reuses what their shapes and types were checked as: ``LastArrays``). When the
backend checks each record as it reads it (the kernel: ``bad`` of ``train_steps``), X's
values are left to it (``scan=False``), and a started run's labels and targets too: a call
then costs O(its steps), not O(records), and a bad record it reaches is an error naming it,
with the run put back where the call began (``_driver``). A new run's labels and targets are
looked at whole (the task rule needs them); the numpy backend looks at every value. Nothing
here changes the trainer, and nothing keeps the caller's arrays.
"""
import dataclasses
import weakref

import numpy as np

from . import _task, _validation as V
from .schedule import split_sizes


@dataclasses.dataclass(slots=True)
class FitData:
    """Training arrays as the kernel reads them, plus the held-out validation arrays."""

    X: np.ndarray              # (n, d) C-contiguous of the run's dtype (or a read-only memmap of it)
    targets: np.ndarray        # (n, k) for mse / binary_crossentropy, else (0, 0)
    labels: np.ndarray         # (n,) int64 for cross_entropy, else (0,)
    weights: np.ndarray        # (n,) sample weights of the run's dtype, or (0,)
    loss: str                  # the concrete loss
    n_outputs: int
    n_records_all: int         # before the validation split
    val: tuple = None          # (X, targets, labels, weights) held out, or None
    scaling: dict = None       # the run's standardisation (x_shift, x_scale, y_shift, y_scale), or None
    peak: float = None         # target_peak's, once asked (kept with the FitData a later call on the same arrays gets)
    token: object = None       # who this FitData is, for a cache kept beyond it (never the FitData: it holds arrays)

    @property
    def n_records(self):
        return self.X.shape[0]


def token_of(data):
    """Who ``data`` (a FitData) is, for what is kept beyond it (a later call on the same arrays gets the same
    FitData, so the same token; never the FitData itself: it holds the caller's arrays): made when first asked."""
    token = data.token
    if token is None:
        token = data.token = object()
    return token


def target_peak(targets, weights=None):
    """The largest loss a record's targets give a network that outputs 0: the mean of its squared targets (mse;
    0 without targets), over the records of a positive weight (one of weight 0 is in no loss). A loss far beyond
    it is the network's doing, not the data's (``_driver.loss_limit``). A record whose targets are not finite is
    no peak: the kernel names it as a bad record when a step reads it."""
    if weights is not None and weights.size and targets.size:
        targets = targets[weights > 0]
    if not targets.size:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        squares = np.einsum("ij,ij->i", targets, targets, dtype=np.float64)
        peak = np.max(squares)
        if not np.isfinite(peak):
            squares = squares[np.isfinite(squares)]
            peak = np.max(squares) if squares.size else 0.0
    return float(peak) / targets.shape[1]


class LastArrays:
    """A run's last later call on arrays the kernel reads as they are (no converted copy), remembered
    without keeping them: X and y by weak reference, their shapes, strides and dtypes, and the FitData
    made for them. A call on the very same objects, with the same layout, gets that FitData again (its
    arrays put back for the call, let go by ``release`` after it): the checks of types and shapes it
    skips would pass as before, and the kernel reads the arrays' memory as it is then, and looks at
    each record it reads, on every call alike. Another array, even of the same shape, is checked anew.
    A 1-D regression target is read as one column: a view of it, not a copy."""

    __slots__ = ("x_ref", "y_ref", "layout", "data", "y_as")

    def __init__(self):
        self.x_ref = self.y_ref = self.layout = self.data = None
        self.y_as = None  # how the FitData holds y: "labels", "targets", or "column" (targets, a view of y as a column)

    def get(self, X, y):
        """The FitData of the last call when X and y are its arrays, unchanged in layout; else None."""
        ref = self.x_ref
        if ref is None or X is None or y is None or ref() is not X or self.y_ref() is not y \
                or (X.shape, X.strides, X.dtype, y.shape, y.strides, y.dtype) != self.layout:
            return None
        data = self.data
        data.X = X
        y_as = self.y_as
        if y_as == "labels":
            data.labels = y
        elif y_as == "targets":
            data.targets = y
        else:
            data.targets = y.reshape(-1, 1)
        return data

    def keep(self, X, y, data):
        """Remember ``data`` for X and y when it holds them as they are (else forget the last call)."""
        t = data.targets
        if data.labels is y:
            y_as = "labels"
        elif t is y:
            y_as = "targets"
        elif type(y) is np.ndarray and y.ndim == 1 and t.ndim == 2 and t.shape == (y.shape[0], 1) \
                and t.dtype == y.dtype and y.flags.c_contiguous and y.size \
                and t.__array_interface__["data"][0] == y.__array_interface__["data"][0]:
            y_as = "column"
        else:
            y_as = None
        if data.X is X and y_as is not None:
            self.x_ref, self.y_ref = weakref.ref(X), weakref.ref(y)
            self.layout = (X.shape, X.strides, X.dtype, y.shape, y.strides, y.dtype)
            self.data, self.y_as = data, y_as
        else:
            self.x_ref = self.y_ref = self.layout = self.data = self.y_as = None

    def release(self):
        """The call is over: let go of its arrays (a kept FitData holds no caller's array between calls)."""
        data = self.data
        if data is not None:
            data.X = None
            if self.y_as == "labels":
                data.labels = None
            else:
                data.targets = None


_split_cache = {}


def split_indices(n, validation_split, seed):
    """(training rows, validation rows), sorted: a seeded permutation's tail and head."""
    key = (n, validation_split, seed)
    hit = _split_cache.get(key)
    if hit is None:
        n_train, n_val = split_sizes(n, validation_split)
        if n_val < 1 or n_train < 1:
            raise ValueError(f"validation_split={validation_split} of {n} records leaves "
                             f"{n_val} for validation and {n_train} for training; both need at least 1")
        perm = np.random.default_rng([seed, 0x5A11]).permutation(n)
        hit = (np.sort(perm[n_val:]), np.sort(perm[:n_val]))
        if len(_split_cache) > 8:
            _split_cache.clear()
        _split_cache[key] = hit
    return hit


def check_weights(sample_weight, n, dtype, name="sample_weight"):
    """Per-record weights: finite, >= 0, not all 0; (0,) for None."""
    if sample_weight is None:
        return V.no_weights(dtype)
    sample_weight = V.in_memory(sample_weight, name)  # (a map's file cut short: an OSError naming it)
    try:
        w = np.asarray(sample_weight)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of {n} non-negative numbers; could not convert it: {exc}") from None
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per record), got {w.shape}")
    given = w
    with np.errstate(over="ignore", under="ignore"):
        w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all():
        i = int(np.flatnonzero(~np.isfinite(w))[0])
        if np.isfinite(given[i]):  # finite as given, beyond the run's dtype
            raise ValueError(f"{name} holds values too large for {np.dtype(dtype)} (max {np.finfo(dtype).max:.3g}): "
                             f"{name}[{i}] is {float(given[i])!r}; scale the weights (only their ratios matter)")
        raise ValueError(f"{name} holds NaN or infinite values ({name}[{i}] is {float(given[i])!r})")
    if (w < 0).any():
        raise ValueError(f"{name} must be >= 0, got {float(w.min())!r}")
    if not (w > 0).any():
        tiny = "" if not (given > 0).any() else (f" ({name} as given is positive, but below {np.dtype(dtype)}'s "
                                                  "smallest number: scale the weights, only their ratios matter)")
        raise ValueError(f"{name} must have at least one positive weight, got all zeros{tiny}")
    return w


def scales_targets(run):
    """Whether each call of the run (a RunState) scales its targets (standardize_target): a copy, so never a later
    call that only looks at its arrays' shapes and types."""
    return run.scaling is not None and "y_shift" in run.scaling


def prepare(X, y, cfg, run=None, n_outputs=None, sample_weight=None, scan=True, last=None, split=None, scaling=None):
    """Check, convert and split (X, y) for a run (``run``: its RunState once it has started).

    ``split``: the fraction held out for validation (default: the config's ``validation_split``;
    0 for a run whose validation is ``validation_data``, which replaces the split).

    ``scaling``: a new run's standardisation when it is decided already (its network's: the Trainer's
    ``_continue_network``), instead of the statistics of these records.

    ``last``: the run's LastArrays, for a later call with ``scan=False`` (the caller calls its
    ``release`` when the call ends).

    ``scan=False``: leave the look at every value of X (and of a started run's y) to the
    kernel, which checks each record it reads; held-out validation rows are checked here.
    Standardisation: the targets and the held-out rows are standardised here; the training
    X is not (the backend standardises each record as it reads it: ``RunState.x_affine``).
    """
    dtype = np.dtype(cfg["dtype"])
    split = cfg["validation_split"] if split is None else split
    if not scan and run is not None and sample_weight is None and not split \
            and not scales_targets(run):  # a later call: shapes and types only
        if last is not None and n_outputs is None:
            data = last.get(X, y)
            if data is not None:
                return data
        Xc = V.check_X(X, dtype, n_features=run.n_features, scan=False)
        n = Xc.shape[0]
        targets, labels, k = V.check_y(y, run.loss, n, dtype, run.n_outputs, scan=False)
        if (n_outputs is not None and n_outputs != k) or n != run.n_records_all:
            return prepare(X, y, cfg, run, n_outputs, sample_weight, scan=True, split=split)  # its error names it
        data = FitData(Xc, targets, labels, V.no_weights(dtype), run.loss, k, n)
        if last is not None and n_outputs is None:
            last.keep(X, y, data)
        return data
    Xc = V.check_X(X, dtype, n_features=None if run is None else run.n_features, scan=scan)
    scan_x, scan = scan, scan or run is None  # a new run's labels and targets are looked at whole (the task rule)
    if run is None:
        task = _task.decide(y, cfg["loss"], "y")
        task.warn()
        loss = task.loss
    else:
        loss = run.loss
    n = Xc.shape[0]
    # (a kernel that checks each record it reads needs no copy of y)
    targets, labels, k = V.check_y(y, loss, n, dtype, n_outputs if run is None else run.n_outputs, scan=scan,
                                   copy=scan_x, run_outputs=None if run is None else V.TRAIN_OUTPUTS_HINT)
    if run is not None and n_outputs is not None and n_outputs != run.n_outputs:
        raise ValueError(f"n_outputs={n_outputs} does not fit the run, which has {run.n_outputs} outputs")
    if n_outputs is not None and n_outputs != k:
        raise ValueError(f"n_outputs={n_outputs} does not fit the data, which needs {k} outputs")
    if run is not None and n != run.n_records_all:
        raise ValueError(f"X has {n} records, but this run was started with {run.n_records_all}; "
                         "call reset() to start a new run on other data")
    weights = check_weights(sample_weight, n, dtype)
    val = None
    if split > 0:
        tr_idx, va_idx = split_indices(n, split, cfg["seed"])
        val = (V.take_rows(Xc, va_idx, dtype), _rows(targets, va_idx), _rows(labels, va_idx),
               _rows(weights, va_idx))
        if not scan_x and not _rows_ok(val, k, loss):  # the kernel never reads these: look here (the full check names it)
            return prepare(X, y, cfg, run, n_outputs, sample_weight, split=split)
        Xc = V.take_rows(Xc, tr_idx, dtype)
        targets, labels, weights = _rows(targets, tr_idx), _rows(labels, tr_idx), _rows(weights, tr_idx)
        if weights.size and not (weights > 0).any():  # (every step's loss 0 by the rule: nothing would train)
            raise ValueError(f"sample_weight: the {len(tr_idx)} training records validation_split={split} leaves "
                             f"all weigh 0 (the positive weights are all in the {len(va_idx)} held out); "
                             "give training records weight, or pass validation_data instead")
    if run is not None:
        scaling = run.scaling
    elif scaling is None:
        scaling = fit_scaling(Xc, targets, cfg, loss, weights)
    if scaling is not None:
        targets = scale_targets(scaling, targets, dtype)  # X: as each record is read (RunState.x_affine)
        if val is not None:
            val = (*apply_scaling(scaling, val[0], val[1], dtype), val[2], val[3])
    return FitData(Xc, targets, labels, weights, loss, k, n, val, scaling)


# ---------------------------------------------------------------------------- standardisation

UNSCALED_SPREAD = 1e3  # feature scales spread over this factor or more: the inputs look unscaled
# the unscaled-inputs warning looks at evenly spaced rows of an in-memory X: up to this many, and
# at most about WARN_SAMPLE_VALUES values (a 1000x spread of scales shows in a few dozen rows)
WARN_SAMPLE_ROWS = 1024
WARN_SAMPLE_VALUES = 1 << 12


class RunningStats:
    """Column means and standard deviations over chunks of rows, in one streaming pass (float64); with
    per-row weights, the weighted ones (as StandardScaler's with sample_weight: a weight of 2 counts a row
    twice, a weight of 0 not at all)."""

    def __init__(self):
        self.n, self.shift, self.total, self.sq = 0, None, None, None

    def add(self, part, weights=None):
        part = np.asarray(part, dtype=np.float64)
        if not part.shape[0]:
            return
        if self.shift is None:
            self.shift = part[0].copy()  # shifted sums: no cancellation for data far from 0
            self.total, self.sq = np.zeros(part.shape[1]), np.zeros(part.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite statistics: the kernel names the value
            d = part - self.shift
            if weights is None:
                self.total += d.sum(axis=0)
                self.sq += np.einsum("ij,ij->j", d, d)
                self.n += part.shape[0]
            else:
                w = np.asarray(weights, dtype=np.float64)
                self.total += w @ d
                self.sq += w @ (d * d)
                self.n += float(w.sum())

    def result(self):
        mean = self.total / self.n
        return mean + self.shift, np.sqrt(np.maximum(self.sq / self.n - mean * mean, 0.0))


def sample_stats(S):
    """(mean, std) of each column of a small float64 array in memory, by matrix-vector products
    (numpy's reductions down the columns of a C-ordered array go row by row)."""
    with np.errstate(invalid="ignore", over="ignore"):  # a non-finite value is the kernel's to name
        d = S - S[0]  # shifted: no cancellation for data far from 0
        w = np.full(S.shape[0], 1.0 / S.shape[0])
        m = w @ d
        return m + S[0], np.sqrt(np.maximum(w @ (d * d) - m * m, 0.0))


def column_stats(X, weights=None):
    """(mean, std) of each column of a checked X, float64, in one streaming pass (memory maps in chunks);
    weighted by the records' ``weights`` when they are given and not all 0 (None or empty: unweighted)."""
    from ._rows import RowSource
    if weights is not None and (not len(weights) or not weights.any()):
        weights = None
    stats = RunningStats()
    with RowSource.open(X) as src:
        for start, part in src.chunks():
            stats.add(part, None if weights is None else weights[start:start + part.shape[0]])
    return stats.result()


def fit_scaling(X, targets, cfg, loss, weights=None):
    """The run's standardisation from its training records (None when off), weighted by their sample weights
    (``weights``: None or empty for none); warns once about unscaled X.

    Without standardisation the statistics only feed the warning: an in-memory X is then
    sampled (evenly spaced rows, see WARN_SAMPLE_VALUES), so a first fit does not pay a pass over it.
    """
    warn_unused_target_scaling(cfg, loss)
    y_stats = column_stats(targets, weights) if cfg["standardize_target"] and loss == "mse" else None
    if not cfg["standardize"] and not isinstance(X, np.memmap):
        _warn(unscaled_sample_message(X))
        return scaling_from(None, y_stats, cfg)
    return scaling_from(column_stats(X, weights), y_stats, cfg)


# the last sample the unscaled-X warning looked at (up to _task.MEMO_BYTES): (its bytes, dtype, shape) and its message,
# so a new run on the same values (a fresh Trainer, a grid search) does not compute its statistics again
_last_sample = (None, None, None, None)


def unscaled_sample_message(X):
    """The unscaled-X warning's text for an in-memory X (None when it looks scaled), from evenly spaced rows."""
    global _last_sample
    rows = max(32, min(WARN_SAMPLE_ROWS, WARN_SAMPLE_VALUES // X.shape[1]))
    sample = X[::max(1, X.shape[0] // rows)]  # (a view: its bytes are copied once, by tobytes)
    if sample.nbytes > _task.MEMO_BYTES:
        return unscaled_message(*sample_stats(np.asarray(sample, dtype=np.float64)))
    raw = sample.tobytes()
    last = _last_sample
    if last[0] == raw and last[1] == sample.dtype and last[2] == sample.shape:
        return last[3]
    message = unscaled_message(*sample_stats(np.asarray(sample, dtype=np.float64)))
    _last_sample = (raw, sample.dtype, sample.shape, message)
    return message


def warn_unused_target_scaling(cfg, loss):
    """A new run's warning that standardize_target=True changes nothing: only mse targets are standardised
    (class labels are not numbers to scale)."""
    if cfg["standardize_target"] and loss != "mse":
        _warn(f"standardize_target=True has no effect with loss={loss!r}: only regression (mse) targets are "
              "standardised, class labels are not; leave it out for a classification")


def scaling_from(x_stats, y_stats, cfg):
    """The scaling dict from (mean, std) pairs; None when standardisation is off (then warn if X
    looks unscaled; ``x_stats`` None: the caller has seen to that)."""
    if not cfg["standardize"] and x_stats is not None:
        _warn(unscaled_message(*x_stats))
    out = {}
    if cfg["standardize"]:
        mean, std = x_stats
        out["x_shift"], out["x_scale"] = mean, np.where(std > 0, std, 1.0)
    if y_stats is not None:
        mean, std = y_stats
        out["y_shift"], out["y_scale"] = mean, np.where(std > 0, std, 1.0)
    return out or None


def unscaled_message(mean, std):
    """The warning's text when the feature scales (mean, std) look unscaled, else None."""
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        return None  # non-finite values: the kernel names the first one it reads
    live = std[std > 0]
    if len(live) and (live.max() / live.min() >= UNSCALED_SPREAD or np.abs(mean).max() >= UNSCALED_SPREAD * live.max()):
        return (f"X looks unscaled: feature standard deviations range from {live.min():.3g} to {live.max():.3g} "
                f"and means reach {np.abs(mean).max():.3g}; unscaled inputs often train badly. "
                "Pass standardize=True (or scale the data first).")
    return None


def _warn(message):
    if message is not None:
        import warnings
        warnings.warn(message, UserWarning, stacklevel=_task.caller_stacklevel())


def apply_scaling(scaling, X, targets, dtype):
    """(X, targets) standardised with the run's shift and scale, as new arrays of ``dtype``."""
    if "x_shift" in scaling:
        X = _affine(X, scaling["x_shift"], scaling["x_scale"], dtype)
    return X, scale_targets(scaling, targets, dtype)


def scale_targets(scaling, targets, dtype):
    """mse targets standardised with the run's shift and scale (as they are without target scaling)."""
    if "y_shift" in scaling and targets.size:
        targets = np.ascontiguousarray((targets - scaling["y_shift"]) / scaling["y_scale"], dtype=dtype)
    return targets


def _affine(X, shift, scale, dtype):
    if not isinstance(X, np.memmap):
        return np.ascontiguousarray((X - shift) / scale, dtype=dtype)
    import tempfile
    from ._rows import RowSource
    with tempfile.TemporaryFile() as f, RowSource.open(X) as src:
        for _, part in src.chunks():
            f.write(np.ascontiguousarray((part - shift) / scale, dtype=dtype).tobytes())
        f.flush()
        return np.memmap(f, dtype=dtype, mode="r", shape=X.shape)


def prepare_validation(validation_data, loss, n_outputs, dtype, n_features, scaling=None):
    """(X, targets, labels, weights) of ``validation_data=(X_val, y_val)``, checked, and standardised
    with the run's ``scaling`` as its training records are (so its loss is in the training loss's units)."""
    if validation_data is None:
        return None
    try:
        Xv, yv = validation_data
    except (TypeError, ValueError):
        raise TypeError("validation_data must be a pair (X_val, y_val)") from None
    dtype = np.dtype(dtype)
    Xv = V.check_X(Xv, dtype, name="validation_data X", n_features=n_features)
    t, lab, _ = V.check_y(yv, loss, Xv.shape[0], dtype, n_outputs, name="validation_data y")
    if scaling:
        Xv, t = apply_scaling(scaling, Xv, t, dtype)
    return Xv, t, lab, np.empty(0, dtype=dtype)


def pooled_variance(targets, weights=None):
    """The mean over outputs of the targets' variance (the denominator of a pooled r2), weighted by the records'
    sample ``weights`` when there are some (as the epoch's loss is, and evaluate's r2); None without targets."""
    if not targets.size:
        return None
    t = np.asarray(targets, dtype=np.float64)
    if weights is not None and weights.size and weights.any():
        w = np.asarray(weights, dtype=np.float64)
        d = t - (w @ t) / w.sum()
        var = float(np.mean((w @ (d * d)) / w.sum()))
    else:
        var = float(np.mean(np.var(t, axis=0)))
    return var if var > 0 else None


def check_params(params, hidden):
    """``[(W, b), ...]`` as arrays, checked against ``hidden`` (shapes chain; real, finite values)."""
    try:
        layers = [(np.asarray(W), np.asarray(b)) for W, b in params]
    except (TypeError, ValueError):
        raise TypeError("params must be a list of (W, b) pairs, W shaped (n_in, n_out)") from None
    if len(layers) != len(hidden) + 1:
        raise ValueError(f"params must have {len(hidden) + 1} (W, b) layers for hidden={hidden}, got {len(layers)}")
    sizes = [layers[0][0].shape[0] if layers[0][0].ndim == 2 else -1]
    for i, (W, b) in enumerate(layers):
        if W.ndim != 2 or b.shape != (W.shape[1],) or W.shape[0] != sizes[-1]:
            raise ValueError(f"params layer {i}: W must be (n_in, n_out) chaining from the previous layer "
                             f"and b (n_out,); got W {W.shape}, b {b.shape}")
        if W.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
            raise TypeError(f"params layer {i} must hold real numbers, got {W.dtype} / {b.dtype}")
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"params layer {i} holds NaN or infinite values")
        sizes.append(W.shape[1])
    if tuple(sizes[1:-1]) != tuple(hidden):
        raise ValueError(f"params have hidden widths {tuple(sizes[1:-1])}, this trainer has {hidden}")
    return layers


def _rows(a, idx):
    return a[idx] if a.size else a


def _rows_ok(rows, n_outputs, loss):
    """Whether held-out (X, targets, labels, weights) rows hold only what the full check accepts."""
    X, targets, labels, _ = rows
    if not V.all_finite(X) or (targets.size and not np.isfinite(targets).all()):
        return False
    if loss == "binary_crossentropy" and not np.all((targets == 0) | (targets == 1)):
        return False
    return not labels.size or (labels.min() >= 0 and labels.max() < n_outputs)
