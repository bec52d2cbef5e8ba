"""Checking and converting what users pass in, once, before any state changes."""
import math
import numbers

import numpy as np

from ._rows import RowSource, all_finite, take_rows

INT_LIMIT = 2 ** 63  # an int64 holds every count below this


def _describe(value):
    return f"{value!r} ({type(value).__name__})"


def check_int(name, value, minimum=1, maximum=None):
    """An integer (not a bool, not a float) in [minimum, maximum]."""
    if value.__class__ is int and minimum <= value < INT_LIMIT and (maximum is None or value <= maximum):
        return value  # (the common case, without the isinstance checks against numbers' ABCs)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {_describe(value)}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    if maximum is None and value >= INT_LIMIT:  # the kernel counts in int64
        raise ValueError(f"{name} must be an integer >= {minimum} and below 2**63, got {value!r}")
    return value


def check_float(name, value, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range (10**400)
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        rng = f"in {lo or '(-inf'}, {hi or 'inf)'}"
        raise ValueError(f"{name} must be a finite number {rng}, got {value!r}")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}; got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_hidden(value):
    if isinstance(value, (bool, str)) or isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = (value,)
        else:
            raise TypeError(f"hidden must be a tuple of positive integers, got {_describe(value)}")
    try:
        widths = tuple(value)
    except TypeError:
        raise TypeError(f"hidden must be a tuple of positive integers, got {_describe(value)}") from None
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"hidden must be a tuple of positive integers, got {value!r} (bad width {w!r})")
        if w >= INT_LIMIT:  # (the layer sizes are int64; the memory check refuses widths far below this)
            raise ValueError(f"hidden widths must be below 2**63, got {value!r} (bad width {w!r})")
    return tuple(int(w) for w in widths)


def check_betas(value):
    try:
        b1, b2 = value
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair (beta1, beta2) in [0, 1), got {_describe(value)}") from None
    for i, b in enumerate((b1, b2)):
        check_float(f"betas[{i}]", b, 0.0, 1.0, high_open=True)
    return float(b1), float(b2)


def check_seed(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"seed must be an integer in [0, 2**63), got {_describe(value)}")
    if not 0 <= int(value) < 2 ** 63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {value!r}")
    return int(value)


def check_dtype(value):
    if isinstance(value, str):
        name = value
    elif value in (np.float32, np.float64):
        name = np.dtype(value).name
    elif isinstance(value, np.dtype):
        name = value.name
    else:
        raise TypeError(f"dtype must be one of 'float32', 'float64'; got {_describe(value)}")
    return check_choice("dtype", name, ("float32", "float64"))


MAX_CLASSES = 100_000          # cross_entropy builds one output per class
MAX_SPARSE_DENSE_BYTES = 1 << 29  # a sparse X is densified only up to this size (512 MB)
_KIND_NAMES = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes", "M": "datetimes",
               "m": "timedeltas", "V": "structured records"}


def _kind_name(dtype):
    return _KIND_NAMES.get(dtype.kind, str(dtype))


def _is_sparse(X):
    sparse = __import__("sys").modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def _is_dataframe(X):
    return type(X).__module__.partition(".")[0] == "pandas" and hasattr(X, "dtypes") and hasattr(X, "columns")


def _from_sparse(X, dtype, name):
    n, d = X.shape
    need = n * d * dtype.itemsize
    if need > MAX_SPARSE_DENSE_BYTES:
        raise TypeError(f"{name} is a scipy.sparse {type(X).__name__} of shape {X.shape} with {X.nnz} stored "
                        f"values; dense it would take {need / 1e9:.1f} GB of {dtype}. fastbatch trains on dense "
                        "rows: reduce the features (e.g. TruncatedSVD) or pass X.toarray() if it fits in memory")
    csr = X.tocsr()
    out = np.empty((n, d), dtype=dtype)
    step = max(1, (8 << 20) // max(1, d * dtype.itemsize))
    for start in range(0, n, step):  # densified a block of rows at a time: no float64 copy of the whole
        out[start:start + step] = csr[start:start + step].toarray()
    return out


def _from_dataframe(X, dtype, name):
    import pandas as pd
    for col, dt in zip(X.columns, X.dtypes):
        if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt)):
            raise TypeError(f"{name} column {col!r} holds {dt} values, not numbers; encode it first "
                            "(e.g. pandas.get_dummies for categories)")
    try:
        return np.ascontiguousarray(X.to_numpy(dtype=dtype))  # bool columns become 0/1
    except (TypeError, ValueError) as exc:  # nullable columns holding pd.NA
        raise ValueError(f"{name} holds missing values (NA); drop or impute them first ({exc})") from None


def check_X(X, dtype, name="X", n_features=None, scan=True):
    """Return X as a C-contiguous 2-D array of ``dtype`` (no copy when it already is one).

    ``scan=False`` leaves out the look at every value (NaN, inf, too large for ``dtype``):
    for a caller whose kernel checks each record as it reads it.

    A memory-mapped X of ``dtype`` is kept as it is (batches are gathered from it, the file is
    never loaded whole); any other memory map is converted in chunks into a map of its own.
    Maps are read safely (see ``_rows``): a file truncated under its map is an OSError.
    A scipy.sparse X is densified when it is small enough; a DataFrame's bool columns become 0/1.
    """
    dtype = np.dtype(dtype)
    if (type(X) is np.ndarray or isinstance(X, np.memmap)) and X.dtype == dtype and X.ndim == 2 \
            and X.flags.c_contiguous:
        arr = X  # already what the kernel reads (a memory map is then read from its file, never loaded whole)
    elif _is_sparse(X):
        if len(X.shape) != 2:
            raise ValueError(f"{name} must be 2-D (records x features), got shape {X.shape}")
        arr = _from_sparse(X, dtype, name)
    elif _is_dataframe(X):
        arr = _from_dataframe(X, dtype, name)
    else:
        if X is None or isinstance(X, (str, bytes)):
            raise TypeError(f"{name} must be a 2-D array of numbers, got {_describe(X)}")
        try:
            raw = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a 2-D array of numbers; could not convert it: {exc}") from None
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got an array of {_kind_name(raw.dtype)} "
                            f"(dtype {raw.dtype})")
        if raw.ndim != 2:
            raise ValueError(f"{name} must be 2-D (records x features), got shape {raw.shape}")
        if isinstance(X, np.memmap) and raw.size:
            arr = take_rows(X, None, dtype, name)  # converted once, into a file of its own: never loaded whole
        else:
            with np.errstate(over="ignore"):  # too-large values are found and named below
                arr = np.ascontiguousarray(raw, dtype=dtype)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one record and one feature, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but this run was started with {n_features}")
    if not scan:
        return arr
    # in memory: one vectorised sum says "all finite" (an inf or NaN, or an overflow, sends it to the full check)
    with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows sends it to the full check
        finite = bool(np.isfinite(np.add.reduce(arr, axis=None))) if not isinstance(arr, np.memmap) else False
    if not finite and not all_finite(arr, name):
        raw = X.to_numpy(dtype=np.float64) if _is_dataframe(X) else X
        raw = raw if isinstance(raw, np.ndarray) and raw.ndim == 2 and raw.dtype.kind in "biuf" else arr
        raise ValueError(_not_finite_message(raw, dtype, name))
    return arr


def _not_finite_message(X, dtype, name):
    """Where the first non-finite value is, and what it really was (NaN, inf, or a number too large for dtype)."""
    top = np.finfo(dtype).max
    with RowSource.open(X, name) as src:
        for start, part in src.chunks():
            with np.errstate(over="ignore", invalid="ignore"):
                bad = ~np.isfinite(part) | (np.abs(part) > top)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                v = part[i, j]
                where = f"{name}[{start + i}, {j}]"
                if np.isnan(v):
                    return f"{name} holds NaN values ({where} is NaN); clean or impute them first"
                if np.isinf(v):
                    return f"{name} holds infinite values ({where} is {v}); clean or impute them first"
                return (f"{name} holds values too large for {dtype} (max {top:.8g}): {where} is {float(v)!r}; "
                        "scale the data, or use dtype='float64'")
    return f"{name} holds NaN or infinite values; clean or impute them first"  # pragma: no cover


def _number(v):
    """A numpy scalar as the number it is (an integral float without '.0', ints exact)."""
    if isinstance(v, (np.floating, float)) and float(v).is_integer():
        return str(int(v))
    return str(v.item() if isinstance(v, np.generic) else v)


def _read_only(a):
    a.flags.writeable = False
    return a


# the absent inputs, shared and read-only: no labels (mse, binary), no targets (cross_entropy), no weights
_EMPTY_LABELS = _read_only(np.empty(0, dtype=np.int64))
_EMPTY_TARGETS = {np.dtype(t): _read_only(np.empty((0, 0), dtype=t)) for t in (np.float32, np.float64)}
_NO_WEIGHTS = {np.dtype(t): _read_only(np.empty(0, dtype=t)) for t in (np.float32, np.float64)}


def no_weights(dtype):
    """The (0,) weights array of ``dtype``: a run without sample weights."""
    return _NO_WEIGHTS[np.dtype(dtype)]


def in_memory(a, name):
    """A memory-mapped array's values read into memory, safely (an OSError when its file no longer
    covers them); any other array as it is. The kernel reads labels, targets and weights where they
    lie, and a file cut short under a map would kill the process (SIGBUS) at the next read."""
    if not isinstance(a, np.memmap) or a.ndim == 0 or not a.size:
        return a
    with RowSource.open(a.reshape(a.shape[0], -1), name) as src:
        return np.asarray(src.read(0, a.shape[0])).reshape(a.shape)


def n_classes(top):
    """A cross_entropy network's outputs for labels up to ``top``: one per label 0..top, and at least two (data of
    one class still trains a classifier of it and the rest)."""
    return max(int(top) + 1, 2)


# check_y's run_outputs for a call that trains on: the run's outputs are fixed
TRAIN_OUTPUTS_HINT = "; a run keeps its outputs: call reset() to start a new run on these labels"


def check_y(y, loss, n_records, dtype, n_outputs=None, name="y", scan=True, copy=True, run_outputs=None):
    """Return (targets, labels, n_outputs).

    ``targets`` is a C-contiguous 2-D float array for mse / binary_crossentropy
    (empty otherwise); ``labels`` is an int64 vector for cross_entropy. ``scan=False``
    (with ``n_outputs`` known) leaves out the looks at every value that a kernel checking
    each record as it reads it makes anyway: integer labels' range, targets' finiteness and
    binary targets' 0 / 1. Float labels are still checked whole (NaN has no integer).
    A whole look is made on a copy of y (what is checked is what is trained on, whatever another
    thread writes into y), unless ``copy=False``: for such a kernel, which checks what it reads.
    ``run_outputs``: ``n_outputs`` is a started run's, not the caller's argument: a label beyond it is named
    as the run's, followed by this text (e.g. what to do about it).
    """
    y = in_memory(y, name)
    if not scan and n_outputs is not None and type(y) is np.ndarray and y.shape[0] == n_records \
            and y.flags.c_contiguous:  # a later call with arrays as the kernel reads them: nothing to convert
        if loss == "cross_entropy" and y.dtype == np.int64 and y.ndim == 1:
            return _EMPTY_TARGETS[np.dtype(dtype)], y, n_outputs
        if loss != "cross_entropy" and y.dtype == dtype and y.ndim == 2 and y.shape[1] == n_outputs:
            return y, _EMPTY_LABELS, n_outputs
    if y is None or isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be an array of targets, got {_describe(y)}")
    try:
        raw = np.asarray(y)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of numbers; could not convert it: {exc}") from None
    if raw.dtype.kind in "USO" and raw.size and all(isinstance(v, (str, bytes)) for v in raw.flat[:100]):
        raise TypeError(f"{name} holds text labels such as {raw.flat[0]!r} (dtype {raw.dtype}); the Trainer needs "
                        "numbers: use fastbatch.sklearn.FastBatchClassifier, which takes any labels, or encode "
                        "them as 0..k-1 first (e.g. sklearn.preprocessing.LabelEncoder)")
    if raw.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of {_kind_name(raw.dtype)} (dtype {raw.dtype})")
    if raw.ndim == 0 or raw.ndim > 2:
        raise ValueError(f"{name} must be 1-D (or 2-D for several mse targets), got shape {raw.shape}")
    if raw.shape[0] != n_records:
        raise ValueError(f"{name} has {raw.shape[0]} entries but X has {n_records} records")
    scan = scan or n_outputs is None or (loss == "cross_entropy" and raw.dtype.kind == "f")
    private = False  # raw is a copy made here
    if scan and copy and raw is y:  # looked at whole: a copy, so what is checked is what is trained on (another thread
        raw, private = raw.copy(), True  # may be writing into y) and the messages name what was checked
    if scan and raw.dtype.kind == "f" and not np.isfinite(raw).all():
        bad = raw.reshape(-1)[~np.isfinite(raw.reshape(-1))][0]
        where = int(np.flatnonzero(~np.isfinite(raw.reshape(-1)))[0])
        raise ValueError(f"{name} holds NaN or infinite values (entry {where} is {bad})")
    empty_t, empty_l = _EMPTY_TARGETS[np.dtype(dtype)], _EMPTY_LABELS
    if loss == "cross_entropy":
        if raw.ndim != 1 and not (raw.ndim == 2 and raw.shape[1] == 1):
            raise ValueError(f"{name} for cross_entropy must be a vector of integer labels, got shape {raw.shape}")
        flat = raw if raw.ndim == 1 else raw.reshape(-1)
        if not scan:
            return empty_t, np.ascontiguousarray(flat, dtype=np.int64), n_outputs
        if flat.dtype.kind == "f" and not np.all(flat == np.round(flat)):
            raise ValueError(f"{name} for cross_entropy must be integer labels 0..k-1, got fractional values "
                             f"(e.g. {_number(flat[flat != np.round(flat)][0])})")
        lo, hi = flat.min(), flat.max()  # in y's own dtype: a uint64 label above 2**63 stays what it is
        if lo < 0:
            raise ValueError(f"{name} for cross_entropy must be labels 0..k-1, got a negative label {_number(lo)}")
        if (float(hi) if flat.dtype.kind == "f" else hi) >= MAX_CLASSES:  # (float16 has no 100,000: it overflowed)
            raise ValueError(f"{name} has label {_number(hi)}; cross_entropy needs one output per class 0..label, "
                             f"at most {MAX_CLASSES:,} classes. Is this a regression target? Pass loss='mse'")
        labels = flat.astype(np.int64, copy=copy and not private)  # (a copy of our own is not copied again)
        hi = int(hi)
        k = n_classes(hi) if n_outputs is None else n_outputs
        if hi >= k:
            if run_outputs is not None:
                raise ValueError(f"{name} has label {hi}, but this run's network has {k} outputs "
                                 f"(labels 0..{k - 1}){run_outputs}")
            given = "" if n_outputs is None else f" (n_outputs={n_outputs})"
            raise ValueError(f"{name} has label {hi}, but this network has {k} outputs{given} (labels 0..{k - 1})")
        return empty_t, np.ascontiguousarray(labels), k
    targets = raw.reshape(n_records, -1) if raw.ndim == 1 else raw
    if loss == "binary_crossentropy":
        if targets.shape[1] != 1:
            raise ValueError(f"{name} for binary_crossentropy must be one 0/1 label per record, got shape {raw.shape}")
        if scan and not np.all((targets == 0) | (targets == 1)):
            bad = targets[(targets != 0) & (targets != 1)][0]
            raise ValueError(f"{name} for binary_crossentropy must be 0 or 1, got {_number(bad)}")
    k = targets.shape[1]
    if n_outputs is not None and k != n_outputs:
        raise ValueError(f"{name} has {k} target columns, but this network has {n_outputs} outputs")
    with np.errstate(over="ignore"):  # too-large values are found and named below
        out = np.ascontiguousarray(targets, dtype=dtype)
    if scan and out.dtype.itemsize < targets.dtype.itemsize and not np.isfinite(out).all():
        where = int(np.flatnonzero(~np.isfinite(out.reshape(-1)))[0])
        raise ValueError(f"{name} holds values too large for {np.dtype(dtype)} (max {np.finfo(dtype).max:.8g}): entry "
                         f"{where} is {float(targets.reshape(-1)[where])!r}; scale the targets, or use dtype='float64'")
    return out, empty_l, k

