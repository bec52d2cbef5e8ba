"""Datasets to train on: seeded generators, and loading a ``.csv``, ``.npy`` or ``.npz`` file.

``make(name, n_records, n_features, seed)`` returns ``(X, y)``: ``X`` float64 of shape
``(n_records, n_features)``, ``y`` int64 class labels.

- ``"random"``: the seed's data, uniform [0, 1) features and binary labels drawn
  independently of them (nothing to learn: the loss stays near ln 2). With 1000 records
  and 10 features it is the demo's data.
- ``"blobs"`` (3 classes), ``"moons"``, ``"spirals"``, ``"xor"`` (2 classes): two informative
  features. With ``n_features > 2`` the extra columns are standard normal noise (nothing
  to learn from them); ``n_features < 2`` is a ValueError.

No scikit-learn: the generators are a few lines of numpy each.
"""
import csv
import math
import os

import numpy as np

from ._validation import check_int

__all__ = ["NAMES", "TWO_FEATURE", "make", "load", "columns", "n_classes"]

NAMES = ("random", "blobs", "moons", "spirals", "xor")
TWO_FEATURE = frozenset({"blobs", "moons", "spirals", "xor"})


def _random(rng, n, d):
    # the seed's draw order: all features first, then the labels
    X = rng.random((n, d))
    y = rng.integers(0, 2, n)
    return X, y


def _blobs(rng, n):
    centers = np.array([[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]])
    y = np.arange(n) % 3
    X = centers[y] + 0.8 * rng.standard_normal((n, 2))
    return X, y


def _moons(rng, n):
    y = np.arange(n) % 2
    t = rng.random(n) * math.pi
    X = np.where(y[:, None] == 0,
                 np.column_stack([np.cos(t), np.sin(t)]),
                 np.column_stack([1.0 - np.cos(t), 0.5 - np.sin(t)]))
    return X + 0.1 * rng.standard_normal((n, 2)), y


def _spirals(rng, n):
    y = np.arange(n) % 2
    r = rng.random(n)                       # radius 0..1, 1.5 turns
    theta = 3.0 * math.pi * r + math.pi * y  # the second arm is the first turned by 180 degrees
    X = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    return X + 0.04 * rng.standard_normal((n, 2)), y


def _xor(rng, n):
    # label first (balanced classes), then a quadrant of that label: signs equal for 0, opposite for 1
    y = np.arange(n) % 2
    s0 = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    s1 = np.where(y == 1, -s0, s0)
    X = rng.uniform(0.0, 1.0, (n, 2)) * np.column_stack([s0, s1])
    return X, y


_GENERATORS = {"blobs": _blobs, "moons": _moons, "spirals": _spirals, "xor": _xor}


def make(name, n_records=1000, n_features=10, seed=0):
    """Generate the dataset ``name`` (one of :data:`NAMES`): ``(X float64 (n, d), y int64 (n,))``.

    The same ``(name, n_records, n_features, seed)`` always gives the same data.
    The two-feature datasets put their two informative features first and pad
    ``n_features - 2`` standard normal noise columns after them.
    """
    if name not in NAMES:
        raise ValueError(f"dataset must be one of {list(NAMES)}, got {name!r}")
    n = check_int("n_records", n_records, 1)
    d = check_int("n_features", n_features, 1)
    s = check_int("seed", seed, 0)
    rng = np.random.default_rng(s)
    if name == "random":
        X, y = _random(rng, n, d)
        return X, y.astype(np.int64)
    if d < 2:
        raise ValueError(f"the {name!r} dataset has 2 informative features, so n_features must be >= 2, "
                         f"got {d}")
    X, y = _GENERATORS[name](rng, n)
    order = rng.permutation(n)  # classes interleaved at random, as a file's rows would be
    X, y = X[order], y[order]
    if d > 2:
        X = np.hstack([X, rng.standard_normal((n, d - 2))])
    return np.ascontiguousarray(X, dtype=np.float64), y.astype(np.int64)


def n_classes(name):
    """Number of classes of the generated dataset ``name``."""
    return 3 if name == "blobs" else 2


# ---------------------------------------------------------------------- files

def load(path, target=None):
    """Load ``(X float64 2-D, y)`` from a ``.csv``, ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    path : str or path-like
        ``.csv``: a header row, then one record per row; numbers, except that the target
        column may hold class names (encoded 0..k-1 in sorted order).
        ``.npy``: a 2-D numeric array, one record per row.
        ``.npz``: arrays ``X`` (2-D) and ``y`` (1-D, or 2-D for several targets); ``target`` is ignored.
    target : str or int, optional
        The target column: a CSV header name, or a column index (negative counts from the
        end; a string of digits is an index when no header has that name). Default: the last column.

    Returns
    -------
    X : ndarray of float64, shape (n_records, n_features)
    y : ndarray, int64 when every target value is a whole number (class labels), else float64
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a data file (.csv, .npy or .npz)")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        X, y = _load_csv(path, target)
    elif ext == ".npy":
        X, y = _load_npy(path, target)
    elif ext == ".npz":
        X, y = _load_npz(path)
    else:
        raise ValueError(f"cannot read {path!r}: the file must end in .csv, .npy or .npz, got {ext or 'no suffix'!r}")
    if X.shape[0] < 1:
        raise ValueError(f"{path!r} holds no records (no data rows)")
    if X.shape[1] < 1:
        raise ValueError(f"{path!r} has no feature columns besides the target")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{path!r}: feature value at record {bad[0]}, feature {bad[1]} is not finite")
    return np.ascontiguousarray(X, dtype=np.float64), _as_target(y)


def _as_target(y):
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    y = y.astype(np.float64)
    if np.isfinite(y).all() and np.array_equal(y, np.round(y)):
        return y.astype(np.int64)
    return y


def _column_index(target, names, n_cols, path):
    """The index of ``target`` among ``n_cols`` columns (``names`` the header, or None)."""
    if target is None:
        return n_cols - 1
    if isinstance(target, str):
        if names is not None and target in names:
            return names.index(target)
        text = target.strip()
        if text.lstrip("-").isdigit():
            target = int(text)
        else:
            have = f"; the columns are {names}" if names is not None else " (a .npy file has no column names)"
            raise ValueError(f"target column {target!r} not found in {path!r}{have}")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"target must be a column name or index, got {target!r}")
    if not -n_cols <= target < n_cols:
        raise ValueError(f"target column index {target} is out of range for {path!r}, "
                         f"which has {n_cols} columns (0..{n_cols - 1})")
    return int(target) % n_cols


def _load_csv(path, target):
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path!r} is empty: a CSV needs a header row and at least one record")
    names = [c.strip() for c in rows[0]]
    if len(names) < 2:
        raise ValueError(f"{path!r} has {len(names)} column; it needs at least one feature and a target")
    body = rows[1:]
    if not body:
        raise ValueError(f"{path!r} holds no records (only a header row)")
    t = _column_index(target, names, len(names), path)
    for i, r in enumerate(body):
        if len(r) != len(names):
            raise ValueError(f"{path!r}, line {i + 2}: {len(r)} values, but the header has {len(names)} columns")
    feat_cols = [j for j in range(len(names)) if j != t]
    X = np.empty((len(body), len(feat_cols)))
    for i, r in enumerate(body):
        for k, j in enumerate(feat_cols):
            try:
                X[i, k] = float(r[j])
            except ValueError:
                raise ValueError(f"{path!r}, line {i + 2}, column {names[j]!r}: {r[j]!r} is not a number "
                                 "(only the target column may hold text)") from None
    raw = [r[t].strip() for r in body]
    try:
        y = np.array([float(v) for v in raw])
    except ValueError:  # class names: encode them 0..k-1 in sorted order
        classes = sorted(set(raw))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in raw], dtype=np.int64)
    return X, y


def _load_npy(path, target):
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"cannot read {path!r} as a .npy array: {exc}") from None
    if a.ndim != 2:
        raise ValueError(f"{path!r} holds an array of shape {a.shape}; expected a 2-D array "
                         "(records x columns, one of them the target)")
    if a.dtype.kind not in "iufb":
        raise ValueError(f"{path!r} holds a {a.dtype} array; expected numbers")
    if a.shape[1] < 2:
        raise ValueError(f"{path!r} has {a.shape[1]} column; it needs at least one feature and a target")
    t = _column_index(target, None, a.shape[1], path)
    return np.delete(a, t, axis=1).astype(np.float64), a[:, t]


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("X", "y") if k not in z.files]
            if missing:
                raise ValueError(f"{path!r} has arrays {z.files}; a .npz needs arrays named 'X' and 'y'")
            X, y = z["X"], z["y"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path!r} as a .npz archive: {exc}") from None
    if X.ndim != 2:
        raise ValueError(f"{path!r}: X has shape {X.shape}; expected 2-D (records x features)")
    if X.dtype.kind not in "iufb" or y.dtype.kind not in "iufb":
        raise ValueError(f"{path!r}: X and y must be numeric, got {X.dtype} and {y.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"{path!r}: y has shape {y.shape} but X has {X.shape[0]} records")
    return X.astype(np.float64), y


def columns(path):
    """The column names of a data file, to choose the target from.

    A ``.csv`` file's header; ``["0", "1", ...]`` for a ``.npy`` array; ``None`` for a
    ``.npz`` archive, whose ``y`` array is the target.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.reader(f):
                if row and any(c.strip() for c in row):
                    return [c.strip() for c in row]
        raise ValueError(f"{path!r} is empty: a CSV needs a header row and at least one record")
    if ext == ".npy":
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        if a.ndim != 2:
            raise ValueError(f"{path!r} holds an array of shape {a.shape}; expected a 2-D array")
        return [str(j) for j in range(a.shape[1])]
    if ext == ".npz":
        return None
    raise ValueError(f"cannot read {path!r}: the file must end in .csv, .npy or .npz, got {ext or 'no suffix'!r}")
