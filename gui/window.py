"""The main window: wires the controls, the worker thread, the plots and the status bar together.

States: ``idle`` (no run going; settings editable), ``running`` (the worker trains),
``paused`` (a run in progress that is not training; only the learning rate may change).
"""
import collections
import os
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QProgressBar,
                               QScrollArea, QSplitter, QVBoxLayout, QWidget)

import fastbatch as fb
from fastbatch import datasets

from .controls import ControlPanel
from .loss_plot import X_AXES, LossPlot
from .surface_plot import SurfacePlot
from .worker import Job, start_worker_thread

IDLE, RUNNING, PAUSED = "idle", "running", "paused"


def training_records(n, split):
    """Records left for training after the validation split (as the Trainer splits them)."""
    n_val = int(round(n * split)) if split > 0 else 0
    if split > 0 and (n_val < 1 or n - n_val < 1):
        raise ValueError(f"validation split {split:g} of {n} records leaves {n_val} for validation "
                         f"and {n - n_val} for training; both need at least 1")
    return n - n_val, n_val


def _clock(seconds):
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


class MainWindow(QMainWindow):
    """fastbatch's desktop app: ``MainWindow().show()`` inside a QApplication."""

    runRequested = Signal(object)   # a Job, to the worker thread
    fitReturned = Signal()          # each time a fit call returns (run over, paused or stepped)
    runEnded = Signal(str)          # the run is over: "finished", "stopped" or "errored"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("fastbatch: records, batches, steps, epochs")
        self.resize(1240, 820)
        self.state = IDLE
        self.trainer = None
        self.plan = None            # the plan the settings describe (None when they are invalid)
        self.plan_error = None
        self.run_plan = None        # the plan of the current run
        self.last_error = None
        self._job = None
        self._after_fit = None      # "pause" or "stop", when the user asked the fit to return
        self._latest = None         # the newest History from the worker, not yet drawn
        self._data_key, self._data = None, None
        self._elapsed, self._fit_t0 = 0.0, None
        self._rate_samples = collections.deque()
        self._rates = (float("nan"), float("nan"))

        self.controls = ControlPanel()
        scroll = QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.sizeHint().width() + 24)

        self.readout = QLabel()
        self.readout.setObjectName("readoutLabel")
        self.readout.setWordWrap(True)
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.x_axis_combo = QComboBox()
        self.x_axis_combo.setObjectName("xAxisCombo")
        for key, text in X_AXES.items():
            self.x_axis_combo.addItem(text, key)
        self.log_y_check = QCheckBox("log scale")
        self.log_y_check.setObjectName("logYCheck")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("x axis:"))
        bar.addWidget(self.x_axis_combo)
        bar.addSpacing(12)
        bar.addWidget(self.log_y_check)
        bar.addStretch(1)
        legend_hint = QLabel("<span style='color:#666'>thin line: loss of each step · ● mean loss of each epoch"
                             " · ▲ validation loss at each epoch end · dotted lines: epoch starts ·"
                             " hover for step, epoch, batch and loss</span>")
        for b in (self.controls.export_csv_button, self.controls.export_png_button,
                  self.controls.clear_runs_button):
            bar.addWidget(b)

        self.loss_plot = LossPlot()
        self.surface_plot = SurfacePlot()
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.loss_plot)
        self.splitter.addWidget(self.surface_plot)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        right = QWidget()
        v = QVBoxLayout(right)
        v.setContentsMargins(4, 6, 6, 4)
        v.addWidget(self.readout)
        v.addLayout(bar)
        v.addWidget(self.splitter, 1)
        legend_hint.setWordWrap(True)
        v.addWidget(legend_hint)
        main = QSplitter(Qt.Horizontal)
        main.addWidget(scroll)
        main.addWidget(right)
        main.setStretchFactor(1, 1)
        main.setChildrenCollapsible(False)
        self.setCentralWidget(main)
        self._build_status_bar()

        self.thread, self.worker = start_worker_thread()
        self.runRequested.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        self.worker.surface.connect(self._on_surface)
        self.worker.finished.connect(self._on_fit_returned)
        self.worker.errored.connect(self._on_errored)

        c = self.controls
        c.changed.connect(self._settings_changed)
        c.fileChosen.connect(self.load_file)
        c.start_button.clicked.connect(self.start)
        c.pause_button.clicked.connect(self.pause_or_resume)
        c.step_batch_button.clicked.connect(self.step_batch)
        c.step_epoch_button.clicked.connect(self.step_epoch)
        c.stop_button.clicked.connect(self.stop)
        c.reset_button.clicked.connect(self.reset)
        c.export_csv_button.clicked.connect(self._export_csv_clicked)
        c.export_png_button.clicked.connect(self._export_png_clicked)
        c.clear_runs_button.clicked.connect(self.loss_plot.clear_runs)
        self.x_axis_combo.currentIndexChanged.connect(
            lambda: self.loss_plot.set_x_axis(self.x_axis_combo.currentData()))
        self.log_y_check.toggled.connect(self.loss_plot.set_log_y)

        self._frame = QTimer(self)           # status and curves follow the worker at ~30 fps
        self._frame.setInterval(33)
        self._frame.timeout.connect(self._on_frame)
        self._frame.start()
        self._data_timer = QTimer(self)      # regenerate the preview data once the spin boxes settle
        self._data_timer.setSingleShot(True)
        self._data_timer.setInterval(150)
        self._data_timer.timeout.connect(self._refresh_preview)
        self._settings_changed()
        self._refresh_preview()

    def _build_status_bar(self):
        sb = self.statusBar()
        self.status_labels = {}
        for key, width in (("step", 90), ("epoch", 80), ("batch", 80), ("rate", 80), ("elapsed", 80)):
            label = QLabel()
            label.setObjectName(f"{key}Status")
            label.setMinimumWidth(width)
            label.setContentsMargins(4, 0, 8, 0)
            sb.addWidget(label)
            self.status_labels[key] = label
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setMaximumWidth(170)
        self.progress_bar.setFormat("%p%")
        sb.addPermanentWidget(self.progress_bar)
        self._update_status()

    # ------------------------------------------------------------------ the data and the plan

    def _data_spec(self):
        c = self.controls.config()
        if c["dataset"] == "file":
            if not c["data_path"]:
                raise ValueError("choose a data file (Load file…)")
            return ("file", c["data_path"], c["target"], os.path.getmtime(c["data_path"]))
        return (c["dataset"], c["records"], c["features"], c["seed"])

    def data(self):
        """``(X, y)`` for the current settings (generated or loaded once, then cached)."""
        key = self._data_spec()
        if key != self._data_key:
            if key[0] == "file":
                self._data = datasets.load(key[1], target=key[2])
            else:
                self._data = datasets.make(*key)
            self._data_key = key
        return self._data

    def _n_records(self):
        c = self.controls.config()
        if c["dataset"] == "file":
            X, _ = self.data()
            return X.shape[0]
        if c["dataset"] in datasets.TWO_FEATURE and c["features"] < 2:
            raise ValueError(f"the {c['dataset']} dataset needs at least 2 features")
        return c["records"]

    def _settings_changed(self):
        """Recompute the readout; invalid settings are shown there and disable Start."""
        if self.state != IDLE:
            return
        c = self.controls.config()
        try:
            n_train, n_val = training_records(self._n_records(), c["validation_split"])
            self.plan = fb.plan(n_train, c["batch_size"], c["epochs"], c["drop_last"])
            self.plan_error = None
        except (ValueError, TypeError, OSError) as exc:
            self.plan, self.plan_error = None, str(exc)
        if self.plan_error is None:
            self._show_readout(self.plan, n_val)
        else:
            self.readout.setText(f"<span style='font-size:13pt; color:#c00000'>⚠ {self.plan_error}</span>")
        self._data_timer.start()
        self._apply_state()

    def _show_readout(self, plan, n_val, note=""):
        text = plan.describe()
        if n_val:
            text += f"  ({n_val} records held out for validation)"
        self.readout.setText(f"<span style='font-size:13pt; color:#1a1a1a'>{text}</span>{note}")

    def readout_text(self):
        """The readout as plain text."""
        doc = self.readout.text()
        import re
        return re.sub(r"<[^>]+>", "", doc).replace("&nbsp;", " ").strip()

    def _surface_wanted(self, X, y):
        c = self.controls.config()
        two_d = c["dataset"] in datasets.TWO_FEATURE or X.shape[1] == 2
        return two_d and np.asarray(y).dtype.kind in "iub" and np.asarray(y).ndim == 1

    def _refresh_preview(self):
        """Show the points of a two-feature dataset before training (and hide the panel otherwise)."""
        if self.state != IDLE:
            return
        try:
            X, y = self.data() if self.plan_error is None else (None, None)
        except (ValueError, OSError):
            X = None
        show = X is not None and self._surface_wanted(X, y)
        self._show_surface(show)
        if show:
            self.surface_plot.set_data(X, y, seed=0)

    def _show_surface(self, show):
        if show and self.surface_plot.isHidden():
            self.surface_plot.setVisible(True)
            width = max(self.splitter.width(), 800)
            self.splitter.setSizes([width * 3 // 5, width * 2 // 5])
        elif not show:
            self.surface_plot.setVisible(False)

    def load_file(self, path, target=None):
        """Use the records in ``path`` (.csv, .npy, .npz); errors go to the readout."""
        try:
            self.controls.set_data_file(path, target)
        except (ValueError, OSError) as exc:
            self.plan_error = str(exc)
            self.readout.setText(f"<span style='font-size:13pt; color:#c00000'>⚠ {exc}</span>")
            self._apply_state()
            return False
        return True

    # ------------------------------------------------------------------ transport

    def start(self):
        """Start a new run with the current settings (the Start button)."""
        if self.state == IDLE and self._new_run():
            self._launch(None)

    def pause_or_resume(self):
        if self.state == RUNNING:
            self._after_fit = "pause"
            self._job.request_stop()
        elif self.state == PAUSED:
            self._launch(None)

    def step_batch(self):
        """Train one step (starting a new run when none is in progress)."""
        if self.state == IDLE and not self._new_run():
            return
        if self.state in (IDLE, PAUSED):
            self._launch(1)

    def step_epoch(self):
        """Train to the end of the current epoch."""
        if self.state == IDLE and not self._new_run():
            return
        if self.state in (IDLE, PAUSED):
            spe = self.run_plan.steps_per_epoch
            self._launch(spe - self.trainer.step % spe)

    def stop(self):
        """End the run: within one step when it is training."""
        if self.state == RUNNING:
            self._after_fit = "stop"
            self._job.request_stop()
        elif self.state == PAUSED:
            self._end_run("stopped")

    def reset(self):
        """Discard the current run (its curve too) and go back to editing the settings."""
        if self.state == RUNNING or self.trainer is None:
            return
        self.loss_plot.discard_current_run()
        self.trainer = None
        self.run_plan = None
        self.surface_plot.clear_surface()
        self.state = IDLE
        self._elapsed = 0.0
        self._rates = (float("nan"), float("nan"))
        self._settings_changed()
        self._update_status()

    def _new_run(self):
        """A new Trainer and a new trace on the plot; False (with the error shown) when that fails."""
        if self.plan_error is not None:
            return False
        # a preview still pending from the last settings change must not clear this run's surface
        self._data_timer.stop()
        try:
            X, y = self.data()
            self.trainer = fb.Trainer(**self.controls.trainer_params())
        except (ValueError, TypeError, OSError, ImportError) as exc:
            self._show_error(exc)
            return False
        self.run_plan = self.plan
        c = self.controls.config()
        label = f"batch {c['batch_size']}, lr {c['learning_rate']:g}"
        if c["optimizer"] != "sgd":
            label += f", {c['optimizer']}"
        self.loss_plot.begin_run(label, self.run_plan)
        self._grid = None
        if self._surface_wanted(X, y):
            self._show_surface(True)
            self.surface_plot.set_data(X, y, seed=0)
            self._grid = self.surface_plot.grid()
        self._elapsed = 0.0
        self._rates = (float("nan"), float("nan"))
        self.last_error = None
        return True

    def _launch(self, steps):
        tr = self.trainer
        lr = self.controls.w["learning_rate"].value()
        if lr != tr.learning_rate:
            tr.learning_rate = lr
            if tr.step > 0:
                self.loss_plot.add_lr_marker(tr.step, lr)
        X, y = self.data() if self._data is None else self._data
        grid, shape = self._grid if self._grid is not None else (None, None)
        self._job = Job(tr, X, y, steps, grid, shape)
        self._after_fit = None
        self._fit_t0 = time.perf_counter()
        self._rate_samples.clear()
        self._rate_samples.append((self._fit_t0, tr.step))
        self.state = RUNNING
        self._apply_state()
        self.runRequested.emit(self._job)

    # ------------------------------------------------------------------ from the worker

    def _on_progress(self, history):
        self._latest = history

    def _on_surface(self, steps_done, proba):
        if self.trainer is not None and self._grid is not None:
            self.surface_plot.set_proba(steps_done, proba)

    def _on_fit_returned(self, history):
        self._stop_clock()
        self._latest = history
        self._on_frame()
        self.loss_plot.redraw()
        tr = self.trainer
        if tr.finished:
            self._end_run("finished")
        elif self._after_fit == "stop":
            self._end_run("stopped")
        else:
            self.state = PAUSED
            self._apply_state()
        self._after_fit = None
        self.fitReturned.emit()

    def _on_errored(self, message):
        self._stop_clock()
        if self.trainer is not None and self.trainer.step:
            self._latest = self.trainer.history
            self._on_frame()
        self._show_error(message)
        self.state = IDLE
        self._apply_state()
        self.fitReturned.emit()
        self.runEnded.emit("errored")

    def _show_error(self, exc):
        self.last_error = str(exc)
        self.readout.setText(f"<span style='font-size:13pt; color:#c00000'>⚠ {exc}</span>")

    def _end_run(self, how):
        self.state = IDLE
        self._apply_state()
        self._update_status(ended=how)
        self.runEnded.emit(how)

    def _stop_clock(self):
        if self._fit_t0 is not None:
            self._elapsed += time.perf_counter() - self._fit_t0
            self._fit_t0 = None

    # ------------------------------------------------------------------ drawing

    def _on_frame(self):
        h, self._latest = self._latest, None
        if h is not None and self.trainer is not None:
            self.loss_plot.update_history(h)
            now = time.perf_counter()
            self._rate_samples.append((now, h.n_steps))
            while len(self._rate_samples) > 2 and now - self._rate_samples[0][0] > 1.0:
                self._rate_samples.popleft()
            (t0, s0), (t1, s1) = self._rate_samples[0], self._rate_samples[-1]
            if t1 > t0 and s1 > s0:
                steps_s = (s1 - s0) / (t1 - t0)
                self._rates = (steps_s, steps_s * h.n_records / max(h.steps_per_epoch, 1))
        if self.state == RUNNING or h is not None:
            self._update_status()

    def _update_status(self, ended=None):
        s = self.status_labels
        tr, plan = self.trainer, self.run_plan
        if tr is None or plan is None:
            for label in s.values():
                label.setText("")
            s["step"].setText("no run yet")
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            return
        step = self.loss_plot.current.n if self.loss_plot.current else 0
        spe = plan.steps_per_epoch
        epoch, batch = divmod(max(step - 1, 0), spe)
        s["step"].setText(f"step {step:,} / {plan.total_steps:,}")
        s["epoch"].setText(f"epoch {epoch + 1 if step else 0} / {plan.epochs:,}")
        s["batch"].setText(f"batch {batch + 1 if step else 0} / {spe:,}")
        steps_s, rec_s = self._rates
        s["rate"].setText("" if steps_s != steps_s else f"{steps_s:,.0f} steps/s · {rec_s:,.0f} records/s")
        elapsed = self._elapsed + (time.perf_counter() - self._fit_t0 if self._fit_t0 else 0.0)
        state = {"finished": "done", "stopped": "stopped", None: self.state}[ended]
        s["elapsed"].setText(f"{_clock(elapsed)} · {state}")
        self.progress_bar.setRange(0, plan.total_steps)
        self.progress_bar.setValue(step)

    def _apply_state(self):
        running, paused = self.state == RUNNING, self.state == PAUSED
        idle = self.state == IDLE
        ok = self.plan_error is None
        c = self.controls
        c.set_editable(running, paused)
        c.start_button.setEnabled(idle and ok)
        c.pause_button.setEnabled(running or paused)
        c.pause_button.setText("▶  Resume" if paused else "Pause")
        c.step_batch_button.setEnabled((idle and ok) or paused)
        c.step_epoch_button.setEnabled((idle and ok) or paused)
        c.stop_button.setEnabled(running or paused)
        c.reset_button.setEnabled(not running and self.trainer is not None)
        has_history = not running and self.trainer is not None and self.trainer.step > 0
        c.export_csv_button.setEnabled(has_history)
        c.export_png_button.setEnabled(not running)

    # ------------------------------------------------------------------ exports

    def export_history(self, path):
        """Write the current run's history: step,epoch,batch,batch_size,loss,learning_rate,records_seen."""
        if self.trainer is None:
            raise ValueError("there is no run to export yet")
        self.trainer.history.to_csv(path)

    def export_plot(self, path):
        """Save the loss plot as a PNG."""
        self.loss_plot.redraw()
        if not self.loss_plot.grab().save(os.fspath(path)):
            raise OSError(f"could not write {path!r}")

    def screenshot(self, path):
        """Save a picture of the whole window."""
        self.loss_plot.redraw()
        if not self.grab().save(os.fspath(path)):
            raise OSError(f"could not write {path!r}")

    def _export_csv_clicked(self):
        self._export_to_chosen_file("history", "history.csv", "CSV (*.csv)", self.export_history)

    def _export_png_clicked(self):
        self._export_to_chosen_file("plot", "loss.png", "PNG (*.png)", self.export_plot)

    def _export_to_chosen_file(self, what, default_name, file_filter, write):
        path, _ = QFileDialog.getSaveFileName(self, f"Export {what}", default_name, file_filter)
        if path:
            try:
                write(path)
                self.statusBar().showMessage(f"{what} written to {path}", 5000)
            except OSError as exc:
                self._show_error(exc)

    # ------------------------------------------------------------------ shutting down

    def shutdown(self):
        """Stop training and the worker thread (also done on close)."""
        if self._job is not None:
            self._job.request_stop()
        self._frame.stop()
        self.loss_plot.timer.stop()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait(10_000)

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)
