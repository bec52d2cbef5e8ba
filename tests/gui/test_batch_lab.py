"""The batch-size lab: the library's comparison, shown; its runs equal separate Trainer runs bit for bit."""
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
