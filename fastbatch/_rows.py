"""Where training rows come from: the caller's array as it is, or the file behind a read-only map.

Inputs are read-only to fastbatch:

- Only a read-only shared map of a file (``np.load(path, mmap_mode="r")``) has its pages
  dropped (``MADV_DONTNEED``) after use: the OS reads them back from the file. A private
  (``"c"``) or writable (``"r+"``, ``"w+"``) map may hold edits that live only in memory, so
  its contents are used as they are and its pages are never dropped.
- A read-only map is read through ``pread`` on a descriptor opened when the source opens
  and checked to be the map's own file (device and inode as the OS lists the map, size
  covering the rows). A file replaced or deleted by name after ``np.load`` is not that
  file: the map itself (the data the caller passed) is read instead.
- A file that shrinks under a map kills the process with SIGBUS at the next touch of a
  missing page. So every read of a map checks the size of its file first and raises an
  ``OSError`` naming it, and the backends never touch a map during a step: any map that is
  not read from its own file (a writable or private one, or one whose file was replaced by
  name) is read through ``pread`` on ``/proc/self/mem`` at the map's address, which gives
  what the map holds (the caller's edits too) and an error (EIO), not SIGBUS, for a page the
  file no longer has.
"""
import mmap
import os

import numpy as np

CHUNK_BYTES = 8 << 20  # what the checks and conversions read at a time


def _mapping(X):
    """The ``mmap.mmap`` under a memory-mapped X, or None."""
    base = X
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    return base if isinstance(base, mmap.mmap) else None


def _map_start(X, mm):
    """(file offset of the map's first byte, address of the map's first byte)."""
    start = X.offset - X.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap began its map
    return start, np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data


def _byte_bounds(X):
    utils = getattr(np.lib, "array_utils", None)  # numpy >= 2
    return (utils.byte_bounds if utils is not None else np.byte_bounds)(X)


def _advise(X, advice_name):
    mm = _mapping(X) if isinstance(X, np.memmap) else None
    advice = getattr(mmap, advice_name, None)
    if mm is not None and advice is not None:
        try:
            mm.madvise(advice)
        except (OSError, ValueError):
            pass


def is_read_only_file_map(X):
    """True for a read-only shared map of a file (mode "r"): the only kind whose pages may be dropped."""
    if not isinstance(X, np.memmap) or getattr(X, "mode", None) != "r":
        return False
    mm = _mapping(X)
    return mm is not None and memoryview(mm).readonly


def release_pages(X):
    """Drop the pages of a read-only shared file map from resident memory (re-read from the file when needed).

    Anything else is left alone: a private or writable map may hold the caller's edits.
    """
    if is_read_only_file_map(X):
        _advise(X, "MADV_DONTNEED")


def read_randomly(X):
    """Tell the OS a memory-mapped X is read at random rows: no read-ahead, one page a row."""
    _advise(X, "MADV_RANDOM")


def file_source(X):
    """(path, byte offset of row 0) of a C-contiguous memory-mapped X backed by a named file, else None."""
    if not isinstance(X, np.memmap) or not X.flags.c_contiguous or not getattr(X, "filename", None):
        return None
    mm = _mapping(X)
    if mm is None or not isinstance(getattr(X, "offset", None), int) or not X.size:
        return None
    map_start, map_base = _map_start(X, mm)
    return X.filename, map_start + (X.ctypes.data - map_base)


def _mapped_file_id(address):
    """(major, minor, inode) of the file mapped at ``address``, as /proc/self/maps lists it; None elsewhere."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split()
                lo, hi = (int(v, 16) for v in fields[0].split("-"))
                if lo <= address < hi and len(fields) >= 5:
                    major, minor = (int(v, 16) for v in fields[3].split(":"))
                    return major, minor, int(fields[4])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RowSource:
    """The rows the kernel reads, for the length of one fit (use ``with RowSource.open(X) as rows``).

    ``array`` is what the kernel indexes; with ``fd >= 0`` it reads row ``i`` from that file
    at ``data_offset + i * row_bytes`` instead (``fd`` is -1 and ``data_offset`` 0 otherwise).
    ``read(start, stop)`` gives rows for checks and conversions, safely, whatever X is.
    """

    def __init__(self, array, name="X"):
        self.array = array
        self.name = name         # what the caller calls the array, for the messages
        self.fd = -1
        self.data_offset = 0
        self.path = getattr(array, "filename", None)
        self._mm = None          # the map under a memory-mapped array, whose file size is checked
        self._end = 0            # file offset just past the last byte the array covers
        self._identity = None    # (device, inode, size, mtime) of fd when it was opened
        self._release = False    # a read-only shared map of a file: pages may be dropped
        self._in_memory = False  # fd is /proc/self/mem, data_offset the map's address of row 0

    def __repr__(self):
        how = ("pread from the process's memory" if self._in_memory else
               f"pread from fd {self.fd} at {self.data_offset}") if self.fd >= 0 else (
            "memory map" if self._mm is not None else "memory")
        return f"RowSource({self.array.shape} {self.array.dtype}, {how})"

    @classmethod
    def open(cls, X, name="X"):
        """A source for a checked X (ndarray or np.memmap); OSError if X's file no longer covers it."""
        src = cls(X, name)
        if isinstance(X, np.memmap) and X.size:
            mm = _mapping(X)
            if mm is not None and isinstance(getattr(X, "offset", None), int):
                src._open_map(X, mm)
        return src

    def _open_map(self, X, mm):
        self._mm = mm
        map_start, map_base = _map_start(X, mm)
        low, high = _byte_bounds(X)
        self._end = map_start + (high - map_base)
        self.check()
        self._release = is_read_only_file_map(X)
        if self._release and X.flags.c_contiguous and self.path:
            self._open_file(map_start + (low - map_base), _mapped_file_id(map_base))
        if self.fd < 0 and X.flags.c_contiguous:
            self._open_memory(X)
        if self._release and self.fd < 0:
            read_randomly(X)

    def _open_memory(self, X):
        """Read the map's rows with pread from /proc/self/mem (a page its file lost: EIO, not SIGBUS)."""
        try:
            fd = os.open("/proc/self/mem", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return  # (no /proc: the map itself is read)
        self.fd, self.data_offset, self._in_memory = fd, X.ctypes.data, True

    def _open_file(self, offset, mapped_id):
        """Read rows with pread from the map's own file, if the file at its path is still that file."""
        if mapped_id is None:
            return  # no way to tell which file the map holds: read the map itself
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return  # deleted or renamed: the map still holds the caller's data
        st = os.fstat(fd)
        if (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) != mapped_id or st.st_size < self._end:
            os.close(fd)
            return  # another file now has that name
        self.fd, self.data_offset = fd, offset
        self._identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check(self):
        """OSError if the file behind the rows changed (pread) or no longer covers them (any map)."""
        if self._mm is not None:
            try:
                size = self._mm.size()
            except (OSError, ValueError):
                size = self._end  # no file to measure (an anonymous map)
            if size < self._end:
                raise OSError(f"{self.path or 'the file behind ' + self.name} is {size} bytes, shorter than "
                              f"the {self._end} bytes its memory map of {self.name} covers: it was truncated after "
                              "it was loaded; reload it")
        if self.fd >= 0 and not self._in_memory:
            st = os.fstat(self.fd)
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != self._identity:
                raise OSError(f"{self.path} changed while fastbatch was reading it (size {self._identity[2]} -> "
                              f"{st.st_size} bytes); reload it and start again")

    def read(self, start, stop):
        """Rows [start, stop) as an array of X's dtype: read from the file, from the checked map, or a view."""
        X = self.array
        if self.fd >= 0:
            self.check()
            row_bytes = X.shape[1] * X.dtype.itemsize
            want = (stop - start) * row_bytes
            buf = bytearray(want)
            view, got = memoryview(buf), 0
            while got < want:
                try:
                    n = os.preadv(self.fd, [view[got:]], self.data_offset + start * row_bytes + got)
                except OSError:
                    n = -1  # (EIO: a page the file no longer has)
                if n <= 0:
                    self.check()  # a file cut short since the last look: its own message
                    raise OSError(f"{self.path or 'the file behind ' + self.name} ended early: could not read "
                                  f"rows {start}..{stop - 1}")
                got += n
            return np.frombuffer(buf, dtype=X.dtype).reshape(stop - start, X.shape[1])
        if self._mm is not None:
            self.check()
            return np.array(X[start:stop])
        return X[start:stop]

    def take(self, idx):
        """Rows ``idx`` (sorted ascending) as an array of X's dtype, read as :meth:`read` does."""
        idx = np.asarray(idx, dtype=np.int64)
        if not len(idx):
            return self.read(0, 0)
        if self.fd < 0:
            self.check()
            return np.asarray(self.array[idx])
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo <= 16 * len(idx):  # dense enough: one read of their span
            return self.read(lo, hi)[idx - lo]
        return np.concatenate([self.read(int(i), int(i) + 1) for i in idx])

    def chunks(self):
        """(start, rows) blocks covering X, each about CHUNK_BYTES; pages of a read-only map are dropped as it goes."""
        X = self.array
        step = max(1, CHUNK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))
        for start in range(0, X.shape[0], step):
            yield start, self.read(start, min(start + step, X.shape[0]))
            self.after_chunk()

    @property
    def mapped(self):
        """Whether the rows are behind a memory map (whose file ``check`` measures)."""
        return self._mm is not None

    @property
    def releases_pages(self):
        """Whether after_chunk drops pages (a read-only shared map of a file)."""
        return self._release

    def after_chunk(self):
        """Drop the pages read since the last call, only from a read-only shared map of a file.

        Done with pread too: a backend that reads the map itself (numpy) must not fill memory with it.
        """
        if self._release:
            release_pages(self.array)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.after_chunk()


def all_finite(X, name="X"):
    """True when every value of a 2-D X is finite; reads a memory-mapped X safely and in chunks (``name``: what
    the caller calls it, for a file cut short's OSError)."""
    with RowSource.open(X, name) as src:
        for _, part in src.chunks():
            with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows: each value is looked at
                total = part.sum()
            if not np.isfinite(total) and not np.isfinite(part).all():
                return False
    return True


def take_rows(X, rows, dtype, name="X"):
    """X[rows] (all rows when None) as C-contiguous ``dtype``.

    For a memory-mapped X the result is a read-only memory map of a temporary file (deleted
    when the map is dropped), written in chunks from safe reads of X, so neither is ever
    held whole in memory.
    """
    dtype = np.dtype(dtype)
    if not isinstance(X, np.memmap):
        out = X if rows is None else X[rows]
        return np.ascontiguousarray(out, dtype=dtype)
    import tempfile
    n = X.shape[0] if rows is None else len(rows)
    step = max(1, CHUNK_BYTES // max(1, X.shape[1] * max(X.dtype.itemsize, dtype.itemsize)))
    with tempfile.TemporaryFile() as f, RowSource.open(X, name) as src:
        for start in range(0, n, step):
            stop = min(start + step, n)
            part = src.read(start, stop) if rows is None else src.take(rows[start:stop])
            f.write(np.ascontiguousarray(part, dtype=dtype).tobytes())
            src.after_chunk()
        f.flush()
        # a read-only map of a file of its own: its pages may be dropped without losing anything
        return np.memmap(f, dtype=dtype, mode="r", shape=(n, X.shape[1]))
