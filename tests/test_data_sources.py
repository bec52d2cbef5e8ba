"""Data the way people have it: generators of batches, and memory-mapped files larger than memory."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbatch as fb
from helpers import spy_row_sources


def seed_generator(X, y, batch_size):
    """The seed's data_generator: consecutive batches, the last one partial."""
    def batches():
        for i in range(0, len(X), batch_size):
            yield X[i:i + batch_size], y[i:i + batch_size]
    return batches


@pytest.mark.parametrize("drop_last", [False, True])
def test_fit_batches_counts_like_fit(seed_data, drop_last):
    X, y = seed_data
    kw = dict(batch_size=64, epochs=5, shuffle=False, drop_last=drop_last)
    ref = fb.Trainer(**kw).fit(X, y)
    tr = fb.Trainer(**kw)
    h = tr.fit_batches(seed_generator(X, y, 64), n_outputs=2)
    assert h.n_steps == ref.n_steps == (75 if drop_last else 80)
    assert h.steps_per_epoch == ref.steps_per_epoch
    assert list(h.epoch_starts) == list(ref.epoch_starts)
    assert np.array_equal(h.batch_size, ref.batch_size)
    assert np.array_equal(h.epoch, ref.epoch) and np.array_equal(h.batch, ref.batch)
    # unshuffled fit visits the same consecutive batches: the same training
    np.testing.assert_allclose(h.loss, ref.loss, rtol=1e-5)
    np.testing.assert_allclose(h.epoch_loss, ref.epoch_loss, rtol=1e-5)
    assert tr.finished


def test_fit_batches_stops_and_resumes_mid_epoch(seed_data):
    X, y = seed_data
    kw = dict(batch_size=64, epochs=3, shuffle=False)
    ref = fb.Trainer(**kw).fit_batches(seed_generator(X, y, 64), n_outputs=2)
    tr = fb.Trainer(**kw)
    calls = []
    cb = fb.LambdaCallback(on_step_end=lambda t, step, loss: calls.append(step) or step == 20)
    h = tr.fit_batches(seed_generator(X, y, 64), n_outputs=2, callbacks=[cb])
    assert h.n_steps == 21 and calls[-1] == 20
    h = tr.fit_batches(seed_generator(X, y, 64), n_outputs=2)
    assert np.array_equal(h.loss, ref.loss)


def test_fit_batches_checks_each_batch(seed_data):
    X, y = seed_data

    def bad():
        yield X[:10], y[:10]
        yield X[:10, :5], y[:10]

    tr = fb.Trainer()
    with pytest.raises(ValueError, match="features"):
        tr.fit_batches(bad)
    with pytest.raises(ValueError, match="X batch has 5 features, but the first batch had 10"):
        fb.Trainer(standardize=True).fit_batches(bad)            # (numpy's broadcasting message before)
    with pytest.raises(TypeError, match=r"must yield \(X_batch, y_batch\) pairs, got tuple of 3"):
        fb.Trainer().fit_batches(lambda: iter([(X, y, y)]))      # (the bare "too many values to unpack")
    with pytest.raises(TypeError, match="pairs, got ndarray"):
        fb.Trainer(standardize=True).fit_batches(lambda: iter([X]))
    with pytest.raises(TypeError, match="callable"):
        fb.Trainer().fit_batches([(X, y)])
    with pytest.raises(ValueError, match="no batch"):
        fb.Trainer().fit_batches(lambda: iter(()))
    started = fb.Trainer(epochs=1)
    started.fit(X, y, steps=1)
    with pytest.raises(ValueError, match="reset"):
        started.fit_batches(seed_generator(X, y, 64))


def test_fit_batches_refuses_a_validation_split_it_cannot_make(seed_data):
    """fit_batches' records come from the generator: a validation_split held nothing out (every record trained and
    no epoch was validated, without a word). It is a ValueError naming it, before the run starts."""
    X, y = seed_data
    tr = fb.Trainer(epochs=2, validation_split=0.2)
    with pytest.raises(ValueError, match=r"validation_split=0\.2 .*validation_data"):
        tr.fit_batches(seed_generator(X, y, 64), n_outputs=2)
    assert tr.run_state is None
    h = fb.Trainer(epochs=2).fit_batches(seed_generator(X, y, 64), n_outputs=2,
                                         validation_data=(X[:100], y[:100]))
    assert len(h.val_loss) == 2 and np.isfinite(h.val_loss).all()


def test_memmap_input_is_not_copied(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.random((3000, 8)).astype(np.float32)
    y = rng.integers(0, 2, 3000)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    seen = spy_row_sources(monkeypatch)
    h = fb.Trainer(epochs=2, batch_size=32).fit(Xm, y)
    assert seen[-1] is Xm  # trained straight from the map
    assert np.array_equal(h.loss, fb.Trainer(epochs=2, batch_size=32).fit(X, y).loss)


RSS_SCRIPT = r"""
import sys, numpy as np, fastbatch as fb, psutil
path, n = sys.argv[1], int(sys.argv[2])
X = np.load(path, mmap_mode="r")
y = (np.arange(n) % 2)
tr = fb.Trainer(hidden=(16,), batch_size=256, epochs=1, n_threads=1)  # the memory, not the team, is tested
peak = 0
def watch(h):
    global peak
    peak = max(peak, psutil.Process().memory_info().rss)
h = tr.fit(X, y, on_progress=watch)
watch(h)
print(peak, h.n_steps)
"""


def test_memmap_file_larger_than_the_memory_it_uses(tmp_path):
    pytest.importorskip("psutil")  # the child process measures with it
    n, d = 1_200_000, 64           # 307 MB of float32 on disk
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for i in range(0, n, 100_000):
        X[i:i + 100_000] = np.random.default_rng(i).random((min(100_000, n - i), d), dtype=np.float32)
    X.flush()
    del X
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path), str(n)],
                         capture_output=True, text=True, check=True)
    peak, steps = map(int, out.stdout.split())
    assert steps == -(-n // 256)
    size = os.path.getsize(path)
    assert peak < 0.5 * size + 150e6, f"peak RSS {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"


@pytest.mark.parametrize("case", ["float64 file", "validation split"])
def test_memmap_conversions_stay_on_disk(tmp_path, case, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.random((2000, 6))
    y = rng.integers(0, 2, 2000)
    np.save(tmp_path / "X.npy", X if case == "float64 file" else X.astype(np.float32))
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(epochs=2, batch_size=32, validation_split=0.25 if case == "validation split" else 0.0)
    seen = spy_row_sources(monkeypatch)
    h = fb.Trainer(**kw).fit(Xm, y)
    assert isinstance(seen[-1], np.memmap) and seen[-1].dtype == np.float32 and seen[-1].mode == "r"
    ref = fb.Trainer(**kw).fit(X.astype(np.float32), y)
    assert np.array_equal(h.loss, ref.loss) and np.array_equal(h.val_loss, ref.val_loss)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_memmap_rows_are_read_from_the_right_place(tmp_path, backend):
    # the kernel reads rows from the file at the map's offset; a sliced map starts further in
    rng = np.random.default_rng(3)
    X = rng.random((500, 7)).astype(np.float32)
    y = rng.integers(0, 3, 500)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")[37:]
    from fastbatch import _rows
    path, offset = _rows.file_source(Xm)
    with open(path, "rb") as f:
        f.seek(offset)
        assert np.array_equal(np.frombuffer(f.read(7 * 4), dtype=np.float32), X[37])
    kw = dict(epochs=2, batch_size=16, backend=backend)
    assert np.array_equal(fb.Trainer(**kw).fit(Xm, y[37:]).loss, fb.Trainer(**kw).fit(X[37:], y[37:]).loss)


# ---------------------------------------------------------------------- maps are the caller's (issue 11)

from fastbatch import _rows  # noqa: E402


def saved_map(tmp_path, mode, n=1000, d=4, name="X.npy"):
    X = np.random.default_rng(0).random((n, d)).astype(np.float32)
    np.save(tmp_path / name, X)
    return X, np.load(tmp_path / name, mmap_mode=mode)


@pytest.mark.parametrize("mode", ["c", "r+"])
def test_edits_in_a_private_or_writable_map_survive_fit_and_predict(tmp_path, mode):
    # issue 11, item 1: MADV_DONTNEED on a private map threw the caller's centring away
    _, X = saved_map(tmp_path, mode)
    X -= X.mean(0)
    centred = np.array(X)
    tr = fb.Trainer(epochs=1, batch_size=64)
    tr.fit(X, np.zeros(1000, int), steps=1)
    tr.predict(X)
    assert np.array_equal(np.asarray(X), centred) and abs(X.mean(0)).max() < 1e-5
    with _rows.RowSource.open(X) as rows:
        # read as the map holds it (its edits too), through /proc/self/mem: never touched by a step (SIGBUS)
        assert rows.fd >= 0 and rows.data_offset == X.ctypes.data and rows.array is X
        assert np.array_equal(rows.read(0, 1000), centred)
        rows.after_chunk()
    assert np.array_equal(np.asarray(X), centred)


def test_a_private_map_trains_on_its_edited_contents(tmp_path):
    X0, X = saved_map(tmp_path, "c")
    X *= 2
    y = np.arange(1000) % 2
    kw = dict(epochs=1, batch_size=50)
    assert np.array_equal(fb.Trainer(**kw).fit(X, y).loss, fb.Trainer(**kw).fit(X0 * 2, y).loss)


def test_a_read_only_map_is_read_from_its_own_file(tmp_path):
    X0, X = saved_map(tmp_path, "r")
    with _rows.RowSource.open(X[10:]) as rows:
        assert rows.fd >= 0 and rows.data_offset == X.offset + 10 * 16
        assert np.array_equal(rows.read(0, 5), X0[10:15])
        assert np.array_equal(rows.take([0, 3, 900]), X0[[10, 13, 910]])
        rows.check()
    assert rows.fd == -1


def script_lines(script, *args):
    """The lines a script prints in a process of its own (a SIGBUS there fails the test, not the run)."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"the process died with {out.returncode}: {out.stdout} {out.stderr[-500:]}"
    return out.stdout.splitlines()


TRUNCATED_SCRIPT = r"""
import os, sys, numpy as np, fastbatch as fb
from fastbatch import _validation as V
path, mode = sys.argv[1:]
for what in ("check_X", "fit", "predict"):
    np.save(path, np.random.default_rng(0).random((200_000, 8)).astype(np.float32))
    X = np.load(path, mmap_mode=mode)
    y = np.arange(X.shape[0]) % 2
    tr = fb.Trainer(epochs=1, batch_size=32)
    if what == "predict":
        tr.fit(np.zeros((4, X.shape[1])), y[:4])
    os.truncate(path, os.path.getsize(path) // 2)
    try:
        if what == "check_X":
            V.check_X(X, np.dtype("float64"))  # a conversion reads every row
        elif what == "fit":
            tr.fit(X, y)
        else:
            tr.predict(X)
        print(what, "no error")
    except (OSError, ValueError) as exc:
        print(what, "error:", exc)
    sys.stdout.flush()
"""


@pytest.mark.parametrize("mode", ["r", "c"])
def test_a_file_truncated_under_its_map_is_an_error_not_sigbus(tmp_path, mode):
    # issue 11, item 2: reading the missing pages killed the process with SIGBUS
    lines = script_lines(TRUNCATED_SCRIPT, str(tmp_path / "X.npy"), mode)
    assert [line.split()[0] for line in lines] == ["check_X", "fit", "predict"]
    assert all(" error: " in line and "X.npy" in line and "truncated" in line for line in lines), lines


def test_a_file_replaced_after_load_is_not_trained_on(tmp_path):
    # issue 11, item 3: the pread path re-opened the file by name and trained on the new file
    X0, X = saved_map(tmp_path, "r")
    y = np.arange(1000) % 2
    np.save(tmp_path / "other.npy", X0[::-1] * 100)
    os.replace(tmp_path / "other.npy", tmp_path / "X.npy")
    with _rows.RowSource.open(X) as rows:
        assert rows.data_offset == X.ctypes.data  # not the map's file any more: the map is read (its memory)
        assert np.array_equal(rows.read(0, 3), X0[:3])
    kw = dict(epochs=2, batch_size=32)
    assert np.array_equal(fb.Trainer(**kw).fit(X, y).loss, fb.Trainer(**kw).fit(X0, y).loss)


def test_a_file_deleted_after_load_still_trains(tmp_path):
    X0, X = saved_map(tmp_path, "r")
    y = np.arange(1000) % 2
    os.unlink(tmp_path / "X.npy")
    kw = dict(epochs=2, batch_size=32)
    assert np.array_equal(fb.Trainer(**kw).fit(X, y).loss, fb.Trainer(**kw).fit(X0, y).loss)


def test_a_file_changed_during_a_fit_is_reported(tmp_path):
    _, X = saved_map(tmp_path, "r")
    with _rows.RowSource.open(X) as rows:
        assert rows.fd >= 0
        with open(tmp_path / "X.npy", "ab") as f:
            f.write(b"more")
        with pytest.raises(OSError, match="changed while"):
            rows.check()
    with _rows.RowSource.open(X) as rows:
        os.truncate(tmp_path / "X.npy", 100)
        with pytest.raises(OSError, match="truncated"):
            rows.check()


def test_a_validation_file_cut_short_is_named_as_the_validation_data(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 4)).astype(np.float32), rng.integers(0, 2, 100)
    np.save(tmp_path / "val.npy", rng.normal(size=(5000, 4)).astype(np.float32))
    Xv, yv = np.load(tmp_path / "val.npy", mmap_mode="r"), rng.integers(0, 2, 5000)
    tr = fb.Trainer(hidden=(8,), batch_size=10, epochs=5)
    tr.fit(X, y, validation_data=(Xv, yv), steps=10)
    os.truncate(tmp_path / "val.npy", 2000)
    with pytest.raises(OSError, match="truncated") as err:
        tr.fit(X, y, validation_data=(Xv, yv), steps=10)
    assert "memory map of validation_data X" in str(err.value) and tr.step == 10


# the scripts below share this: fit(), then one line, "<label> no error" or "<label> error at step <n> <message>"
FIT_OR_OSERROR = r"""
import os, sys, numpy as np, fastbatch as fb


def fit_or_oserror(label, tr, *args, **kw):
    try:
        tr.fit(*args, **kw)
        print(label, "no error")
    except OSError as exc:
        print(label, "error at step", tr.step, exc)
    sys.stdout.flush()
"""

MIDFIT_SCRIPT = FIT_OR_OSERROR + r"""
path, backend = sys.argv[1:]
for mode in ("r", "c"):
    np.save(path, np.random.default_rng(0).random((4000, 8)).astype(np.float32))
    X = np.load(path, mmap_mode=mode)
    cut = fb.LambdaCallback(on_epoch_end=lambda t, e, logs: os.truncate(path, 1000) if e == 0 else None)
    tr = fb.Trainer(epochs=3, batch_size=32, backend=backend, n_threads=1)
    fit_or_oserror(mode, tr, X, np.arange(len(X)) % 2, callbacks=[cut])
"""


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_file_truncated_during_a_fit_stops_it_with_an_error(tmp_path, backend):
    lines = script_lines(MIDFIT_SCRIPT, str(tmp_path / "X.npy"), backend)
    assert [line.split()[0] for line in lines] == ["r", "c"]
    # stopped after epoch 1, with the state of its last chunk
    assert all("error at step 125 " in line and "truncated" in line for line in lines), lines


VALIDATION_SCRIPT = FIT_OR_OSERROR + r"""
path, backend = sys.argv[1:]
rng = np.random.default_rng(0)
X, y = rng.random((400, 8)).astype(np.float32), np.arange(400) % 2
np.save(path, rng.random((3000, 8)).astype(np.float32))
Xv = np.load(path, mmap_mode="r")
cut = fb.LambdaCallback(on_epoch_end=lambda t, e, logs: os.truncate(path, 1000) if e == 0 else None)
tr = fb.Trainer(epochs=3, batch_size=32, backend=backend, n_threads=1)
fit_or_oserror("validation", tr, X, y, validation_data=(Xv, np.arange(3000) % 2), callbacks=[cut])
"""


IN_CALL_SCRIPT = r"""
import os, sys, threading, time, numpy as np, fastbatch as fb
path, mode, backend = sys.argv[1:]
X = np.random.default_rng(0).random((400_000, 32), dtype=np.float32)
np.save(path, X)
Xm = np.load(path, mmap_mode=mode)
started = threading.Event()
def cut():
    started.wait()
    time.sleep(0.05)
    os.truncate(path, 4096)
threading.Thread(target=cut).start()
tr = fb.Trainer(hidden=(16,), epochs=3, batch_size=8, backend=backend, n_threads=1)
try:
    tr.fit(Xm, (X[:, 0] > 0.5).astype(int), on_progress=lambda h: started.set())
    print("no error")
except OSError as exc:
    print("error:", exc)
"""


@pytest.mark.parametrize("mode, backend", [("r+", "cython"), ("c", "cython"), ("r", "numpy"), ("c", "numpy")])
def test_a_file_truncated_inside_a_kernel_call_is_an_error_not_sigbus(tmp_path, mode, backend):
    """The backends read every map with pread (its file, or /proc/self/mem at the map's address), so a page its
    file loses while a call runs is a read error, never a touch of the map: that killed the process with SIGBUS
    for writable and private maps (and with the numpy backend, which read even read-only maps directly)."""
    lines = script_lines(IN_CALL_SCRIPT, str(tmp_path / "X.npy"), mode, backend)
    assert len(lines) == 1 and lines[0].startswith("error:") and "X.npy" in lines[0], lines


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_validation_file_truncated_during_a_fit_is_an_error_not_sigbus(tmp_path, backend):
    # each epoch's validation reads a memory-mapped set through the row source (either backend)
    lines = script_lines(VALIDATION_SCRIPT, str(tmp_path / "Xv.npy"), backend)
    assert len(lines) == 1 and "error at step" in lines[0] and "truncated" in lines[0], lines


LABELS_SCRIPT = FIT_OR_OSERROR + r"""
folder, mode = sys.argv[1:]
X = np.random.default_rng(0).random((4000, 8)).astype(np.float32)
for what in ("y", "sample_weight"):
    np.save(os.path.join(folder, "y.npy"), (np.arange(4000) % 2).astype(np.int64))
    np.save(os.path.join(folder, "w.npy"), np.ones(4000, dtype=np.float32))
    y = np.load(os.path.join(folder, "y.npy"), mmap_mode=mode)
    w = np.load(os.path.join(folder, "w.npy"), mmap_mode=mode)
    tr = fb.Trainer(epochs=3, batch_size=32, n_threads=1)
    tr.fit(X, y, steps=3, sample_weight=w)
    os.truncate(os.path.join(folder, "y.npy" if what == "y" else "w.npy"), 1000)
    fit_or_oserror(what, tr, X, y, steps=300, sample_weight=w)
"""


@pytest.mark.parametrize("mode", ["r", "c"])
def test_labels_or_weights_truncated_under_their_map_are_an_error_not_sigbus(tmp_path, mode):
    # the kernel reads labels, targets and weights where they lie: a map's are read into memory first
    lines = script_lines(LABELS_SCRIPT, str(tmp_path), mode)
    assert [line.split()[0] for line in lines] == ["y", "sample_weight"]
    assert all("error at step 3 " in line and "truncated" in line for line in lines), lines
    assert "memory map of y " in lines[0] and "memory map of sample_weight " in lines[1], lines


@pytest.mark.parametrize("schedule", ["cosine", {"name": "step", "step_epochs": 1, "gamma": 0.5}, "exponential"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_fit_batches_gives_the_first_epoch_the_rates_fit_gives(seed_data, schedule, drop_last):
    # the steps per epoch are known from the first step (a counting pass), as fit knows them: the same
    # consecutive batches train with the same rates, and pieces of the run equal one call
    X, y = seed_data
    kw = dict(batch_size=64, epochs=3, shuffle=False, drop_last=drop_last, lr_schedule=schedule, optimizer="sgd",
              learning_rate=0.1)
    ref = fb.Trainer(**kw).fit(X, y)
    h = fb.Trainer(**kw).fit_batches(seed_generator(X, y, 64), n_outputs=2)
    assert np.array_equal(h.learning_rate, ref.learning_rate)
    np.testing.assert_allclose(h.loss, ref.loss, rtol=1e-5)
    cut = fb.Trainer(**kw)
    cb = fb.LambdaCallback(on_step_end=lambda t, step, loss: step == 7)
    cut.fit_batches(seed_generator(X, y, 64), n_outputs=2, callbacks=[cb])
    hc = cut.fit_batches(seed_generator(X, y, 64), n_outputs=2)
    assert np.array_equal(hc.learning_rate, h.learning_rate) and np.array_equal(hc.loss, h.loss)


@pytest.mark.parametrize("schedule, rates", [({"name": "exponential", "gamma": 0.5}, (1.0, 0.5, 0.25)),
                                             ({"name": "step", "step_epochs": 1, "gamma": 0.1}, (1.0, 0.1, 0.01))])
def test_an_epoch_based_schedule_keeps_one_rate_per_epoch_when_a_later_epoch_yields_more_batches(schedule, rates):
    """A generator's epochs need not yield the same number of batches: an epoch with more than the first had
    keeps its rate to its end (it moved to the next epoch's rate at the first epoch's batch count)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), (rng.normal(size=200) > 0).astype(int)
    calls = []

    def batches():  # the first pass and the first epoch: 3 batches; later epochs: 6
        calls.append(1)
        for i in range(3 if len(calls) <= 2 else 6):
            yield X[20 * i:20 * i + 20], y[20 * i:20 * i + 20]

    tr = fb.Trainer(hidden=(4,), epochs=3, batch_size=20, learning_rate=1.0, lr_schedule=schedule)
    h = tr.fit_batches(batches, n_outputs=2)
    assert np.bincount(h.epoch).tolist() == [3, 6, 6]
    for e, rate in enumerate(rates):
        np.testing.assert_allclose(h.learning_rate[h.epoch == e], rate, rtol=1e-12)
    calls.clear()
    warm = fb.Trainer(hidden=(4,), epochs=3, batch_size=20, learning_rate=1.0,
                      lr_schedule={**schedule, "warmup_steps": 8})  # a warm-up goes on by steps, not epochs
    r = warm.fit_batches(batches, n_outputs=2).learning_rate
    assert r[7] == rates[1] * 1.0 and r[6] < r[7]   # (step 8 ends the warm-up inside epoch 1's longer run)
    calls.clear()
    cos = fb.Trainer(hidden=(4,), epochs=3, batch_size=20, learning_rate=1.0, lr_schedule="cosine")
    r = cos.fit_batches(batches, n_outputs=2).learning_rate
    assert np.all(np.diff(r[:9]) < 0)   # a schedule by steps follows the steps (it was held at the epoch's last)


def test_a_generator_run_warms_up_and_decays_by_its_steps_when_epochs_differ_in_length():
    """The warm-up and a schedule by steps follow the run's steps, whatever the lengths of the epochs before: a
    warm-up went back down (or jumped to the full rate) at an epoch after one shorter or longer than the first,
    and cosine rose again there (they were given epoch * first epoch's batches + batch, not the step)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), (rng.normal(size=200) > 0).astype(int)
    lengths = [4, 4, 7, 2, 5]   # the first pass, then epochs of 4, 7, 2 and 5 batches
    calls = []

    def batches():
        n = lengths[len(calls)]
        calls.append(1)
        for i in range(n):
            yield X[20 * i:20 * i + 20], y[20 * i:20 * i + 20]

    tr = fb.Trainer(hidden=(4,), epochs=4, batch_size=20, learning_rate=1.0, warmup_steps=16)
    h = tr.fit_batches(batches, n_outputs=2)
    assert np.bincount(h.epoch).tolist() == [4, 7, 2, 5]
    steps = np.arange(h.n_steps)
    np.testing.assert_allclose(h.learning_rate, np.minimum(1.0, (steps + 1) / 16), rtol=1e-12)
    calls.clear()
    cos = fb.Trainer(hidden=(4,), epochs=4, batch_size=20, learning_rate=1.0, lr_schedule="cosine")
    r = cos.fit_batches(batches, n_outputs=2).learning_rate
    assert np.all(np.diff(r) <= 0) and np.all(np.diff(r[:15]) < 0)


def test_fit_batches_decides_the_task_and_classes_from_all_the_batches():
    """Data sorted by class: the first batch holds one class (one value: "a regression" by the rule, and one
    output), or a few of many integer targets ("a classification"). The run is what fit makes of all of them."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = np.repeat([0.0, 1.0, 2.0], 50)                    # as np.loadtxt gives iris' labels
    with pytest.warns(UserWarning, match="whole-number floats"):
        tr = fb.Trainer(epochs=2, batch_size=32)
        tr.fit_batches(seed_generator(X, y, 32))
    assert tr.run_state.loss == "cross_entropy" and tr.run_state.n_outputs == 3
    tr = fb.Trainer(epochs=2, batch_size=32, loss="cross_entropy")
    tr.fit_batches(seed_generator(X, y.astype(int), 32))    # (the last label only in the last batches)
    assert tr.run_state.n_outputs == 3
    targets = np.sort(rng.integers(25, 347, 150))[::-1]      # diabetes-like, sorted: 16 at a time look like classes
    with pytest.warns(UserWarning, match="more than 20 distinct whole-number values -> regression"):
        tr = fb.Trainer(epochs=1, batch_size=16)
        tr.fit_batches(seed_generator(X, targets, 16))
    assert tr.run_state.loss == "mse"
    ref = fb.Trainer(epochs=1, batch_size=16, shuffle=False, loss="mse")
    ref.fit_batches(seed_generator(X, targets, 16))
    assert np.array_equal(ref.get_params()[0][0], tr.get_params()[0][0])   # the same run as loss="mse" asked


def test_a_refused_batch_undoes_the_fit_batches_call(seed_data):
    """As fit: a batch its checks refuse (NaN, a label out of range) leaves the trainer as the call found it;
    a first call leaves it unstarted, and the call made again on good batches is the uninterrupted run."""
    X, y = seed_data
    X, y = X[:300].copy(), y[:300]
    kw = dict(batch_size=32, epochs=3, shuffle=False)
    ref = fb.Trainer(**kw)
    ref.fit_batches(seed_generator(X, y, 32), n_outputs=2)
    bad = X.copy()
    bad[100, 2] = np.nan
    tr = fb.Trainer(**kw)
    with pytest.raises(ValueError, match="NaN"):
        tr.fit_batches(seed_generator(bad, y, 32), n_outputs=2)
    assert not tr.started and tr.step == 0
    tr.fit_batches(seed_generator(X, y, 32), n_outputs=2, callbacks=[
        fb.LambdaCallback(on_epoch_end=lambda t, epoch, logs: epoch == 0)])   # one epoch, then stop
    params, step = [a.copy() for a in tr.get_params()[0]], tr.step
    assert step == 10
    with pytest.raises(ValueError, match="NaN"):
        tr.fit_batches(seed_generator(bad, y, 32), n_outputs=2)     # the resumed call's 4th batch is refused
    assert tr.step == step and all(np.array_equal(a, b) for a, b in zip(tr.get_params()[0], params))
    h = tr.fit_batches(seed_generator(X, y, 32), n_outputs=2)
    assert np.array_equal(h.loss, ref.history.loss)
    assert np.array_equal(tr.get_params()[0][0], ref.get_params()[0][0])


def test_a_callback_error_in_a_first_fit_batches_call_keeps_what_was_trained(seed_data):
    """Only a refused batch undoes the call: an error of the caller's callback keeps the steps before it (as fit)."""
    X, y = seed_data
    X, y = X[:300], y[:300]

    def boom(t, epoch, logs):
        if epoch == 1:
            raise ValueError("the caller's own error")

    tr = fb.Trainer(batch_size=32, epochs=3)
    with pytest.raises(ValueError, match="the caller's own error"):
        tr.fit_batches(seed_generator(X, y, 32), n_outputs=2, callbacks=[fb.LambdaCallback(on_epoch_end=boom)])
    assert tr.started and tr.step >= 10     # the first epoch's steps, at least (the failing closing's chunk undone)


def test_fit_batches_first_pass_counts_the_batches_and_heeds_a_stop():
    """The first pass counts the epoch's batches for a schedule (a cosine run called batches() 4 times for 2
    epochs), a single class still makes a two-output classifier (as fit), and stop() ends the pass (it ran on)."""
    import threading
    import time
    rng = np.random.default_rng(0)
    X, y = rng.random((100, 3)), np.arange(100) % 2
    calls = []

    def counting():
        calls.append(1)
        return ((X[i:i + 10], y[i:i + 10]) for i in range(0, 100, 10))

    fb.Trainer(hidden=(4,), batch_size=10, epochs=2, lr_schedule="cosine").fit_batches(counting)
    assert len(calls) == 3                           # the first pass, then the two epochs
    one = fb.Trainer(hidden=(4,), batch_size=10, epochs=1)
    one.fit_batches(lambda: ((X[i:i + 10], np.zeros(10, int)) for i in range(0, 100, 10)))
    assert one.run_state.n_outputs == 2               # (1 before: every probability 1.0, every loss 0)

    def slow():
        for i in range(0, 100, 10):
            time.sleep(0.05)
            yield X[i:i + 10], y[i:i + 10]

    tr = fb.Trainer(hidden=(4,), batch_size=10, epochs=2)
    timer = threading.Timer(0.12, tr.stop)
    timer.start()
    h = tr.fit_batches(slow)
    timer.join()
    assert h.n_steps == 0 and not tr.started          # stopped in the first pass: nothing began
    assert tr.fit_batches(slow).n_steps == 20
