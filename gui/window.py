"""The main window: lays out the controls, the plots and the status bar, and draws what the run controller says.

The rules of a run (what each button does in each state) live in ``run_controller.py``; the
training runs on the worker's thread (``worker.py``); one frame timer draws.
"""
import html
import os
import re
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow,
                               QProgressBar, QScrollArea, QSlider, QSplitter, QTabWidget, QVBoxLayout, QWidget)

import fastbatch as fb
from fastbatch import datasets
from fastbatch.config import DEFAULTS
from fastbatch import decide_task
from fastbatch.compare import write_comparison_csv
from fastbatch.schedule import format_bytes

from .batch_lab import BatchLab, LabJob, parse_sizes
from .batch_map import BatchMap, epoch_order, positions
from .controls import ControlPanel
from .data_memory import check_room
from .fmt import clock, count, esc, load_error, num
from .lesson import RANDOM_HINT, TASKS, sorted_by_class
from .loss_plot import LOSS_LABEL, STANDARDIZED_LOSS_LABEL, X_AXES, LossPlot
from .run_controller import IDLE, PAUSED, RUNNING, RunController
from .surface_plot import SurfacePlot
from .worker import Job, start_worker_thread, stop_thread

FPS = 20   # frames a second: smooth enough, and it leaves the CPU to training
SMOOTHING_STEPS = 1000   # the smoothing slider moves in steps of 0.001
PROGRESS_SCALE = 1000   # the progress bar counts per mille: a QProgressBar holds a C int, and a run may have
                        # more than 2^31 - 1 steps (3,000 records at batch 1 for 1,000,000 epochs)
MAP_SECONDS = 0.2   # the batch map redraws at most this often while training at full speed
MAX_SURFACE_OUTPUTS = 64   # the surface's predict_proba is 14,400 grid points x outputs, on the worker between
                           # chunks: 10,000 outputs (a label 9999) would take minutes and GBs, and Stop would wait
WATCH_MS = 1000   # how often the data file's size and time are looked at while paused or idle (never its records)
CLOSE_WAIT_SECONDS = 2.0   # closing waits this long for the step in progress; a longer one ends on its own
# training and a comparison never run together: on a shared machine each would halve the other's speed
LAB_BLOCKS_TRAINING = ("a batch-size comparison is running (Compare batch sizes tab): training waits until it ends "
                       "or is cancelled")
TRAINING_BLOCKS_LAB = "a run is training (Train tab): compare batch sizes once it is paused, stopped or finished"


def error_html(message):
    """The readout's error line."""
    return f"<span style='font-size:13pt; color:#c00000'>⚠ {esc(message)}</span>"


def progress_value(done, total):
    """The progress bar's value for ``done`` of ``total`` steps, in PROGRESS_SCALE parts (full only when done)."""
    if total <= 0:
        return 0
    return PROGRESS_SCALE if done >= total else min(done * PROGRESS_SCALE // total, PROGRESS_SCALE - 1)


def training_records(n, split):
    """(training, validation) records: the library's split (``fb.split_sizes``); both must be at least 1."""
    n_train, n_val = fb.split_sizes(n, split)
    if split > 0 and (n_val < 1 or n_train < 1):
        raise ValueError(f"validation split {split:g} of {count(n, 'record')} leaves {num(n_val)} for validation "
                         f"and {num(n_train)} for training; both need at least 1")
    return n_train, n_val


def split_rows(n, split, seed):
    """(training rows, validation rows) as the Trainer splits them."""
    if not split:
        return np.arange(n), np.empty(0, dtype=np.int64)
    from fastbatch import split_indices  # the library's seeded split
    return split_indices(n, split, seed)


def describe(plan):
    """The plan's arithmetic in the app's words: one number format, plural-aware."""
    last = "" if plan.last_batch_size == plan.effective_batch_size else f" (last batch {num(plan.last_batch_size)})"
    dropped = plan.n_records - plan.steps_per_epoch * plan.effective_batch_size if plan.drop_last else 0
    drop = f", {count(dropped, 'record')} dropped per epoch" if dropped else ""
    # a batch larger than the data is all of it: said, or "batch 64" reads as 64 records a step
    whole = (f" (each batch is all {count(plan.n_records, 'record')})"
             if plan.effective_batch_size < plan.batch_size else "")
    return (f"{count(plan.n_records, 'record')} / batch {num(plan.batch_size)}{whole} -> "
            f"{count(plan.steps_per_epoch, 'step')} per epoch{last}{drop} x {count(plan.epochs, 'epoch')} = "
            f"{count(plan.total_steps, 'step')}")


def score_text(epochs, logs, standardized=False):
    """The last finished epoch's loss and metric (the library's ``History.metrics`` names and values, as
    ``worker.last_epoch_scores`` gives them), in words: ``"after epoch 5: loss 0.38, accuracy 89.17% ·
    validation loss 0.365, accuracy 93.33%"``; "" before an epoch has finished. ``standardized``: the run
    standardised its regression target, so its losses are the standardised target's (R² is unitless)."""
    if not epochs or not logs:
        return ""

    def part(prefix):
        out = []
        for key, name in (("loss", "loss"), ("accuracy", "accuracy"), ("r2", "R²")):
            v = logs.get(prefix + key)
            if v is None or v != v:   # (NaN: an epoch that ended without validation)
                continue
            out.append(f"{name} {100 * v:.4g}%" if key == "accuracy" else f"{name} {v:.4g}")
        return ", ".join(out)
    text = f"after epoch {num(epochs)}: {part('')}"
    val = part("val_")
    if val:
        text += f" · validation {val}"
    if standardized:
        text += " (losses of the standardised target)"
    return text


SCORE_TIP = ("The last finished epoch, as the library's History records it (History.metrics): its training loss and "
             "{metric} are over the epoch's batches, each measured before its update; the validation ones on the "
             "held-out records at the epoch's end.")


class StepPanel(QFrame):
    """What the last stepped batch did: which step, the batch's loss before and after, the update's size."""

    def __init__(self):
        super().__init__()
        self.setObjectName("thisStepPanel")
        self.setFrameShape(QFrame.StyledPanel)
        self.setStyleSheet("#thisStepPanel { background: #fffdf2; border: 1px solid #d8cfa0; }")
        self.label = QLabel()
        self.label.setObjectName("thisStepLabel")
        self.label.setTextFormat(Qt.RichText)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.addWidget(self.label)
        self.info = None
        self.setVisible(False)

    def show_step(self, d, standardized=False):
        """``standardized``: the run's losses are its standardised target's (as the loss axis says)."""
        self.info = d
        change = d["loss_after"] - d["loss_before"]
        upd = ("—  (the params are made by the first step)" if d["update_norm"] is None else
               f"{d['update_norm']:.4g}  ({100 * d['update_norm'] / max(d['param_norm'], 1e-300):.2g}% of |params|)")
        where = (f"step {num(d['step'])} · epoch {num(d['epoch'])} · batch {num(d['batch'])} of {num(d['batches'])}"
                 f" · {count(d['batch_size'], 'record')} · lr {num(d['learning_rate'])}")
        before, after = (esc(f"{d[k]:.5g}") for k in ("loss_before", "loss_after"))
        self.label.setText(
            f"<b>This step:</b> {esc(where)}<br>"
            f"loss on this batch{' (of the standardised target)' if standardized else ''}: <b>{before}</b> before the update → <b>{after}</b> after it "
            f"({esc(f'{change:+.3g}')})<br>"
            f"size of the update |Δparams|: {esc(upd)}")
        self.setVisible(True)

    def clear(self):
        self.info = None
        self.setVisible(False)


class MainWindow(QMainWindow):
    """fastbatch's desktop app: ``MainWindow().show()`` inside a QApplication."""

    runRequested = Signal(object)   # a Job, to the worker thread
    fitReturned = Signal()          # each time a job returns (run over, paused or stepped) or fails
    runEnded = Signal(str)          # the run is over: "finished", "stopped" or "errored"
    labRequested = Signal(object)   # a LabJob, to the lab's thread

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("fastbatch: records, batches, steps, epochs")
        self.resize(1280, 840)
        self.plan = None            # the plan the settings describe (None when they are invalid)
        self.plan_error = None
        self._latest = None         # the newest History from the worker, not yet drawn
        self._data_key, self._data = None, None
        self._plan_spec = None      # the data (``_data_spec``) the plan was made from
        self._reloaded = None       # the data file's name when it changed on disk after it was first loaded
        self._coded = None   # (task's loss, a file's targets as class codes): see _class_codes
        self._decisions = None   # (targets, loss, the library's Task): see _decided
        self._class_names = None   # a file's text target: its class names, in code order (else None)
        self._feature_names = None   # a file's feature columns' names (else None)
        self._map_is_run = False   # the batch map shows the run (its progress is drawn), not a preview of settings
        self._data_failure = None   # (spec, exception) of the last data that failed to load: not read again
        self._disk_retry = False    # the plan's error is the loaded data file as it is on disk now (changed or gone
                                    # since it loaded): Start and Step stay on, and read it again when pressed
        self._file_error = None     # why the last chosen file could not be used (until a file loads or a dataset
                                    # is chosen)
        self._closed = False
        self._watched = None        # the data file's (path, size, mtime) when the readout last described it
        self._seen = None           # ... at the last look (a change is acted on once the file has settled)
        self._rows = None           # (training rows, validation rows) of the current run
        self._run_data = None       # (X, y) the current run trains on: read once when it starts, so a data file
                                    # changed or deleted meanwhile neither breaks nor silently alters a resume
        self._grid = None
        self._run_key = None        # the settings the run was started with
        self._map_drawn = 0.0
        self.scores = None          # (finished epochs, the last one's metrics) of the current run, from the worker
        self._loss_scaled = False   # the current run's losses are the standardised target's
        self.run = RunController(self._make_run, self._launch)
        self.run.stateChanged.connect(lambda _: self._apply_state())
        self.run.runStarted.connect(self._on_run_started)
        self.run.rateChanged.connect(lambda step, lr: self.loss_plot.add_lr_marker(step, lr))
        self.run.runEnded.connect(self._on_run_ended)
        self.run.runDiscarded.connect(self._on_run_discarded)
        self._run_trace = None      # the loss plot's trace of the current run (None before it is drawn)

        self.controls = ControlPanel()
        scroll = QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.sizeHint().width() + 24)

        self.readout = QLabel()
        self.readout.setObjectName("readoutLabel")
        self.readout.setTextFormat(Qt.RichText)   # every string put in it goes through esc()
        self.readout.setWordWrap(True)
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        # how the run is doing (the last finished epoch's loss and metric): its own line under the readout, which
        # wraps (in the status bar it squeezed the step, epoch and rate while running), and stays under an error
        self.score_label = QLabel()
        self.score_label.setObjectName("scoreLabel")
        self.score_label.setTextFormat(Qt.PlainText)
        self.score_label.setWordWrap(True)
        self.score_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.score_label.setStyleSheet("font-size: 12pt; color: #1a1a1a")
        self.score_label.setVisible(False)
        self.x_axis_combo = QComboBox()
        self.x_axis_combo.setObjectName("xAxisCombo")
        for key, text in X_AXES.items():
            self.x_axis_combo.addItem(text, key)
        self.log_x_check = QCheckBox("log x")
        self.log_x_check.setObjectName("logXCheck")
        self.log_y_check = QCheckBox("log loss")
        self.log_y_check.setObjectName("logYCheck")
        self.log_y_check.setToolTip("a logarithmic loss axis; a step's loss of exactly 0 (log 0 is -∞) is drawn "
                                    "at the bottom, at the smallest positive loss in view")
        self.full_loss_check = QCheckBox("loss on all training records")
        self.full_loss_check.setObjectName("fullLossCheck")
        self.full_loss_check.setToolTip("measured between steps (at most 10% of the training time): the real "
                                        "path, without the sampling noise of single batches")
        self.smoothing_slider = QSlider(Qt.Horizontal)
        self.smoothing_slider.setObjectName("smoothingSlider")
        self.smoothing_slider.setRange(0, SMOOTHING_STEPS - 1)   # 0 to 0.999, as TensorBoard
        self.smoothing_slider.setFixedWidth(110)
        self.smoothing_slider.setToolTip("smoothing: an exponential moving average of the per-step loss "
                                         "(as TensorBoard's slider); the raw curve stays faint behind it")
        self.smoothing_label = QLabel("smoothing 0")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("x axis:"))
        bar.addWidget(self.x_axis_combo)
        for w in (self.log_x_check, self.log_y_check, self.full_loss_check, self.smoothing_label,
                  self.smoothing_slider):
            bar.addWidget(w)
        bar.addStretch(1)
        for b in (self.controls.export_csv_button, self.controls.export_png_button,
                  self.controls.clear_runs_button):
            bar.addWidget(b)
        self.legend_hint = QLabel("<span style='color:#555'>thin line: loss of each step's batch (step s spans "
                                  "s−1 to s) · ● epoch mean, weighted by batch size · ▲ validation loss at "
                                  "epoch end · dotted lines: epoch boundaries · hover for step, epoch, batch and "
                                  "loss · double-click: follow the data</span>")
        self.legend_hint.setWordWrap(True)

        self.loss_plot = LossPlot()
        self.surface_plot = SurfacePlot()
        self.step_panel = StepPanel()
        self.batch_map = BatchMap()
        self.side = QSplitter(Qt.Vertical)
        self.side.addWidget(self.surface_plot)
        self.side.addWidget(self.batch_map)
        self.side.setStretchFactor(0, 3)
        self.side.setStretchFactor(1, 2)
        self.side.setChildrenCollapsible(False)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.loss_plot)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)

        right = QWidget()
        v = QVBoxLayout(right)
        v.setContentsMargins(4, 6, 6, 4)
        v.addWidget(self.readout)
        v.addWidget(self.score_label)
        v.addLayout(bar)
        v.addWidget(self.step_panel)
        v.addWidget(self.splitter, 1)
        v.addWidget(self.legend_hint)
        main = QSplitter(Qt.Horizontal)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(scroll, 1)
        lv.addWidget(self.controls.transport)
        main.addWidget(left)
        self.lab_note = QLabel(LAB_BLOCKS_TRAINING)   # why the transport is off
        self.lab_note.setObjectName("trainingBlockedLabel")
        self.lab_note.setWordWrap(True)
        self.lab_note.setStyleSheet("color: #8a5a00")
        self.lab_note.setVisible(False)
        self.controls.transport.layout().addWidget(self.lab_note, 3, 0, 1, 2)
        self.lab = BatchLab()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.addTab(right, "Train")
        self.tabs.addTab(self.lab, "Compare batch sizes")
        main.addWidget(self.tabs)
        main.setStretchFactor(1, 1)
        main.setChildrenCollapsible(False)
        self.setCentralWidget(main)
        self._build_status_bar()

        self.labRequested.connect(self.lab.worker.run)
        self.lab.compareRequested.connect(self.compare_batch_sizes)
        self.lab.runningChanged.connect(lambda _: self._apply_state())
        self.thread, self.worker = start_worker_thread()
        wk = self.worker
        self._worker_links = [(self.runRequested, wk.run), (wk.progress, self._on_progress),
                              (wk.surface, self._on_surface), (wk.fullLoss, self._on_full_loss),
                              (wk.epochMeans, self.loss_plot.add_epoch_means), (wk.stepped, self._on_stepped),
                              (wk.epochScores, self._on_scores),
                              (wk.finished, self._on_job_returned), (wk.errored, self._on_errored)]
        for signal, slot in self._worker_links:
            signal.connect(slot)

        c = self.controls
        c.changed.connect(self._settings_changed)
        c.fileChosen.connect(self.load_file)
        c.w["dataset"].activated.connect(self._dataset_chosen)
        c.start_button.clicked.connect(self.start)
        c.pause_button.clicked.connect(self.pause_or_resume)
        c.step_batch_button.clicked.connect(self.step_batch)
        c.step_epoch_button.clicked.connect(self.step_epoch)
        c.stop_button.clicked.connect(self.stop)
        c.reset_button.clicked.connect(self.reset)
        c.export_csv_button.clicked.connect(self._export_csv_clicked)
        c.export_png_button.clicked.connect(self._export_png_clicked)
        c.clear_runs_button.clicked.connect(self.clear_runs)
        self.x_axis_combo.currentIndexChanged.connect(
            lambda: self.loss_plot.set_x_axis(self.x_axis_combo.currentData()))
        self.log_x_check.toggled.connect(self.loss_plot.set_log_x)
        self.log_y_check.toggled.connect(self.loss_plot.set_log_y)
        self.smoothing_slider.valueChanged.connect(self._smoothing_changed)

        self._frame = QTimer(self)           # the one frame timer: status and curves follow the worker
        self._frame.setInterval(1000 // FPS)
        self._frame.timeout.connect(self._on_frame)
        self._frame.start()
        self._data_timer = QTimer(self)      # regenerate the preview data once the spin boxes settle
        self._data_timer.setSingleShot(True)
        self._data_timer.setInterval(150)
        self._data_timer.timeout.connect(self._refresh_preview)
        self._watch = QTimer(self)          # the data file changed on disk: said without a setting being touched
        self._watch.setInterval(WATCH_MS)
        self._watch.timeout.connect(self._watch_data_file)
        self._watch.start()
        self._settings_changed()
        self._refresh_preview()

    # the run's facts, read by the app's command line and the tests
    state = property(lambda self: self.run.state)
    trainer = property(lambda self: self.run.trainer)
    run_plan = property(lambda self: self.run.plan)

    @property
    def last_error(self):
        return None if self.run.error is None else str(self.run.error)

    def _build_status_bar(self):
        sb = self.statusBar()
        self.status_labels = {}
        for key, width in (("step", 120), ("epoch", 90), ("batch", 90), ("rate", 90), ("elapsed", 90)):
            label = QLabel()
            label.setObjectName(f"{key}Status")
            label.setTextFormat(Qt.PlainText)
            label.setMinimumWidth(width)
            label.setContentsMargins(4, 0, 8, 0)
            sb.addWidget(label)
            self.status_labels[key] = label
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setMaximumWidth(170)
        self.progress_bar.setFormat("%p%")
        self.progress_bar.setRange(0, PROGRESS_SCALE)
        sb.addPermanentWidget(self.progress_bar)
        self._update_status()

    # ------------------------------------------------------------------ the data and the plan

    def _data_spec(self):
        c = self.controls.config()
        if c["dataset"] == "file":
            if not c["data_path"]:
                raise ValueError("choose a data file (Load file…)")
            return ("file", c["data_path"], c["target"], os.path.getmtime(c["data_path"]), c["sorted_by_class"])
        return (c["dataset"], c["records"], c["features"], c["seed"], c["sorted_by_class"])

    def data(self):
        """``(X, y)`` for the current settings (generated or loaded once, then cached); while a run is in progress
        (running or paused), the records it trains on: it never reads its file again (nor does anything that
        describes it), a change on disk applies to the next run."""
        if self.state != IDLE and self._run_data is not None:
            return self._run_data
        key = self._data_spec()
        if key != self._data_key:
            if self._data_failure is not None and self._data_failure[0] == key:
                raise self._data_failure[1]
            if key[0] == "file" and self._data_key is not None and self._data_key[:2] == key[:2]:
                self.controls.follow_columns()   # read again (changed on disk): the target box lists its columns now
            try:
                if key[0] == "file":   # (load's X and y, with the class names of a text target)
                    table = datasets.load_table(key[1], target=key[2])
                    X, y, names, features = table.X, table.y, table.classes, table.features
                else:
                    (X, y), names, features = datasets.make(*key[:4]), None, None
            except Exception as exc:   # whatever a hostile file raises reaches the readout, not stderr
                exc = load_error(exc, repr(key[1]) if key[0] == "file" else f"the {key[0]} dataset")
                self._data_failure = (key, exc)
                raise exc from None
            if key[-1]:
                X, y = sorted_by_class(X, y)
            # kept in the run's dtype only: the library checks the data at every fit call, and a call
            # with nothing to convert costs a few ms instead of tens at 2M records (and half the memory)
            dtype = np.dtype(DEFAULTS["dtype"])
            with np.errstate(over="ignore"):
                X = np.ascontiguousarray(X, dtype=dtype)
            top = float(np.finfo(dtype).max)   # (min and max: no temporary array the size of the data)
            x_ok = bool(len(X) == 0 or np.isfinite(X.min()) and np.isfinite(X.max()))
            y_ok = bool(len(y) == 0 or max(abs(float(np.min(y))), abs(float(np.max(y)))) <= top)
            if not (x_ok and y_ok):   # finite in the file, beyond the run's dtype: said now, not at Start
                big = np.abs(np.asarray(y, dtype=np.float64)).reshape(len(y), -1).max(axis=1) > top
                i, j = np.argwhere(~np.isfinite(X))[0] if not x_ok else (np.flatnonzero(big)[0], -1)
                what = f"feature {j + 1}" if j >= 0 else "the target"
                exc = ValueError(f"record {i + 1}, {what} of {key[1]!r} is too large for {dtype} "
                                 f"(beyond ±{np.finfo(dtype).max:.3g}); scale the data first")
                self._data_failure = (key, exc)
                raise exc
            old = self._data_key
            same_file = old is not None and old[0] == "file" and key[0] == "file" and old[1:3] == key[1:3]
            self._reloaded = os.path.basename(key[1]) if same_file else None   # (only its time changed)
            self._data, self._data_key, self._coded = (X, y), key, None
            self._class_names, self._feature_names = names, features
        if key[0] != "file":
            return self._data
        return self._data[0], self._class_codes(self._data[1])

    def _class_codes(self, y):
        """A file's class labels as the network's classes 0..k-1 (in sorted order), when the task is a
        classification and they are other whole numbers (-1 / 1, 1, 2, 3); otherwise ``y`` itself."""
        loss = TASKS[self.controls.config()["task"]][1]
        if self._coded is not None and self._coded[0] == loss:
            return self._coded[1]
        coded = y
        whole = y.dtype.kind in "iub" or bool(np.isfinite(y).all() and (y == np.round(y)).all())
        if y.ndim == 1 and len(y) and whole and self._decided(y).kind == "classification":  # (fractional
            # targets are not labels: a classification of them gets the library's error, not a class a value)
            values, codes = np.unique(y, return_inverse=True)
            if not (values[0] == 0 and values[-1] == len(values) - 1):
                coded = codes.astype(np.int64)
        self._coded = (loss, coded)
        return coded

    def _n_records(self):
        c = self.controls.config()
        if c["dataset"] == "file":
            X, _ = self.data()
            if X.ndim == 2:
                self.controls.show_data_shape(*X.shape)   # the boxes follow the file
            return X.shape[0]
        if c["dataset"] in datasets.TWO_FEATURE and c["features"] < 2:
            raise ValueError(f"the {c['dataset']} dataset needs at least 2 features")
        check_room(c["records"], c["features"], DEFAULTS["dtype"])   # refused before it is made, not after
        return c["records"]

    def _file_signature(self):
        """The chosen data file's (path, size, mtime) on disk ((path, None): gone); None without a data file."""
        path = self.controls.data_path
        if path is None or self.controls.w["dataset"].currentData() != "file":
            return None
        try:
            st = os.stat(path)
        except OSError:
            return path, None
        return path, st.st_size, st.st_mtime_ns

    def _watch_data_file(self):
        """While paused or idle: when the data file's size or time on disk changed since the readout described it
        (and has stayed so for one look: a file being written is not read half-written), the readout is drawn
        again: paused, the run's own records with the note that the file changed (the file is not read); idle,
        as when a setting is touched (the file read again once, what Start would train). Each look is one stat."""
        if self.state == RUNNING or self._closed:
            return
        sig, seen = self._file_signature(), self._seen
        self._seen = sig
        if sig is None or sig == self._watched or sig != seen:
            return
        self._settings_changed()
        if self.state == IDLE and self.trainer is not None:
            self._data_timer.stop()   # (a preview must not clear the ended run's surface and batch map)

    def _settings_changed(self):
        """Recompute the readout; invalid settings are shown there and disable Start."""
        if self.state != RUNNING:   # (before the file is read: a change meanwhile is seen at the next look)
            self._watched = self._file_signature()
        if self.state == PAUSED and self.run.plan is not None:
            # only the rate can change while paused: the readout's rate line follows it (the plan is the run's)
            self._show_readout(self.run.plan, len(self._rows[1]))
            return
        if self.state != IDLE:
            return
        c = self.controls.config()
        try:
            if self._file_error is not None:
                raise ValueError(self._file_error)
            n_train, n_val = training_records(self._n_records(), c["validation_split"])
            self.plan = fb.plan(n_train, c["batch_size"], c["epochs"], c["drop_last"])
            self.plan_error = None
            self._plan_spec = self._data_spec()
        except (ValueError, TypeError, OSError) as exc:
            self.plan, self.plan_error, self._plan_spec = None, str(exc), None
        self._disk_retry = self.plan_error is not None and self._loaded_file_changed()
        if self.plan_error is None:
            self._show_readout(self.plan, n_val)
        else:
            retry = (f"<br><span style='color:#8a5a00'>{esc(os.path.basename(c['data_path']))} changed on disk "
                     "after it was loaded: Start (or Step) reads it again</span>") if self._disk_retry else ""
            fixed = "".join(f"<br><span style='color:#8a5a00'>{esc(n)}</span>"
                            for n in self.controls.corrections.values())
            self.readout.setText(error_html(self.plan_error) + retry + fixed)
        self._data_timer.start()
        self._apply_state()

    def _run_file_changed(self):
        """True when the run in progress's data file is not, on disk, what it read (rewritten or gone)."""
        if self._run_key is None:
            return False
        try:
            return self._data_spec() != self._run_key[2]
        except OSError:
            return True

    def _loaded_file_changed(self):
        """True when the chosen data file (this path and target) loaded before and is not that file now on disk
        (rewritten or gone): no widget changes when it is fixed, so Start must stay able to read it again."""
        c, old = self.controls.config(), self._data_key
        if c["dataset"] != "file" or self._file_error is not None or old is None or old[0] != "file" \
                or old[1:3] != (c["data_path"], c["target"]):
            return False
        try:
            return self._data_spec() != old
        except OSError:   # gone since it loaded
            return True

    def _plan_ready(self):
        """Before Start, Step or a comparison: True when the settings make a plan. After the loaded data file
        failed to read as it is now on disk, it is read again first (its error is not kept: a file fixed within
        the same mtime tick is read too), so a file fixed on disk trains without touching a setting."""
        if self.plan_error is not None and self._disk_retry and self.state == IDLE:
            self._data_failure = None
            self._settings_changed()
        return self.plan_error is None

    def _show_readout(self, plan, n_val):
        c = self.controls.config()
        text = describe(plan)
        if n_val:
            text += f"  ({count(n_val, 'record')} held out for validation)"
        notes = list(self.controls.corrections.values())
        if c["dataset"] == "file" and self.state != IDLE:
            if self._run_file_changed():
                notes.append(f"{os.path.basename(c['data_path'])} changed on disk since this run read it: the run "
                             f"goes on with its {count(plan.n_records + n_val, 'record')}; the change applies to "
                             "the next run (Reset, then Start)")
        elif c["dataset"] == "file" and self._reloaded is not None:
            notes.append(f"{self._reloaded} changed on disk after it was loaded: read again, "
                         f"{count(plan.n_records, 'record')} to train on now")
        memory = self._step_memory(plan)
        if memory:
            notes.append(f"batch {num(plan.effective_batch_size)}: {memory} per step (the batch, activations, gradients, "
                         "params and optimizer state)")
        if c["dataset"] != "file":
            notes.append(check_room(c["records"], c["features"], DEFAULTS["dtype"]))
        if c["lr_scaling"] != "none":
            notes.append(f"learning rate {num(c['learning_rate'])} × {c['lr_scaling']}(batch {num(c['batch_size'])}"
                         f" / {num(c['reference_batch'])}) = {num(self.controls.learning_rate())}")
        if self._continues():
            notes.append(f"Start continues the finished run to {count(plan.epochs, 'epoch')}")
        if c["dataset"] == "random":
            notes.append(RANDOM_HINT)
        if not c["standardize"]:   # the library's warning (a sample of rows, its one rule), here and not on stderr
            unscaled = self._unscaled_message()
            if unscaled:
                notes.append(unscaled)
        outputs = self._surface_outputs_skipped() if c["dataset"] == "file" else None   # generated: few classes
        if outputs:
            notes.append(f"no decision surface: the labels need {count(outputs, 'output')}, and it is drawn for at "
                         f"most {num(MAX_SURFACE_OUTPUTS)}")
        task = self._task() if c["dataset"] == "file" or c["task"] != "auto" else None   # generated: classes
        if task is not None and self._class_names is not None and c["dataset"] == "file" \
                and task.kind == "classification":
            names = self._class_names
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            notes.append(f"target: {count(len(names), 'class name')} ({shown}) -> classification (cross_entropy); "
                         "the task box overrides it")
        elif task is not None:
            notes.append(task.reason.split(";")[0] + "; the task box overrides it")
        if task is not None and self._coded is not None and self._coded[1] is not self._data[1]:
            values = np.unique(self._data[1])
            shown = ", ".join(num(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
            notes.append(f"the labels {shown} are the network's classes 0 to {len(values) - 1}, in that order")
        note = "".join(f"<br><span style='color:#8a5a00'>{esc(n)}</span>" for n in notes)
        self.readout.setText(f"<span style='font-size:13pt; color:#1a1a1a'>{esc(text)}</span>{note}")

    def _unscaled_message(self):
        """The library's "X looks unscaled" message for the data (``unscaled_sample_message``), or None."""
        from fastbatch._data import unscaled_sample_message
        try:
            X, _ = self.data()
        except (ValueError, TypeError, OSError):
            return None
        message = unscaled_sample_message(X) if X.ndim == 2 and len(X) else None
        return message and message.replace("Pass standardize=True", "Tick standardize")   # (the app's control)

    def _step_memory(self, plan):
        """The library's bytes per step for this network (``Plan.step_memory``), as text; None when unknown."""
        c = self.controls.config()
        try:
            if c["dataset"] == "file":
                X, y = self.data()
                n_in = X.shape[1]
            else:
                n_in, y = c["features"], None
            task = self._task() if y is not None else None
            if task is not None and task.kind == "regression":
                n_out = 1 if np.ndim(y) == 1 else np.shape(y)[1]
            else:
                n_out = int(np.max(y)) + 1 if y is not None else datasets.n_classes(c["dataset"])
            hidden = (c["hidden"],) * c["layers"] if c["hidden"] else ()
            p = fb.plan(plan.n_records, plan.batch_size, plan.epochs, plan.drop_last,
                        layers=(n_in, *hidden, n_out), dtype=DEFAULTS["dtype"], optimizer=c["optimizer"])
            return format_bytes(p.step_memory()["total"])
        except (ValueError, TypeError, OSError):
            return None

    def _task(self):
        """The library's decision: classification or regression, and why (None without data)."""
        try:
            _, y = self.data()
            return self._decided(y)
        except (ValueError, TypeError, OSError):
            return None

    def readout_text(self):
        """The readout as plain text."""
        text = re.sub(r"<br>", "\n", self.readout.text())
        return html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\xa0", " ").strip()

    def _decided(self, y):
        """The library's task for targets ``y`` with the task box's loss (``decide_task``), kept per targets
        and loss: a 2M-record y is looked at once, not at each redraw of the readout or preview."""
        loss = TASKS[self.controls.config()["task"]][1]
        if self._coded is not None and y is self._coded[1] and self._data is not None:
            y = self._data[1]   # a file's class codes: decided as the labels they stand for (the same task)
        memo = self._decisions
        if memo is not None and memo[0] is y and memo[1] == loss:
            return memo[2]
        task = decide_task(y, loss, coded=True)   # (the window codes class labels 0..k-1 itself: _class_codes)
        self._decisions = (y, loss, task)   # (holding y: its id is not reused while it is kept)
        return task

    def _is_classification(self, y):
        """True when the run on ``y`` will be a classification (the task box, else the library's rule)."""
        try:
            return self._decided(y).kind == "classification"
        except (ValueError, TypeError):
            return False

    def _trainer_params(self, y):
        """The Trainer parameters of a run on ``y``: the controls', without standardize_target for a target the
        run takes as classes (the standardise box scales the features, and a regression's target: the library
        warns of a setting that changes nothing)."""
        params = self.controls.trainer_params()
        if params["standardize_target"] and self._is_classification(y):
            params["standardize_target"] = False
        return params

    def _target_standardized(self, params, y):
        """Whether a run of these Trainer ``params`` on ``y`` records its losses in the standardised target's units
        (the library standardises an mse target only)."""
        return bool(params.get("standardize_target")) and not self._is_classification(y)

    def _surface_suits(self, X, y):
        """Two features (or a 2-D dataset) and class labels: a decision surface can be drawn."""
        y = np.asarray(y)
        return (X.ndim == 2 and X.shape[1] >= 2 and (self.controls.config()["dataset"] in datasets.TWO_FEATURE
                                                     or X.shape[1] == 2) and y.dtype.kind in "iub" and y.ndim == 1
                and self._is_classification(y))   # (the cheap conditions first)

    def _surface_wanted(self, X, y):
        return self._surface_suits(X, y) and self._n_outputs(y) <= MAX_SURFACE_OUTPUTS

    @staticmethod
    def _n_outputs(y):
        """The classifier's outputs: one per label from 0 to the largest."""
        return int(np.max(y)) + 1 if len(y) else 0

    def _surface_outputs_skipped(self):
        """The output count when the surface suits the data but is skipped as too costly (else None)."""
        try:
            X, y = self.data()
        except (ValueError, TypeError, OSError):
            return None
        if self._surface_suits(X, y) and not self._surface_wanted(X, y):
            return self._n_outputs(y)
        return None

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
        if X is None:
            return
        c = self.controls.config()
        train, val = split_rows(len(X), c["validation_split"], c["seed"])
        if show:
            self.surface_plot.set_data(X, y, held_out=val, seed=0)
        self.batch_map.set_run(self.plan, c["seed"], c["shuffle"], self._class_labels(y, train), train)
        self._map_is_run = False   # (the last run's progress is not drawn over the new settings' records)

    def _class_labels(self, y, train):
        """The training records' classes (for the batch map's colours); None for a regression."""
        y = np.asarray(y)
        if y.ndim != 1 or y.dtype.kind not in "iub" or not self._is_classification(y):
            return None
        return y if len(train) == len(y) else y[train]

    def _show_surface(self, show):
        self.surface_plot.setVisible(show)
        if show:   # the file's names for its features and classes (generated data: feature 1, 2 and class codes)
            self.surface_plot.set_names(self._feature_names, self._class_names)

    def load_file(self, path, target=None):
        """Use the records in ``path`` (.csv, .npy, .npz); False when they cannot be used.

        What was wrong replaces the plan in the readout and disables Start: a bad header or
        target until a file loads or a dataset is chosen, bad records while this file and
        target are chosen.
        """
        if self.state != IDLE:
            return False
        self._file_error = None
        try:
            self.controls.set_data_file(path, target)   # reads the header; its change signal reads the records
        except Exception as exc:   # whatever a hostile file raises reaches the readout, not stderr
            self._file_error = str(load_error(exc, repr(os.fspath(path))))
            self._settings_changed()
            return False
        try:
            self.data()   # cached: the readout has just read it
        except (ValueError, TypeError, OSError):
            return False
        return True

    def _dataset_chosen(self):
        """A dataset picked in the box (even the one shown) replaces a file that failed to load."""
        if self._file_error is not None:
            self._file_error = None
            self._settings_changed()

    # ------------------------------------------------------------------ transport (the controller decides)

    def _sync_rate(self):
        """The rate box (scaled with the batch size when asked) applies from the next step."""
        if self.trainer is not None:
            self.run.set_learning_rate(self.controls.learning_rate())

    def _continues(self):
        """True when Start would continue the finished run: only its epochs were raised."""
        r = self.run
        if r.trainer is None or r.ended != "finished" or self.plan is None or self._run_key is None:
            return False
        try:
            key = self._settings_key()
        except OSError:   # the run's data file is gone: Start reports it as it makes a new run
            return False
        return key[1:] == self._run_key[1:] and key[0] > self._run_key[0]

    def _settings_key(self):
        params = self.controls.trainer_params()
        epochs = params.pop("epochs")
        params.pop("learning_rate")
        return (epochs, sorted(params.items()), self._data_spec())

    def _refused_for_lab(self):
        """True, with the reason in the readout, while a comparison runs (the buttons are off then too)."""
        if self.lab.running:
            self._show_error(LAB_BLOCKS_TRAINING)
        return self.lab.running

    def start(self):
        """Start a new run with the current settings, or continue the finished one when only epochs rose."""
        self.controls.commit_typing()
        if self._refused_for_lab() or not self._plan_ready():
            return
        if self._continues():
            self._continue_finished(None)
        elif not self.run.start():
            self._show_refusal()

    def _show_refusal(self):
        """A refused Start or Step: why, in the readout (a plan's error is there already, with its note)."""
        if self.plan_error is None or str(self.run.error) != self.plan_error:
            self._show_error(self.run.error)

    def _continue_finished(self, steps):
        """Go on with the finished run whose epochs were raised: ``steps`` more (None: to its new end)."""
        epochs = self.controls.config()["epochs"]
        self._sync_rate()
        self._run_key = self._settings_key()
        self._settings_changed()   # the readout, without "Start continues ..." (done now)
        self._data_timer.stop()    # (a preview must not clear this run's surface)
        c, (_, y) = self.controls.config(), self._run_data
        self.batch_map.set_run(self.plan, c["seed"], c["shuffle"], self._class_labels(y, self._rows[0]),
                               self._rows[0])
        self._map_is_run = True
        self.loss_plot.extend_run(self.plan)
        self.loss_plot.current.config = dict(c)
        self.run.extend(epochs, self.plan, steps)

    def step_batch(self):
        """Train one step (starting a new run when none is in progress; going on with a finished run whose
        epochs were raised, as Start would)."""
        self.controls.commit_typing()
        if self._refused_for_lab():
            return
        if self.state == IDLE and self._continues():
            return self._continue_finished(1)
        self._sync_rate()
        if (self.state != IDLE or self._plan_ready()) and not self.run.step_batch():
            self._show_refusal()

    def step_epoch(self):
        """Train to the end of the current epoch (as step_batch: a new run, or the finished one going on)."""
        self.controls.commit_typing()
        if self._refused_for_lab():
            return
        if self.state == IDLE and self._continues():
            return self._continue_finished(self.plan.steps_per_epoch)   # (a finished run is at an epoch's end)
        self._sync_rate()
        if (self.state != IDLE or self._plan_ready()) and not self.run.step_epoch():
            self._show_refusal()

    def stop(self):
        self.run.stop()

    def pause_or_resume(self):
        self.controls.commit_typing()
        if self.state == PAUSED and self._refused_for_lab():
            return
        self._sync_rate()
        if not self.run.pause_or_resume():
            self._show_error(self.run.error)

    def reset(self):
        """Discard the current run (its curve too) and go back to editing the settings."""
        self.run.reset()

    def _on_run_discarded(self):
        """The run is gone (Reset, or a start that failed half-way): its curve and marks go, the settings are
        editable again."""
        self._run_data = None
        if self._run_trace is not None and self.loss_plot.current is self._run_trace:
            self.loss_plot.discard_current_run()
        self._run_trace = None
        self.surface_plot.clear_surface()
        self.step_panel.clear()
        self._settings_changed()
        self._refresh_preview()
        self._update_status()

    def clear_runs(self):
        """Clear runs: the earlier runs go; the current one stays until Reset (it may be resumed or continued,
        and the status bar counts its steps)."""
        self.loss_plot.clear_runs(keep_current=self.trainer is not None)

    def _follow_the_data(self):
        """Before a run or a comparison: when the data file changed on disk since the plan was made, it is read
        again and the plan and readout (records, steps, the note that it changed) follow what will train."""
        if self.plan_error is not None:
            return
        try:
            changed = self._data_spec() != self._plan_spec
        except OSError:   # gone since the plan was made: said as a failed read is (and Start stays on)
            changed = True
        if changed:
            self._settings_changed()
        if self.plan_error is not None:
            raise ValueError(self.plan_error)

    def _make_run(self):
        """For the controller: a new Trainer and the plan it follows (raises on invalid settings)."""
        self._follow_the_data()
        self._data_timer.stop()  # a pending preview must not clear this run's surface
        X, y = self.data()
        c = self.controls.config()
        trainer = fb.Trainer(**self._trainer_params(y))
        self._rows = split_rows(len(X), c["validation_split"], c["seed"])
        self._run_key = self._settings_key()
        self._run_data = X, y
        return trainer, self.plan

    def _on_run_started(self, trainer):
        c = self.controls.config()
        label = f"batch {num(c['batch_size'])}"
        if c["optimizer"] != "sgd":
            label += f", {c['optimizer']}"
        label += self._differs_from_last_run(c)
        self._run_trace = self.loss_plot.begin_run(label, trainer.learning_rate, self.run.plan)
        self._run_trace.config = dict(c)
        self.step_panel.clear()
        self._grid = None
        X, y = self._run_data
        scaled = self._target_standardized(trainer.config, y)
        self.loss_plot.set_loss_label(STANDARDIZED_LOSS_LABEL if scaled else LOSS_LABEL)
        self.scores, self._loss_scaled = None, bool(scaled)
        self._show_scores()
        c = self.controls.config()
        self.batch_map.set_run(self.run.plan, c["seed"], c["shuffle"], self._class_labels(y, self._rows[0]),
                               self._rows[0])
        self._map_is_run = True
        if self._surface_wanted(X, y):
            self._show_surface(True)
            self.surface_plot.set_data(X, y, held_out=self._rows[1], seed=0)
            sizes = (X.shape[1], *trainer.config["hidden"], max(self._n_outputs(y), 1))
            self._grid = self.surface_plot.grid(sum(a * b + b for a, b in zip(sizes, sizes[1:])))
        else:
            self._show_surface(False)

    # settings a legend label names when a run differs from the last in them (batch, optimizer, lr: always named)
    LABELLED = ("dataset", "records", "features", "data_path", "target", "hidden", "layers", "activation", "epochs",
                "seed", "shuffle", "drop_last", "validation_split", "standardize", "task", "sorted_by_class")

    def _differs_from_last_run(self, c):
        """``", seed 3, epochs 10"``: up to three settings in which this run differs from the plot's last run (as
        it stands: continued to more epochs, or the one before a run Reset discarded), so that overlaid runs can
        be told apart in the legend ("" when it is the first, or none differ)."""
        runs = self.loss_plot.runs
        last = getattr(runs[-1], "config", None) if runs else None
        if last is None:
            return ""
        names = {"data_path": "file", "validation_split": "validation", "sorted_by_class": "sorted"}
        is_file = c.get("dataset") == "file"
        # a run on another file (or on a file after a generated dataset) is named by the file's name; its records
        # and features are the file's, and "dataset file" says nothing: they would take the legend's three slots
        new_file = is_file and (last.get("dataset") != "file" or c.get("data_path") != last.get("data_path"))
        skip = {"dataset", "records", "features"} if new_file else set()
        if not is_file:   # a generated dataset's run: the file chosen (or not) before is none of its settings
            skip |= {"data_path", "target"}

        def shown(k):
            v = c[k]
            if k == "data_path":
                return os.path.basename(str(v))
            return num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        parts = [f"{names.get(k, k.replace('_', ' '))} {shown(k)}" for k in self.LABELLED
                 if k not in skip and c.get(k) is not None and c.get(k) != last.get(k)]   # (None: a .npz's own y)
        if new_file and c.get("data_path") == last.get("data_path"):   # the same file again after a generated run
            parts.insert(0, f"file {shown('data_path')}")
        return "".join(f", {p}" for p in parts[:3])

    def _launch(self, trainer, steps):
        """For the controller: hand one job to the worker thread."""
        X, y = self._run_data
        train = self._rows[0]
        grid, shape = self._grid if self._grid is not None else (None, None)
        c = self.controls.config()
        whole = len(train) == len(X)   # no validation split: the training records are X itself (no copy)
        job = Job(trainer, X, y, steps, train_X=X if whole else X[train], train_y=y if whole else y[train],
                  full_loss=self.full_loss_check.isChecked(), grid=grid, grid_shape=shape, plan=self.run.plan,
                  seed=c["seed"], shuffle=c["shuffle"])
        if steps != 1:   # the last stepped batch is no longer 'this step'
            self.step_panel.clear()
            if self._grid is not None:
                self.surface_plot.highlight((), ())
        self.runRequested.emit(job)
        return job

    # ------------------------------------------------------------------ from the worker

    def _on_progress(self, history):
        self._latest = history
        self.run.progressed(history.n_steps)

    def _on_surface(self, steps_done, proba):
        if self.trainer is not None and self._grid is not None:
            self.surface_plot.set_proba(steps_done, proba)

    def _on_scores(self, epochs, logs):
        if self.trainer is not None:
            self.scores = (epochs, logs) if epochs else None
            self._show_scores()

    def _show_scores(self):
        label = self.score_label
        if self.trainer is None or self.scores is None:
            label.setText("")
            label.setToolTip("")
            label.setVisible(False)
            return
        label.setText(score_text(*self.scores, standardized=self._loss_scaled))
        metric = "R²" if "r2" in self.scores[1] else "accuracy"
        label.setToolTip(SCORE_TIP.format(metric=metric))
        label.setVisible(True)

    def _on_full_loss(self, steps_done, loss):
        if self.trainer is not None:
            self.loss_plot.add_full_loss(steps_done, loss)

    def _on_stepped(self, info):
        self.step_panel.show_step(info, standardized=self._loss_scaled)
        self._show_batch_on_surface(info)

    def _show_batch_on_surface(self, info):
        """The stepped batch's records highlighted; this epoch's earlier batches faded. Which drawn records the
        epoch has visited is read from the batch map's positions of the epoch (computed once per epoch): a
        step costs O(drawn records), not O(records) (at 2M records the order made at every step froze the
        window ~110 ms a press)."""
        if self._grid is None or info is None:
            return
        train = self._rows[0]   # (sorted: the library's split)
        plan = self.run.plan
        e, b = info["epoch"] - 1, info["batch"] - 1
        if self._map_is_run and self.batch_map.plan is plan:   # (the map shows this run)
            rank = self.batch_map.positions_of(e)
        else:
            c = self.controls.config()
            rank = positions(epoch_order(plan.n_records, c["seed"], e, c["shuffle"]))
        shown = self.surface_plot.shown
        at = np.minimum(np.searchsorted(train, shown), len(train) - 1)
        trained = train[at] == shown   # (held-out records are never faded)
        seen = shown[trained & (rank[at] < b * plan.effective_batch_size)]
        self.surface_plot.highlight(train[info["records"]], seen)

    def _on_job_returned(self, history):
        self._latest = history
        self._on_frame()
        self.run.fit_returned()
        self.fitReturned.emit()

    def _on_errored(self, exc):
        if self.trainer is not None and self.trainer.step:
            self._latest = self.trainer.history
            self._on_frame()
        info = self.step_panel.info
        if info is not None and (self.trainer is None or info["step"] > self.trainer.step):
            self.step_panel.clear()   # a divergence rewound the run: that step no longer exists (as after Reset)
            if self._grid is not None:
                self.surface_plot.highlight((), ())
        self._show_error(exc)
        self.run.errored(exc)
        self.fitReturned.emit()

    def _show_error(self, exc):
        if exc is None:
            return
        text = str(exc)
        if isinstance(exc, fb.DivergenceError):   # the library's advice, in the app's words: what the app can do
            text = text[:text.index(". ", text.index("; ")) + 1] if "; " in text else text   # (up to its advice)
            scale = "" if self.controls.config()["standardize"] else ", or tick standardize"
            text += (" This run has ended: lower the learning rate" + scale + ", then Start (or Step) trains a new "
                     "run from the first step.")
        self.readout.setText(error_html(text))

    def _on_run_ended(self, how):
        if how != "errored" and self.controls.config()["dataset"] == "file" and self._run_file_changed():
            # the run no longer goes on with its records: the readout describes the file as it is now (the next
            # run's), not "the run goes on with its N records" of a run that has ended
            self._settings_changed()
            self._data_timer.stop()   # (a preview must not clear the ended run's surface and batch map)
        self._update_status()
        self.runEnded.emit(how)

    # ------------------------------------------------------------------ drawing

    def _smoothing_changed(self, value):
        self.smoothing_label.setText(f"smoothing {value / SMOOTHING_STEPS:.3g}")
        self.loss_plot.set_smoothing(value / SMOOTHING_STEPS)

    def _on_frame(self):
        h, self._latest = self._latest, None
        if h is not None and self.trainer is not None:
            self.loss_plot.update_history(h)
        self.loss_plot.redraw()
        now = time.perf_counter()
        if self._map_is_run and self.trainer is not None and self.loss_plot.current is not None and (
                self.state != RUNNING or now - self._map_drawn >= MAP_SECONDS):
            self._map_drawn = now   # at full speed the map shows the epoch's progress a few times a second
            self.batch_map.show_steps(self.loss_plot.current.n)
        elif not self._map_is_run and self.batch_map.waiting():   # a preview whose order a thread computes
            self.batch_map.show_steps(0)
        if self.state == RUNNING or h is not None:
            self._update_status()

    def _update_status(self):
        s = self.status_labels
        plan = self.run.plan
        if self.trainer is None or plan is None:
            if self.scores is not None:
                self.scores = None
                self._show_scores()
            for label in s.values():
                label.setText("")
            s["step"].setText("no run yet")
            self.progress_bar.setValue(0)
            return
        trace = self.loss_plot.current
        step = trace.n if trace else 0
        spe = plan.steps_per_epoch
        epoch, batch = divmod(max(step - 1, 0), spe)
        s["step"].setText(f"step {num(step)} / {num(plan.total_steps)}")
        s["epoch"].setText(f"epoch {num(epoch + 1 if step else 0)} / {num(plan.epochs)}")
        s["batch"].setText(f"batch {num(batch + 1 if step else 0)} / {num(spe)}")
        rate = self.run.steps_per_second
        records = rate * trace.records_per_epoch / spe if trace else float("nan")
        shown = self.state == RUNNING and rate == rate
        s["rate"].setText(f"{num(round(rate))} steps/s · {num(round(records))} records/s" if shown else "")
        s["elapsed"].setText(f"{clock(self.run.elapsed())} · {self.run.status_word()}")
        self.progress_bar.setValue(progress_value(step, plan.total_steps))

    def _apply_state(self):
        ok = self.plan_error is None or self._disk_retry   # (a file fixed on disk: pressing reads it again)
        r, c = self.run, self.controls
        c.set_editable(self.state == RUNNING, self.state == PAUSED)
        lab = self.lab.running   # then the state is idle or paused: nothing may train
        c.start_button.setEnabled(r.can("start", ok) and not lab)
        c.pause_button.setEnabled(r.can("pause") and not lab)
        c.pause_button.setText("▶  Resume" if self.state == PAUSED else "Pause")
        c.step_batch_button.setEnabled(r.can("step", ok) and not lab)
        c.step_epoch_button.setEnabled(r.can("step", ok) and not lab)
        self.lab_note.setVisible(lab)
        self.lab.set_blocked(TRAINING_BLOCKS_LAB if self.state == RUNNING else None)
        c.stop_button.setEnabled(r.can("stop"))
        c.reset_button.setEnabled(r.can("reset"))
        c.export_csv_button.setEnabled(r.can("export"))
        c.export_png_button.setEnabled(self.state != RUNNING)
        self.full_loss_check.setEnabled(self.state != RUNNING)
        self._update_status()

    # ------------------------------------------------------------------ the batch-size lab

    def compare_batch_sizes(self, text):
        """Train the current settings at each batch size in ``text`` (the lab's button)."""
        if self.lab.running:
            return
        if self.state == RUNNING:
            return self.lab.show_error(TRAINING_BLOCKS_LAB)
        if not self._plan_ready():
            return self.lab.show_error(self.plan_error)
        try:
            self._follow_the_data()
            sizes = parse_sizes(text, self.plan.n_records)
            X, y = self.data()
        except (ValueError, OSError) as exc:
            return self.lab.show_error(exc)
        c = self.controls.config()
        params = self._trainer_params(y)
        params.pop("batch_size")
        params["learning_rate"] = c["learning_rate"]
        scale = None if c["lr_scaling"] == "none" else c["lr_scaling"]
        job = LabJob(X, y, sizes, params, scale, c["reference_batch"],
                     standardized_target=self._target_standardized(params, y))
        self.lab.begin(job)
        self.labRequested.emit(job)

    def export_comparison(self, path):
        """Write the lab's runs (the library's ``batch_size,step,epoch,records_seen,seconds,loss``)."""
        if not self.lab.histories:
            raise ValueError("there is no comparison to export yet")
        write_comparison_csv(path, self.lab.histories, self.lab.rows)

    # ------------------------------------------------------------------ exports

    def export_history(self, path):
        """Write the current run's history, one row per step, numbered from 1 (``History.to_csv``)."""
        if self.trainer is None:
            raise ValueError("there is no run to export yet")
        self.trainer.history.to_csv(path)

    def export_plot(self, path):
        """Save the loss plot as a PNG."""
        self.loss_plot.redraw(force=True)
        if not self.loss_plot.grab().save(os.fspath(path)):
            raise OSError(f"could not write {path!r}")

    def screenshot(self, path):
        """Save a picture of the whole window."""
        self.loss_plot.redraw(force=True)
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
        """Stop training and the worker threads (also done on close; a second call does nothing).

        The step in progress ends (the trainer's stop) and the thread is waited for up to
        ``CLOSE_WAIT_SECONDS``; a step longer than that is left to end on its own, its thread kept
        until then (see ``worker.stop_thread``), so closing never freezes and never aborts.
        """
        if self._closed:
            return
        self._closed = True
        self._frame.stop()
        self._data_timer.stop()
        self._watch.stop()
        for signal, slot in self._worker_links:   # nothing the worker still sends reaches a closed window
            signal.disconnect(slot)
        if self.run.job is not None:
            self.run.job.cancel()
        deadline = time.perf_counter() + CLOSE_WAIT_SECONDS   # one wait for both threads
        self.lab.thread.quit()   # an idle lab ends while the training thread is waited for
        stop_thread(self.thread, self.worker, CLOSE_WAIT_SECONDS)
        self.lab.shutdown(max(0.0, deadline - time.perf_counter()))

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)
