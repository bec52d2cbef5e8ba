"""The app against a hostile user: closing mid-step, a bad file after a good one, markup in names and paths."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PySide6.QtWidgets import QPushButton

import fastbatch as fb
from fastbatch_gui import window as window_module
from fastbatch_gui import worker as worker_module

ABORT = "Destroyed while thread is still running"


def set_spins(window, **values):
    for name, value in values.items():
        window.controls.set_value(name, value)


def start_button(window):
    return window.findChild(QPushButton, "startButton")


def blocking_fit(monkeypatch, release_on_stop):
    """Trainer.fit that trains one real step, then blocks like a long kernel step.

    ``release_on_stop``: the block ends when the trainer's stop() is called (a step that ends in
    time); otherwise only when the test sets the returned ``release`` event (a step too long to wait for).
    """
    entered, release = threading.Event(), threading.Event()
    real_fit, real_stop = fb.Trainer.fit, fb.Trainer.stop

    def fit(self, X, y, steps=None, **kw):
        history = real_fit(self, X, y, steps=1, **kw)
        entered.set()
        release.wait(60)
        return history

    def stop(self):
        real_stop(self)
        if release_on_stop:
            release.set()
    monkeypatch.setattr(fb.Trainer, "fit", fit)
    monkeypatch.setattr(fb.Trainer, "stop", stop)
    return entered, release


# ---------------------------------------------------------------------- closing mid-run

def test_closing_mid_step_stops_the_worker_and_waits_for_it(qtbot, window, monkeypatch):
    entered, _ = blocking_fit(monkeypatch, release_on_stop=True)
    set_spins(window, records=1000, batch_size=10, epochs=5)
    start_button(window).click()
    assert entered.wait(10) and window.state == "running"
    window.close()
    assert not window.thread.isRunning()          # waited for: the step ended on the trainer's stop
    assert window.trainer.step == 1               # stopped within one step
    assert not worker_module._parked


def test_a_step_too_long_to_wait_for_is_left_to_end_on_its_own(qtbot, window, monkeypatch):
    monkeypatch.setattr(window_module, "CLOSE_WAIT_SECONDS", 0.2)
    entered, release = blocking_fit(monkeypatch, release_on_stop=False)
    set_spins(window, records=1000, batch_size=10, epochs=5)
    start_button(window).click()
    assert entered.wait(10)
    finished = []
    window.worker.finished.connect(lambda h: finished.append(h))   # a closed window is sent nothing more
    window.close()
    thread = window.thread
    assert thread.isRunning()                     # the close did not wait for the step
    assert (thread, window.worker) in worker_module._parked   # kept referenced, never destroyed running
    release.set()
    qtbot.waitUntil(lambda: not worker_module._parked, timeout=10_000)   # unparked once it ended
    assert not thread.isRunning() and window.trainer.step == 1


def test_closing_while_paused_or_idle_ends_the_thread(qtbot, window):
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        window.controls.step_batch_button.click()
    assert window.state == "paused"
    window.close()
    window.shutdown()                             # a second shutdown does nothing
    assert not window.thread.isRunning() and not window.lab.thread.isRunning()


CLOSE_MID_RUN = """
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
import fastbatch as fb
from fastbatch_gui import window as W
from fastbatch_gui.app import main
if sys.argv[1] == "long":     # one step far longer than the close waits: the thread is left to end alone
    W.CLOSE_WAIT_SECONDS = 0.2
    real_fit = fb.Trainer.fit
    def fit(self, *a, **kw):
        h = real_fit(self, *a, **kw)
        time.sleep(1.0)       # no GIL held, as in the kernel
        return h
    fb.Trainer.fit = fit
def close_mid_step():   # polled on the GUI thread: once a step is done, close while the next one trains
    w = next((w for w in app.topLevelWidgets() if isinstance(w, W.MainWindow)), None)
    if w is None or w.state != "running" or w.trainer.step < 1:
        return QTimer.singleShot(20, close_mid_step)
    print("closing at step", w.trainer.step, flush=True)
    w.close()
QTimer.singleShot(0, close_mid_step)
code = main(sys.argv[2:])
from fastbatch_gui import worker
print("parked at exit:", [t.isRunning() for t, _ in worker._parked], flush=True)
for w in app.topLevelWidgets():   # the window lets go of its thread: still no abort
    if isinstance(w, W.MainWindow):
        w.__dict__.clear()
import gc; gc.collect()
sys.exit(code)
"""


@pytest.mark.parametrize("mode, args", [
    # the real kernel, about a second a step: the close waits for the step and exits cleanly
    ("real", ["--dataset", "random", "--records", "3000", "--features", "1000", "--hidden", "1024",
              "--layers", "4", "--batch-size", "3000", "--epochs", "100", "--optimizer", "sgd"]),
    ("long", ["--records", "1000", "--batch-size", "10", "--epochs", "100"]),
])
def test_the_app_closed_mid_run_exits_0_without_an_abort(tmp_path, mode, args):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-c", CLOSE_MID_RUN, mode, *args, "--autorun", "--offscreen"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "closing at step" in r.stdout, r.stderr
    # a step too long to wait for: the window closed and the app exited while it still trained
    assert ("parked at exit: [True]" in r.stdout) == (mode == "long"), r.stdout
    assert r.returncode == 0, r.stderr
    assert ABORT not in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---------------------------------------------------------------------- a bad file after a good one

def write_good_csv(path, n=60):
    path.write_text("a,b,y\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(n)))
    return path


BAD_FILES = {
    "cell.csv": ("a,b,y\n1,x,0\n2,3,1\n", "'x' is not a number"),
    "empty.csv": ("", "is empty"),
    "header.csv": ("a,b,y\n", "no records"),
    "ragged.csv": ("a,b,y\n1,2\n", "2 values"),
    "blank.csv": ("a,b,y\n1,2,\n2,3,1\n", "blank"),
    "binary.npy": (b"\x93NUMPY garbage", ".npy"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_after_a_good_one_replaces_the_plan_and_disables_start(window, tmp_path, name):
    content, says = BAD_FILES[name]
    good = write_good_csv(tmp_path / "good.csv")
    assert window.load_file(str(good))
    assert window.readout_text().startswith("60 records") and start_button(window).isEnabled()
    bad = tmp_path / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert not window.load_file(str(bad))
    text = window.readout_text()
    assert text.startswith("⚠") and says in text and "60 records" not in text
    assert not start_button(window).isEnabled() and not window.controls.step_batch_button.isEnabled()
    set_spins(window, batch_size=7)               # another setting does not bring the old plan back
    assert window.readout_text() == text and not start_button(window).isEnabled()
    assert window.load_file(str(good))            # a good file re-enables Start
    assert window.readout_text().startswith("60 records") and start_button(window).isEnabled()


@pytest.mark.parametrize("change", ["fewer rows", "new values", "deleted"])
def test_a_data_file_changed_while_paused_leaves_the_run_on_the_records_it_started_with(qtbot, window, tmp_path,
                                                                                          change):
    path = write_good_csv(tmp_path / "data.csv", n=60)
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=2)
    jobs = []
    window.runRequested.connect(jobs.append)
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        window.controls.step_batch_button.click()
    X0 = jobs[0].X.copy()
    if change == "deleted":
        path.unlink()
    else:
        write_good_csv(path, n=30 if change == "fewer rows" else 60)
        path.write_text(path.read_text().replace(",0.5,", ",99.5,"))
        os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))   # a new mtime
    with qtbot.waitSignal(window.runEnded, timeout=10_000) as blocker:
        window.controls.pause_button.click()           # Resume
    assert blocker.args == ["finished"] and window.state == "idle" and window.trainer.step == 12
    assert all(np.array_equal(job.X, X0) for job in jobs)   # the records it started with, not the new ones
    window.reset()                                     # a new run reads the file again
    if change == "deleted":   # said, and Start stays on: it reads the file again once it is back
        assert window.readout_text().startswith("⚠") and "data.csv changed on disk" in window.readout_text()
        assert start_button(window).isEnabled()
    else:
        assert window.readout_text().startswith(f"{30 if change == 'fewer rows' else 60} records")


def new_mtime(path):
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))


@pytest.mark.parametrize("press", ["start", "step"])
@pytest.mark.parametrize("bad", [k for k in sorted(BAD_FILES) if k.endswith(".csv")] + ["deleted", "folder"])
def test_a_loaded_file_unreadable_at_start_is_read_again_at_the_next_press_and_trains_once_fixed(
        qtbot, window, tmp_path, monkeypatch, bad, press):
    from fastbatch import datasets
    path = write_good_csv(tmp_path / "data.csv", n=60)
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=2)
    reads = []
    real_load = datasets.load_table
    monkeypatch.setattr(datasets, "load_table", lambda *a, **kw: reads.append(1) or real_load(*a, **kw))
    if bad == "deleted":
        path.unlink()
    elif bad == "folder":
        path.unlink()
        path.mkdir()
    else:
        content, _ = BAD_FILES[bad]
        path.write_text(content)
        new_mtime(path)
    button = start_button(window) if press == "start" else window.controls.step_batch_button
    for attempt in range(2):   # pressed again while still bad: read again, refused again
        button.click()
        assert window.state == "idle" and window.trainer is None
        text = window.readout_text()
        assert text.startswith("⚠") and "data.csv changed on disk after it was loaded: Start (or Step) reads it " \
                                          "again" in text
        assert start_button(window).isEnabled() and window.controls.step_batch_button.isEnabled()
        if bad not in ("deleted", "folder"):
            assert len(reads) == attempt + 1   # each press read the file again
    if bad == "folder":
        path.rmdir()
    write_good_csv(path, n=30)                 # fixed on disk; no widget is touched
    new_mtime(path)
    assert start_button(window).isEnabled()
    if press == "start":
        with qtbot.waitSignal(window.runEnded, timeout=10_000) as blocker:
            button.click()
        assert blocker.args == ["finished"] and window.trainer.step == 6
    else:
        with qtbot.waitSignal(window.fitReturned, timeout=10_000):
            button.click()
        assert window.state == "paused" and window.trainer.step == 1
    assert window.run_plan.n_records == 30 and window.readout_text().startswith("30 records / batch 10")


def paused_on_a_file_then_changed(qtbot, window, tmp_path, monkeypatch, change):
    """A run of a 60-record CSV paused after one step, then the file rewritten with 90 records or deleted:
    (its path, the list each read of a data file from then on appends to)."""
    from fastbatch import datasets
    path = write_good_csv(tmp_path / "data.csv", n=60)
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=2)
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        window.controls.step_batch_button.click()
    assert window.state == "paused" and "changed on disk" not in window.readout_text()
    reads = []
    real_load = datasets.load_table
    monkeypatch.setattr(datasets, "load_table", lambda *a, **kw: reads.append(1) or real_load(*a, **kw))
    if change == "deleted":
        path.unlink()
    else:
        write_good_csv(path, n=90)
        new_mtime(path)
    return path, reads


@pytest.mark.parametrize("change", ["more rows", "deleted"])
def test_the_readout_while_paused_describes_the_runs_records_not_a_file_changed_on_disk(qtbot, window, tmp_path,
                                                                                       monkeypatch, change):
    path, reads = paused_on_a_file_then_changed(qtbot, window, tmp_path, monkeypatch, change)
    window.controls.set_value("learning_rate", 0.05)   # the paused readout is drawn again
    lines = window.readout_text().splitlines()
    assert lines[0].startswith("60 records / batch 10 -> 6 steps per epoch") and not reads   # not read again
    assert not any("read again" in line for line in lines)
    assert ("data.csv changed on disk since this run read it: the run goes on with its 60 records; the change "
            "applies to the next run (Reset, then Start)") in lines
    assert len(window.data()[0]) == 60 and not reads
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        window.controls.pause_button.click()           # Resume: the run ends on its own records
    assert window.trainer.step == 12
    window.reset()                                     # the next run's plan is the file's as it is now
    if change == "deleted":
        assert window.readout_text().startswith("⚠")
    else:
        assert window.readout_text().startswith("90 records") and reads


@pytest.mark.parametrize("end", ["stop", "finish"])
def test_once_the_run_ends_the_readout_describes_the_file_changed_under_it(qtbot, window, tmp_path, end):
    """The note that the paused run goes on with its records goes when the run ends: the readout then describes
    the file as it is now, what Start trains (it kept "the run goes on with its 60 records ... (Reset, then
    Start)" and the run's plan until a setting was touched)."""
    path = write_good_csv(tmp_path / "data.csv", n=60)
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=2)
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        window.controls.step_batch_button.click()
    write_good_csv(path, n=90)
    new_mtime(path)
    window.controls.set_value("learning_rate", 0.05)   # the paused readout is drawn again
    assert "the run goes on with its 60 records" in window.readout_text()
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        (window.controls.stop_button if end == "stop" else window.controls.pause_button).click()
    text = window.readout_text()
    assert text.startswith("90 records / batch 10 -> 9 steps per epoch") and "goes on" not in text
    assert "data.csv changed on disk after it was loaded: read again, 90 records to train on now" in text
    assert window.batch_map.plan is window.run_plan and window.trainer.step == (1 if end == "stop" else 12)


def target_items(window):
    box = window.controls.w["target"]
    return [box.itemData(i) for i in range(box.count())], box.currentData()


def test_the_target_box_follows_the_columns_of_a_file_read_again(qtbot, window, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(40)))
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=1)
    path.write_text("a,b,c,label\n" + "".join(f"{i},{i * 0.5},1,{i % 2}\n" for i in range(40)))
    new_mtime(path)
    start_button(window).click()                    # read again: its target 'y' is gone
    assert window.trainer is None and "target column 'y' not found" in window.readout_text()
    assert target_items(window) == (["a", "b", "c", "label", "y"], "y")   # the file's columns, 'y' as missing
    assert window.controls.w["target"].currentText() == "y  (not in the file now)"
    window.controls.set_value("target", "label")    # now it can be chosen
    assert target_items(window) == (["a", "b", "c", "label"], "label")
    assert window.readout_text().startswith("40 records")
    jobs = []
    window.runRequested.connect(jobs.append)
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        start_button(window).click()
    assert jobs[0].X.shape == (40, 3)
    window.reset()
    path.write_text("a,b,c,d,label\n" + "".join(f"{i},{i * 0.5},1,2,{i % 2}\n" for i in range(40)))
    new_mtime(path)                                 # the target survives; a column is new
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        start_button(window).click()
    assert target_items(window) == (["a", "b", "c", "d", "label"], "label") and jobs[-1].X.shape == (40, 4)


def test_a_data_file_changed_after_loading_is_read_again_at_start_and_every_number_follows_it(qtbot, window,
                                                                                             tmp_path):
    path = write_good_csv(tmp_path / "data.csv", n=40)
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=3)
    assert window.readout_text().startswith("40 records / batch 10 -> 4 steps per epoch")
    write_good_csv(path, n=60)                           # rewritten on disk; no widget is touched
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))   # a new mtime
    jobs = []
    window.runRequested.connect(jobs.append)
    with qtbot.waitSignal(window.runEnded, timeout=10_000) as blocker:
        start_button(window).click()
    assert blocker.args == ["finished"]
    # the plan, the status bar, the epoch lines and the batch map are those of the 60 records that trained
    assert len(jobs[0].X) == 60 and window.run_plan.n_records == 60 and window.trainer.step == 18
    assert window.run_plan.total_steps == window.trainer.plan.total_steps == 18
    assert window.status_labels["step"].text() == "step 18 / 18"
    assert window.status_labels["epoch"].text() == "epoch 3 / 3"
    assert window.status_labels["batch"].text() == "batch 6 / 6"
    assert [line.value() for _, line in window.loss_plot.epoch_lines] == [0, 6, 12, 18]
    assert window.batch_map.plan.n_records == 60 and window.batch_map.n_rows == 6
    lines = window.readout_text().splitlines()          # and the user is told
    assert lines[0].startswith("60 records / batch 10 -> 6 steps per epoch")
    assert "data.csv changed on disk after it was loaded: read again, 60 records to train on now" in lines


def test_an_unexpected_error_from_a_loader_reaches_the_readout(window, tmp_path, monkeypatch, capfd):
    from fastbatch import datasets
    good = write_good_csv(tmp_path / "good.csv")
    assert window.load_file(str(good))
    later = write_good_csv(tmp_path / "later.csv", n=30)

    def load(path, target=None, **kw):
        raise MemoryError()                       # not a ValueError: it must not escape to stderr
    monkeypatch.setattr(datasets, "load_table", load)
    assert not window.load_file(str(later))
    assert "MemoryError" in window.readout_text() and "later.csv" in window.readout_text()
    assert not start_button(window).isEnabled()
    assert "Traceback" not in capfd.readouterr().err


def test_choosing_a_dataset_after_a_bad_file_clears_its_error(window, tmp_path):
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    assert not window.load_file(str(bad))
    assert not start_button(window).isEnabled()
    combo = window.controls.w["dataset"]
    combo.activated.emit(combo.currentIndex())   # the dataset shown, picked again from the box
    assert window.readout_text().startswith("1,000 records") and start_button(window).isEnabled()


def test_an_unknown_target_leaves_the_loaded_file_as_it_was(window, tmp_path):
    good = write_good_csv(tmp_path / "good.csv")
    assert window.load_file(str(good), target="y")
    other = write_good_csv(tmp_path / "other.csv", n=40)
    assert not window.load_file(str(other), target="nope")
    assert "target column 'nope' not found" in window.readout_text()
    c = window.controls.config()
    assert c["data_path"] == str(good) and c["target"] == "y"
    assert not window.controls.w["target"].signalsBlocked()


# ---------------------------------------------------------------------- markup shows literally

def test_markup_in_column_names_and_paths_shows_literally(qtbot, window, tmp_path):
    folder = tmp_path / "a&b <i>"
    folder.mkdir()
    path = folder / "<b>bad.csv"
    path.write_text("<b>x</b>,y\n1,0\nz,1\n")       # a text feature: the error names the column
    assert not window.load_file(str(path))
    text = window.readout_text()
    assert "'<b>x</b>'" in text and "a&b <i>/<b>bad.csv" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in window.readout.text() and "a&amp;b &lt;i&gt;" in window.readout.text()
    good = folder / "<i>good.csv"
    good.write_text("<b>x</b>,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    assert window.load_file(str(good))
    label = window.controls.file_label
    assert label.text() == "<i>good.csv" and label.textFormat() == window_module.Qt.PlainText
    assert "a&amp;b &lt;i&gt;/&lt;i&gt;good.csv" in label.toolTip()
    assert window.controls.w["target"].itemText(0).startswith("<b>x</b>")   # combo items are plain text


def test_errors_and_the_step_panel_are_escaped(qtbot, window, monkeypatch):
    window._show_error(ValueError("bad <b>value</b> & more"))
    assert window.readout_text() == "⚠ bad <b>value</b> & more"
    assert "<b>value</b>" not in window.readout.text()
    window.step_panel.show_step({"step": 1, "epoch": 1, "batch": 1, "batches": 2, "batch_size": 3,
                                 "records": np.arange(3), "loss_before": 0.7, "loss_after": 0.6,
                                 "learning_rate": 0.1, "update_norm": None, "param_norm": 1.0})
    shown = window.step_panel.label.text()
    assert "<b>This step:</b>" in shown and "|Δparams|" in shown and "−" not in shown
    window.lab.show_error(ValueError("<i>no</i>"))
    assert "&lt;i&gt;no&lt;/i&gt;" in window.lab.status.text()
    for label in window.status_labels.values():
        assert label.textFormat() == window_module.Qt.PlainText


def test_bad_records_clear_when_a_good_target_is_chosen(window, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("kind,a,y\ncat,2,0\ndog,3,1\ncat,4,0\n")   # kind is text: a fine target, not a feature
    assert not window.load_file(str(path))
    assert "'cat' is not a number" in window.readout_text() and not start_button(window).isEnabled()
    set_spins(window, target="kind")
    assert window.readout_text().startswith("3 records") and start_button(window).isEnabled()


def test_the_command_line_turns_any_loader_error_into_a_usage_error(tmp_path, monkeypatch, capsys):
    from fastbatch import datasets
    from fastbatch_gui.app import build_parser, check_args

    def load(path, target=None):
        raise MemoryError()
    monkeypatch.setattr(datasets, "load", load)
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        check_args(parser, parser.parse_args(["--data", str(write_good_csv(tmp_path / "d.csv"))]))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--data: could not load" in err and "MemoryError" in err
    assert "Traceback" not in err


def test_data_too_big_for_the_machine_is_refused_before_it_is_made(qtbot, window, monkeypatch):
    from fastbatch import datasets
    from fastbatch_gui import data_memory
    made = []

    def make(*args):   # records what would have been made, and makes nothing
        made.append(args)
        raise ValueError("made")
    monkeypatch.setattr(datasets, "make", make)
    set_spins(window, records=500_000, features=100)
    assert "data: 500,000 × 100 float32 = 194.5 MB in memory" in window.readout_text()   # said before it is made
    monkeypatch.setattr(data_memory, "ram_bytes", lambda: 2 << 30)   # a 2 GB machine: 512 MB may be used
    set_spins(window, features=101)
    assert "need 793.5 MB of memory to make" in window.readout_text()
    assert "more than a quarter of this machine's 2.0 GB" in window.readout_text()
    assert not start_button(window).isEnabled()
    qtbot.wait(400)   # the preview timer has fired
    window.compare_batch_sizes("1, full")
    assert made == [] and window.lab.job is None


@pytest.mark.parametrize("dataset, features, by_class", [("moons", 2, True), ("random", 50, False),
                                                         ("random", 50, True), ("blobs", 30, True)])
def test_the_data_size_shown_is_what_making_it_takes(window, dataset, features, by_class):
    import tracemalloc
    from fastbatch_gui.data_memory import generated_bytes
    set_spins(window, dataset=dataset, records=20_000, features=features, sorted_by_class=by_class)
    tracemalloc.start()
    try:
        X, y = window.data()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kept, estimate = generated_bytes(20_000, features, X.dtype)
    assert kept == X.nbytes + y.nbytes and peak <= estimate < 2 * peak


@pytest.mark.parametrize("change", ["more rows", "deleted"])
def test_paused_the_readout_says_the_file_changed_on_disk_without_a_setting_touched(qtbot, window, tmp_path,
                                                                                   monkeypatch, change):
    """The README: paused, the readout says when the file changed. It said nothing until a setting was touched."""
    path, reads = paused_on_a_file_then_changed(qtbot, window, tmp_path, monkeypatch, change)
    qtbot.waitUntil(lambda: "data.csv changed on disk since this run read it" in window.readout_text(),
                    timeout=10_000)   # (the window looks at the file's size and time every second)
    lines = window.readout_text().splitlines()
    assert lines[0].startswith("60 records / batch 10 -> 6 steps per epoch") and not reads   # the run's; not read
    assert window.state == "paused" and window.trainer.step == 1


def test_idle_a_data_file_changed_on_disk_is_read_again_once_and_the_readout_follows(qtbot, window, tmp_path,
                                                                                    monkeypatch):
    from fastbatch import datasets
    path = write_good_csv(tmp_path / "data.csv", n=60)
    assert window.load_file(str(path))
    set_spins(window, batch_size=10, epochs=2)
    assert window.readout_text().startswith("60 records")
    reads = []
    real_load = datasets.load_table
    monkeypatch.setattr(datasets, "load_table", lambda *a, **kw: reads.append(1) or real_load(*a, **kw))
    qtbot.wait(2_500)                       # looks at an unchanged file read nothing
    assert not reads
    write_good_csv(path, n=90)
    new_mtime(path)
    qtbot.waitUntil(lambda: window.readout_text().startswith("90 records / batch 10 -> 9 steps per epoch"),
                    timeout=10_000)
    assert "data.csv changed on disk after it was loaded: read again, 90 records to train on now" in \
        window.readout_text()
    qtbot.wait(2_500)                       # read once per change, not at each look
    assert len(reads) == 1 and window.plan.n_records == 90
    path.write_text("a,b,y\n1,x,0\n")       # broken on disk: said, and Start stays on to read it again
    qtbot.waitUntil(lambda: window.readout_text().startswith("⚠"), timeout=10_000)
    assert "'x' is not a number" in window.readout_text() and window.controls.start_button.isEnabled()
