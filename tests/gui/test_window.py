"""The main window driven as a person would: spin boxes, buttons, and what the plot then shows."""
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QPushButton, QSpinBox

import fastbatch as fb
from fastbatch_gui.loss_plot import MAX_EPOCH_LINES, MEAN_LABEL
from fastbatch_gui.window import PROGRESS_SCALE, progress_value



def set_spins(window, **values):
    """Set controls by name, as a person would (each change fires the window's handlers)."""
    for name, value in values.items():
        window.controls.set_value(name, value)


def find(window, cls, name):
    w = window.findChild(cls, name)
    assert w is not None, f"no {cls.__name__} named {name}"
    return w


def run_to_end(qtbot, window, button="startButton", timeout=20_000):
    with qtbot.waitSignal(window.runEnded, timeout=timeout) as blocker:
        find(window, QPushButton, button).click()
    return blocker.args[0]


def test_widgets_have_their_object_names(window):
    for cls, name in [(QSpinBox, "recordsSpin"), (QSpinBox, "featuresSpin"), (QSpinBox, "batchSizeSpin"),
                      (QSpinBox, "epochsSpin"), (QDoubleSpinBox, "learningRateSpin"), (QSpinBox, "hiddenSpin"),
                      (QSpinBox, "seedSpin"), (QDoubleSpinBox, "validationSplitSpin"),
                      (QPushButton, "startButton"), (QPushButton, "stopButton"), (QPushButton, "pauseButton"),
                      (QPushButton, "stepBatchButton"), (QPushButton, "stepEpochButton"),
                      (QPushButton, "resetButton")]:
        find(window, cls, name)
    assert window.loss_plot.objectName() == "lossPlot"
    assert window.findChild(type(window.readout), "readoutLabel") is window.readout


def test_readout_follows_the_spin_boxes(window):
    set_spins(window, records=1000, batch_size=64, epochs=5)
    assert window.readout_text().splitlines()[0] == "1,000 records / batch 64 -> 16 steps per epoch (last batch 40) x 5 epochs = 80 steps"
    # the library's bytes per step for 2 -> 32 -> 2 at batch 64 in float32, plain SGD
    memory = fb.plan(1000, 64, 5, layers=(2, 32, 2), dtype="float32", optimizer="sgd").step_memory()["total"]
    assert window.readout_text().splitlines()[1].startswith(f"batch 64: {memory / 1024:,.1f} KB per step")
    find(window, QSpinBox, "batchSizeSpin").setValue(100)
    assert window.readout_text().splitlines()[0] == "1,000 records / batch 100 -> 10 steps per epoch x 5 epochs = 50 steps"
    find(window, QSpinBox, "recordsSpin").setValue(1001)
    find(window, QSpinBox, "epochsSpin").setValue(1)
    assert "11 steps per epoch (last batch 1) x 1 epoch = 11 steps" in window.readout_text()
    set_spins(window, validation_split=0.2, epochs=3)
    assert window.readout_text().startswith("801 records / batch 100 -> 9 steps per epoch")
    assert "200 records held out for validation" in window.readout_text()
    assert fb.split_sizes(1001, 0.2) == (801, 200)


def test_drop_last_error_disables_start_instead_of_crashing(window):
    set_spins(window, records=50, batch_size=64)
    start = find(window, QPushButton, "startButton")
    assert start.isEnabled()
    set_spins(window, drop_last=True)
    assert "drop_last=True with batch_size=64 larger than n_records=50" in window.readout_text()
    assert not start.isEnabled() and not find(window, QPushButton, "stepBatchButton").isEnabled()
    start.click()  # a disabled button does nothing
    assert window.trainer is None
    set_spins(window, batch_size=25)
    assert start.isEnabled()
    assert window.readout_text().splitlines()[0] == "50 records / batch 25 -> 2 steps per epoch x 5 epochs = 10 steps"


def test_a_run_plots_every_step_and_each_epoch_line(qtbot, window):
    set_spins(window, records=1000, batch_size=64, epochs=5, learning_rate=0.1)
    assert run_to_end(qtbot, window) == "finished"
    plot = window.loss_plot
    assert plot.n_plotted_steps == 80
    # the run's start and each epoch's end: boundary e at e x 16 steps
    assert [line.value() for _, line in plot.epoch_lines] == [0, 16, 32, 48, 64, 80]
    assert plot.epoch_label_texts() == [f"epoch {e}" for e in range(1, 6)]
    assert np.allclose(plot.current.epoch_means, window.trainer.history.epoch_loss)
    # each step at the middle of its interval (s-1, s]; each epoch mean at the middle of its epoch
    assert list(plot.current.raw.xData[:3]) == [0.5, 1.5, 2.5] and plot.current.raw.xData[-1] == 79.5
    assert list(plot.current.means_item.xData) == [8, 24, 40, 56, 72]
    assert plot.legend_labels() == ["batch 64, lr 0.1", MEAN_LABEL]
    assert window.status_labels["step"].text() == "step 80 / 80"
    assert window.progress_bar.value() == window.progress_bar.maximum() == PROGRESS_SCALE
    # the run is over: everything is editable again
    assert find(window, QSpinBox, "recordsSpin").isEnabled() and find(window, QPushButton, "startButton").isEnabled()
    assert not find(window, QPushButton, "stopButton").isEnabled()


def test_x_axis_switch_log_y_and_hover(qtbot, window):
    set_spins(window, records=1000, batch_size=64, epochs=5)
    run_to_end(qtbot, window)
    plot = window.loss_plot
    window.x_axis_combo.setCurrentIndex(window.x_axis_combo.findData("epoch"))
    plot.redraw()
    xs = plot.current.raw.xData
    assert xs[-1] == pytest.approx(79.5 / 16) and xs[15] == pytest.approx(15.5 / 16)
    assert [line.value() for _, line in plot.epoch_lines] == [0, 1, 2, 3, 4, 5]
    window.x_axis_combo.setCurrentIndex(window.x_axis_combo.findData("records"))
    plot.redraw()
    # the last (40-record) batch of each epoch spans records 960..1000 of it
    assert plot.current.raw.xData[-1] == 5000 - 20 and plot.current.raw.xData[15] == 1000 - 20
    assert plot.show_hover_at(1000 + 32) == (
        f"step 17 · epoch 2 · batch 1 (64 records)\nloss {window.trainer.history.loss[16]:.5g}")
    window.log_y_check.setChecked(True)
    assert plot.getPlotItem().ctrl.logYCheck.isChecked()


def test_stop_mid_run(qtbot, window):
    set_spins(window, records=2000, batch_size=1, epochs=1000)  # 2,000,000 steps: far more than we wait for
    with qtbot.waitSignal(window.worker.progress, timeout=10_000):
        find(window, QPushButton, "startButton").click()
    assert window.state == "running"
    for name in ("recordsSpin", "batchSizeSpin", "epochsSpin", "learningRateSpin"):
        assert not window.findChild(QSpinBox if name != "learningRateSpin" else QDoubleSpinBox, name).isEnabled()
    assert not find(window, QPushButton, "startButton").isEnabled()
    with qtbot.waitSignal(window.runEnded, timeout=5_000) as blocker:
        find(window, QPushButton, "stopButton").click()
    assert blocker.args == ["stopped"]
    tr = window.trainer
    assert 0 < tr.step < tr.total_steps and not tr.finished
    assert window.loss_plot.current.n == tr.step
    assert "stopped" in window.status_labels["elapsed"].text()
    assert window.state == "idle" and find(window, QSpinBox, "recordsSpin").isEnabled()


def test_event_loop_keeps_ticking_during_a_batch_size_1_run(qtbot, window):
    set_spins(window, records=2000, batch_size=1, epochs=1_000_000)
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    with qtbot.waitSignal(window.worker.started, timeout=5_000):
        find(window, QPushButton, "startButton").click()
    timer.start()
    qtbot.wait(1500)
    timer.stop()
    steps = window.trainer.step
    with qtbot.waitSignal(window.runEnded, timeout=5_000):
        find(window, QPushButton, "stopButton").click()
    assert steps > 1000  # it really trained meanwhile
    # the event loop kept running (its gaps are measured in benches/bench_app.py, not asserted here)
    assert len(ticks) > 10


def test_pause_step_learning_rate_change_and_resume(qtbot, window):
    set_spins(window, records=1000, batch_size=64, epochs=5, learning_rate=0.1)
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepBatchButton").click()
    assert window.state == "paused" and window.trainer.step == 1
    assert find(window, QPushButton, "pauseButton").text().endswith("Resume")
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepEpochButton").click()
    assert window.trainer.step == 16 and window.loss_plot.n_plotted_steps == 16
    # settings that fix the run are locked; the learning rate is not
    assert not find(window, QSpinBox, "batchSizeSpin").isEnabled()
    lr_spin = find(window, QDoubleSpinBox, "learningRateSpin")
    assert lr_spin.isEnabled()
    lr_spin.setValue(0.05)
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepBatchButton").click()
    h = window.trainer.history
    assert list(h.learning_rate) == [0.1] * 16 + [0.05]
    assert [(s, r) for s, r, _ in window.loss_plot.lr_lines] == [(16, 0.05)]
    assert window.loss_plot.lr_lines[0][2].label.format == "lr 0.05"
    assert window.loss_plot.legend_labels()[0] == "batch 64, lr 0.1 → 0.05"   # the legend follows
    assert run_to_end(qtbot, window, "pauseButton") == "finished"  # Resume
    assert window.trainer.step == 80 and window.loss_plot.n_plotted_steps == 80


def test_reset_discards_the_run(qtbot, window):
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepEpochButton").click()
    assert window.loss_plot.current is not None
    find(window, QPushButton, "resetButton").click()
    assert window.trainer is None and window.loss_plot.current is None and window.state == "idle"
    assert find(window, QSpinBox, "recordsSpin").isEnabled()
    assert window.status_labels["step"].text() == "no run yet"


def test_clear_runs_keeps_the_run_that_may_go_on(qtbot, window):
    set_spins(window, records=500, batch_size=50, epochs=2)
    run_to_end(qtbot, window)
    set_spins(window, batch_size=100)
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepBatchButton").click()
    assert window.state == "paused" and len(window.loss_plot.runs) == 2
    find(window, QPushButton, "clearRunsButton").click()
    plot = window.loss_plot
    assert [r.n for r in plot.runs] == [1] and plot.legend_labels() == ["batch 100, lr 0.1"]
    assert window.status_labels["step"].text() == "step 1 / 10"
    assert run_to_end(qtbot, window, "pauseButton") == "finished"   # Resume: the run is still plotted
    assert plot.current.n == 10 and plot.n_plotted_steps == 10
    assert window.status_labels["step"].text() == "step 10 / 10"
    run_to_end(qtbot, window)                                        # another run, then Reset: no run is left
    find(window, QPushButton, "resetButton").click()
    assert len(plot.runs) == 1 and window.trainer is None
    find(window, QPushButton, "clearRunsButton").click()             # ...so Clear runs clears them all
    assert not plot.runs and window.status_labels["step"].text() == "no run yet"


def test_last_runs_stay_overlaid_with_a_legend(qtbot, window):
    for batch in (64, 32, 16, 128):
        set_spins(window, records=500, batch_size=batch, epochs=2)
        run_to_end(qtbot, window)
    assert window.loss_plot.legend_labels() == ["batch 32, lr 0.1", "batch 16, lr 0.1", "batch 128, lr 0.1",
                                                MEAN_LABEL]
    assert [r.n for r in window.loss_plot.runs] == [32, 64, 8]
    # every run keeps its epoch boundaries, in its own colour
    assert [len(r.lines) for r in window.loss_plot.runs] == [3, 3, 3]
    assert {line.pen.color().name() for r in window.loss_plot.runs for _, line in r.lines} == \
        {r.color for r in window.loss_plot.runs}


def test_overlaid_runs_are_told_apart_by_what_differs_from_the_last(qtbot, window):
    set_spins(window, records=200, batch_size=50, epochs=2)
    run_to_end(qtbot, window)
    set_spins(window, seed=3)
    run_to_end(qtbot, window)
    set_spins(window, epochs=3, seed=5)
    run_to_end(qtbot, window)
    labels = [r.text for r in window.loss_plot.runs]
    assert labels == ["batch 50, lr 0.1", "batch 50, seed 3, lr 0.1", "batch 50, epochs 3, seed 5, lr 0.1"]  # (alike)
    find(window, QPushButton, "resetButton").click()         # told from the plot's last run, not a discarded one
    set_spins(window, seed=3, epochs=4)
    run_to_end(qtbot, window)
    set_spins(window, epochs=5)                             # continued: the plot's last run is now 5 epochs
    run_to_end(qtbot, window)
    set_spins(window, seed=4)
    run_to_end(qtbot, window)
    assert [r.text for r in window.loss_plot.runs][-2:] == ["batch 50, epochs 4, lr 0.1", "batch 50, seed 4, lr 0.1"]


def test_the_legend_sits_where_it_hides_no_point_of_the_curves(qtbot, window):
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication
    # a loss that falls at once, then stays low: points all along the bottom, early ones at the left
    set_spins(window, dataset="blobs", records=200, batch_size=20, epochs=5, learning_rate=0.5)
    run_to_end(qtbot, window)
    plot = window.loss_plot
    plot.redraw(force=True)
    QApplication.processEvents()
    vb, legend = plot.getPlotItem().getViewBox(), plot.legend
    rect = legend.sceneBoundingRect()
    hidden = 0
    for r in plot.runs:
        for item in (r.raw, r.means_item):
            xs, ys = item.getData()
            hidden += sum(rect.contains(vb.mapViewToScene(QPointF(float(x), float(y)))) for x, y in zip(xs, ys))
    assert legend.isVisible() and hidden == 0      # (bottom left, always: it hid early steps of a quick run)


def test_thousands_of_epochs_get_a_capped_number_of_lines(qtbot, window):
    set_spins(window, records=20, batch_size=20, epochs=5000)
    run_to_end(qtbot, window)
    plot = window.loss_plot
    assert plot.current.n == 5000
    assert 0 < plot.n_epoch_lines <= MAX_EPOCH_LINES + 1
    assert plot.epoch_lines[1][0] == 500  # a line every 500 epochs
    labels = plot.epoch_label_texts()     # thinned so that they never collide
    assert 2 <= len(labels) <= 12


def test_decision_surface_for_two_feature_data(qtbot, window):
    set_spins(window, dataset="moons", features=2, records=400, batch_size=32, epochs=3)
    qtbot.waitUntil(lambda: window.surface_plot.isVisible(), timeout=2_000)
    run_to_end(qtbot, window)
    surface = window.surface_plot
    qtbot.waitUntil(lambda: surface.steps_shown == 39, timeout=2_000)
    img = surface.image.image
    assert img.shape == (120, 120, 3) and img.dtype == np.uint8
    assert img.std() > 0  # the network separates something: the picture is not flat
    set_spins(window, dataset="random")
    assert window.controls.config()["features"] == 10   # the seed's random columns
    qtbot.waitUntil(lambda: not surface.isVisible(), timeout=2_000)


def test_a_quick_run_keeps_its_surface(qtbot, window):
    # Start right after the settings change: the pending preview must not wipe the result
    set_spins(window, dataset="moons", features=2, records=200, batch_size=50, epochs=2)
    run_to_end(qtbot, window)
    qtbot.wait(400)  # longer than the preview's settle delay
    assert window.surface_plot.steps_shown == 8 and window.surface_plot.image.image is not None


def test_validation_loss_is_plotted_per_epoch(qtbot, window):
    set_spins(window, dataset="xor", features=2, records=500, batch_size=50, epochs=4, validation_split=0.2)
    run_to_end(qtbot, window)
    trace = window.loss_plot.current
    assert window.trainer.history.n_steps == 32
    assert len(trace.val_item.yData) == 4
    assert np.allclose(trace.val_item.yData, window.trainer.history.val_loss)


def test_loaded_csv_with_a_chosen_target(qtbot, window, tmp_path):
    from fastbatch import datasets
    X, y = datasets.make("blobs", 120, 2, seed=1)
    path = tmp_path / "blobs.csv"
    rows = ["kind,x0,x1"] + [f"{c},{a},{b}" for (a, b), c in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")
    assert window.load_file(str(path), target="kind")
    assert not find(window, QSpinBox, "recordsSpin").isEnabled()
    set_spins(window, batch_size=50, epochs=2)
    first, memory, task = window.readout_text().splitlines()
    assert first == "120 records / batch 50 -> 3 steps per epoch (last batch 20) x 2 epochs = 6 steps"
    assert task.startswith("target: 3 distinct whole-number values -> classification")
    # the records and features boxes follow the file
    c = window.controls.config()
    assert (c["records"], c["features"]) == (120, 2)
    run_to_end(qtbot, window)
    assert window.trainer.history.n_steps == 6
    assert window.trainer.predict_proba(X).shape == (120, 3)


def test_a_files_labels_other_than_0_to_k_are_coded_and_a_value_beyond_float32_is_refused(qtbot, window, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = np.where(X[:, 0] > 0, 1, -1)
    (tmp_path / "neg.csv").write_text("a,b,label\n" + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(X, y)))
    assert window.load_file(str(tmp_path / "neg.csv"))
    assert "the labels -1, 1 are the network's classes 0 to 1" in window.readout_text()
    assert np.array_equal(window.data()[1], (y > 0).astype(int))
    years = 1990 + np.arange(100) % 20
    (tmp_path / "years.csv").write_text("a,b,year\n" + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(X, years)))
    assert window.load_file(str(tmp_path / "years.csv"))   # coded 0..19 here: no word of unused outputs
    assert "are the network's classes 0 to 19" in window.readout_text() and "never seen" not in window.readout_text()
    assert window.load_file(str(tmp_path / "neg.csv"))
    assert run_to_end(qtbot, window) == "finished"          # (the first fit raised: labels must be 0..k-1)
    set_spins(window, task="regression")                     # a regression fits the numbers themselves
    assert np.array_equal(window.data()[1], y) and "are the network's classes" not in window.readout_text()
    (tmp_path / "big.csv").write_text("a,b,label\n1,2,0\n3,1e39,1\n4,5,0\n")
    assert not window.load_file(str(tmp_path / "big.csv"))  # finite in the file, inf in float32
    assert "record 2, feature 2" in window.readout_text() and "too large for float32" in window.readout_text()
    assert not find(window, QPushButton, "startButton").isEnabled()
    (tmp_path / "bigy.csv").write_text("a,b,label\n1,2,0.5\n3,1,1e39\n4,5,2.5\n")
    assert not window.load_file(str(tmp_path / "bigy.csv"))
    assert "record 2, the target" in window.readout_text()
    (tmp_path / "near.csv").write_text("a,b,label\n3e38,1,0\n-3e38,2,1\n0,0,1\n")   # finite in float32
    assert window.load_file(str(tmp_path / "near.csv"))                      # (the surface's span overflowed)
    (tmp_path / "real.csv").write_text("a,b,t\n" + "".join(f"{i},{i % 3},{0.37 * i}\n" for i in range(30)))
    assert window.load_file(str(tmp_path / "real.csv"))
    set_spins(window, task="classification")                  # fractional targets are not labels: no coding
    assert "are the network's classes" not in window.readout_text()
    assert run_to_end(qtbot, window) == "errored" and "fractional" in window.readout_text()


def test_a_generated_dataset_after_a_file_gets_the_users_records_and_features_back(window, tmp_path):
    records = find(window, QSpinBox, "recordsSpin")
    records.setMaximum(100)                       # (a file longer than the box's maximum, kept small)
    set_spins(window, dataset="moons", records=90, features=7)
    path = tmp_path / "f.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(120)))
    assert window.load_file(str(path))
    c = window.controls.config()
    assert (c["records"], c["features"], records.maximum()) == (120, 2, 120)   # the boxes show the file's shape
    set_spins(window, dataset="moons")
    c = window.controls.config()
    assert (c["records"], c["features"], records.maximum()) == (90, 7, 100)    # ...and give the user's back
    assert window.readout_text().startswith("90 records") and window.data()[0].shape == (90, 7)


def test_many_classes_skip_the_decision_surface_and_say_so(qtbot, window, tmp_path):
    path = tmp_path / "labels.csv"                           # 101 classes (a label 9999 is coded as one of them)
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 5},{9999 if i == 0 else i % 100}\n" for i in range(200)))
    assert window.load_file(str(path))
    set_spins(window, task="classification")
    assert "no decision surface: the labels need 101 outputs" in window.readout_text()
    set_spins(window, batch_size=40, epochs=1, hidden=4)
    jobs = []
    window.runRequested.connect(jobs.append)
    assert run_to_end(qtbot, window) == "finished"
    assert jobs and all(job.grid is None for job in jobs)   # no 14,400 x 101 predict_proba on the worker
    assert not window.surface_plot.isVisible()


def test_exports(qtbot, window, tmp_path):
    set_spins(window, records=1000, batch_size=64, epochs=5)
    run_to_end(qtbot, window)
    window.export_history(tmp_path / "h.csv")
    window.export_plot(tmp_path / "p.png")
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,batch,batch_size,loss,learning_rate,records_seen"
    # numbered from 1, as the app, the demo and `fastbatch plan --steps` number them
    assert lines[1].startswith("1,1,1,64,") and lines[17].startswith("17,2,1,64,")
    assert len(lines) == 81 and lines[-1].startswith("80,5,16,40,") and lines[-1].endswith(",5000")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_standardize_on_by_default_and_the_task_box(qtbot, window):
    assert find(window, QCheckBox, "standardizeCheck").isChecked()
    params = window.controls.trainer_params()
    assert params["standardize"] is True and params["loss"] == "auto"
    set_spins(window, task="regression", records=200, batch_size=50, epochs=1)
    assert "-> regression" in window.readout_text()
    run_to_end(qtbot, window)
    assert window.trainer.evaluate(*window.data()).keys() >= {"loss"}
    assert not window.surface_plot.isVisible()   # no class regions for a regression


def test_a_failed_fit_reaches_the_window_as_the_exception(qtbot, window, monkeypatch):
    boom = fb.DivergenceError(3, 0, 3, 10.0, "the loss")

    def fit(self, X, y, steps=None, **kw):
        raise boom
    monkeypatch.setattr(fb.Trainer, "fit", fit)
    assert run_to_end(qtbot, window) == "errored"
    assert window.run.error is boom and window.state == "idle"
    said = window.readout_text()      # the library's message, its advice in the app's words
    assert str(boom).split(". Continue")[0] in said and "trainer.learning_rate" not in said
    # an errored run cannot be resumed: the advice names what does work (standardize is already checked)
    assert "lower the learning rate, then Start (or Step) trains a new run from the first step" in said
    assert "Resume" not in said and "standardize" not in said
    assert "failed" in window.status_labels["elapsed"].text()
    monkeypatch.undo()
    set_spins(window, standardize=False)
    run_to_end(qtbot, window)         # Start after the error: a new run, from the first step
    assert window.trainer.step == window.run_plan.total_steps and window.trainer.history.n_steps == 80
    window._show_error(boom)
    assert "lower the learning rate, or tick standardize, then Start" in window.readout_text()


def test_count_axes_tick_whole_numbers_with_separators(window):
    axis = window.loss_plot.getPlotItem().getAxis("bottom")
    assert all(spacing >= 1 for spacing, _ in axis.tickSpacing(0.0, 2.0, 500))
    assert axis.tickStrings([0.0, 1.0, 2_500_000.0], 1, 1) == ["0", "1", "2,500,000"]


def test_a_run_of_one_step(qtbot, window):
    set_spins(window, records=2, batch_size=2, epochs=1)
    assert run_to_end(qtbot, window) == "finished"
    plot = window.loss_plot
    assert plot.current.n == 1 and plot.n_plotted_steps == 1
    assert [e for e, _ in plot.epoch_lines] == [0, 1]
    assert np.allclose(plot.current.epoch_means, window.trainer.history.epoch_loss)


def test_tens_of_thousands_of_epochs_paused_and_resumed_stay_bounded(qtbot, window):
    set_spins(window, records=2, batch_size=2, epochs=100_000)   # one step an epoch
    pause = find(window, QPushButton, "pauseButton")

    def pause_once(history):   # at the first report, ~30 ms in: a one-step epoch run is ~30,000 steps on by then
        window.worker.progress.disconnect(pause_once)
        pause.click()          # mid-chunk
    window.worker.progress.connect(pause_once)
    with qtbot.waitSignal(window.fitReturned, timeout=10_000):
        find(window, QPushButton, "startButton").click()
    assert window.state == "paused" and 0 < window.trainer.step < 100_000
    assert run_to_end(qtbot, window, "pauseButton", timeout=60_000) == "finished"   # Resume
    plot = window.loss_plot
    plot.redraw(force=True)
    trace = plot.current
    assert trace.n == 100_000
    assert np.array_equal(trace.epoch_means, window.trainer.history.epoch_loss)   # each epoch's mean, once
    pixels = max(int(plot.getPlotItem().getViewBox().width()), 100)
    assert len(trace.raw.xData) <= 2 * pixels and len(trace.means_item.xData) <= 2 * pixels
    assert plot.n_epoch_lines <= MAX_EPOCH_LINES + 2


def test_a_whole_number_regression_target_of_two_features_gets_no_surface_and_trains_to_the_end(qtbot, window,
                                                                                                  tmp_path):
    rng = np.random.default_rng(0)                  # 2 features, 55 distinct whole numbers: the rule says regression
    X = rng.normal(size=(300, 2))
    y = np.concatenate([np.arange(55), rng.integers(0, 61, 245)])
    (tmp_path / "r.csv").write_text("a,b,age\n" + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(X, y)))
    assert fb.decide_task(y, "auto").kind == "regression"
    assert window.load_file(str(tmp_path / "r.csv"))
    assert "-> regression" in window.readout_text() and "no decision surface" not in window.readout_text()
    qtbot.waitUntil(lambda: not window._data_timer.isActive())   # the preview: points, and the map's colours
    assert not window.surface_plot.isVisible() and window.batch_map.labels is None
    set_spins(window, batch_size=50, epochs=2, optimizer="adam", learning_rate=0.01)
    jobs = []
    window.runRequested.connect(jobs.append)
    assert run_to_end(qtbot, window) == "finished"         # (predict_proba on a regression errored the run)
    assert jobs and all(job.grid is None for job in jobs) and window.batch_map.labels is None
    assert not window.surface_plot.isVisible()
    set_spins(window, task="classification")               # the task box still makes it classes
    qtbot.waitUntil(lambda: not window._data_timer.isActive())
    assert window.batch_map.labels is not None and window.surface_plot.isVisible()


def regression_csv(path, n=400, seed=0, feature_std=0.05):
    """A regression file of small features and whole-number targets in the hundreds (as scikit-learn's diabetes)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10)) * 0.05
    y = np.round(150 + 1500 * X @ rng.normal(size=10) / np.sqrt(10) + 20 * rng.normal(size=n)).astype(int)
    X = X * (feature_std / 0.05)
    path.write_text(",".join(f"f{i}" for i in range(10)) + ",target\n"
                    + "".join(",".join(map(str, r)) + f",{t}\n" for r, t in zip(X, y)))
    return X, y


def test_a_regression_target_in_the_hundreds_trains_with_the_defaults(qtbot, window, tmp_path):
    from fastbatch_gui.loss_plot import STANDARDIZED_LOSS_LABEL
    X, y = regression_csv(tmp_path / "d.csv")
    assert window.load_file(str(tmp_path / "d.csv"))
    assert "target" in find(window, QCheckBox, "standardizeCheck").text()
    window.full_loss_check.setChecked(True)
    assert run_to_end(qtbot, window) == "finished"          # (it diverged at step 5: features scaled, targets not)
    tr = window.trainer
    assert tr.config["standardize_target"] and np.isfinite(tr.history.loss).all()
    assert tr.history.epoch_loss[-1] < 0.5                   # it learned: the standardised target's variance is 1
    # History's losses are the standardised target's; so is every loss drawn: the full-loss line is evaluate's
    # (in the data's units) over the target's variance, within float rounding (1e-12 relative)
    scale = tr.run_state.scaling["y_scale"][0]
    assert window.loss_plot.current.full_loss[-1] == pytest.approx(tr.evaluate(X, y)["loss"] / scale ** 2, rel=1e-12)
    assert window.loss_plot.getPlotItem().getAxis("left").labelText == STANDARDIZED_LOSS_LABEL
    assert tr.predict(X).mean() == pytest.approx(y.mean(), rel=0.2)   # predictions in the data's units


def test_a_divergence_that_rewinds_the_run_clears_the_step_it_undid(qtbot, window, tmp_path):
    regression_csv(tmp_path / "d.csv", feature_std=1.0)
    assert window.load_file(str(tmp_path / "d.csv"))
    set_spins(window, standardize=False, learning_rate=0.3, batch_size=8)   # targets in the hundreds, unscaled
    for _ in range(30):
        with qtbot.waitSignal(window.fitReturned, timeout=10_000):
            find(window, QPushButton, "stepBatchButton").click()
        if window.run.ended == "errored":
            break
    assert isinstance(window.run.error, fb.DivergenceError)
    steps = window.trainer.step                        # the library went back to its last finite params
    assert steps < window.run.error.bad_step + 1
    # the panel showed the undone step (past the run's end): it goes, as after Reset
    assert window.step_panel.info is None and not window.step_panel.isVisible()
    assert window.loss_plot.current.n == steps


def test_a_text_target_is_described_by_its_class_names(qtbot, window, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 2))
    kinds = np.array(["virginica", "setosa", "versicolor"])[np.arange(90) % 3]
    (tmp_path / "iris2d.csv").write_text("petal length,petal width,species\n"
                                         + "".join(f"{a},{b},{k}\n" for (a, b), k in zip(X, kinds)))
    assert window.load_file(str(tmp_path / "iris2d.csv"))
    # (it said "3 distinct whole-number values": the codes the loader gave the names)
    assert "target: 3 class names (setosa, versicolor, virginica) -> classification" in window.readout_text()
    qtbot.waitUntil(lambda: not window._data_timer.isActive())
    pi = window.surface_plot.getPlotItem()             # the file's names on the surface
    assert (pi.getAxis("bottom").labelText, pi.getAxis("left").labelText) == ("petal length", "petal width")
    assert "blue: setosa, orange: versicolor, green: virginica" in window.surface_plot.toolTip()
    set_spins(window, dataset="moons")
    qtbot.waitUntil(lambda: not window._data_timer.isActive())
    assert pi.getAxis("bottom").labelText == "feature 1" and window.surface_plot.toolTip() == ""
    (tmp_path / "many.csv").write_text("a,b,k\n" + "".join(f"{i},{i % 7},c{i % 8}\n" for i in range(80)))
    assert window.load_file(str(tmp_path / "many.csv"))
    assert "target: 8 class names (c0, c1, c2, c3, c4, ...) -> classification" in window.readout_text()


def test_unscaled_features_are_said_in_the_readout_when_standardize_is_off(window, tmp_path):
    from fastbatch._data import unscaled_sample_message
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)) * np.array([1.0, 100.0, 10_000.0])   # scales 10,000x apart (as wine's)
    (tmp_path / "w.csv").write_text("a,b,c,k\n" + "".join(f"{a},{b},{c},{i % 3}\n" for i, (a, b, c) in enumerate(X)))
    assert window.load_file(str(tmp_path / "w.csv"))
    message = unscaled_sample_message(window.data()[0]).split(". Pass standardize=True")[0]
    assert message and message not in window.readout_text()   # standardized: nothing to say
    set_spins(window, standardize=False)
    assert message in window.readout_text()                     # (it went to stderr only, at the first fit)
    assert "Tick standardize" in window.readout_text()
    set_spins(window, dataset="moons")
    assert "unscaled" not in window.readout_text()


def last_epoch_of(history):
    """The library's last finished epoch, by History.metrics' names (the whole arrays: a test's few epochs)."""
    return {k: float(v[-1]) for k, v in history.metrics.items()}


def test_the_last_epochs_loss_and_accuracy_with_validation_are_shown(qtbot, window, monkeypatch):
    from fastbatch_gui.window import score_text
    label = window.score_label
    assert label.text() == "" and not label.isVisible()
    # the app reads the run's last epoch only, never History.metrics' arrays over every epoch
    metrics = fb.History.metrics
    monkeypatch.setattr(fb.History, "metrics", property(lambda h: pytest.fail("History.metrics read by the app")))
    set_spins(window, dataset="blobs", features=2, records=300, batch_size=30, epochs=6, validation_split=0.2)
    assert run_to_end(qtbot, window) == "finished"
    monkeypatch.setattr(fb.History, "metrics", metrics)
    last = last_epoch_of(window.trainer.history)
    assert set(last) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert window.scores == (6, last)                        # the library's numbers, not computed again
    text = label.text()
    assert text == score_text(6, last) and "standardised" not in text and label.isVisible()
    assert text.startswith(f"after epoch 6: loss {last['loss']:.4g}, accuracy {100 * last['accuracy']:.4g}%")
    assert text.endswith(f" · validation loss {last['val_loss']:.4g}, accuracy {100 * last['val_accuracy']:.4g}%")
    assert "accuracy" in label.toolTip()
    # a paused run shows its last finished epoch (not the one in progress); Reset clears it
    set_spins(window, epochs=100_000)
    find(window, QPushButton, "startButton").click()       # (continues the finished run, for a while)
    qtbot.waitUntil(lambda: window.trainer.step > 0)
    with qtbot.waitSignal(window.fitReturned, timeout=10_000):
        find(window, QPushButton, "pauseButton").click()
    epochs = window.trainer.step // window.run_plan.steps_per_epoch
    assert window.scores[0] == epochs and window.scores[1] == last_epoch_of(window.trainer.history)
    find(window, QPushButton, "stopButton").click()
    find(window, QPushButton, "resetButton").click()
    assert label.text() == "" and window.scores is None and not label.isVisible()


def test_a_regressions_r2_is_shown_and_its_losses_said_to_be_standardised(qtbot, window, tmp_path):
    regression_csv(tmp_path / "d.csv")
    assert window.load_file(str(tmp_path / "d.csv"))
    set_spins(window, epochs=8, validation_split=0.25)
    assert run_to_end(qtbot, window) == "finished"
    last = last_epoch_of(window.trainer.history)
    assert {"loss", "r2", "val_loss", "val_r2"} <= set(last)
    assert window.scores == (8, last)
    text = window.score_label.text()
    assert text == (f"after epoch 8: loss {last['loss']:.4g}, R² {last['r2']:.4g} · validation loss "
                    f"{last['val_loss']:.4g}, R² {last['val_r2']:.4g} (losses of the standardised target)")
    # without standardize the losses are in the target's own units: nothing to add
    set_spins(window, standardize=False, learning_rate=0.001)
    find(window, QPushButton, "resetButton").click()
    assert run_to_end(qtbot, window) == "finished"
    last = last_epoch_of(window.trainer.history)
    assert window.scores == (8, last) and last["loss"] > 100      # (squared errors of targets in the hundreds)
    assert window.score_label.text() == (
        f"after epoch 8: loss {last['loss']:.4g}, R² {last['r2']:.4g} · validation loss {last['val_loss']:.4g}, "
        f"R² {last['val_r2']:.4g}")


def test_the_score_squeezes_nothing_in_the_status_bar_while_running(qtbot, window, tmp_path):
    regression_csv(tmp_path / "d.csv")
    assert window.load_file(str(tmp_path / "d.csv"))
    set_spins(window, batch_size=8, epochs=1_000_000, learning_rate=0.01, validation_split=0.2)
    find(window, QPushButton, "startButton").click()
    qtbot.waitUntil(lambda: window.scores is not None and window.scores[0] >= 1000 and window.run.steps_per_second
                    == window.run.steps_per_second, timeout=20_000)
    window.layout().activate()                # (the labels change at each frame: laid out now, then measured)
    window.statusBar().layout().activate()
    # every status (step 123,456 / 45,000,000, the rate, the clock) is shown whole (the score, in the status bar,
    # cut them to 'step 644,420 / 45,' and '0:04.0 · runn')
    for key, label in window.status_labels.items():
        assert label.width() >= label.sizeHint().width(), (key, label.text())
    assert window.score_label.isVisible() and window.score_label.width() >= 300
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        find(window, QPushButton, "stopButton").click()


def test_the_step_panel_says_a_regressions_losses_are_the_standardised_targets(qtbot, window, tmp_path):
    regression_csv(tmp_path / "d.csv")
    assert window.load_file(str(tmp_path / "d.csv"))
    with qtbot.waitSignal(window.fitReturned, timeout=10_000):
        find(window, QPushButton, "stepBatchButton").click()
    assert "loss on this batch (of the standardised target):" in window.step_panel.label.text()
    find(window, QPushButton, "stopButton").click()
    set_spins(window, standardize=False, learning_rate=0.0001)
    with qtbot.waitSignal(window.fitReturned, timeout=10_000):
        find(window, QPushButton, "stepBatchButton").click()
    assert "loss on this batch:" in window.step_panel.label.text()


def test_a_run_of_more_steps_than_a_qt_int_holds_starts_shows_its_progress_and_stops(qtbot, window):
    # 3,000,000,000 steps: a QProgressBar (a C int) fed the step count raised OverflowError inside Start, leaving
    # the run "running" with no job, Stop raising, the settings locked and the error repeated every frame
    set_spins(window, records=3000, batch_size=1, epochs=1_000_000)
    assert window.plan.total_steps == 3_000_000_000 > 2 ** 31 - 1
    with qtbot.waitSignal(window.worker.progress, timeout=10_000):
        find(window, QPushButton, "startButton").click()
    assert window.state == "running" and window.run.job is not None
    qtbot.waitUntil(lambda: window.loss_plot.current.n > 0, timeout=5_000)
    window._on_frame()
    assert window.status_labels["step"].text().endswith(" / 3,000,000,000")
    assert window.progress_bar.maximum() == PROGRESS_SCALE and 0 <= window.progress_bar.value() < PROGRESS_SCALE
    with qtbot.waitSignal(window.runEnded, timeout=5_000) as blocker:
        find(window, QPushButton, "stopButton").click()
    assert blocker.args == ["stopped"] and window.state == "idle"
    assert find(window, QPushButton, "resetButton").isEnabled() and find(window, QSpinBox, "batchSizeSpin").isEnabled()
    # per mille of any count, full only at the end
    assert progress_value(0, 3_000_000_000) == 0 and progress_value(2_999_999_999, 3_000_000_000) == PROGRESS_SCALE - 1
    assert progress_value(1_500_000_000, 3_000_000_000) == PROGRESS_SCALE // 2
    assert progress_value(3_000_000_000, 3_000_000_000) == PROGRESS_SCALE


def test_a_start_that_raises_half_way_leaves_the_window_idle_and_usable(qtbot, window):
    set_spins(window, records=200, batch_size=10, epochs=2)
    real = window._update_status

    def broken():   # a window slot that fails as the run goes to running (as the progress bar's overflow did)
        if window.state == "running":
            raise RuntimeError("drawing failed")
        real()
    window._update_status = broken
    find(window, QPushButton, "startButton").click()
    assert window.state == "idle" and window.run.job is None and window.trainer is None
    assert "drawing failed" in window.readout_text() and window.loss_plot.runs == []
    assert find(window, QPushButton, "startButton").isEnabled() and find(window, QSpinBox, "recordsSpin").isEnabled()
    assert not find(window, QPushButton, "stopButton").isEnabled()
    assert not find(window, QPushButton, "pauseButton").isEnabled()
    # a slot of the run's start that fails (the batch map here) discards the run as well
    set_map = window.batch_map.set_run
    window._update_status = real
    window.batch_map.set_run = lambda *a: [][0]
    find(window, QPushButton, "stepBatchButton").click()
    assert window.state == "idle" and window.trainer is None and window.loss_plot.runs == []
    window.batch_map.set_run = set_map
    assert run_to_end(qtbot, window) == "finished" and window.trainer.finished
    assert window.status_labels["step"].text() == "step 40 / 40" and len(window.loss_plot.runs) == 1


def test_pause_after_stop_cannot_undo_the_stop(qtbot, window, monkeypatch):
    set_spins(window, records=2000, batch_size=1, epochs=1000)
    with qtbot.waitSignal(window.worker.progress, timeout=10_000):
        find(window, QPushButton, "startButton").click()
    job = window.run.job
    monkeypatch.setattr(job, "request_stop", lambda: None)   # the worker has not seen the stop yet
    find(window, QPushButton, "stopButton").click()
    assert window.state == "running" and not find(window, QPushButton, "pauseButton").isEnabled()
    window.pause_or_resume()                            # (a click that got through before the button went off)
    monkeypatch.undo()
    with qtbot.waitSignal(window.runEnded, timeout=5_000) as blocker:
        job.request_stop()
    assert blocker.args == ["stopped"] and window.state == "idle" and window.run.ended == "stopped"
    assert "stopped" in window.status_labels["elapsed"].text()
    assert not find(window, QPushButton, "pauseButton").isEnabled()


def test_the_readouts_scaled_rate_follows_a_rate_changed_while_paused(qtbot, window):
    set_spins(window, records=2000, batch_size=128, epochs=3, lr_scaling="linear", reference_batch=64,
              learning_rate=0.1)

    def rate_line():
        return [line for line in window.readout_text().splitlines() if line.startswith("learning rate")]
    assert rate_line() == ["learning rate 0.1 × linear(batch 128 / 64) = 0.2"]
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepBatchButton").click()
    assert window.state == "paused"
    set_spins(window, learning_rate=0.02)            # (it applies from the next step)
    assert rate_line() == ["learning rate 0.02 × linear(batch 128 / 64) = 0.04"]
    assert window.readout_text().splitlines()[0].startswith("2,000 records / batch 128 -> 16 steps per epoch")
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        find(window, QPushButton, "stepBatchButton").click()
    assert window.trainer.learning_rate == pytest.approx(0.04)
    with qtbot.waitSignal(window.runEnded, timeout=5_000):
        find(window, QPushButton, "stopButton").click()
    assert rate_line() == ["learning rate 0.02 × linear(batch 128 / 64) = 0.04"]


def drawn_label_overlaps(plot):
    """Pairs of visible epoch labels whose drawn boxes overlap (pixels)."""
    boxes = sorted((line.label.sceneBoundingRect().left(), line.label.sceneBoundingRect().right(), line.label.format)
                   for line in plot.epoch_labels if line.isVisible())
    return [(a[2], b[2]) for a, b in zip(boxes, boxes[1:]) if a[1] > b[0]]


def test_epoch_labels_never_cover_each_other(qtbot, window):
    # 143 epochs: labels every 20 epochs were narrower apart than 'epoch 121' is wide, and the last one, pushed
    # inside the plot after the spacing check, covered its neighbour ('epoch 121' read 'epoch 12')
    set_spins(window, records=100, batch_size=1, epochs=143)
    assert run_to_end(qtbot, window) == "finished"
    plot = window.loss_plot
    for log_x in (False, True):
        window.log_x_check.setChecked(log_x)
        plot.redraw(force=True)
        qtbot.wait(50)
        plot.redraw(force=True)
        texts = plot.epoch_label_texts()
        assert len(texts) >= 3 and texts[0] == "epoch 1", texts
        assert drawn_label_overlaps(plot) == [], (log_x, texts)
        (d0, d1), _ = plot.getPlotItem().getViewBox().viewRange()
        view = plot.getPlotItem().getViewBox().sceneBoundingRect()
        for line in plot.epoch_labels:                 # and each is inside the plot
            if line.isVisible():
                r = line.label.sceneBoundingRect()
                assert view.left() - 1 <= r.left() and r.right() <= view.right() + 1, line.label.format


def test_on_a_log_x_axis_the_first_epoch_means_are_drawn_mid_epoch(qtbot, window):
    # more epochs than pixel columns: the means were bucketed on a linear grid, so on a log axis one stroke at
    # step ~12 stood for epochs 1-6; the buckets now widen to the right as the log axis's columns do
    set_spins(window, records=20, batch_size=10, epochs=3000, hidden=4)   # 2 steps per epoch
    assert run_to_end(qtbot, window) == "finished"
    window.log_x_check.setChecked(True)
    plot = window.loss_plot
    plot.redraw(force=True)
    item, means = plot.current.means_item, window.trainer.history.epoch_loss
    assert len(means) == 3000 > plot.getPlotItem().getViewBox().width()
    x, y = np.asarray(item.xData), np.asarray(item.yData)
    assert list(x[:6]) == [1.0, 1.0, 3.0, 3.0, 5.0, 5.0]                # (min, max) at the middles of epochs 1-3,
    assert list(y[:6]) == pytest.approx(list(np.repeat(means[:3], 2)))  # each epoch its own bucket
    # to the right the buckets widen, and together they still hold every epoch's mean (min/max pairs)
    assert np.all(np.diff(x) >= 0) and x[-1] <= 6000 and y.max() == pytest.approx(means.max())
    window.log_x_check.setChecked(False)
    plot.redraw(force=True)
    assert item.xData[0] > 5.0                                          # (linear: a bucket of several epochs)


@pytest.mark.parametrize("task", ["auto", "classification"])
def test_a_classification_run_is_not_asked_to_standardise_its_target(qtbot, window, task):
    """The standardise box asked the library for standardize_target on every task, which means nothing for class
    labels (the library now warns of it): a classification's Trainer is made without it, a regression's with it."""
    import warnings
    set_spins(window, task=task, records=200, batch_size=50, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_to_end(qtbot, window) == "finished"
    assert window.trainer.config["standardize"] and not window.trainer.config["standardize_target"]
    set_spins(window, task="regression")
    assert run_to_end(qtbot, window) == "finished"
    assert window.trainer.config["standardize_target"]


def test_the_numpy_backend_is_not_handed_the_kernels_thread_count(window):
    """n_threads sizes the compiled kernel's team: with the numpy reference the app leaves it out (the library
    warns of a setting that changes nothing)."""
    set_spins(window, threads=2)
    assert window.controls.trainer_params()["n_threads"] == 2
    set_spins(window, backend="numpy")
    assert window.controls.trainer_params()["n_threads"] is None


def test_the_readout_says_a_batch_larger_than_the_records_is_all_of_them(window):
    """20 records at batch 64: each step trains on the 20 (the plan's effective_batch_size); the readout said
    "20 records / batch 64 -> 1 step per epoch" and "batch 64: ... per step" of a 20-record batch."""
    set_spins(window, records=20, batch_size=64, epochs=5)
    lines = window.readout_text().splitlines()
    assert lines[0] == "20 records / batch 64 (each batch is all 20 records) -> 1 step per epoch x 5 epochs = 5 steps"
    memory = fb.plan(20, 64, 5, layers=(2, 32, 2), dtype="float32", optimizer="sgd").step_memory()["total"]
    assert lines[1].startswith(f"batch 20: {memory / 1024:,.1f} KB per step")
    set_spins(window, validation_split=0.5)          # 10 records train: the batch is those 10
    assert window.readout_text().startswith("10 records / batch 64 (each batch is all 10 records) -> 1 step")
    set_spins(window, validation_split=0.0, batch_size=20)   # a batch of exactly the records: nothing to say
    assert window.readout_text().splitlines()[0] == "20 records / batch 20 -> 1 step per epoch x 5 epochs = 5 steps"


def test_the_legend_names_the_data_file_and_never_prints_none(qtbot, window, tmp_path):
    """Generated data, then a file: the legend spent its three slots on "dataset file, records 178, features 13"
    and left out the file's name; a .npz (whose target is its y) added "target None"."""
    from sklearn.datasets import load_wine
    X, y = load_wine(return_X_y=True)
    X, y = X[:60], y[:60]
    csv = tmp_path / "wine.csv"
    csv.write_text(",".join(f"f{i}" for i in range(X.shape[1])) + ",class\n"
                   + "".join(",".join(map(repr, row)) + f",{t}\n" for row, t in zip(X.tolist(), y.tolist())))
    np.savez(tmp_path / "wine.npz", X=X, y=y)
    labels = []

    def run():
        assert run_to_end(qtbot, window) == "finished"
        labels.append(window.loss_plot.legend_labels()[len(window.loss_plot.runs) - 1])   # (the newest run's)
    set_spins(window, records=100, batch_size=32, epochs=1)
    run()
    assert window.load_file(str(csv))
    run()
    assert window.load_file(str(tmp_path / "wine.npz"))
    run()
    set_spins(window, dataset="blobs")          # back to generated data: no file in its label
    run()
    set_spins(window, dataset="file")           # the same .npz again: named
    run()
    assert labels == ["batch 32, lr 0.1", "batch 32, file wine.csv, target class, lr 0.1",
                      "batch 32, file wine.npz, lr 0.1",
                      "batch 32, dataset blobs, records 100, features 2, lr 0.1", "batch 32, file wine.npz, lr 0.1"]


def type_into(qtbot, spin, text):
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)


def test_a_rate_typed_out_of_range_or_half_typed_is_said_and_never_trained_unseen(qtbot, window):
    """Typing 20 (above the maximum 10) or '5e-' in the rate box while paused, then pressing Step, put the previous
    rate back without a word (Qt's default correction); a Step clicked while the text was still being typed
    trained with the previous rate while the box showed the new one."""
    set_spins(window, records=1000, batch_size=64, epochs=5, learning_rate=0.1)
    step = find(window, QPushButton, "stepBatchButton")
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        step.click()
    window.activateWindow()
    lr = find(window, QDoubleSpinBox, "learningRateSpin")
    type_into(qtbot, lr, "20")
    assert lr.text() == "20" and lr.value() == 0.1
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        qtbot.mouseClick(step, Qt.LeftButton)     # the box loses focus, then Step trains
    assert lr.text() == "10" and lr.value() == 10.0             # the nearest rate, in the box
    assert window.trainer.history.learning_rate[-1] == 10.0     # what trained is what is shown
    assert "learning rate: 20 is above its maximum 10: set to 10" in window.readout_text().splitlines()
    type_into(qtbot, lr, "5e-")
    assert "set to 10" not in window.readout_text()            # typing again: the old note goes
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        qtbot.mouseClick(step, Qt.LeftButton)
    assert lr.text() == "10" and window.trainer.history.learning_rate[-1] == 10.0
    assert "learning rate: '5e-' is not a number: kept 10" in window.readout_text().splitlines()
    type_into(qtbot, lr, "0")                                   # below the minimum
    qtbot.keyClick(lr.lineEdit(), Qt.Key_Return)
    assert lr.value() == 1e-05 and "learning rate: 0 is below its minimum 1e-05: set to 1e-05" in window.readout_text()
    type_into(qtbot, lr, "0.05")                                # typed, not yet taken: Step takes it first
    with qtbot.waitSignal(window.fitReturned, timeout=5_000):
        step.click()
    assert lr.value() == 0.05 and window.trainer.history.learning_rate[-1] == 0.05
    assert "learning rate:" not in window.readout_text()        # a rate taken as typed: nothing to say


def test_a_whole_number_box_says_what_became_of_text_it_could_not_take(qtbot, window):
    """The integer boxes put the previous value back without a word too (records '0' became 1,000 again)."""
    records, epochs = find(window, QSpinBox, "recordsSpin"), find(window, QSpinBox, "epochsSpin")
    window.activateWindow()
    type_into(qtbot, records, "0")
    epochs.setFocus()                                           # the edit ends
    assert records.value() == 1 and "records: 0 is below its minimum 1: set to 1" in window.readout_text()
    qtbot.keyClick(epochs.lineEdit(), Qt.Key_A, Qt.ControlModifier)
    qtbot.keyClick(epochs.lineEdit(), Qt.Key_Delete)
    assert epochs.text() == ""
    find(window, QSpinBox, "threadsSpin").setFocus()
    assert epochs.value() == 5 and "epochs: empty is not a number: kept 5" in window.readout_text()
    window.controls.commit_typing()                             # 'auto' (threads 0) is a value, not a correction
    assert not any(line.startswith("threads") for line in window.readout_text().splitlines())

