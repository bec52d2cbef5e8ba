"""Checkpoint files: atomic writes, and bounded, checked reads of an ``.npz`` archive.

Nothing here knows about trainers. A read never trusts a number from the file before
checking it: each member's ``.npy`` header (at most :data:`MAX_HEADER_BYTES`) is read and
checked against the dtype and shape the caller expects, and the zip entry's declared sizes
against that header, before any of its payload is read; the payload is then streamed,
exactly as many bytes as expected. Members must be stored uncompressed (as ``np.savez``
and :func:`write_atomic` write them), so nothing read can outgrow the file itself.
No pickle, ever.
"""
import ast
import contextlib
import errno
import os
import secrets
import stat
import struct
import time
import zipfile
import zlib

import numpy as np

PREFIX, SUFFIX = ".fastbatch-", ".tmp"   # temporary files of write_atomic
STALE_SECONDS = 60                       # a temporary file this old was left by a crashed save
MAX_HEADER_BYTES = 4096                  # an .npy header of a plain array is ~128 bytes
MAX_MEMBERS = 1024
READ_CHUNK = 1 << 20
DEFLATE_MAX_RATIO = 1032                 # deflate expands at most 1032x: more is not a deflate stream
_MAGIC = b"\x93NUMPY"


class InvalidArchive(ValueError):
    """A file that is not a valid checkpoint; the message names the file and says why."""


def _bad(path, why, what="fastbatch checkpoint"):
    return InvalidArchive(f"{path} is not a valid {what}: {why}")


# ---------------------------------------------------------------------- writing

def write_atomic(path, arrays):
    """Write ``arrays`` (name -> ndarray) to ``path`` as an .npz: a crash mid-write leaves the old file intact.

    The data goes to a temporary file in the same folder (``.fastbatch-*.tmp``), is synced,
    and then renamed over ``path``. The file's mode follows the umask. On an error the
    temporary file is removed and the error names ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder)
    tmp = None
    try:
        fd, tmp = _create_temporary(folder)
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, a in arrays.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _sync_folder(folder)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), path) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@contextlib.contextmanager
def open_atomic_text(path):
    """``open(path, "w")`` for text that is written whole or not at all: an interrupt, a full disk or any error
    before the ``with`` block ends leaves the old file as it was (and no temporary file).

    The text goes to a temporary file beside ``path`` (beside the file a symlink names), synced and renamed over
    it; its mode follows the umask. A ``path`` that is there and not a regular file (a pipe, a device), or one
    in /dev or /proc (``/dev/stdout``), is written as it is, as ``open`` would.
    """
    path = os.fspath(path)
    real = os.path.realpath(path)
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        regular = True
    # (/dev/stdout redirected to a file is a regular file, but one the shell holds open: renamed over, the
    # shell's later output would go to the old one)
    if not regular or any(os.path.abspath(p).startswith(("/dev/", "/proc/")) for p in (path, real)):
        with open(path, "w", encoding="utf-8") as f:
            yield f
        return
    try:
        fd, tmp = _create_temporary(os.path.dirname(real))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:  # (a full disk: said with the file it was for)
            raise OSError(exc.errno, exc.strerror or str(exc), path) from None
        raise


def _create_temporary(folder):
    # os.open with mode 0o666 lets the umask decide the file's mode (mkstemp would force 0600)
    for _ in range(100):
        tmp = os.path.join(folder, PREFIX + secrets.token_hex(8) + SUFFIX)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)  # pragma: no cover


def _sync_folder(folder):
    # the rename itself is durable only once the folder is synced (POSIX; a no-op elsewhere)
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder, max_age=STALE_SECONDS):
    """Remove ``.fastbatch-*.tmp`` files older than ``max_age`` seconds in ``folder`` (left by killed saves)."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        if not (e.name.startswith(PREFIX) and e.name.endswith(SUFFIX)):
            continue
        try:
            if e.is_file(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime > max_age:
                os.unlink(e.path)
        except OSError:
            pass  # another save removed it, or it is not ours to remove


# ---------------------------------------------------------------------- reading

_KINDS = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def open_archive(path, what="fastbatch checkpoint", compressed=False):
    """An :class:`Archive` of the .npz at ``path``; FileNotFoundError, or ValueError naming ``path``.

    Opened without blocking (a FIFO never hangs the caller); anything but a regular file is
    refused. ``what`` names the kind of file in errors. With ``compressed=True`` deflated
    members are read too (data files from ``np.savez_compressed``); a member may then
    allocate at most what deflate can expand its compressed bytes to.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    except OSError as exc:
        raise _bad(path, f"it could not be opened ({exc.strerror or exc})", what) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise _bad(path, f"it is {kind}, not a regular file", what)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        return Archive(path, f, st.st_size, what, compressed)
    except BaseException:
        f.close()
        raise


class Archive:
    """A checked, read-only view of an .npz file's members (use as a context manager)."""

    def __init__(self, path, f, size, what="fastbatch checkpoint", compressed=False):
        self.path, self._f, self.size, self.what, self.compressed = path, f, size, what, compressed
        with self._errors("it could not be read as an .npz archive"):
            self._zip = zipfile.ZipFile(f)
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise self._bad(f"it has {len(infos)} members (at most {MAX_MEMBERS})")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise self._bad("it has two members with the same name")
        self._infos = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise self._bad(f"its member {info.filename!r} is not an .npy array")
            self._infos[info.filename[:-4]] = info

    def __repr__(self):
        return f"Archive({self.path!r}, members={self.names()})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()
        self._f.close()

    def names(self):
        """The array names (member names without ``.npy``), in file order."""
        return list(self._infos)

    def _bad(self, why):
        return _bad(self.path, why, self.what)

    def _errors(self, doing):
        return _Translate(self._bad, doing)

    def _info(self, name):
        try:
            return self._infos[name]
        except KeyError:
            raise self._bad(f"it has no {name!r} array") from None

    def _open_member(self, name):
        """(zip entry, open member stream, dtype, shape, header bytes): the header read and checked."""
        info = self._info(name)
        where = f"array {name!r}"
        if info.flag_bits & 0x1:
            raise self._bad(f"{where} is encrypted")
        allowed = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) if self.compressed else (zipfile.ZIP_STORED,)
        if info.compress_type not in allowed:
            # stored only: then what a read allocates is bounded by the file's own size
            raise self._bad(f"{where} is compressed (zip method {info.compress_type}); "
                            f"{'only deflate is read' if self.compressed else 'checkpoints are stored uncompressed'}")
        with self._errors(f"{where} could not be read"):
            stream = self._zip.open(info)
        try:
            with self._errors(f"the header of {where} could not be read"):
                dtype, shape, header_len = _read_header(stream, self._bad, where)
        except BaseException:
            stream.close()
            raise
        return info, stream, dtype, shape, header_len

    def member_info(self, name):
        """(dtype, shape) of array ``name``, from its .npy header only."""
        _, stream, dtype, shape, _ = self._open_member(name)
        stream.close()
        return dtype, shape

    def read_array(self, name, dtype, shape):
        """Array ``name``, which must have exactly this dtype and shape; its sizes are checked before it is read."""
        dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
        info, stream, found_dtype, found_shape, header_len = self._open_member(name)
        with stream:
            where = f"array {name!r}"
            if found_dtype != dtype or found_shape != shape:
                raise self._bad(f"{where} must be {dtype} of shape {shape}, found {found_dtype} {found_shape}")
            n_bytes = dtype.itemsize * _count(shape)
            if info.compress_size > self.size:
                raise self._bad(f"{where} claims {info.compress_size} bytes in a {self.size}-byte file")
            _check_sizes(info, header_len + n_bytes, self._bad, where)
            out = np.empty(shape, dtype=dtype)
            view = memoryview(out.reshape(-1).view(np.uint8)) if n_bytes else memoryview(b"")
            pos = 0
            with self._errors(f"{where} could not be read"):
                while pos < n_bytes:
                    part = stream.read(min(READ_CHUNK, n_bytes - pos))
                    if not part:
                        raise self._bad(f"{where} is truncated ({pos} of {n_bytes} bytes)")
                    view[pos:pos + len(part)] = part
                    pos += len(part)
                if stream.read(1):  # ends the stream: zipfile checks the CRC here
                    raise self._bad(f"{where} is longer than its header says")
        return out

    def read_json(self, name, max_bytes=1 << 20):
        """The JSON value held by ``name``, a 0-d unicode array (as ``np.array(json.dumps(...))`` saves it)."""
        import json
        info, stream, dtype, shape, _ = self._open_member(name)
        stream.close()
        if dtype.kind != "U" or shape != ():
            raise self._bad(f"array {name!r} must be a JSON string, found {dtype} {shape}")
        if dtype.itemsize > 4 * max_bytes:
            raise self._bad(f"array {name!r} holds {dtype.itemsize // 4} characters (at most {max_bytes})")
        text = str(self.read_array(name, dtype, ()))
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self._bad(f"array {name!r} is not valid JSON ({exc})") from None


def _count(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _read_exactly(stream, n, bad, where):
    data = stream.read(n)
    if len(data) != n:
        raise bad(f"{where} is truncated (its header ends early)")
    return data


def _read_header(stream, bad, where):
    """(dtype, shape, header length in bytes) of an .npy stream, reading at most MAX_HEADER_BYTES."""
    head = _read_exactly(stream, 8, bad, where)
    if head[:6] != _MAGIC:
        raise bad(f"{where} is not an .npy array")
    major = head[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", _read_exactly(stream, 2, bad, where)), 10
    elif major in (2, 3):
        (hlen,), start = struct.unpack("<I", _read_exactly(stream, 4, bad, where)), 12
    else:
        raise bad(f"{where} has .npy format version {major}")
    if hlen > MAX_HEADER_BYTES:
        raise bad(f"{where} has a {hlen}-byte header (at most {MAX_HEADER_BYTES})")
    text = _read_exactly(stream, hlen, bad, where).decode("utf8" if major == 3 else "latin1")
    try:
        d = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise bad(f"{where} has an unreadable header") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise bad(f"{where} has an unreadable header")
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 32:
        raise bad(f"{where} declares shape {shape!r}")
    if d["fortran_order"] is not False:
        raise bad(f"{where} is stored in Fortran order")
    try:
        dtype = np.lib.format.descr_to_dtype(d["descr"])
    except (TypeError, ValueError):
        raise bad(f"{where} declares dtype {d['descr']!r}") from None
    if dtype.hasobject:
        raise bad(f"{where} holds Python objects (never unpickled)")
    return dtype, shape, start + hlen


def _check_sizes(info, expected, bad, where):
    """The zip entry's declared sizes must be exactly those of header + payload, and its stored bytes can hold them."""
    if info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size != expected or expected > DEFLATE_MAX_RATIO * info.compress_size + 1024:
            raise bad(f"{where} declares {info.file_size} bytes from {info.compress_size} compressed bytes, "
                      f"but its header implies {expected}")
    elif info.file_size != expected or info.compress_size != expected:
        raise bad(f"{where} declares {info.file_size} bytes ({info.compress_size} stored), "
                         f"but its header implies {expected}")


class _Translate:
    """Turns the errors zipfile, zlib and struct raise on a damaged file into our ValueError."""

    def __init__(self, bad, doing):
        self.bad, self.doing = bad, doing

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, InvalidArchive):
            return False
        if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
                            NotImplementedError, RuntimeError, KeyError, UnicodeDecodeError, OverflowError)):
            raise self.bad(f"{self.doing} ({exc})") from None
        return False
