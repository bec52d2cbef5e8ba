"""The batch-size lab: the same run at several batch sizes (``fastbatch.compare_batch_sizes``), overlaid and tabled.

Same data, network, initial params, seed and record budget; the rate scaled with the batch
size when asked. The runs train one after another (each timed alone), so the lab can say which
one it is on, and Cancel stops the one in progress within about a step. The plot overlays the
runs against records seen (default), steps or seconds; the table gives each run's steps, speed,
losses and the measured gradient noise scale, and marks the batch size nearest it as suggested.
"""
import math
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)
from PySide6.QtCore import Qt

import fastbatch as fb
from fastbatch.compare import mark_suggested, pooled_noise_scale

from .fmt import clock, esc, num
from .loss_plot import RUN_COLORS, CountAxis

DEFAULT_SIZES = "1, 8, 32, 128, full"
COMPARE_TEXT, CANCEL_TEXT = "Compare batch sizes", "■  Cancel"
LAB_AXES = {"records": "records seen", "steps": "steps done", "seconds": "seconds (at the run's mean speed)"}
COLUMNS = [("batch_size", "batch"), ("learning_rate", "lr"), ("steps_per_epoch", "steps / epoch"),
           ("last_batch", "last batch"), ("steps_per_s", "steps/s"), ("records_per_s", "records/s"),
           ("seconds_per_epoch", "s / epoch"), ("train_loss", "train loss"), ("val_loss", "val loss"),
           ("noise_scale", "noise scale"), ("suggested", "")]
LAB_LOSS_LABEL = "loss of each step's batch (thin) · epoch mean (dots)"
# a regression run with standardize_target: its losses are the standardised target's (short: the axis is short)
LAB_STANDARDIZED_LOSS_LABEL = "loss (standardised target): batch (thin) · epoch mean (dots)"


def parse_sizes(text, n_records):
    """``"1, 8, 32, full"`` -> [1, 8, 32, n_records]; ValueError naming what is wrong."""
    sizes = []
    for part in text.replace(";", ",").split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part in ("full", "all"):
            sizes.append(n_records)
            continue
        try:
            b = int(part.replace("_", ""))
        except ValueError:
            raise ValueError(f"batch sizes must be whole numbers or 'full', got {part!r}") from None
        if b < 1:
            raise ValueError(f"batch sizes must be at least 1, got {b}")
        sizes.append(min(b, n_records))
    sizes = sorted(set(sizes))
    if not sizes:
        raise ValueError("give at least one batch size, e.g. 1, 8, 32, 128, full")
    return sizes


@dataclass
class LabJob:
    X: np.ndarray
    y: np.ndarray
    sizes: list
    params: dict            # Trainer parameters, without batch_size
    scale_lr: str | None
    reference: int
    stop: threading.Event = field(default_factory=threading.Event)   # Cancel or close: the run in progress
                                                                      # stops within ~0.1 s
    standardized_target: bool = False   # a regression of standardize_target: History's losses (the plot's and
                                        # the table's) are the standardised target's


class LabWorker(QObject):
    """Runs the comparison off the GUI thread: one ``fb.compare_batch_sizes`` call per batch size, because the
    library says nothing from inside a call and the lab must say which run it is on."""

    runStarted = Signal(int, int)        # (index of the run, its batch size)
    finished = Signal(object, object)    # (histories by batch size, summary rows)
    errored = Signal(object)
    cancelled = Signal()                 # the job's stop was set (Cancel): no results, as a partial one would
                                         # compare unequal budgets

    @Slot(object)
    def run(self, job):
        histories, rows = {}, []
        try:
            for i, b in enumerate(job.sizes):
                self.runStarted.emit(i, b)
                h, summary = fb.compare_batch_sizes(  # (one size a call: the reference is the lab's, when it scales)
                    job.X, job.y, [b], scale_lr=job.scale_lr,
                    reference_batch_size=job.reference if job.scale_lr else None, stop=job.stop, **job.params)
                histories.update(h)
                rows += summary.to_dict("records") if hasattr(summary, "to_dict") else list(summary)
        except InterruptedError:
            self.cancelled.emit()
            return
        except Exception as exc:   # reported, never a silent thread death
            traceback.print_exc()
            self.errored.emit(exc)
            return
        mark_suggested(rows)   # each call above saw one size: the pick is made over them all
        self.finished.emit(histories, rows)


class BatchLab(QWidget):
    """objectName ``batchLab``: the sizes box, ``compareBatchSizesButton`` (Cancel while comparing),
    ``comparisonPlot``, ``comparisonTable``."""

    compareRequested = Signal(str)   # the sizes as typed; the window supplies data and settings
    done = Signal(object)            # on the GUI thread, after the results (None), the error (the exception)
                                     # or a cancel (an InterruptedError)
    runningChanged = Signal(bool)    # a comparison began (True) or ended (False)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("batchLab")
        self.sizes_edit = QLineEdit(DEFAULT_SIZES)
        self.sizes_edit.setObjectName("batchSizesEdit")
        self.sizes_edit.setToolTip("batch sizes to compare, comma-separated; 'full' is all training records")
        self.axis_combo = QComboBox()
        self.axis_combo.setObjectName("comparisonAxisCombo")
        for key, text in LAB_AXES.items():
            self.axis_combo.addItem(text, key)
        self.button = QPushButton(COMPARE_TEXT)
        self.button.setObjectName("compareBatchSizesButton")
        self.button.setToolTip("train the same run (data, network, initial params, seed, epochs) at each batch "
                               "size, with the rate scaled as set")
        self.status = QLabel("same data, network, initial params, seed and epochs at each batch size")
        self.status.setObjectName("comparisonStatus")
        self.status.setWordWrap(True)
        self.note = QLabel()   # why the button is off (a training run is using the cores)
        self.note.setObjectName("comparisonBlockedLabel")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a5a00")
        self.note.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(QLabel("batch sizes:"))
        top.addWidget(self.sizes_edit, 1)
        top.addWidget(QLabel("x axis:"))
        top.addWidget(self.axis_combo)
        top.addWidget(self.button)

        self.plot = pg.PlotWidget(background="w", axisItems={"bottom": CountAxis("bottom")})
        self.plot.setObjectName("comparisonPlot")
        pi = self.plot.getPlotItem()
        pi.setMenuEnabled(False)
        pi.setLabel("left", LAB_LOSS_LABEL)
        pi.getAxis("left").enableAutoSIPrefix(False)
        pi.setLabel("bottom", LAB_AXES["records"])
        self.legend = pi.addLegend(offset=(-10, 10), labelTextSize="10pt", labelTextColor="#222222",
                                   brush=pg.mkBrush(255, 255, 255, 225), pen=pg.mkPen("#bbbbbb"))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("comparisonTable")
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 1)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(22 * 6 + 30)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 6, 6, 4)
        lay.addLayout(top)
        lay.addWidget(self.note)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)
        self.histories, self.rows = {}, []
        self.job = None              # the comparison in progress
        self._blocked = None         # why a comparison may not start now (None: it may)
        self._run = None             # (index, batch size, start time) of the run in progress
        self._clock = QTimer(self)   # the elapsed time of the run in progress, twice a second
        self._clock.setInterval(500)
        self._clock.timeout.connect(self._show_progress)
        self.button.clicked.connect(self._clicked)
        self.axis_combo.currentIndexChanged.connect(lambda: self._draw())

        self.thread = QThread()
        self.thread.setObjectName("batchLabThread")
        self.worker = LabWorker()
        self.worker.moveToThread(self.thread)
        self.thread.start()
        self._links = ((self.worker.runStarted, self._run_started), (self.worker.finished, self.show_results),
                       (self.worker.errored, self.show_error), (self.worker.cancelled, self._cancelled))
        for signal, slot in self._links:
            signal.connect(slot)

    running = property(lambda self: self.job is not None)

    def _clicked(self):
        if self.running:
            self.cancel()
        else:
            self.compareRequested.emit(self.sizes_edit.text())

    def begin(self, job):
        """The window hands ``job`` to the worker: the button becomes Cancel until it ends."""
        self.job, self._run = job, None
        self.button.setText(CANCEL_TEXT)
        self.button.setEnabled(True)
        self.status.setText(f"training {len(job.sizes)} runs, one after another: "
                            f"batch {', '.join(num(b) for b in job.sizes)} …")
        self.runningChanged.emit(True)

    def cancel(self):
        """Stop the comparison: its run in progress ends within about a step, and no results are shown."""
        if self.job is not None:
            self.job.stop.set()
            self.button.setEnabled(False)   # until the worker confirms
            self.status.setText("cancelling …")

    def set_blocked(self, reason):
        """While ``reason`` (not None) holds, no comparison may start; it is shown above the status."""
        self._blocked = reason
        self.note.setText(esc(reason or ""))
        self.note.setVisible(reason is not None)
        if not self.running:
            self.button.setEnabled(reason is None)

    def _end(self):
        was_running = self.running
        self.job, self._run = None, None
        self._clock.stop()
        self.button.setText(COMPARE_TEXT)
        self.button.setEnabled(self._blocked is None)
        if was_running:
            self.runningChanged.emit(False)

    def _run_started(self, index, batch_size):
        self._run = (index, batch_size, time.perf_counter())
        self._show_progress()
        self._clock.start()

    def _show_progress(self):
        if self._run is None or self.job is None or self.job.stop.is_set():
            return
        i, b, t0 = self._run
        self.status.setText(f"run {i + 1} of {len(self.job.sizes)}: batch {num(b)} · "
                            f"{clock(time.perf_counter() - t0)} so far")

    def _cancelled(self):
        self._end()
        self.status.setText("cancelled: nothing is shown (unfinished runs would compare unequal budgets)")
        self.done.emit(InterruptedError("the batch-size comparison was cancelled"))

    def show_error(self, exc):
        text = str(exc)
        if isinstance(exc, fb.DivergenceError) and self.job is not None and self._run is not None:
            # the library's advice is a script's (trainer.learning_rate /= 100, standardize=True) and says where
            # the trainer is now: a comparison keeps no run, so name the batch size and what the app can do
            b = num(self._run[1])
            # (compare_batch_sizes names the run, DivergenceError.run: "training diverged at batch size 8: ...")
            head = "training diverged" if exc.run is None else f"training diverged at {exc.run}"
            what = (text.split("; ")[0] if exc.run is None else text.split(". Try a smaller")[0]).replace(
                head, f"batch {b} diverged", 1)
            scale = "" if self.job.params.get("standardize") else ", or tick standardize"
            text = (f"{what}. No comparison is shown: lower the learning rate{scale} (or leave batch {b} out), "
                    "then compare again.")
        self._end()
        self.status.setText(f"<span style='color:#c00000'>⚠ {esc(text)}</span>")
        self.done.emit(exc)

    def show_results(self, histories, rows):
        scaled = self.job is not None and self.job.standardized_target
        self._end()
        self.histories, self.rows = histories, rows
        self.table.setHorizontalHeaderLabels([title + ("\n(standardised)" if scaled and key in ("train_loss", "val_loss")
                                                        else "") for key, title in COLUMNS])
        self.plot.getPlotItem().setLabel("left", LAB_STANDARDIZED_LOSS_LABEL if scaled else LAB_LOSS_LABEL)
        pick = next((r["batch_size"] for r in rows if r["suggested"]), None)
        noise = pooled_noise_scale(rows)   # the library's pooling of the runs' estimates
        self.status.setText(
            (f"measured gradient noise scale ≈ {num(round(noise))} records: batches well below it "
             f"waste steps, well above it waste records (McCandlish et al. 2018). Suggested: batch {num(pick)}."
             if pick is not None and math.isfinite(noise) else "no noise-scale estimate (a batch of 1 carries none)"))
        self._fill_table(rows)
        self._draw()
        self.done.emit(None)

    def _fill_table(self, rows):
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, (key, _) in enumerate(COLUMNS):
                v = r.get(key)
                if key == "suggested":
                    text = "★ suggested" if v else ""
                elif isinstance(v, float) and not math.isfinite(v):
                    text = "—"
                elif key in ("train_loss", "val_loss", "learning_rate", "seconds_per_epoch"):
                    text = f"{v:.4g}"
                elif key == "noise_scale":
                    text = num(round(v))
                else:
                    text = num(round(v) if isinstance(v, float) and v > 100 else v)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(i, j, item)

    def _draw(self):
        pi = self.plot.getPlotItem()
        pi.clear()
        self.legend.clear()
        axis = self.axis_combo.currentData()
        pi.setLabel("bottom", LAB_AXES[axis])
        speed = {r["batch_size"]: r for r in self.rows}
        tops = []
        for k, (b, h) in enumerate(sorted(self.histories.items())):
            color = RUN_COLORS[k % len(RUN_COLORS)]
            r = speed[b]
            x = {"records": h.records_seen.astype(np.float64), "steps": h.step + 1.0,
                 "seconds": (h.step + 1.0) / r["steps_per_s"]}[axis]
            faint = pg.mkColor(color)
            faint.setAlpha(45)
            raw = pi.plot(x, h.loss, pen=pg.mkPen(faint, width=1))
            raw.setDownsampling(auto=True, method="peak")
            raw.setClipToView(True)
            m = h.epoch_loss
            ends = np.searchsorted(h.epoch, np.arange(1, len(m) + 1)) - 1   # each epoch's last step
            starts = np.concatenate([[-1], ends[:-1]])
            xm = (np.interp(starts, np.arange(len(x)), x, left=0.0) + x[ends]) / 2
            star = " ★ suggested" if r["suggested"] else ""
            means = pi.plot(xm, m, pen=pg.mkPen(color, width=2.5), symbol="o", symbolSize=7, symbolBrush=color,
                            symbolPen=None)
            self.legend.addItem(means, f"batch {num(b)}, lr {num(r['learning_rate'])}{star}")
            tops.append(float(np.max(m)) if len(m) else float(np.median(h.loss)))
        pi.enableAutoRange()
        if tops:   # a few spikes of single small batches must not squash the comparison
            pi.setYRange(0, 1.6 * max(tops), padding=0)

    def shutdown(self, wait_seconds=2.0):
        """Quit the lab's thread; a comparison still running is left to end on its own (never an abort)."""
        from .worker import stop_thread
        for signal, slot in self._links:
            _disconnect(signal, slot)
        self._clock.stop()
        if self.job is not None:
            self.job.stop.set()
        stop_thread(self.thread, self.worker, wait_seconds)


def _disconnect(signal, slot):
    """Disconnect if connected (a second shutdown is a no-op)."""
    try:
        signal.disconnect(slot)
    except (RuntimeError, TypeError):
        pass
