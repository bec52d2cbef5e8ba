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
import array
import collections
import csv
import itertools
import math
import os
import stat

import numpy as np

from ._validation import check_int

__all__ = ["NAMES", "TWO_FEATURE", "make", "load", "load_table", "Table", "columns", "n_classes", "fingerprint"]

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

MAX_LINE_CHARS = 1 << 24     # 16 M characters: a CSV line longer than this is refused, not read whole
MAX_CLASSES = 100_000        # class labels above this are not classes (see _validation.MAX_CLASSES)
SUFFIXES = (".csv", ".npy", ".npz")
FINGERPRINT_ROWS = 1024      # rows an older checkpoint's fingerprint hashed (fingerprint(sample_rows=))


def _open_regular(path, mode="rb", **kw):
    """``open(path)``, refusing without blocking anything that is not a regular file (a FIFO would hang)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(
                st.st_mode) else "not a regular file"
            raise ValueError(f"{path!r} is {kind}, not a data file (.csv, .npy or .npz)")
        return os.fdopen(fd, mode, **kw)
    except BaseException:
        os.close(fd)
        raise


def _check_path(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUFFIXES and not os.path.isdir(path):
        raise ValueError(f"cannot read {path!r}: the file must end in .csv, .npy or .npz, got {ext or 'no suffix'!r}")
    _open_regular(path).close()  # a folder, FIFO or device is refused here, before any reader waits on it
    return path, ext


def _memory_limit():
    """Half this machine's memory: no single array of a data file may take more."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def _check_size(path, what, shape, itemsize=8):
    need = itemsize
    for s in shape:
        need *= s
    if need > _memory_limit():
        raise ValueError(f"{path!r}: {what} of shape {shape} would take {need / 1e9:.1f} GB as float64, more than "
                         f"half of this machine's memory; use np.load(..., mmap_mode='r') and Trainer.fit instead")


class Table(collections.namedtuple("Table", "X y classes target features")):
    """A loaded data file: ``X`` float64 (n, d), ``y``, and what names them.

    ``classes``: the class names of a text target, in code order (``y`` holds their codes), else None;
    ``target``: the target column's name (a .npy column's index as text; None for .npz);
    ``features``: the feature columns' names.
    """


def load(path, target=None):
    """Load ``(X float64 2-D, y)`` from a ``.csv``, ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    path : str or path-like
        ``.csv``: a header row, then one record per row; numbers, except that the target
        column may hold class names (encoded 0..k-1 in sorted order). A first row of numbers
        only is a record (a file without a header, as ``np.savetxt`` writes): the columns are
        then named by their indices, unless it is ``0,1,...`` (pandas' names for unnamed columns).
        ``.npy``: a 2-D numeric array, one record per row.
        ``.npz``: arrays ``X`` (2-D) and ``y`` (1-D, or 2-D for several targets); ``target`` is ignored.
    target : str or int, optional
        The target column: a CSV header name, or a column index (negative counts from the
        end; a string of digits is an index when no header has that name). Default: the last column.

    Returns
    -------
    X : ndarray of float64, shape (n_records, n_features)
    y : ndarray, int64 when every target value is a whole number (class labels), else float64

    Every problem is a FileNotFoundError or a one-line ValueError naming the file (and the
    line or record): a FIFO or folder is refused without waiting, CSV lines are read at most
    :data:`MAX_LINE_CHARS` at a time, and array headers are checked before anything is allocated.
    """
    table = load_table(path, target)
    return table.X, table.y


def load_table(path, target=None, classes=None, read_target=True, known=None):
    """:func:`load`, with the names: a :class:`Table`.

    ``classes``: the class names a network was trained on (from its checkpoint). A CSV's text
    target is then encoded by them, so that its codes mean what they meant in training; a
    name that is not among them is an error naming its line. With ``read_target=False`` a
    CSV's target column is left out unread (``y`` is None): new records to predict may leave it blank.
    ``known``: the column names a network was trained on (a CSV's first row of them is its header).
    """
    path, ext = _check_path(path)
    if ext == ".csv":
        X, y, names = _load_csv(path, target, classes, read_target, known)
    elif ext == ".npy":
        X, y, names = _load_npy(path, target)
    else:
        X, y, names = _load_npz(path, read_target)
    if X.shape[0] < 1:
        raise ValueError(f"{path!r} holds no records (no data rows)")
    if X.shape[1] < 1:
        raise ValueError(f"{path!r} has no feature columns besides the target")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{path!r}: feature value at record {bad[0]}, feature {bad[1]} is {X[bad[0], bad[1]]}, "
                         "not a finite number")
    if y is None:
        found = None
    elif isinstance(y, tuple):  # class names: (codes, names)
        y, found = y
    else:
        y, found = _as_target(y), None
    if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).any(axis=1))[0])
        raise ValueError(f"{path!r}: the target of record {bad} is not finite")
    return Table(np.ascontiguousarray(X, dtype=np.float64), y, found, *names)


def _as_target(y):
    y = np.asarray(y)
    if y.dtype.kind in "iub":  # a uint64 beyond int64 stays as it is: its message names its true value
        return y.astype(np.int64) if y.dtype.kind != "u" or y.max(initial=0) < 2 ** 63 else y
    y = y.astype(np.float64)
    if np.isfinite(y).all() and np.array_equal(y, np.round(y)) and np.abs(y).max(initial=0) < 2 ** 53:
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


def _lines(f, path):
    """The lines of ``f``, each read at most MAX_LINE_CHARS characters at a time (memory stays bounded)."""
    number = 0
    while True:
        line = f.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            raise ValueError(f"{path!r}, line {number}: longer than {MAX_LINE_CHARS:,} characters; "
                             "is this a CSV file?")
        yield line


def _csv_rows(path):
    """(line number, cells) of every non-blank CSV row; one-line errors for bad bytes and huge fields."""
    with _open_regular(path, "r", newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(_lines(f, path), strict=True)  # (strict: a quote never closed is an error, not a field
        try:                                               # that swallows the rest of the file)
            for r in reader:
                if r and any(c.strip() for c in r):
                    if any("\n" in c or "\r" in c for c in r):
                        raise ValueError(f"{path!r}, line {reader.line_num}: a value spans several lines (a quote "
                                         "opened and closed lines apart?); a record is one line")
                    yield reader.line_num, r
        except csv.Error as exc:
            hint = " (a quote opened and never closed?)" if "end of data" in str(exc) else ""
            raise ValueError(f"{path!r}, line {reader.line_num}: {exc}{hint}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                             "is it a CSV file?") from None


HEADER_PEEK_ROWS = 1000  # rows after the first that tell whether its one text cell is a value of its column


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header_of(first, rows, known=None):
    """A CSV's first row ``first`` (its cells) as its column names; None when it is a record:
    - every cell a number (np.savetxt writes no header), unless they are 0, 1, ..., n-1 (pandas' names for
      unnamed columns) or names of ``known`` (the columns a network was trained on: years, wavelengths);
    - every cell a number but one, whose text is a value of its own column in the ``rows`` after it
      (iris.data: ``5.1,3.5,1.4,0.2,setosa``; up to HEADER_PEEK_ROWS of them are looked at).
    Taking a record for a header would drop it and name the columns by its values."""
    names = [c.strip() for c in first]
    text = [j for j, c in enumerate(names) if not _is_number(c)]
    if not text:
        named = names == [str(j) for j in range(len(names))] or (known and set(names) <= set(known))
        return names if named else None
    if len(text) == 1 and len(names) > 1:
        j = text[0]
        for _, (_, r) in zip(range(HEADER_PEEK_ROWS), rows):
            if len(r) > j and r[j].strip() == names[j]:
                return None
    return names


def _warn_numeric_header(path, line, names, known=None):
    """Warn when a header row (line ``line``) has cells that look like data (numbers) beside its text: it may be
    a record of a file without a header (``1,2,cat`` over ``3,4,dog``), which would be lost, not trained on."""
    numbers = [c for c in names if _is_number(c)]
    if not numbers or len(numbers) == len(names) or (known and set(names) <= set(known)):
        return
    import warnings
    cells = ", ".join(map(repr, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
    warnings.warn(f"{path!r}, line {line} ({','.join(names)}) is taken as the header row, though "
                  f"{'its cells ' + cells + ' are numbers' if len(numbers) > 1 else 'its cell ' + cells + ' is a number'}"
                  ": if it is a record, it is not trained on; give the file a header row naming its columns",
                  UserWarning, stacklevel=4)


def csv_header(path, known=None):
    """A CSV file's column names from its header row; None when it has none (its first row is a record).
    ``known``: names a network was trained on (a header of them is one, numbers or not)."""
    rows = _csv_rows(path)
    try:
        first = next(rows, None)
        if first is None:
            raise ValueError(f"{path!r} is empty: a CSV needs at least one record")
        names = _header_of(first[1], rows, known)
    finally:
        rows.close()
    seen = {}
    for j, name in enumerate(names or ()):
        if name in seen:  # columns are matched by name (a target, a checkpoint's features): one name, one column
            raise ValueError(f"{path!r}: the header names column {name!r} twice (columns {seen[name] + 1} and "
                             f"{j + 1}); give each column its own name")
        seen[name] = j
    return names


def _delimiter_hint(cell):
    """A hint when a CSV cell holds a semicolon or a tab: the file is likely separated by them, not by commas."""
    for mark, name in ((";", "semicolons"), ("\t", "tabs")):
        if mark in cell:
            return (f"; its cells hold {mark!r}: is it separated by {name}? Save it with commas "
                    "(only comma-separated CSV is read)")
    return ""


def _load_csv(path, target, classes=None, read_target=True, known=None):
    names = csv_header(path, known)
    rows = _csv_rows(path)
    first = next(rows)
    if names is None:  # no header: the first row is a record, the columns are named by their indices
        names = [str(j) for j in range(len(first[1]))]
        rows = itertools.chain([first], rows)
    else:
        _warn_numeric_header(path, first[0], names, known)
    if len(names) < 2:
        raise ValueError(f"{path!r} has {len(names)} column; it needs at least one feature and a target"
                         + _delimiter_hint(first[1][0]))
    t = _column_index(target, names, len(names), path)
    feat_cols = [j for j in range(len(names)) if j != t]
    values = array.array("d")   # the features, 8 bytes a value as they are read
    raw, lines = [], []         # the target cells as written, and each record's line number
    for line, r in rows:
        if len(r) != len(names):
            raise ValueError(f"{path!r}, line {line}: {len(r)} values, but the header has {len(names)} columns")
        for j in feat_cols:
            try:
                values.append(float(r[j]))
            except ValueError:
                raise ValueError(f"{path!r}, line {line}, column {names[j]!r}: {r[j]!r} is not a number "
                                 "(only the target column may hold text)" + _delimiter_hint(r[j])) from None
        raw.append(r[t].strip())
        lines.append(line)
    if not raw:
        raise ValueError(f"{path!r} holds no records (only a header row)")
    X = np.frombuffer(values, dtype=np.float64).reshape(len(raw), len(feat_cols))
    if not np.isfinite(X).all():
        i, k = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{path!r}, line {lines[i]}, column {names[feat_cols[k]]!r}: {X[i, k]} is not a finite "
                         "number; clean or impute it first")
    y = _csv_target(raw, lines, names[t], path, classes) if read_target else None
    return X, y, (names[t], [names[j] for j in feat_cols])


# a target cell that says "missing" (pandas' default NA markers), not a class named so
MISSING_MARKS = frozenset({"NA", "N/A", "NAN", "NULL", "NONE", "#N/A", "-NAN", "<NA>"})


def _csv_target(raw, lines, name, path, classes=None):
    """Numbers, or (codes, class names) with names coded 0..k-1 in sorted order (or as ``classes`` has them).

    A blank cell, or a mix of numbers and text, is an error naming its line.
    """
    for v, line in zip(raw, lines):
        if not v or v.upper() in MISSING_MARKS:
            what = "blank" if not v else f"{v!r} (missing)"
            raise ValueError(f"{path!r}, line {line}: the target {name!r} is {what}; fill it in or drop the row")
    if classes is not None:
        index = {str(c): i for i, c in enumerate(classes)}
        for v, line in zip(raw, lines):
            if v not in index:
                shown = ", ".join(map(repr, list(index)[:10])) + (", ..." if len(index) > 10 else "")
                raise ValueError(f"{path!r}, line {line}: the target {name!r} is {v!r}, not one of the classes "
                                 f"the network was trained on ({shown})")
        return np.array([index[v] for v in raw], dtype=np.int64), list(classes)
    numbers = []
    for v in raw:
        try:
            numbers.append(float(v))
        except ValueError:
            numbers.append(None)
    n_text = sum(x is None for x in numbers)
    if n_text == 0:
        y = np.array(numbers)
        if not np.isfinite(y).all():
            i = int(np.flatnonzero(~np.isfinite(y))[0])
            raise ValueError(f"{path!r}, line {lines[i]}: the target {name!r} is {raw[i]!r}, not a finite number")
        return y
    if n_text < len(raw):  # some numbers, some text: one of them is a mistake
        want_numbers = n_text * 2 <= len(raw)
        i = next(i for i, x in enumerate(numbers) if (x is None) == want_numbers)
        what = "not a number, but the other targets are numbers" if want_numbers else \
            "a number, but the other targets are class names"
        raise ValueError(f"{path!r}, line {lines[i]}: the target {name!r} is {raw[i]!r}, {what}")
    classes = sorted(set(raw))
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"{path!r}: the target {name!r} has {len(classes):,} distinct class names "
                         f"(at most {MAX_CLASSES:,})")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in raw], dtype=np.int64), classes


def _load_npy(path, target):
    a = _open_npy(path)
    if a.ndim != 2:
        raise ValueError(f"{path!r} holds an array of shape {a.shape}; expected a 2-D array "
                         "(records x columns, one of them the target)")
    if a.dtype.kind not in "iufb":
        raise ValueError(f"{path!r} holds a {a.dtype} array; expected numbers")
    if a.shape[1] < 2:
        raise ValueError(f"{path!r} has {a.shape[1]} column; it needs at least one feature and a target")
    _check_size(path, "the array", a.shape)
    t = _column_index(target, None, a.shape[1], path)
    from ._rows import RowSource
    with RowSource.open(a) as rows:  # read through the file: a file cut short is an error, not a crash
        data = np.concatenate([part for _, part in rows.chunks()]) if a.shape[0] else np.asarray(a)
    features = [str(j) for j in range(a.shape[1]) if j != t]
    return np.delete(data, t, axis=1).astype(np.float64), data[:, t], (str(t), features)


def _open_npy(path):
    """The .npy at ``path`` as a read-only map: its header and size are checked, nothing is read yet."""
    with _open_regular(path) as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":  # (np.load would open a zip as a .npz, or speak of pickles for a text file)
        what = "it is a zip archive (a .npz named .npy?)" if magic[:2] == b"PK" else "the file is empty" if not magic else \
            "it does not begin with numpy's .npy header"
        raise ValueError(f"cannot read {path!r} as a .npy array: {what}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        why = "the file is empty" if os.path.getsize(path) == 0 else str(exc)
        raise ValueError(f"cannot read {path!r} as a .npy array: {why}") from None


def _load_npz(path, read_target=True):
    from ._archive import open_archive
    with open_archive(path, what=".npz data file", compressed=True) as ar:
        missing = [k for k in (("X", "y") if read_target else ("X",)) if k not in ar.names()]
        if missing:
            need = "arrays named 'X' and 'y'" if read_target else "an array named 'X'"
            raise ValueError(f"{path!r} has arrays {ar.names()}; a .npz needs {need}")
        if not read_target:  # new records to predict: y need not be there (nor is it read)
            xd, xs = ar.member_info("X")
            if len(xs) != 2 or xd.kind not in "iufb":
                raise ValueError(f"{path!r}: X has shape {xs} of {xd}; expected 2-D numbers (records x features)")
            _check_size(path, "X", xs)
            return ar.read_array("X", xd, xs).astype(np.float64), None, (None, [str(j) for j in range(xs[1])])
        (xd, xs), (yd, ys) = ar.member_info("X"), ar.member_info("y")
        if len(xs) != 2:
            raise ValueError(f"{path!r}: X has shape {xs}; expected 2-D (records x features)")
        if xd.kind not in "iufb" or yd.kind not in "iufb":
            raise ValueError(f"{path!r}: X and y must be numeric, got {xd} and {yd}")
        if len(ys) not in (1, 2) or ys[0] != xs[0]:
            raise ValueError(f"{path!r}: y has shape {ys} but X has {xs[0]} records")
        _check_size(path, "X", xs)
        _check_size(path, "y", ys)
        X, y = ar.read_array("X", xd, xs).astype(np.float64), ar.read_array("y", yd, ys)
        return X, y, (None, [str(j) for j in range(xs[1])])


def columns(path, known=None):
    """The column names of a data file, to choose the target from.

    A ``.csv`` file's header (``["0", "1", ...]`` without one); ``["0", "1", ...]`` for a ``.npy``
    array; ``None`` for a ``.npz`` archive, whose ``y`` array is the target.
    """
    path, ext = _check_path(path)
    if ext == ".csv":
        header = csv_header(path, known)
        if header is not None:
            return header
        for _, row in _csv_rows(path):
            return [str(j) for j in range(len(row))]
    if ext == ".npy":
        a = _open_npy(path)
        if a.ndim != 2:
            raise ValueError(f"{path!r} holds an array of shape {a.shape}; expected a 2-D array")
        return [str(j) for j in range(a.shape[1])]
    return None


def fingerprint(X, y, sample_rows=None):
    """A JSON-able summary that tells data sets apart: record and feature counts, and a SHA-256 of every row
    (as float64, with its target, a block of rows at a time): the same data gives the same fingerprint on any
    machine, and a change to any value gives another.

    ``sample_rows``: hash only that many rows spread evenly over the records, as checkpoints before the
    hash of every row did (their fingerprints record ``sample_rows``; ``fingerprint_mismatch`` then uses it).
    """
    import hashlib
    X = np.asarray(X)
    y = np.asarray(y)
    n, d = X.shape
    h = hashlib.sha256()
    if sample_rows is not None:
        idx = np.unique(np.linspace(0, n - 1, min(n, sample_rows)).astype(np.int64)) if n else np.zeros(0, int)
        h.update(np.ascontiguousarray(X[idx], dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(y[idx], dtype="<f8").tobytes())
        return {"n_records": int(n), "n_features": int(d), "sample_rows": int(len(idx)), "sha256": h.hexdigest()}
    step = max(1, (1 << 22) // max(1, d * 8))   # ~4 MB of X a block: memory stays bounded
    for lo in range(0, n, step):
        h.update(np.ascontiguousarray(X[lo:lo + step], dtype="<f8").tobytes())
    for lo in range(0, n, step):
        h.update(np.ascontiguousarray(y[lo:lo + step], dtype="<f8").tobytes())
    return {"n_records": int(n), "n_features": int(d), "sha256": h.hexdigest()}


def fingerprint_mismatch(recorded, current):
    """None when two fingerprints match, else a short description of how they differ."""
    diffs = [f"{k.replace('_', ' ')} {recorded.get(k)} -> {current[k]}" for k in ("n_records", "n_features")
             if recorded.get(k) != current[k]]
    if not diffs and recorded.get("sha256") != current["sha256"]:
        what = "the sampled rows differ" if "sample_rows" in current else "some values differ"
        diffs.append(f"same shape, but {what} (sha256 {recorded.get('sha256', '?')[:12]}... -> "
                     f"{current['sha256'][:12]}...)")
    return "; ".join(diffs) or None
