"""fastbatch.datasets: the generators and the file loaders."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from fastbatch import datasets


def test_random_is_the_seeds_data(seed_data):
    X, y = datasets.make("random", 1000, 10, seed=0)
    X0, y0 = seed_data
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    assert X.min() >= 0 and X.max() < 1 and set(np.unique(y)) == {0, 1}


@pytest.mark.parametrize("name", datasets.NAMES)
@pytest.mark.parametrize("d", [2, 5])
def test_shapes_types_and_determinism(name, d):
    X, y = datasets.make(name, 301, d, seed=3)
    assert X.shape == (301, d) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (301,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(datasets.n_classes(name)))
    X2, y2 = datasets.make(name, 301, d, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    X3, _ = datasets.make(name, 301, d, seed=4)
    assert not np.array_equal(X, X3)


@pytest.mark.parametrize("name", sorted(datasets.TWO_FEATURE))
def test_padding_keeps_the_two_informative_features(name):
    X2, y2 = datasets.make(name, 200, 2, seed=1)
    X5, y5 = datasets.make(name, 200, 5, seed=1)
    assert np.array_equal(X2, X5[:, :2]) and np.array_equal(y2, y5)
    assert abs(X5[:, 2:].mean()) < 0.3 and 0.7 < X5[:, 2:].std() < 1.3


@pytest.mark.parametrize("name", sorted(datasets.TWO_FEATURE))
def test_classes_are_balanced_and_learnable_by_their_rule(name):
    X, y = datasets.make(name, 1000, 2, seed=0)
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1
    if name == "xor":
        assert np.array_equal(y, ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int))


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        datasets.make("circles", 10, 2, 0)
    with pytest.raises(ValueError, match="n_features must be >= 2"):
        datasets.make("moons", 10, 1, 0)
    with pytest.raises(ValueError, match="n_records"):
        datasets.make("random", 0, 2, 0)
    with pytest.raises(TypeError, match="seed"):
        datasets.make("random", 10, 2, 1.5)


# ---------------------------------------------------------------------- files

def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_default_target_is_the_last_column(tmp_path):
    p = write(tmp_path, "d.csv", "a,b,label\n1,2,0\n3,4.5,1\n5,6,1\n")
    X, y = datasets.load(p)
    assert X.tolist() == [[1, 2], [3, 4.5], [5, 6]]
    assert y.tolist() == [0, 1, 1] and y.dtype == np.int64


@pytest.mark.parametrize("target", ["a", 0, "0", -3])
def test_csv_target_by_name_or_index(tmp_path, target):
    p = write(tmp_path, "d.csv", "a,b,c\n1,2,3\n4,5,6\n")
    X, y = datasets.load(p, target=target)
    assert y.tolist() == [1, 4] and X.tolist() == [[2, 3], [5, 6]]


def test_csv_float_target_and_class_names(tmp_path):
    X, y = datasets.load(write(tmp_path, "f.csv", "x,t\n1,0.5\n2,1.0\n"))
    assert y.dtype == np.float64 and y.tolist() == [0.5, 1.0]
    X, y = datasets.load(write(tmp_path, "n.csv", "x,kind\n1,dog\n2,cat\n3,dog\n"))
    assert y.tolist() == [1, 0, 1] and y.dtype == np.int64


@pytest.mark.parametrize("text, match", [
    ("", "is empty"),
    ("a,b\n", "no records"),
    ("a\n1\n2\n", "at least one feature"),
    ("a,b\n1,2\n3\n", "line 3: 1 values"),
    ("a,b\n1,2\nx,3\n", "line 3, column 'a': 'x' is not a number"),
    ("a,b\nnan,1\n", "line 2, column 'a': nan is not a finite number"),
    ("a,label\n1,0\n2,\n3,1\n", "line 3: the target 'label' is blank"),
    ("a,label\n1,cat\n2,NA\n3,dog\n", "line 3: the target 'label' is 'NA' \\(missing\\)"),   # (a class "NA")
    ("a,label\n1,0.5\n2,nan\n3,1\n", "line 3: the target 'label' is 'nan' \\(missing\\)"),
    ("a,label\n1,0\n2,x\n3,1\n", "line 3: the target 'label' is 'x', not a number, but the other targets are numbers"),
    ("a,label\n1,cat\n2,3\n3,dog\n", "line 3: the target 'label' is '3', a number, but the other targets are class"),
    ("a,label\n1,0\n2,inf\n", "line 3: the target 'label' is 'inf', not a finite number"),
    ("a,b\n1,\"" + "x" * 200_000 + "\"\n", "line 2: field larger than field limit"),
    ("a,b\n1,\"x\n2,3\n4,5\n", "line 4: unexpected end of data \\(a quote opened and never closed"),   # (it read
    ("a,b\n1,\"x\n2\",3\n4,5\n", "line 3: a value spans several lines"),              # 1 record)
])
def test_bad_csv_files(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        datasets.load(write(tmp_path, "bad.csv", text))


def test_bad_target_columns(tmp_path):
    p = write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"target column 'z' not found.*\['a', 'b'\]"):
        datasets.load(p, target="z")
    with pytest.raises(ValueError, match="index 5 is out of range"):
        datasets.load(p, target=5)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        datasets.load(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="must end in .csv, .npy or .npz"):
        datasets.load(write(tmp_path, "d.txt", "a,b\n1,2\n"))


def test_npy_target_column(tmp_path):
    a = np.array([[0.1, 0.2, 1.0], [0.3, 0.4, 0.0]])
    np.save(tmp_path / "d.npy", a)
    X, y = datasets.load(tmp_path / "d.npy")
    assert X.tolist() == [[0.1, 0.2], [0.3, 0.4]] and y.tolist() == [1, 0] and y.dtype == np.int64
    X, y = datasets.load(tmp_path / "d.npy", target=0)
    assert y.tolist() == [0.1, 0.3] and X.shape == (2, 2)
    np.save(tmp_path / "v.npy", np.arange(3.0))
    with pytest.raises(ValueError, match="expected a 2-D array"):
        datasets.load(tmp_path / "v.npy")
    with pytest.raises(ValueError, match="no column names"):
        datasets.load(tmp_path / "d.npy", target="label")


def test_npz_with_X_and_y(tmp_path):
    X0, y0 = datasets.make("moons", 50, 2, seed=0)
    np.savez(tmp_path / "d.npz", X=X0, y=y0)
    X, y = datasets.load(tmp_path / "d.npz")
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    np.savez(tmp_path / "bad.npz", features=X0)
    with pytest.raises(ValueError, match="needs arrays named 'X' and 'y'"):
        datasets.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", X=X0, y=y0[:10])
    with pytest.raises(ValueError, match="y has shape"):
        datasets.load(tmp_path / "short.npz")


def test_loaded_data_trains(tmp_path):
    import fastbatch as fb
    X0, y0 = datasets.make("xor", 200, 2, seed=0)
    np.save(tmp_path / "xor.npy", np.column_stack([X0, y0]))
    X, y = datasets.load(tmp_path / "xor.npy")
    h = fb.Trainer(batch_size=32, epochs=2, backend="numpy").fit(X, y)
    assert h.n_steps == 14


def test_columns_of_files(tmp_path):
    assert datasets.columns(write(tmp_path, "d.csv", "\nx1, x2 ,label\n1,2,0\n")) == ["x1", "x2", "label"]
    np.save(tmp_path / "d.npy", np.zeros((4, 3)))
    assert datasets.columns(tmp_path / "d.npy") == ["0", "1", "2"]
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 3)), y=np.zeros(4))
    assert datasets.columns(tmp_path / "d.npz") is None
    with pytest.raises(FileNotFoundError):
        datasets.columns(tmp_path / "missing.csv")


def test_a_csv_without_a_header_keeps_its_first_record(tmp_path):
    # np.savetxt writes no header: its first row is a record, not names (it used to be dropped as the header)
    X, y = pytest.importorskip("sklearn.datasets").load_iris(return_X_y=True)
    np.savetxt(tmp_path / "iris.csv", np.column_stack([X, y]), delimiter=",")
    table = datasets.load_table(tmp_path / "iris.csv")
    assert table.X.shape == (150, 4) and np.array_equal(table.X, X) and np.array_equal(table.y, y)
    assert table.features == ["0", "1", "2", "3"] and table.target == "4"
    assert datasets.csv_header(tmp_path / "iris.csv") is None
    assert datasets.columns(tmp_path / "iris.csv") == ["0", "1", "2", "3", "4"]
    # pandas' names for unnamed columns are a header; so is any row with text
    for head in ("0,1,2", "a,1,2", "1.5,x,2"):
        p = write(tmp_path, "h.csv", f"{head}\n1,2,0\n3,4,1\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (numbers beside text: a warning, below)
            assert datasets.csv_header(p) == head.split(",") and len(datasets.load(p)[0]) == 2
    assert len(datasets.load(write(tmp_path, "n.csv", "0,1,2.5\n1,2,0\n"))[0]) == 2   # numbers, not 0,1,2


def test_a_header_row_of_numbers_beside_text_is_warned_of(tmp_path):
    # a file without a header whose first row is numbers and one text cell seen only there: taken as the header
    # (it may be one: "1,2,cat" names no column) and the record lost without a word; now a warning names the row
    p = write(tmp_path, "pets.csv", "\n1,2,cat\n3,4,dog\n5,6,dog\n")
    with pytest.warns(UserWarning, match=r"'.*pets.csv', line 2 \(1,2,cat\) is taken as the header row, though its "
                                         r"cells '1', '2' are numbers: if it is a record, it is not trained on"):
        table = datasets.load_table(p)
    assert len(table.y) == 2 and table.features == ["1", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: names only, numbers only, pandas' 0..n-1, or a network's names
        for head in ("x1,x2,label", "0,1,2", "1.5,2,3"):
            datasets.load_table(write(tmp_path, "h.csv", f"{head}\n1,2,0\n3,4,1\n"))
        datasets.load_table(write(tmp_path, "k.csv", "1990,2000,label\n1,2,0\n3,4,1\n"),
                            known=["1990", "2000", "label"])


def test_a_semicolon_or_tab_separated_csv_is_hinted_at(tmp_path):
    # (it said only "has 1 column; it needs at least one feature and a target")
    for text, said in [("a;b;c\n1;2;0\n3;4;1\n", "its cells hold ';': is it separated by semicolons?"),
                       ("a\tb\tc\n1\t2\t0\n3\t4\t1\n", "its cells hold '\\t': is it separated by tabs?"),
                       ("1;2;0\n3;4;1\n", "its cells hold ';': is it separated by semicolons?")]:
        with pytest.raises(ValueError) as info:
            datasets.load_table(write(tmp_path, "d.csv", text))
        assert "has 1 column; it needs at least one feature and a target; " + said in str(info.value)
    with pytest.raises(ValueError, match=r"'1;5' is not a number \(only the target column may hold text\); its "
                                         "cells hold ';'"):
        datasets.load_table(write(tmp_path, "d.csv", "a,b,c\n1;5,2,0\n"))
    with pytest.raises(ValueError) as info:
        datasets.load_table(write(tmp_path, "d.csv", "abc\n1\n"))
    assert str(info.value).endswith("has 1 column; it needs at least one feature and a target")


# ---------------------------------------------------------------------- hostile files (issue 11)

def test_a_fifo_is_refused_without_waiting(tmp_path):
    import threading
    for name in ("pipe.csv", "pipe.npy", "pipe.npz"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        errors = []

        def attempt():
            for fn in (datasets.load, datasets.columns):
                try:
                    fn(fifo)
                except ValueError as exc:
                    errors.append(str(exc))

        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(10)
        assert len(errors) == 2 and all("named pipe (FIFO)" in e for e in errors), errors


def test_a_folder_with_a_data_suffix_is_refused(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        datasets.load(tmp_path / "d.csv")


@pytest.mark.parametrize("content, words", [
    (b"", "the file is empty"),
    (b"\x93NUMPY\x01\x00", "cannot read"),
    (b"PK\x03\x04" + bytes(40), r"a zip archive \(a .npz named .npy\?\)"),          # (an AttributeError's traceback before)
    (b"a,b\n1,2\n", "does not begin with numpy's .npy header"),       # (numpy spoke of allow_pickle)
])
def test_empty_or_cut_npy(tmp_path, content, words):
    (tmp_path / "e.npy").write_bytes(content)
    with pytest.raises(ValueError, match=words):
        datasets.load(tmp_path / "e.npy")
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="no records"):
        datasets.load(tmp_path / "none.npy")


def test_npy_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    import io
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 10, 3)})
    (tmp_path / "huge.npy").write_bytes(head.getvalue() + bytes(96))
    with pytest.raises(ValueError, match="cannot read .* as a .npy array"):
        datasets.load(tmp_path / "huge.npy")


LONG_LINE_SCRIPT = r"""
import sys
from fastbatch import datasets
try:
    datasets.load(sys.argv[1])
    print("loaded")
except ValueError as exc:
    print("error:", exc)
print([int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory read from /proc")
def test_a_2_gb_line_is_refused_with_bounded_memory(tmp_path):
    path = tmp_path / "long.csv"
    with open(path, "wb") as f:
        f.write(b"a,b\n1,")
        f.truncate(2 * 1024 ** 3)  # sparse: 2 GB of the one line, no disk used
    out = subprocess.run([sys.executable, "-c", LONG_LINE_SCRIPT, str(path)], capture_output=True, text=True,
                         timeout=60)
    lines = out.stdout.splitlines()
    assert lines and lines[0].startswith("error:") and "line 2: longer than" in lines[0], out.stderr[-500:]
    assert int(lines[1]) < 300e6, f"peak RSS {int(lines[1]) / 1e6:.0f} MB"


def test_compressed_npz_reads_and_a_bomb_is_bounded(tmp_path):
    X0, y0 = datasets.make("moons", 50, 2, seed=0)
    np.savez_compressed(tmp_path / "c.npz", X=X0, y=y0)
    X, y = datasets.load(tmp_path / "c.npz")
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    np.savez(tmp_path / "obj.npz", X=np.array([[object()]]), y=np.zeros(1))
    with pytest.raises(ValueError, match="not a valid .npz data file"):
        datasets.load(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a valid .npz data file"):
        datasets.load(tmp_path / "junk.npz")


def test_fingerprint_tells_data_apart():
    X, y = datasets.make("blobs", 5000, 4, seed=0)
    fp = datasets.fingerprint(X, y)
    assert fp == datasets.fingerprint(X.copy(), y.astype(np.float64))
    assert fp["n_records"] == 5000 and fp["n_features"] == 4 and "sample_rows" not in fp
    assert json.loads(json.dumps(fp)) == fp
    X2 = X.copy()
    X2[2, 0] += 1e-9  # any row: every one is hashed (row 2 was not among an older fingerprint's samples)
    other = datasets.fingerprint(X2, y)
    assert other != fp and "some values differ" in datasets.fingerprint_mismatch(fp, other)
    old = datasets.fingerprint(X, y, datasets.FINGERPRINT_ROWS)   # as checkpoints before recorded it
    assert old["sample_rows"] == 1024 and old == datasets.fingerprint(X2, y, datasets.FINGERPRINT_ROWS)
    assert datasets.fingerprint(X, (y + 1) % 3) != fp
    assert "n records 5000 -> 4999" in datasets.fingerprint_mismatch(fp, datasets.fingerprint(X[:-1], y[:-1]))
    assert datasets.fingerprint_mismatch(fp, fp) is None
