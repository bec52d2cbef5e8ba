"""The batch-size lab: the library's comparison, shown; its runs equal separate Trainer runs bit for bit."""
import time

import numpy as np
import pytest
from PySide6.QtWidgets import QPushButton, QTableWidget

import fastbatch as fb
from fastbatch_gui.batch_lab import parse_sizes


def test_parse_sizes():
    assert parse_sizes("1, 8,32 ; full", 1000) == [1, 8, 32, 1000]
    assert parse_sizes("5000, 8", 1000) == [8, 1000]
    for bad in ("", "0", "eight"):
        with pytest.raises(ValueError, match="batch size"):
            parse_sizes(bad, 1000)


def test_the_lab_runs_equal_separate_trainer_runs(qtbot, window):
    for name, value in (("records", 400), ("epochs", 3), ("lr_scaling", "linear"), ("reference_batch", 32)):
        window.controls.set_value(name, value)
    window.lab.sizes_edit.setText("8, 32, full")
    with qtbot.waitSignal(window.lab.done, timeout=30_000):  # on the GUI thread, after the results are in
        window.findChild(QPushButton, "compareBatchSizesButton").click()
    lab = window.lab
    assert sorted(lab.histories) == [8, 32, 400]
    params = window.controls.trainer_params()
    params.pop("batch_size")
    X, y = window.data()
    for b in (8, 32, 400):
        params["learning_rate"] = fb.scaled_learning_rate(0.1, b, 32, "linear")
        alone = fb.Trainer(**params, batch_size=b, track_noise=True).fit(X, y)
        assert np.array_equal(alone.loss, lab.histories[b].loss)
    table = window.findChild(QTableWidget, "comparisonTable")
    assert table.rowCount() == 3 and table.item(0, 0).text() == "8" and table.item(2, 0).text() == "400"
    assert sum(table.item(i, table.columnCount() - 1).text() == "★ suggested" for i in range(3)) == 1
    assert window.findChild(type(lab.plot), "comparisonPlot") is lab.plot
    assert len(lab.legend.items) == 3


def test_headless_comparison_export(tmp_path):
    from test_app import run_app
    r = run_app("--compare-batch-sizes", "16,64", "--records", "320", "--epochs", "2",
                "--export-comparison", "c.csv", "--exit-when-done", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "batch_size,step,epoch,records_seen,seconds,loss"
    assert len(lines) == 1 + 40 + 10
    assert lines[1].startswith("16,1,1,16,") and lines[41].startswith("64,1,1,64,")


def long_comparison(qtbot, window):
    """Start "1, full" on 20,000 records x 200 epochs (batch 1: 4,000,000 steps, far more than a test waits for)."""
    for name, value in (("records", 20_000), ("epochs", 200)):
        window.controls.set_value(name, value)
    window.lab.sizes_edit.setText("1, full")
    window.lab.button.click()
    qtbot.waitUntil(lambda: window.lab.status.text().startswith("run 1 of 2: batch 1 · "), timeout=5_000)


def test_a_comparison_shows_its_run_is_cancelled_within_a_step_and_never_trains_alongside_a_run(qtbot, window):
    lab, c = window.lab, window.controls
    compare_text = lab.button.text()
    long_comparison(qtbot, window)
    assert "Cancel" in lab.button.text() and lab.button.isEnabled()
    for button in (c.start_button, c.step_batch_button, c.step_epoch_button):
        assert not button.isEnabled()
    assert not window.lab_note.isHidden() and "comparison is running" in window.lab_note.text()
    window.start()   # as the command line would: refused, with the reason
    assert window.state == "idle" and "comparison is running" in window.readout_text()

    t0 = time.perf_counter()
    with qtbot.waitSignal(lab.done, timeout=5_000) as blocker:
        lab.button.click()
    assert time.perf_counter() - t0 < 2.0   # the library stops within ~0.1 s; the rest is a loaded machine
    assert isinstance(blocker.args[0], InterruptedError) and lab.histories == {}
    assert "cancelled" in lab.status.text() and lab.button.text() == compare_text
    assert c.start_button.isEnabled() and window.lab_note.isHidden()

    window.controls.set_value("batch_size", 1)   # and the other way round
    with qtbot.waitSignal(window.worker.progress, timeout=10_000):
        c.start_button.click()
    assert not lab.button.isEnabled() and "run is training" in lab.note.text() and not lab.note.isHidden()
    with qtbot.waitSignal(window.runEnded, timeout=5_000):
        c.stop_button.click()
    assert lab.button.isEnabled() and lab.note.isHidden()


def test_closing_during_a_comparison_ends_its_thread_at_once(qtbot, window):
    long_comparison(qtbot, window)
    t0 = time.perf_counter()
    window.close()
    assert not window.lab.thread.isRunning() and time.perf_counter() - t0 < 1.5


def test_a_regressions_standardised_losses_are_labelled_so_in_the_lab(qtbot, window, tmp_path):
    from test_window import regression_csv
    regression_csv(tmp_path / "d.csv")                     # targets in the hundreds
    assert window.load_file(str(tmp_path / "d.csv"))
    window.controls.set_value("epochs", 2)
    window.controls.set_value("validation_split", 0.25)
    window.lab.sizes_edit.setText("32, full")
    with qtbot.waitSignal(window.lab.done, timeout=30_000):
        window.findChild(QPushButton, "compareBatchSizesButton").click()
    lab = window.lab
    assert lab.rows[0]["train_loss"] < 10                  # History's: the standardised target's, not in the 1000s
    table = window.findChild(QTableWidget, "comparisonTable")
    titles = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    assert "train loss\n(standardised)" in titles and "val loss\n(standardised)" in titles
    assert "standardised target" in lab.plot.getPlotItem().getAxis("left").labelText
    # unticked: the target's own units, said as before
    window.controls.set_value("standardize", False)
    window.controls.set_value("learning_rate", 0.001)
    with qtbot.waitSignal(window.lab.done, timeout=30_000):
        window.findChild(QPushButton, "compareBatchSizesButton").click()
    titles = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    assert "train loss" in titles and not any("standardised" in t for t in titles)
    assert "standardised" not in lab.plot.getPlotItem().getAxis("left").labelText


def test_a_diverged_comparison_names_its_batch_size_and_what_the_app_can_do(qtbot, window, tmp_path):
    from test_window import regression_csv
    regression_csv(tmp_path / "d.csv", feature_std=1.0)
    assert window.load_file(str(tmp_path / "d.csv"))
    for name, value in (("standardize", False), ("learning_rate", 0.3), ("epochs", 3)):
        window.controls.set_value(name, value)
    window.lab.sizes_edit.setText("8, 64")
    with qtbot.waitSignal(window.lab.done, timeout=30_000) as blocker:
        window.findChild(QPushButton, "compareBatchSizesButton").click()
    assert isinstance(blocker.args[0], fb.DivergenceError)
    text = window.lab.status.text()
    assert "batch 8 diverged: the loss grew beyond" in text
    # (it gave the library's advice for a script: 'trainer.learning_rate /= 100', 'standardize=True', and
    # where 'the trainer is back to': a comparison's runs are not kept)
    assert "trainer" not in text and "standardize=True" not in text
    assert "lower the learning rate, or tick standardize" in text
