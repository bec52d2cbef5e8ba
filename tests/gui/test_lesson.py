"""The app as a lesson: stepping one batch at a time, exact epoch boundaries, the full-loss line, fair overlays."""
import numpy as np
import pytest
from PySide6.QtWidgets import QPushButton, QSlider

import fastbatch as fb
from fastbatch import datasets
from fastbatch_gui.lesson import RANDOM_HINT
from fastbatch_gui.loss_plot import FULL_LABEL, MEAN_LABEL, ema
from fastbatch_gui.worker import batch_records


def set_values(window, **values):
    for name, value in values.items():
        window.controls.set_value(name, value)


def press(qtbot, window, name, signal="fitReturned", timeout=10_000):
    with qtbot.waitSignal(getattr(window, signal), timeout=timeout):
        window.findChild(QPushButton, name).click()


def test_the_default_lesson_is_two_moons_that_learn(window):
    c = window.controls.config()
    assert (c["dataset"], c["features"], c["records"], c["batch_size"], c["epochs"]) == ("moons", 2, 1000, 64, 5)
    assert c["activation"] == fb.config.DEFAULTS["activation"] and c["optimizer"] == "sgd"
    set_values(window, dataset="random")
    assert RANDOM_HINT in window.readout_text()
    assert window.controls.w["dataset"].currentText() == "random labels (nothing to learn)"
    set_values(window, dataset="blobs")
    assert RANDOM_HINT not in window.readout_text()


def test_one_step_is_visible_with_its_epoch_start(qtbot, window):
    press(qtbot, window, "stepBatchButton")
    plot = window.loss_plot
    plot.redraw(force=True)
    trace = plot.current
    assert list(trace.raw.xData) == [0.5]                 # step 1 spans (0, 1]
    assert trace.raw.opts["symbol"] == "o"                # a marker: one point is visible
    assert [(e, line.value()) for e, line in plot.epoch_lines] == [(0, 0.0)]
    (x0, x1), (y0, y1) = plot.getPlotItem().getViewBox().viewRange()
    assert x0 <= 0 and x1 >= 1
    loss = trace.history.loss[0]
    assert y0 < loss < y1 and y1 - y0 >= 0.1 * loss     # padded: never less than 10% of the value shown
    assert "paused" in window.status_labels["elapsed"].text()
    assert window.status_labels["rate"].text() == ""      # no rate while paused


def test_boundaries_are_drawn_when_an_epochs_last_step_is_done(qtbot, window):
    set_values(window, batch_size=400)                    # 3 steps per epoch: 400, 400, 200 records
    plot = window.loss_plot
    bounds = []
    for _ in range(4):
        press(qtbot, window, "stepBatchButton")
        bounds.append([line.value() for _, line in plot.epoch_lines])
    assert bounds == [[0], [0], [0, 3], [0, 3]]
    plot.redraw(force=True)
    assert list(plot.current.raw.xData) == [0.5, 1.5, 2.5, 3.5]   # the short batch sits inside epoch 1
    assert plot.epoch_label_texts() == ["epoch 1", "epoch 2"]
    assert list(plot.current.means_item.xData) == [1.5]            # the mean in the middle of its epoch
    window.x_axis_combo.setCurrentIndex(window.x_axis_combo.findData("records"))
    plot.redraw(force=True)
    assert [line.value() for _, line in plot.epoch_lines] == [0, 1000]
    assert list(plot.current.raw.xData) == [200, 600, 900, 1200]


def test_the_step_panel_equals_the_librarys_loss_on_that_batch(qtbot, window):
    set_values(window, records=300, batch_size=32, epochs=2, validation_split=0.2)
    for _ in range(9):                                    # across the epoch boundary (8 steps per epoch)
        press(qtbot, window, "stepBatchButton")
    info = window.step_panel.info
    assert (info["step"], info["epoch"], info["batch"], info["batches"], info["batch_size"]) == (9, 2, 1, 8, 32)
    assert "step 9 · epoch 2 · batch 1 of 8 · 32 records" in window.step_panel.label.text()
    # the same run, made again with the library alone
    X, y = datasets.make("moons", 300, 2, seed=0)
    twin = fb.Trainer(**window.controls.trainer_params())
    twin.fit(X, y, steps=8)
    from fastbatch._data import split_indices
    train, _ = split_indices(300, 0.2, 0)
    rows = train[batch_records(window.run.plan, 0, True, 8)]
    assert np.array_equal(np.sort(train[info["records"]]), np.sort(rows))
    before = twin.evaluate(X[rows], y[rows])["loss"]
    twin.fit(X, y, steps=1)
    after = twin.evaluate(X[rows], y[rows])["loss"]
    assert info["loss_before"] == pytest.approx(before, rel=1e-5)   # the kernel's float32 batch loss
    assert info["loss_after"] == after
    assert info["update_norm"] > 0
    # the surface shows the batch (the shown records of it) highlighted
    assert set(window.surface_plot.highlighted) <= set(rows.tolist()) and len(window.surface_plot.highlighted) > 0


def test_the_surfaces_highlight_never_recolours_the_records(qtbot, window, monkeypatch):
    # a highlight rebuilt a brush and a pen for every drawn record (2,500), 2-3 times per press: Start and Step 1
    # batch froze the window 0.3-0.7 s; the records' colours are now set once per data set
    set_values(window, records=3000, batch_size=100, epochs=3, validation_split=0.2)
    sp = window.surface_plot
    qtbot.waitUntil(lambda: sp.isVisible() and len(sp.shown) == 2500, timeout=5_000)   # the preview drew them
    calls = []
    for name in ("setData", "setBrush", "setPen"):
        real = getattr(sp.points, name)
        monkeypatch.setattr(sp.points, name, lambda *a, _real=real, _name=name, **k: (calls.append(_name),
                                                                                       _real(*a, **k)))
    import fastbatch_gui.surface_plot as surface_module
    brushes = []
    real_brush = surface_module.pg.mkBrush
    monkeypatch.setattr(surface_module.pg, "mkBrush", lambda *a, **k: (brushes.append(a), real_brush(*a, **k))[1])
    lit = []
    real_batch = sp.batch_points.setData
    monkeypatch.setattr(sp.batch_points, "setData", lambda *a, **k: (lit.append(k), real_batch(*a, **k)))
    for _ in range(3):
        press(qtbot, window, "stepBatchButton")
    assert calls == [] and len(brushes) < 20         # the same records: never redrawn, no brush made per record
    assert len(lit) == 3                             # the batch drawn once a press
    info = window.step_panel.info
    train = window._rows[0]
    order = fb.epoch_order(window.run.plan.n_records, 0, 0, True)
    batch, seen = set(train[info["records"]].tolist()), set(train[order[:200]].tolist())
    assert set(sp.highlighted.tolist()) == batch & set(sp.shown.tolist()) and len(sp.highlighted)
    assert set(sp.faded.tolist()) == seen & set(sp.shown.tolist()) and len(sp.faded)
    assert len(sp.batch_points.data) == len(sp.highlighted) and len(sp.seen_points.data) == len(sp.faded)
    press(qtbot, window, "pauseButton", "runEnded")  # Resume to the end: no batch is "this step" any more
    assert calls == [] and len(sp.highlighted) == 0 and len(sp.faded) == 0


def test_full_loss_line_is_the_loss_on_all_training_records(qtbot, window):
    set_values(window, records=500, batch_size=50, epochs=3, validation_split=0.2)
    window.full_loss_check.setChecked(True)
    press(qtbot, window, "startButton", "runEnded")
    trace = window.loss_plot.current
    assert trace.full_steps == list(range(1, 25))   # a lesson-sized run: a point after every step
    X, y = window.data()
    from fastbatch._data import split_indices
    train, _ = split_indices(500, 0.2, 0)
    assert trace.full_loss[-1] == window.trainer.evaluate(X[train], y[train])["loss"]
    assert FULL_LABEL in window.loss_plot.legend_labels()
    assert list(trace.full_item.xData[-1:]) == [24.0]     # after k steps: at k


def test_scaled_rates_and_a_fair_overlay_by_records_seen(qtbot, window):
    set_values(window, lr_scaling="linear", reference_batch=64, epochs=1)
    rates = {}
    for batch in (8, 256):
        set_values(window, batch_size=batch)
        assert "× linear(batch" in window.readout_text()
        press(qtbot, window, "startButton", "runEnded")
        rates[batch] = window.trainer.learning_rate
    assert rates == {8: pytest.approx(0.1 * 8 / 64), 256: pytest.approx(0.1 * 256 / 64)}
    assert window.loss_plot.legend_labels()[:2] == ["batch 8, lr 0.0125", "batch 256, lr 0.4"]
    set_values(window, lr_scaling="sqrt", batch_size=16)
    assert window.controls.learning_rate() == pytest.approx(0.1 * 0.5)
    window.x_axis_combo.setCurrentIndex(window.x_axis_combo.findData("records"))
    window.log_x_check.setChecked(True)
    plot = window.loss_plot
    plot.redraw(force=True)
    # both runs end at 1,000 records seen; the boundary at 0 has no place on a log axis
    ends = [r.raw.xData[-1] for r in plot.runs]
    assert ends[0] == pytest.approx(1000 - 4) and ends[1] == pytest.approx(1000 - (1000 - 3 * 256) / 2)
    assert all(not line.isVisible() for r in plot.runs for e, line in r.lines if e == 0)


def test_sorted_by_class_makes_the_shuffle_lesson(window):
    set_values(window, sorted_by_class=True, dataset="blobs")
    X, y = window.data()
    assert list(y) == sorted(y)
    set_values(window, sorted_by_class=False)
    assert list(window.data()[1]) != sorted(window.data()[1])


def test_markers_only_while_few_points_and_the_smoothing_slider(qtbot, window):
    set_values(window, records=600, batch_size=1, epochs=1)
    press(qtbot, window, "startButton", "runEnded")
    plot = window.loss_plot
    plot.redraw(force=True)
    assert plot.current.raw.opts["symbol"] is None        # 600 points: a line
    slider = window.findChild(QSlider, "smoothingSlider")
    slider.setValue(600)
    plot.redraw(force=True)
    loss = window.trainer.history.loss
    # TensorBoard's debiased EMA
    last, expect = 0.0, []
    for i, v in enumerate(loss):
        last = last * 0.6 + 0.4 * v
        expect.append(last / (1 - 0.6 ** (i + 1)))
    assert np.allclose(plot.current.smooth.yData, expect)
    assert np.allclose(ema(loss, 0, len(loss), 0.6, 0.0), expect)


def test_stepping_after_raising_the_epochs_of_a_finished_run_continues_it(qtbot, window):
    set_values(window, records=200, batch_size=50, epochs=2)
    press(qtbot, window, "startButton", "runEnded")
    trainer = window.trainer
    set_values(window, epochs=4)
    assert "Start continues the finished run to 4 epochs" in window.readout_text()
    press(qtbot, window, "stepBatchButton", "fitReturned")      # the same run, one step on (it began a new run)
    assert window.trainer is trainer and trainer.step == 9 and window.state == "paused"
    assert "continues" not in window.readout_text()              # (it kept saying Start would continue it)
    press(qtbot, window, "stepEpochButton", "fitReturned")
    assert trainer.step == 12 and len(window.loss_plot.runs) == 1
    press(qtbot, window, "pauseButton", "runEnded")              # Resume: to the new end
    assert window.trainer is trainer and trainer.step == 16
    set_values(window, epochs=5)
    press(qtbot, window, "stepEpochButton", "fitReturned")      # a whole epoch on from the finished run's end
    assert window.trainer is trainer and trainer.step == 20


def test_legend_words_and_no_empty_legend_before_a_run(qtbot, window):
    assert not window.loss_plot.legend.isVisible()
    set_values(window, records=200, batch_size=50, epochs=2)
    press(qtbot, window, "startButton", "runEnded")
    assert window.loss_plot.legend.isVisible()
    assert window.loss_plot.legend_labels() == ["batch 50, lr 0.1", MEAN_LABEL]


def test_raising_epochs_after_a_run_ends_continues_it(qtbot, window):
    set_values(window, records=200, batch_size=50, epochs=2)
    press(qtbot, window, "startButton", "runEnded")
    trainer = window.trainer
    first = trainer.history.loss.copy()
    set_values(window, epochs=4)
    assert "Start continues the finished run to 4 epochs" in window.readout_text()
    press(qtbot, window, "startButton", "runEnded")
    assert window.trainer is trainer and trainer.step == 16 and window.loss_plot.current.n == 16
    assert len(window.loss_plot.runs) == 1
    assert [line.value() for _, line in window.loss_plot.epoch_lines] == [0, 4, 8, 12, 16]
    # bit-identical to a run started with 4 epochs
    twin = fb.Trainer(**window.controls.trainer_params())
    twin.fit(*window.data())
    assert np.array_equal(twin.history.loss, trainer.history.loss) and np.array_equal(first, twin.history.loss[:8])
    set_values(window, batch_size=40)                 # anything else changed: a new run
    assert "continues" not in window.readout_text()
