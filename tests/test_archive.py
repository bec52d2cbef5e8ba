"""fastbatch._archive: atomic checkpoint writes, and reads that stay bounded on hostile files."""
import json
import os
import stat
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from fastbatch import _archive as A

ARRAYS = {"config": np.array(json.dumps({"hidden": [4], "seed": 1})), "theta": np.arange(10.0),
          "order": np.arange(7, dtype=np.int64), "opt": np.ones((3, 10), dtype=np.float32)}


def saved(tmp_path, arrays=ARRAYS, name="ck.npz"):
    path = tmp_path / name
    A.write_atomic(path, arrays)
    return path


def npy_header(dtype, shape, fortran=False):
    """The bytes of an .npy (version 1.0) header declaring ``dtype`` and ``shape``."""
    d = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": fortran, "shape": shape})
    pad = 64 - (10 + len(d) + 1) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d) + pad + 1) + d.encode() + b" " * pad + b"\n"


def zip_bytes(members, flags=0):
    """A zip of (name, data, method, declared size, declared stored size) members: the sizes may lie."""
    out, central = bytearray(), bytearray()
    for name, data, method, usize, csize in members:
        n, off, crc = name.encode(), len(out), zlib.crc32(data)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0, crc, csize, usize, len(n), 0)
        out += n + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0, 0, crc, csize, usize,
                               len(n), 0, 0, 0, 0, 0, off) + n
    k = len(members)
    return bytes(out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, k, k, len(central), len(out), 0))


def stored(name, data):
    return (name, data, 0, len(data), len(data))


def bad(match):
    return pytest.raises(ValueError, match=r"is not a valid fastbatch checkpoint: .*" + match)


# ---------------------------------------------------------------------- round trip

def test_round_trip_and_numpy_can_read_it(tmp_path):
    path = saved(tmp_path)
    with A.open_archive(path) as a:
        assert a.names() == list(ARRAYS)
        assert a.member_info("opt") == (np.dtype(np.float32), (3, 10))
        assert a.read_json("config") == {"hidden": [4], "seed": 1}
        for name in ("theta", "order", "opt"):
            got = a.read_array(name, ARRAYS[name].dtype, ARRAYS[name].shape)
            assert got.dtype == ARRAYS[name].dtype and np.array_equal(got, ARRAYS[name])
    with np.load(path, allow_pickle=False) as z:  # a plain .npz
        assert np.array_equal(z["opt"], ARRAYS["opt"])


@pytest.mark.parametrize("dtype, shape, words", [
    (np.float32, (10,), "must be float32 of shape \\(10,\\), found float64 \\(10,\\)"),
    (np.float64, (11,), "found float64 \\(10,\\)"),
    (np.float64, (2, 5), "found float64"),
])
def test_unexpected_dtype_or_shape_is_refused(tmp_path, dtype, shape, words):
    with A.open_archive(saved(tmp_path)) as a, bad(words):
        a.read_array("theta", dtype, shape)


def test_missing_member_and_non_json(tmp_path):
    with A.open_archive(saved(tmp_path)) as a:
        with bad("no 'state' array"):
            a.read_array("state", np.float64, (1,))
        with bad("must be a JSON string"):
            a.read_json("theta")
    with A.open_archive(saved(tmp_path, {"config": np.array("{not json")})) as a, bad("not valid JSON"):
        a.read_json("config")
    with A.open_archive(saved(tmp_path, {"config": np.array("[" * 100_000 + "]" * 100_000)})) as a:
        with bad("not valid JSON"):
            a.read_json("config")
        with bad("at most 100"):
            a.read_json("config", max_bytes=100)


# ---------------------------------------------------------------------- hostile files

def zip_bomb():
    """A 3 MB zip whose one member inflates to 3 GB of zeros (an .npy header declaring them first)."""
    n = 3 * 1024 ** 3 // 8
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    head = c.compress(npy_header(np.float64, (n,))) + c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)  # after a full flush every block is the same
    data = head + block * (3 * 1024 - 2) + c.compress(zeros) + c.flush()
    return zip_bytes([("theta.npy", data, 8, 3 * 1024 ** 3 + 128, len(data))]), n


BOMB_SCRIPT = r"""
import sys, numpy as np
from fastbatch import _archive as A
path, n = sys.argv[1], int(sys.argv[2])
try:
    with A.open_archive(path) as a:
        a.read_array("theta", np.float64, (n,))
    print("read")
except ValueError as exc:
    print("refused:", exc)
# VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's over from before exec)
print([int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory read from /proc")
def test_zip_bomb_stays_bounded(tmp_path):
    data, n = zip_bomb()
    assert len(data) < 4e6
    d = zlib.decompressobj(-15)  # it is a real bomb: the stream inflates at ~1000x
    local = 30 + len("theta.npy")
    assert len(d.decompress(data[local:local + 100_000], 50_000_000)) > 50_000_000 - 1
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(path), str(n)], capture_output=True, text=True,
                         timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("refused:") and "compressed" in lines[0], out.stderr
    assert int(lines[1]) < 200e6, f"peak RSS {int(lines[1]) / 1e6:.0f} MB"


def test_forged_record_count_is_refused_cheaply(tmp_path):
    # a 7 KB file whose header declares 5e8 records: refused before anything of that size exists
    n = 500_000_001
    data = npy_header(np.int64, (n,)) + bytes(7000)
    path = tmp_path / "forged.npz"
    path.write_bytes(zip_bytes([("order.npy", data, 0, 64 + 8 * n, 64 + 8 * n)]))
    tracemalloc.start()
    try:
        with A.open_archive(path) as a:
            assert a.member_info("order") == (np.dtype(np.int64), (n,))
            with bad("claims .* bytes in a"):
                a.read_array("order", np.int64, (n,))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1e6


@pytest.mark.parametrize("declared", ["honest", "lying"])
def test_huge_declared_shape_is_a_value_error(tmp_path, declared):
    shape = (10 ** 12,)
    head = npy_header(np.float64, shape)
    size = len(head) + 8 * 10 ** 12 if declared == "lying" else len(head) + 16
    path = tmp_path / "huge.npz"
    path.write_bytes(zip_bytes([("theta.npy", head + bytes(16), 0, size % 2 ** 32, size % 2 ** 32)]))
    with A.open_archive(path) as a:
        assert a.member_info("theta")[1] == shape
        with bad("declares|claims"):
            a.read_array("theta", np.float64, shape)


@pytest.mark.parametrize("case, data, words", [
    ("not npy", b"hello world, not an array", "not an .npy array"),
    ("header too long", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b" " * 100, "header"),
    ("header not a dict", b"\x93NUMPY\x01\x00" + struct.pack("<H", 8) + b"[1, 2] \n", "unreadable header"),
    ("code in header", b"\x93NUMPY\x01\x00" + struct.pack("<H", 29) + b"__import__('os').system('x')\n",
     "unreadable header"),
    ("negative shape", npy_header(np.float64, (-1,)), "declares shape"),
    ("object dtype", npy_header(object, (2,)) + bytes(16), "Python objects"),
    ("fortran", npy_header(np.float64, (2, 2), fortran=True) + bytes(32), "Fortran"),
    ("version 9", b"\x93NUMPY\x09\x00" + bytes(20), "format version 9"),
    ("short header", b"\x93NUMPY\x01\x00" + struct.pack("<H", 200) + b"{", "truncated"),
])
def test_bad_members_are_refused(tmp_path, case, data, words):
    path = tmp_path / "bad.npz"
    path.write_bytes(zip_bytes([stored("theta.npy", data)]))
    with A.open_archive(path) as a, bad(words):
        a.read_array("theta", np.float64, (2,))


@pytest.mark.parametrize("case, members, flags, words", [
    ("duplicate", [stored("a.npy", b"x"), stored("a.npy", b"y")], 0, "same name"),
    ("not npy", [stored("a.txt", b"x")], 0, "not an .npy array"),
    ("encrypted", [stored("theta.npy", b"x")], 1, "encrypted"),
])
def test_bad_archives_are_refused(tmp_path, case, members, flags, words):
    path = tmp_path / "bad.npz"
    path.write_bytes(zip_bytes(members, flags))
    with bad(words):
        with A.open_archive(path) as a:
            a.read_array("theta", np.float64, (2,))


def test_every_truncation_is_a_value_error(tmp_path):
    data = saved(tmp_path).read_bytes()
    path = tmp_path / "cut.npz"
    for end in list(range(0, len(data), 23)) + [len(data) - 1]:
        path.write_bytes(data[:end])
        with bad(""):
            with A.open_archive(path) as a:
                for name in ("theta", "order", "opt"):
                    a.read_array(name, ARRAYS[name].dtype, ARRAYS[name].shape)


def test_a_flipped_payload_byte_fails_the_crc(tmp_path):
    data = bytearray(saved(tmp_path, {"theta": np.arange(10.0)}).read_bytes())
    data[data.index(b"\n", 60) + 5] ^= 0xFF  # inside the payload, after the header's newline
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    with A.open_archive(path) as a, bad("CRC"):
        a.read_array("theta", np.float64, (10,))


def test_missing_file_folder_device_and_fifo(tmp_path):
    with pytest.raises(FileNotFoundError, match="no fastbatch checkpoint at"):
        A.open_archive(tmp_path / "nope.npz")
    with bad("a folder, not a regular file"):
        A.open_archive(tmp_path)
    if os.path.exists(os.devnull):
        with bad("a character device"):
            A.open_archive(os.devnull)
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    result = []

    def attempt():
        try:
            A.open_archive(fifo)
        except ValueError as exc:
            result.append(str(exc))

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    assert result and "named pipe (FIFO)" in result[0]


# ---------------------------------------------------------------------- writing

def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path):
    old = tmp_path / ".fastbatch-abc.tmp"
    fresh = tmp_path / ".fastbatch-def.tmp"
    other = tmp_path / "notes.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"x")
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    saved(tmp_path)
    assert not old.exists() and fresh.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fastbatch-def.tmp", "ck.npz", "notes.tmp"]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_file_mode_follows_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = saved(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


def test_errors_name_the_users_path_and_leave_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "missing-folder" / "ck.npz"
    with pytest.raises(FileNotFoundError) as info:
        A.write_atomic(target, ARRAYS)
    assert str(target) in str(info.value) and ".fastbatch-" not in str(info.value)
    assert info.value.filename == str(target)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    path = tmp_path / "ck.npz"
    with pytest.raises(OSError, match="No space left") as info:
        A.write_atomic(path, ARRAYS)
    assert str(path) in str(info.value) and ".fastbatch-" not in str(info.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "missing-folder"] or not any(
        p.name.startswith(".fastbatch-") for p in tmp_path.iterdir())
    monkeypatch.undo()
    with pytest.raises(ValueError, match="allow_pickle|[Oo]bject"):
        A.write_atomic(path, {"bad": np.array([object()])})
    assert not any(p.name.startswith(".fastbatch-") for p in tmp_path.iterdir()) and not path.exists()


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = saved(tmp_path)
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(OSError):
        A.write_atomic(path, {"theta": np.zeros(3)})
    assert path.read_bytes() == before
