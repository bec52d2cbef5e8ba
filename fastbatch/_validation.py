"""Checking and converting what users pass in, once, before any state changes."""
import math
import mmap
import numbers

import numpy as np

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("auto", "mse", "binary_crossentropy", "cross_entropy")
OPTIMIZERS = ("sgd", "adam", "adamw")
BACKENDS = ("cython", "numpy")
DTYPES = ("float32", "float64")


def _describe(value):
    return f"{value!r} ({type(value).__name__})"


def check_int(name, value, minimum=1, maximum=None):
    """An integer (not a bool, not a float) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {_describe(value)}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return value


def check_float(name, value, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
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


def check_config(cfg):
    """Validate a dict of Trainer parameters; return the normalised dict."""
    out = dict(cfg)
    out["hidden"] = check_hidden(cfg["hidden"])
    out["activation"] = check_choice("activation", cfg["activation"], ACTIVATIONS)
    out["loss"] = check_choice("loss", cfg["loss"], LOSSES)
    out["batch_size"] = check_int("batch_size", cfg["batch_size"])
    out["epochs"] = check_int("epochs", cfg["epochs"])
    out["learning_rate"] = check_float("learning_rate", cfg["learning_rate"], 0.0, low_open=True)
    out["optimizer"] = check_choice("optimizer", cfg["optimizer"], OPTIMIZERS)
    out["momentum"] = check_float("momentum", cfg["momentum"], 0.0)
    out["nesterov"] = check_bool("nesterov", cfg["nesterov"])
    if out["nesterov"] and out["momentum"] == 0.0:
        raise ValueError("nesterov=True needs momentum > 0 (as in torch.optim.SGD), got momentum=0.0")
    out["betas"] = check_betas(cfg["betas"])
    out["eps"] = check_float("eps", cfg["eps"], 0.0)
    out["weight_decay"] = check_float("weight_decay", cfg["weight_decay"], 0.0)
    out["shuffle"] = check_bool("shuffle", cfg["shuffle"])
    out["drop_last"] = check_bool("drop_last", cfg["drop_last"])
    out["seed"] = check_seed(cfg["seed"])
    out["dtype"] = check_dtype(cfg["dtype"])
    out["backend"] = check_choice("backend", cfg["backend"], BACKENDS)
    out["validation_split"] = check_float("validation_split", cfg["validation_split"], 0.0, 1.0, high_open=True)
    if cfg["patience"] is not None:
        out["patience"] = check_int("patience", cfg["patience"], 1)
    return out


def check_dtype(value):
    if isinstance(value, str):
        name = value
    elif value in (np.float32, np.float64):
        name = np.dtype(value).name
    elif isinstance(value, np.dtype):
        name = value.name
    else:
        raise TypeError(f"dtype must be one of 'float32', 'float64'; got {_describe(value)}")
    return check_choice("dtype", name, DTYPES)


def check_X(X, dtype, name="X", n_features=None):
    """Return X as a C-contiguous 2-D array of ``dtype`` (no copy when it already is one)."""
    if isinstance(X, np.memmap) and X.dtype == dtype and X.ndim == 2 and X.flags.c_contiguous:
        arr = X  # keep the map: batches are gathered from it, the file is never loaded whole
    else:
        if X is None or isinstance(X, (str, bytes)):
            raise TypeError(f"{name} must be a 2-D array of numbers, got {_describe(X)}")
        try:
            raw = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a 2-D array of numbers; could not convert it: {exc}") from None
        if raw.dtype.kind not in "biuf":
            what = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes",
                    "M": "datetimes", "m": "timedeltas", "V": "structured records"}.get(raw.dtype.kind, raw.dtype)
            raise TypeError(f"{name} must hold real numbers, got an array of {what} (dtype {raw.dtype})")
        if raw.ndim != 2:
            raise ValueError(f"{name} must be 2-D (records x features), got shape {raw.shape}")
        if isinstance(X, np.memmap) and raw.size:
            arr = take_rows(X, None, dtype)  # converted once, into a file of its own: never loaded whole
        else:
            arr = np.ascontiguousarray(raw, dtype=dtype)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one record and one feature, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but this run was started with {n_features}")
    if not _all_finite(arr):
        raise ValueError(f"{name} holds NaN or infinite values; clean or impute them first")
    return arr


def take_rows(X, rows, dtype, chunk=1 << 16):
    """X[rows] (all rows when None) as C-contiguous ``dtype``.

    For a memory-mapped X the result is a memory map of a temporary file (deleted
    when the map is dropped), written in chunks, so neither is ever held whole in memory.
    """
    n = X.shape[0] if rows is None else len(rows)
    if not isinstance(X, np.memmap):
        out = X if rows is None else X[rows]
        return np.ascontiguousarray(out, dtype=dtype)
    import tempfile
    out = np.memmap(tempfile.TemporaryFile(), dtype=dtype, mode="w+", shape=(n, X.shape[1]))
    for start in range(0, n, chunk):
        src = slice(start, start + chunk) if rows is None else rows[start:start + chunk]
        out[start:start + chunk] = X[src]
        if start % (chunk * 16) == 0:
            release_pages(X)
            release_pages(out)
    out.flush()
    release_pages(X)
    release_pages(out)
    return out


def _all_finite(arr, chunk=1 << 16):
    # chunked so a large memory-mapped file is never pulled in whole
    for start in range(0, arr.shape[0], chunk):
        part = arr[start:start + chunk]
        if not np.isfinite(part.sum()) and not np.isfinite(part).all():
            return False
        release_pages(arr)
    release_pages(arr)
    return True


def _mapping(X):
    base = X
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    return base if isinstance(base, mmap.mmap) else None


def _advise(X, advice_name):
    mm = _mapping(X) if isinstance(X, np.memmap) else None
    advice = getattr(mmap, advice_name, None)
    if mm is not None and advice is not None:
        try:
            mm.madvise(advice)
        except (OSError, ValueError):
            pass


def file_source(X):
    """(path, byte offset of row 0) of a C-contiguous memory-mapped X backed by a named file, else None."""
    if not isinstance(X, np.memmap) or not X.flags.c_contiguous or not getattr(X, "filename", None):
        return None
    mm = _mapping(X)
    if mm is None or not isinstance(getattr(X, "offset", None), int):
        return None
    map_start = X.offset - X.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap began its map
    map_base = np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data
    return X.filename, map_start + (X.ctypes.data - map_base)


def release_pages(X):
    """Drop the pages of a memory-mapped X from resident memory (re-read from the file when needed)."""
    _advise(X, "MADV_DONTNEED")


def read_randomly(X):
    """Tell the OS a memory-mapped X is read at random rows: no read-ahead, one page a row."""
    _advise(X, "MADV_RANDOM")


def resolve_loss(loss, y):
    """The concrete loss for ``loss='auto'``: cross_entropy for integer/bool labels, mse for floats."""
    if loss != "auto":
        return loss
    kind = np.asarray(y).dtype.kind
    return "cross_entropy" if kind in "biu" else "mse"


def check_y(y, loss, n_records, dtype, n_outputs=None, name="y"):
    """Return (targets, labels, n_outputs).

    ``targets`` is a C-contiguous 2-D float array for mse / binary_crossentropy
    (empty otherwise); ``labels`` is an int64 vector for cross_entropy.
    """
    if y is None or isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be an array of targets, got {_describe(y)}")
    try:
        raw = np.asarray(y)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of numbers; could not convert it: {exc}") from None
    if raw.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {raw.dtype}")
    if raw.ndim == 0 or raw.ndim > 2:
        raise ValueError(f"{name} must be 1-D (or 2-D for several mse targets), got shape {raw.shape}")
    if raw.shape[0] != n_records:
        raise ValueError(f"{name} has {raw.shape[0]} entries but X has {n_records} records")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    empty_t = np.empty((0, 0), dtype=dtype)
    empty_l = np.empty(0, dtype=np.int64)
    if loss == "cross_entropy":
        if raw.ndim != 1 and not (raw.ndim == 2 and raw.shape[1] == 1):
            raise ValueError(f"{name} for cross_entropy must be a vector of integer labels, got shape {raw.shape}")
        flat = raw.reshape(-1)
        if flat.dtype.kind == "f" and not np.all(flat == np.round(flat)):
            raise ValueError(f"{name} for cross_entropy must be integer labels 0..k-1, got fractional values "
                             f"(e.g. {flat[flat != np.round(flat)][0]!r})")
        labels = flat.astype(np.int64)
        lo = int(labels.min())
        if lo < 0:
            raise ValueError(f"{name} for cross_entropy must be labels 0..k-1, got a negative label {lo}")
        hi = int(labels.max())
        k = max(hi + 1, 2) if n_outputs is None else n_outputs
        if hi >= k:
            raise ValueError(f"{name} has label {hi}, but this network has {k} outputs (labels 0..{k - 1})")
        return empty_t, np.ascontiguousarray(labels), k
    targets = raw.reshape(n_records, -1) if raw.ndim == 1 else raw
    if loss == "binary_crossentropy":
        if targets.shape[1] != 1:
            raise ValueError(f"{name} for binary_crossentropy must be one 0/1 label per record, got shape {raw.shape}")
        if not np.all((targets == 0) | (targets == 1)):
            bad = targets[(targets != 0) & (targets != 1)][0]
            raise ValueError(f"{name} for binary_crossentropy must be 0 or 1, got {bad!r}")
    k = targets.shape[1]
    if n_outputs is not None and k != n_outputs:
        raise ValueError(f"{name} has {k} target columns, but this network has {n_outputs} outputs")
    return np.ascontiguousarray(targets, dtype=dtype), empty_l, k
