"""The loss plot: per-step loss, epoch means, epoch boundaries, validation and full-training loss, the last runs.

Geometry (the same on every x axis): step s (1-based) occupies the interval (s-1, s] and its
loss is drawn at the middle of it; epoch e occupies ((e-1)·spe, e·spe], so its boundary is
drawn as soon as its last step is done, its mean sits at its middle and its validation loss at
its end. The loss on all training records after k steps sits at k.

Bounded at any run length: the per-step loss stays in the library's History (read, never
copied); a run keeps an incremental min/max pyramid of it (``decimate.py``: O(new steps) per
frame, bounded memory), and a redraw draws about one min/max pair per pixel column from it:
O(pixels) for any zoom, what peak downsampling needs (a lone spike stays visible). Epoch means
and validation losses are drawn the same way when there are more in view than pixels; epoch
boundaries get at most :data:`MAX_EPOCH_LINES` + 1 lines, and the worker spaces the full-loss
points (``worker.FULL_LOSS_POINTS``).
"""
import math
import tempfile

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetricsF
from .decimate import Pyramid, debias, ema_filter
from .fmt import num

X_AXES = {"step": "steps done", "epoch": "epochs done", "records": "records seen"}
RUN_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
MAX_EPOCH_LINES = 10       # more epochs than this: a line every k epochs, k = 1, 2, 5, 10, 20, 50...
EPOCH_BASE = 16            # epochs per finest min/max block of the per-epoch series
SPILL_STEPS = 1 << 23      # an older run longer than this moves its per-step losses to a temporary file...
SPILL_CHUNK = 1 << 22      # ...this many a frame (16 MB of float32: a few ms)
RAW_LIMIT = 4096           # at most this many steps in view: drawn one by one from the History
MARKERS_BELOW = 200        # fewer points than this in view: each carries a marker
LABEL_PIXELS = 70          # epoch labels at least this far apart (their middles), or their widest one's width...
LABEL_GAP = 6              # ...and this many pixels: never less between two labels' edges, as drawn
MANY_EPOCH_MARKS = 400     # more epoch means (or validation points) in view than this: a line, no markers
MIN_SPAN = 0.10            # the y range spans at least this share of the values shown
MEAN_LABEL = "epoch mean, weighted by batch size"
VAL_LABEL = "validation loss at epoch end"
FULL_LABEL = "loss on all training records"
LOSS_LABEL = "loss"
# a regression run of standardize_target: History (and so every loss drawn) is in the standardised target's units
STANDARDIZED_LOSS_LABEL = "loss (of the standardised target)"


def nice_step(n, cap):
    """The smallest k in 1, 2, 5, 10, 20, 50, ... with ceil(n / k) <= cap."""
    k = 1
    while math.ceil(n / k) > cap:
        k = _next_nice(k)
    return k


def _next_nice(k):
    digits = 10 ** int(math.floor(math.log10(k)))
    return {1: 2, 2: 5, 5: 10}[k // digits] * digits


class CountAxis(pg.AxisItem):
    """An axis of counts (steps, epochs, records): whole-number ticks with thousands separators."""

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        if self.logMode:
            return levels
        whole = [(sp, off) for sp, off in levels if sp >= 1]
        return whole or [(1.0, 0.0)]

    def tickStrings(self, values, scale, spacing):
        if self.logMode:
            return [num(round(10 ** v, 6)) for v in values]
        return [num(round(v)) if abs(v - round(v)) < 1e-6 else f"{v:g}" for v in values]


def ema(loss, lo, hi, weight, prev):
    """TensorBoard's debiased EMA of ``loss[lo:hi]``, the accumulator being ``prev`` after step lo-1."""
    return debias(ema_filter(loss[lo:hi], weight, prev), np.arange(lo + 1, hi + 1), weight)


class Series:
    """A growing float64 array: room doubles, ``values`` is the part in use."""

    def __init__(self):
        self._a = np.empty(16)
        self.n = 0

    @property
    def values(self):
        return self._a[:self.n]

    def put(self, start, new):
        """Write ``new`` from index ``start`` (at most the current length); what was after it goes.
        False when ``start`` leaves a gap."""
        if start > self.n:
            return False
        end = start + len(new)
        if end > len(self._a):
            grown = np.empty(max(end, 2 * len(self._a)))
            grown[:start] = self._a[:start]
            self._a = grown
        self._a[start:end] = new
        self.n = end
        return True


class EpochSeries:
    """Per-epoch values of a run (epoch means, validation losses) and their min/max pyramid."""

    def __init__(self):
        self.series = Series()
        self.pyramid = Pyramid(base=EPOCH_BASE)

    def __len__(self):
        return self.series.n

    @property
    def values(self):
        return self.series.values

    def put(self, start, new):
        if len(new) == 0:
            return
        rewrite = start < self.series.n
        if not self.series.put(start, np.asarray(new, dtype=np.float64)):
            return
        if rewrite:      # (never while a run grows: its finished epochs do not change)
            self.pyramid = Pyramid(base=EPOCH_BASE)
        self.pyramid.absorb(self.series.values)


class RunTrace:
    """One run on the plot: its items, its bounded step view, epoch means, validation and full loss."""

    def __init__(self, plot_item, label, color, plan):
        self.label, self.color, self.plan = label, color, plan
        self.config = None           # the window's settings of this run (what later runs' labels are told from)
        self.rates = [label[1]]
        self.base_label = label[0]
        self.spe = plan.steps_per_epoch
        # every batch of an epoch is full but the last (no per-step arrays: an epoch may have millions)
        self.full_batch, self.last_batch = plan.effective_batch_size, plan.last_batch_size
        self.records_per_epoch = (self.spe - 1) * self.full_batch + self.last_batch
        self.history = None
        self.loss = np.empty(0)      # the History's per-step losses: a view of the library's array, never copied
        self._spill = None           # [file, values written] while they move to a temporary file
        self.pyramid = Pyramid()     # their min/max per block at every scale, and the smoothing
        self.means = EpochSeries()
        self.vals = EpochSeries()
        self.full_steps, self.full_loss = [], []   # a bounded number (the worker spaces them, see worker.py)
        self._full_arrays = None
        self.n = 0
        self.drawn_buckets = None    # (starts, ends) in steps of the min/max pairs drawn last (None: each step)
        self.current = True
        dark = pg.mkColor(color).darker(160)
        self.raw = plot_item.plot([], [], pen=pg.mkPen(color, width=1))
        self.smooth = plot_item.plot([], [], pen=pg.mkPen(color, width=2.2))
        self.means_item = plot_item.plot([], [], pen=None, symbol="o", symbolSize=9, symbolBrush=dark,
                                         symbolPen=pg.mkPen("w", width=1.5))
        self.val_item = plot_item.plot([], [], pen=pg.mkPen(dark, width=2, style=Qt.DashLine), symbol="t1",
                                       symbolSize=10, symbolBrush="w", symbolPen=pg.mkPen(dark, width=2))
        self.full_item = plot_item.plot([], [], pen=pg.mkPen(dark, width=2.5), symbol="s", symbolSize=5,
                                        symbolBrush=dark, symbolPen=None)
        for item in (self.means_item, self.val_item, self.full_item):
            item.setZValue(10)  # over the per-step curves
        self.items = [self.raw, self.smooth, self.means_item, self.val_item, self.full_item]
        self.lines = []         # (epoch boundary index, InfiniteLine): at most MAX_EPOCH_LINES + 2
        self.set_plan(plan)

    @property
    def epoch_means(self):
        return self.means.values

    @property
    def val_loss(self):
        return self.vals.values

    def set_plan(self, plan):
        """Which epoch boundaries get a line: every k-th (k = 1, 2, 5, 10, ...) and the run's end."""
        self.plan = plan
        every = nice_step(plan.epochs, MAX_EPOCH_LINES)
        self.line_epochs = list(range(0, plan.epochs + 1, every))
        if self.line_epochs[-1] != plan.epochs:
            self.line_epochs.append(plan.epochs)

    def batch_size(self, batch):
        """Records in batch ``batch`` (0-based, array or scalar) of an epoch."""
        return np.where(np.asarray(batch) == self.spe - 1, self.last_batch, self.full_batch)

    @property
    def text(self):
        rates = " → ".join(num(r) for r in self.rates)
        return f"{self.base_label}, lr {rates}"

    # ------------------------------------------------------------------ geometry

    def x_done(self, k, axis):
        """x after ``k`` steps (array or scalar): the right end of step k's interval."""
        k = np.asarray(k, dtype=np.int64)
        if axis == "step":
            return k.astype(np.float64)
        if axis == "epoch":
            return k / self.spe
        full, part = np.divmod(k, self.spe)
        return (full * self.records_per_epoch + part * self.full_batch).astype(np.float64)

    def x_mid(self, i, axis):
        """x of the middle of the interval of the step with 0-based index ``i``."""
        i = np.asarray(i, dtype=np.int64)
        if axis == "step":
            return i + 0.5
        if axis == "epoch":
            return (i + 0.5) / self.spe
        return self.x_done(i, axis) + self.batch_size(i % self.spe) / 2.0

    def epoch_x(self, e, axis):
        """x of ``e`` (array, may be fractional) epochs into the run."""
        e = np.asarray(e, dtype=np.float64)
        return e * {"step": self.spe, "epoch": 1, "records": self.records_per_epoch}[axis]

    def steps_at(self, x, axis):
        """How many steps are done at x (the inverse of :meth:`x_done`, rounded down)."""
        if axis == "step":
            return int(math.floor(x))
        if axis == "epoch":
            return int(math.floor(x * self.spe))
        full, rem = divmod(max(x, 0.0), self.records_per_epoch)
        return int(full) * self.spe + min(int(rem // self.full_batch), self.spe - 1)

    # ------------------------------------------------------------------ data in

    def update(self, history):
        """The run's History now: only what is new is read (O(new steps, new epochs))."""
        self.history = history
        self.loss = history.loss
        self.n = history.n_steps
        self.pyramid.absorb(self.loss)
        k = len(self.vals)
        since = getattr(history, "val_loss_since", None)
        new = since(k) if since is not None else np.asarray(history.val_loss, dtype=np.float64)[k:]
        self.vals.put(k, new)

    def start_spill(self):
        """This run is no longer the newest: when it is long, its per-step losses move to an unnamed
        temporary file (:meth:`spill_step`, a slice a frame), then the library's array is let go, so
        overlaid long runs do not add up in memory. Where no file can be written they stay."""
        if self.n <= SPILL_STEPS or self._spill is not None or isinstance(self.loss, np.memmap):
            return
        try:
            self._spill = [tempfile.TemporaryFile(prefix="fastbatch-loss-"), 0]   # gone when closed or at exit
        except OSError:
            self._spill = None

    @property
    def spilling(self):
        return self._spill is not None

    def spill_step(self, budget=None):
        """Write the next slice; when all are written, read them from the file from then on."""
        f, done = self._spill
        end = min(self.n, done + (budget or SPILL_CHUNK))
        try:
            np.ascontiguousarray(self.loss[done:end]).tofile(f)
            if end == self.n:
                f.flush()
                mapped = np.memmap(f, dtype=self.loss.dtype, mode="r", shape=(self.n,))
        except (OSError, ValueError):   # a full disk: the values stay in memory
            f.close()
            self._spill = None
            return
        if end < self.n:
            self._spill[1] = end
            return
        f.close()                       # (the mapping keeps the data)
        self.loss, self.history, self._spill = mapped, None, None

    def add_full(self, steps_done, loss):
        self.full_steps.append(int(steps_done))
        self.full_loss.append(float(loss))
        self._full_arrays = None

    def full_arrays(self):
        if self._full_arrays is None:
            self._full_arrays = (np.asarray(self.full_steps, dtype=np.int64), np.asarray(self.full_loss))
        return self._full_arrays

    # ------------------------------------------------------------------ drawing

    def steps_at_many(self, x, axis):
        """:meth:`steps_at` of an array of x (>= 0)."""
        x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
        if axis == "step":
            return np.floor(x).astype(np.int64)
        if axis == "epoch":
            return np.floor(x * self.spe).astype(np.int64)
        full, rem = np.divmod(x, self.records_per_epoch)
        return full.astype(np.int64) * self.spe + np.minimum(rem // self.full_batch, self.spe - 1).astype(np.int64)

    def step_view(self, a, z, axis, weight, pixels, edges=None):
        """(x, y, smoothed x, smoothed y, steps) of steps [a, z) for about ``pixels`` columns.

        Few steps: each one. More: min and max per bucket of about a pixel column (``edges``: the
        columns' boundaries in steps, e.g. widening on a log axis; default equal ones), drawn as a
        pair at the bucket's middle, which peak downsampling draws as one vertical stroke, from the
        pyramid: O(pixels), whatever the run's length. The smoothed curve is sampled at each
        bucket's end (None, or shorter, while it is being recomputed for a new weight).
        """
        loss, pyr = self.loss, self.pyramid
        z = min(z, self.n)
        a = max(0, min(a, z))
        self.drawn_buckets = None
        if z - a <= RAW_LIMIT:
            idx = np.arange(a, z)
            x = self.x_mid(idx, axis)
            sy = pyr.smoothed(loss, a, z) if weight > 0 else None
            return x, np.asarray(loss[a:z], dtype=np.float64), x, sy, z - a
        if edges is None:
            edges = np.linspace(a, z, max(1, min(pixels, z - a)) + 1)
        starts, ends, mins, maxs = pyr.columns(loss, np.concatenate(([a], np.clip(edges[1:-1], a, z), [z])))
        self.drawn_buckets = (starts, ends)
        xc = (self.x_done(starts, axis) + self.x_done(ends, axis)) / 2
        x = np.repeat(xc, 2)
        y = np.empty(2 * len(mins))
        y[0::2], y[1::2] = mins, maxs
        sx = sy = None
        if weight > 0:
            if z - a <= pyr.base * pixels:    # a fine range: its every step is cheap to smooth
                every = pyr.smoothed(loss, a, z)
                if every is not None:
                    sy = every[ends - 1 - a]
            else:
                known, values = pyr.smoothed_at(loss, ends)
                sy = values[known] if known.any() else None
                ends = ends[known]
            if sy is not None:
                sx = self.x_mid(ends - 1, axis)
        return x, y, sx, sy, z - a

    def epoch_view(self, es, offset, x0, x1, axis, pixels, log_x=False):
        """(x, y, each) of a per-epoch series (value i drawn at ``i + offset`` epochs) within [x0, x1]:
        each value when they are at most ``pixels`` (``each`` True), else min/max pairs per bucket of
        about a pixel column: equal ones, or on a log axis (``log_x``) ones that widen to the right as its
        columns do (the first epochs each their own, drawn where they belong)."""
        n = len(es)
        width = float(self.epoch_x(1, axis))
        a = max(0, math.ceil(x0 / width - offset - 1e-9))
        z = min(n, math.floor(x1 / width - offset + 1e-9) + 1)
        if z <= a:
            return np.empty(0), np.empty(0), True
        if z - a <= pixels:
            return self.epoch_x(np.arange(a, z) + offset, axis), es.values[a:z].copy(), True
        if log_x:   # the columns' edges, as the values drawn in them: value i sits at (i + offset) epochs
            lo = max(x0, float(self.epoch_x(a + offset, axis)))
            xs = 10 ** np.linspace(math.log10(lo), math.log10(max(x1, lo)), pixels + 1)
            edges = np.clip(np.ceil(xs / width - offset - 1e-9), a, z)
            edges[0], edges[-1] = a, z
            starts, ends, mins, maxs = es.pyramid.columns(es.values, edges)
        else:
            starts, ends, mins, maxs = es.pyramid.buckets(es.values, a, z, pixels)
        x = np.repeat(self.epoch_x((starts + ends - 1) / 2 + offset, axis), 2)
        y = np.empty(2 * len(mins))
        y[0::2], y[1::2] = mins, maxs
        return x, y, False

    def set_current(self, current):
        """The newest run is drawn bold; older ones fade (their legend swatches keep full colour)."""
        self.current = current
        for item in self.items:
            item.setOpacity(1.0 if current else 0.4)
        for _, line in self.lines:
            line.setOpacity(1.0 if current else 0.5)


class LossPlot(pg.PlotWidget):
    """The loss plot (objectName ``lossPlot``); feed it with :meth:`begin_run` and :meth:`update_history`."""

    def __init__(self, parent=None, max_runs=3):
        super().__init__(parent, background="w", axisItems={"bottom": CountAxis("bottom")})
        self.setObjectName("lossPlot")
        self.max_runs = max_runs
        self.axis = "step"
        self.log_x = self.log_y = False
        self.smoothing = 0.0
        self.runs = []
        self.lr_lines = []        # (steps done, rate, InfiniteLine) of the newest run
        self.epoch_labels = []    # a pool of label-only InfiniteLines for the newest run's epochs
        self._dirty = False
        self._auto = True         # the view follows the data until the user pans or zooms
        self._drawn_range = None
        self._range = None        # the last range set while following the data
        self._labels_shown = None
        pi = self.getPlotItem()
        pi.setLabel("left", LOSS_LABEL)
        pi.getAxis("left").enableAutoSIPrefix(False)
        pi.getAxis("bottom").enableAutoSIPrefix(False)
        pi.setLabel("bottom", X_AXES[self.axis])
        pi.setMenuEnabled(False)
        pi.hideButtons()
        vb = pi.getViewBox()
        vb.disableAutoRange()
        vb.sigRangeChangedManually.connect(self._user_moved)
        self.legend = pi.addLegend(offset=(10, -10), labelTextSize="10pt", labelTextColor="#222222",
                                   brush=pg.mkBrush(255, 255, 255, 225), pen=pg.mkPen("#bbbbbb"))
        self.legend.setVisible(False)
        self.hover_text = ""
        self._hover_label = pg.TextItem("", color="#222222", anchor=(0, 1), fill=pg.mkBrush(255, 255, 240, 235),
                                        border=pg.mkPen("#999999"))
        self._hover_dot = pg.ScatterPlotItem(size=10, brush=pg.mkBrush("#ffcc00"), pen=pg.mkPen("#333333"))
        for item in (self._hover_label, self._hover_dot):
            item.setZValue(100)
            item.setVisible(False)
            pi.addItem(item, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ------------------------------------------------------------------ runs

    @property
    def current(self):
        return self.runs[-1] if self.runs else None

    def begin_run(self, label, rate, plan):
        """Add a trace for a new run of ``plan`` (legend: ``label, lr rate``); the oldest beyond ``max_runs`` goes."""
        used = {r.color for r in self.runs}
        color = next((c for c in RUN_COLORS if c not in used), RUN_COLORS[0])
        while len(self.runs) >= self.max_runs:
            self._remove_trace(self.runs[0])
        self._clear_lr_lines()
        for r in self.runs:
            r.start_spill()
        trace = RunTrace(self.getPlotItem(), (label, rate), color, plan)
        trace.pyramid.set_weight(self.smoothing)   # smoothed from its first step
        self.runs.append(trace)
        for r in self.runs:
            r.set_current(r is trace)
        self._add_boundary(trace, 0)   # the first epoch's start
        self._auto = True
        self._rebuild_legend()
        self._dirty = True
        return trace

    def extend_run(self, plan):
        """The newest run goes on to ``plan`` (a finished run whose epochs were raised)."""
        trace = self.current
        if trace is not None:
            trace.set_plan(plan)
            self._labels_shown = None
            self._dirty = True

    def discard_current_run(self):
        """Remove the newest run (Reset)."""
        if self.runs:
            self._remove_trace(self.runs[-1])
            self._clear_lr_lines()
            if self.runs:
                self.runs[-1].set_current(True)
            self._rebuild_legend()
            self._dirty = True

    def clear_runs(self, keep_current=False):
        """Remove the runs from the plot; with ``keep_current``, all but the newest (a run that may go on)."""
        for trace in self.runs[:-1] if keep_current else list(self.runs):
            self._remove_trace(trace)
        if not keep_current:   # the rate markers are the newest run's
            self._clear_lr_lines()
        self._rebuild_legend()
        self._dirty = True

    def _remove_trace(self, trace):
        pi = self.getPlotItem()
        for item in trace.items + [line for _, line in trace.lines]:
            pi.removeItem(item)
        if trace.spilling:
            trace._spill[0].close()
            trace._spill = None
        self.runs.remove(trace)

    def _clear_lr_lines(self):
        for _, _, line in self.lr_lines:
            self.getPlotItem().removeItem(line)
        self.lr_lines = []

    def update_history(self, history):
        """New steps of the newest run (cheap; drawing waits for :meth:`redraw`)."""
        trace = self.current
        if trace is None:
            return
        had_val = len(trace.val_loss)
        trace.update(history)
        if len(trace.val_loss) and not had_val:
            self._rebuild_legend()
        done = trace.n // trace.spe
        for e in trace.line_epochs:
            if e <= done and e not in dict(trace.lines):
                self._add_boundary(trace, e)
        self._dirty = True

    def set_epoch_means(self, means):
        """The newest run's finished epochs' means (the library's, weighted by batch size)."""
        self.add_epoch_means(0, means)

    def add_epoch_means(self, start, means):
        """Means of the newest run's finished epochs ``start``, ``start + 1``, ... (O(len(means)))."""
        trace = self.current
        if trace is not None and len(means):
            had = len(trace.means)
            trace.means.put(start, means)
            if had == 0:
                self._rebuild_legend()
            self._dirty = True

    def add_full_loss(self, steps_done, loss):
        """The loss on all training records after ``steps_done`` steps of the newest run."""
        trace = self.current
        if trace is None:
            return
        if trace.full_steps and steps_done <= trace.full_steps[-1]:
            return
        trace.add_full(steps_done, loss)
        if len(trace.full_steps) == 1:
            self._rebuild_legend()
        self._dirty = True

    def _add_boundary(self, trace, e):
        line = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen(trace.color, width=1, style=Qt.DotLine))
        line.setZValue(-5)
        line.setOpacity(1.0 if trace.current else 0.5)
        self.getPlotItem().addItem(line, ignoreBounds=True)
        trace.lines.append((e, line))
        self._place(line, trace.epoch_x(e, self.axis))

    def _place(self, line, x):
        x = float(x)
        if self.log_x:
            line.setVisible(x > 0)
            if x > 0:
                line.setValue(math.log10(x))
        else:
            line.setVisible(True)
            line.setValue(float(x))

    def add_lr_marker(self, steps_done, rate):
        """A dashed line where the learning rate changed (it applies from the next step); the legend follows.
        A change before any step at the last rate (the run's first step, or a second change at the same step)
        replaces that rate: no step was trained at it."""
        trace = self.current
        if trace is None:
            return
        last_change = self.lr_lines[-1][0] if self.lr_lines else 0
        if steps_done == last_change and (steps_done == 0 or self.lr_lines):
            trace.rates[-1] = rate
            if self.lr_lines:
                _, _, line = self.lr_lines[-1]
                self.lr_lines[-1] = (steps_done, rate, line)
                line.label.setFormat(f"lr {num(rate)}")
            self._rebuild_legend()
            self._dirty = True
            return
        line = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#e07000", width=1.5, style=Qt.DashLine),
                               label=f"lr {num(rate)}",
                               labelOpts=dict(position=0.85, color="#b05000", anchors=[(0, 0), (0, 0)],
                                              fill=pg.mkBrush(255, 255, 255, 220)))
        self.getPlotItem().addItem(line, ignoreBounds=True)
        self._place(line, trace.x_done(steps_done, self.axis))
        self.lr_lines.append((steps_done, rate, line))
        trace.rates.append(rate)
        self._rebuild_legend()
        self._dirty = True

    def set_loss_label(self, text):
        """The loss axis's title (what units the newest run's losses are in)."""
        self.getPlotItem().setLabel("left", text)

    # ------------------------------------------------------------------ legend

    def _rebuild_legend(self):
        lg = self.legend
        lg.clear()
        for r in self.runs:
            lg.addItem(r.smooth if self.smoothing > 0 else r.raw, r.text)
        cur = self.current
        if cur is not None:
            if len(cur.epoch_means):
                lg.addItem(cur.means_item, MEAN_LABEL)
            if len(cur.val_loss):
                lg.addItem(cur.val_item, VAL_LABEL)
            if cur.full_steps:
                lg.addItem(cur.full_item, FULL_LABEL)
        lg.setVisible(bool(self.runs))

    # ------------------------------------------------------------------ view options

    def set_x_axis(self, axis):
        if axis not in X_AXES:
            raise ValueError(f"x axis must be one of {list(X_AXES)}, got {axis!r}")
        self.axis = axis
        self.getPlotItem().setLabel("bottom", X_AXES[axis])
        self._replace_lines()
        self._auto = True
        self._dirty = True
        self.redraw()

    def set_log_x(self, on):
        """A logarithmic step axis (compare runs of very different step counts)."""
        self.log_x = bool(on)
        self.getPlotItem().setLogMode(x=self.log_x, y=self.log_y)
        self._replace_lines()
        self._auto = True
        self._dirty = True

    def set_log_y(self, on):
        self.log_y = bool(on)
        self.getPlotItem().setLogMode(x=self.log_x, y=self.log_y)
        self._auto = True
        self._dirty = True

    def set_smoothing(self, weight):
        """An exponential moving average of the per-step loss, as TensorBoard's slider (0: off)."""
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {weight!r}")
        self.smoothing = float(weight)
        for r in self.runs:
            r.pyramid.set_weight(self.smoothing)   # recomputed a slice a frame (see redraw)
        self._rebuild_legend()
        self._dirty = True

    def _replace_lines(self):
        for trace in self.runs:
            for e, line in trace.lines:
                self._place(line, trace.epoch_x(e, self.axis))
        trace = self.current
        if trace is not None:
            for s, _, line in self.lr_lines:
                self._place(line, trace.x_done(s, self.axis))

    def _user_moved(self, *_):
        self._auto = False
        self._range = None

    def follow_data(self):
        """Let the view follow the data again (after the user panned or zoomed; also a double-click)."""
        self._auto = True
        self._range = None
        self._dirty = True
        self.redraw()

    def mouseDoubleClickEvent(self, ev):
        self.follow_data()
        super().mouseDoubleClickEvent(ev)

    # ------------------------------------------------------------------ drawing

    def _extent(self):
        """The x range that shows every run whole: from 0 to the furthest run's steps done (at least 1 step)."""
        hi = max((self._run_extent(r) for r in self.runs), default=1.0)
        lo = 0.0
        if self.log_x:
            lo = min((float(r.x_mid(0, self.axis)) for r in self.runs), default=0.5)
        return lo, hi

    def _run_extent(self, r):
        """A run's right end: its steps done, or, for a long run still growing, a headroom that
        changes only every 1.5x (so the axes are not rebuilt every frame)."""
        n = max(r.n, 1)
        if n > MARKERS_BELOW and n < r.plan.total_steps:
            n = min(r.plan.total_steps, int(1.5 ** math.ceil(math.log(n, 1.5))))
        return float(r.x_done(n, self.axis))

    def _view_x(self):
        (x0, x1), _ = self.getPlotItem().getViewBox().viewRange()
        if self.log_x:
            x0, x1 = 10 ** x0, 10 ** x1
        return x0, x1

    def redraw(self, force=False):
        """Push what is in view to the items; called by the window's frame timer."""
        vb = self.getPlotItem().getViewBox()
        view = tuple(vb.viewRange()[0]) + (vb.width(),)
        for r in self.runs:   # an older long run moving to a file; a new smoothing weight: a slice a frame
            if r.spilling:
                r.spill_step()
            if r.pyramid.ema_pending:
                r.pyramid.catch_up(r.loss)
                self._dirty = True
        if not (self._dirty or force or view != self._drawn_range):
            return
        self._dirty = False
        if self._auto:
            x0, x1 = self._extent()
        else:
            x0, x1 = self._view_x()
        pixels = max(int(vb.width()), 100)
        ys = []
        for r in self.runs:
            ys.extend(self._draw_run(r, x0, x1, pixels))
        if self._auto:
            self._set_range(x0, x1, ys)
        self._place_epoch_labels()
        self._place_legend()
        self._drawn_range = tuple(vb.viewRange()[0]) + (vb.width(),)

    def _draw_run(self, r, x0, x1, pixels):
        axis, w = self.axis, self.smoothing
        a = max(0, r.steps_at(x0, axis) - 1)
        z = min(r.n, r.steps_at(x1, axis) + 2)
        if r.n == 0 or z <= a:
            r.raw.setData([], [])
            r.smooth.setData([], [])
            x = y = np.empty(0)
            sy = None
        else:
            if self.log_x:   # pixel columns widen to the right: so do the buckets
                lx0 = math.log10(max(x0, float(r.x_mid(0, axis)) / 2))
                xs = 10 ** np.linspace(lx0, math.log10(max(x1, 10 ** lx0)), pixels + 1)
            else:
                xs = np.linspace(x0, x1, pixels + 1)
            x, y, sx, sy, count = r.step_view(a, z, axis, w, pixels, r.steps_at_many(xs, axis))
            if self.log_y:   # log 0 = -inf breaks the curve: a loss of 0 (or less) at the bottom instead
                floor = self._log_floor(y)
                y = np.maximum(y, floor)
                sy = None if sy is None else np.maximum(sy, floor)
            markers = count < MARKERS_BELOW
            r.raw.setData(x, y, symbol="o" if markers else None, symbolSize=5, symbolBrush=r.color,
                          symbolPen=None)
            color = pg.mkColor(r.color)
            if w > 0:   # the raw curve stays faint behind the smoothed one: a light, opaque tint (an
                # alpha would add up where thousands of min/max segments overlap)
                color = pg.mkColor(*(int(0.22 * c + 0.78 * 255) for c in color.getRgb()[:3]))
            r.raw.setPen(pg.mkPen(color, width=1))
            if sy is not None:
                r.smooth.setData(sx, sy)
            else:
                r.smooth.setData([], [])
        # what sets the y range: with smoothing on, the smoothed curve (the raw one stays faint behind it,
        # and its spikes may leave the view), once it is computed
        out = [y] if sy is None or r.pyramid.ema_pending else [sy]
        dark = pg.mkColor(r.color).darker(160)
        for item, es, offset, symbol in ((r.means_item, r.means, 0.5, "o"), (r.val_item, r.vals, 1.0, "t1")):
            xs, vs, each = r.epoch_view(es, offset, x0, x1, axis, pixels, self.log_x)
            many = not each or len(xs) > MANY_EPOCH_MARKS     # a line without markers
            if item is r.val_item and not many:
                pen = pg.mkPen(dark, width=2, style=Qt.DashLine)
            else:
                pen = pg.mkPen(dark, width=2) if many or item is r.val_item else None
            item.setData(xs, vs, symbol=None if many else symbol, pen=pen)
            out.append(vs)
        fs, fl = r.full_arrays()
        if len(fs):
            lo = np.searchsorted(fs, r.steps_at(x0, axis), side="left")
            hi = np.searchsorted(fs, r.steps_at(x1, axis), side="right")
            stride = max(1, -(-(hi - lo) // pixels))   # never more points than pixel columns
            fx, fv = r.x_done(fs[lo:hi:stride], axis), fl[lo:hi:stride]
        else:
            fx = fv = np.empty(0)
        r.full_item.setData(fx, fv)
        out.append(fv)
        return out

    @staticmethod
    def _log_floor(y):
        """Where a loss of 0 is drawn on the log axis: the smallest positive loss in view (float32's smallest
        normal number when none is)."""
        positive = y[y > 0]
        return float(positive.min()) if len(positive) else float(np.finfo(np.float32).tiny)

    # where the legend may sit: (its corner, the plot's corner, offset in pixels); the top ones below the epoch labels
    LEGEND_CORNERS = {"bottom left": ((0, 1), (0, 1), (10, -10)), "top right": ((1, 0), (1, 0), (-10, 48)),
                      "bottom right": ((1, 1), (1, 1), (-10, -10)), "top left": ((0, 0), (0, 0), (10, 48))}

    def _place_legend(self):
        """The legend in the corner of the view with the fewest drawn points under it, so that it does not hide
        the curves it names; it moves only to a corner with at most half the points of its own."""
        lg = self.legend
        if not lg.isVisible():
            return
        vb = self.getPlotItem().getViewBox()
        (x0, x1), (y0, y1) = vb.viewRange()
        w, h, box = vb.width(), vb.height(), lg.boundingRect()
        if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
            return
        xs, ys = [], []
        for r in self.runs:
            for item in (r.raw, r.smooth, r.means_item, r.val_item, r.full_item):
                x, y = item.getData()
                if x is not None and len(x):
                    xs.append(np.asarray(x, dtype=np.float64))
                    ys.append(np.asarray(y, dtype=np.float64))
        if not xs:
            return
        x, y = np.concatenate(xs), np.concatenate(ys)
        with np.errstate(divide="ignore", invalid="ignore"):   # (log axes: the view is in log10 units)
            u = ((np.log10(x) if self.log_x else x) - x0) / (x1 - x0)
            v = ((np.log10(y) if self.log_y else y) - y0) / (y1 - y0)
        counts = {}
        for name, (_, (px, py), (ox, oy)) in self.LEGEND_CORNERS.items():
            fu, fv = (box.width() + abs(ox)) / w, (box.height() + abs(oy)) / h   # the legend's share of the view
            inside_u = u <= fu if px == 0 else u >= 1 - fu
            inside_v = v >= 1 - fv if py == 0 else v <= fv                        # (v: 0 at the bottom)
            counts[name] = int(np.count_nonzero(inside_u & inside_v))
        here = getattr(self, "_legend_corner", "bottom left")
        best = min(counts, key=lambda name: (counts[name], name != here))
        if best != here and counts[best] <= counts[here] // 2:
            item_pos, parent_pos, offset = self.LEGEND_CORNERS[best]
            lg.anchor(itemPos=item_pos, parentPos=parent_pos, offset=offset)
            self._legend_corner = best

    def _set_range(self, x0, x1, ys):
        vals = np.concatenate([np.asarray(y, dtype=np.float64).ravel() for y in ys]) if ys else np.empty(0)
        vals = vals[np.isfinite(vals)]
        if self.log_y:
            vals = np.log10(vals[vals > 0])
        if len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            floor = 0.05 if self.log_y else MIN_SPAN * max(abs(lo), abs(hi))
            span = max(hi - lo, floor, 1e-12)
            mid = (lo + hi) / 2
            lo, hi = mid - 0.55 * span, mid + 0.55 * span
            if not self.log_y and lo < 0 <= vals.min():
                lo, hi = 0.0, hi - lo
        else:
            lo, hi = (0.0, 1.0)
        vb = self.getPlotItem().getViewBox()
        if self.log_x:
            x0, x1 = math.log10(max(x0, 1e-9)), math.log10(max(x1, 1e-9))
            pad = 0.02 * max(x1 - x0, 0.1)
        else:
            pad = 0.02 * max(x1 - x0, 1e-9)
        old = self._range
        if old is not None and old[0] == (x0 - pad, x1 + pad):
            (ox0, ox1), (oy0, oy1) = old
            if oy0 <= lo and hi <= oy1 and (hi - lo) > 0.8 * (oy1 - oy0):
                return   # the data still fits well: keep the range (no new axes to draw)
        self._range = ((x0 - pad, x1 + pad), (lo, hi))
        vb.setRange(xRange=(x0 - pad, x1 + pad), yRange=(lo, hi), padding=0)

    def _place_epoch_labels(self):
        """The newest run's epoch numbers, centred on the visible part of their spans, never colliding."""
        trace = self.current
        pi = self.getPlotItem()
        want = []   # (epoch, display x)
        if trace is not None and trace.n:
            x0, x1 = self._view_x()
            vb = pi.getViewBox()
            (d0, d1), _ = vb.viewRange()
            px = max(vb.width(), 1) / max(d1 - d0, 1e-12)      # pixels per display unit
            begun = min(-(-trace.n // trace.spe), trace.plan.epochs)
            width = float(trace.epoch_x(1, self.axis))
            apart = max(LABEL_PIXELS, self._label_width(f"epoch {num(begun)}") + LABEL_GAP)   # the widest label's
            k = 1 if self.log_x else nice_step(max(1, math.ceil(apart / max(width * px, 1e-9))), 1)
            first = max(0, int(max(x0, 0) / width))
            e = first if self.log_x else first // k * k
            last_px = -1e18
            end_x = float(trace.x_done(trace.n, self.axis))
            # O(labels shown), whatever the number of epochs: each turn places a label or jumps to the
            # first epoch that can hold the next one
            while e < begun and e * width <= x1 and len(want) < 30:
                lo, hi = max(e * width, x0), min((e + 1) * width, x1, end_x)
                if self.log_x:
                    lo = max(lo, float(trace.x_mid(0, self.axis)))
                    lo, hi = (math.log10(lo), math.log10(hi)) if hi > lo else (0.0, 0.0)
                if hi > lo:
                    mid = (lo + hi) / 2
                    if (mid - last_px) * px >= apart:
                        want.append((e, mid))
                        last_px = mid
                if self.log_x and last_px > -1e18:   # the next label's span ends at or after 10^(last + gap)
                    nxt = 10 ** min(last_px + apart / px, 300.0) / width - 1
                    e = max(e + 1, int(min(nxt, float(begun))))
                else:
                    e += k
        key = (tuple(want), trace.color if trace is not None else None)
        if key == self._labels_shown:
            return
        self._labels_shown = key
        while len(self.epoch_labels) < len(want):
            self._new_epoch_label()
        vb = pi.getViewBox()
        (d0, d1), _ = vb.viewRange()
        px = max(vb.width(), 1) / max(d1 - d0, 1e-12)
        right = -math.inf   # the right edge (display units) of the last label kept
        for i, line in enumerate(self.epoch_labels):
            if i < len(want):
                e, x = want[i]
                text = f"epoch {num(e + 1)}" if i == 0 or len(want) <= 8 else num(e + 1)
                line.setVisible(True)   # first: a hidden label does not take a new text
                line.label.setFormat(text)
                line.label.setColor(trace.color)
                half = line.label.boundingRect().width() / 2 / px   # its drawn width, in display units
                x = min(max(x, d0 + half), d1 - half)               # kept inside the plot...
                if x - half < right + LABEL_GAP / px:               # ...where it would cover the one before: left out
                    line.setVisible(False)
                    continue
                line.setValue(x)
                right = x + half
            else:
                line.setVisible(False)

    def _new_epoch_label(self):
        line = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen(None), movable=False, label="",
                               labelOpts=dict(position=0.965, color="#444444", anchors=[(0.5, 0), (0.5, 0)],
                                              fill=pg.mkBrush(255, 255, 255, 190)))
        line.setZValue(20)
        line.setVisible(False)
        self.getPlotItem().addItem(line, ignoreBounds=True)
        self.epoch_labels.append(line)
        return line

    def _label_width(self, text):
        """Pixels an epoch label showing ``text`` takes, as drawn (its font and margins)."""
        if not self.epoch_labels:
            self._new_epoch_label()
        item = self.epoch_labels[0].label.textItem
        margin = item.boundingRect().width() - QFontMetricsF(item.font()).horizontalAdvance(item.toPlainText())
        return QFontMetricsF(item.font()).horizontalAdvance(text) + margin

    # ------------------------------------------------------------------ queries (and tests)

    @property
    def n_plotted_steps(self):
        """Steps of the newest run drawn one by one (0 while the view is decimated)."""
        self.redraw(force=True)
        trace = self.current
        if trace is None or trace.raw.xData is None:
            return 0
        return len(trace.raw.xData) if trace.n <= RAW_LIMIT else 0

    @property
    def epoch_lines(self):
        """(epoch boundary index, line) of the newest run: boundary e ends epoch e (0: the run's start)."""
        return self.current.lines if self.current else []

    @property
    def n_epoch_lines(self):
        return len(self.epoch_lines)

    def epoch_label_texts(self):
        return [line.label.format for line in self.epoch_labels if line.isVisible()]

    def legend_labels(self):
        return [label.text for _, label in self.legend.items]

    # ------------------------------------------------------------------ hover

    def _on_mouse_moved(self, pos):
        trace = self.current
        vb = self.getPlotItem().getViewBox()
        if trace is None or trace.n == 0 or not vb.sceneBoundingRect().contains(pos):
            self._hide_hover()
            return
        x = vb.mapSceneToView(pos).x()
        self.show_hover_at(10 ** x if self.log_x else x)

    def show_hover_at(self, x):
        """Show step, epoch, batch and loss of the newest run's step under ``x``."""
        trace = self.current
        if trace is None or trace.n == 0:
            return ""
        i = int(np.clip(trace.steps_at(x, self.axis), 0, trace.n - 1))
        loss = float(trace.loss[i])
        epoch, batch = divmod(i, trace.spe)
        self.hover_text = (f"step {num(i + 1)} · epoch {num(epoch + 1)} · batch {num(batch + 1)} "
                           f"({num(int(trace.batch_size(batch)))} records)\nloss {loss:.5g}")
        xi = float(trace.x_mid(i, self.axis))
        px = math.log10(xi) if self.log_x else xi
        (v0, v1), (w0, _) = self.getPlotItem().getViewBox().viewRange()
        py = (math.log10(loss) if loss > 0 else w0) if self.log_y else loss   # (a 0 sits at the log axis's bottom)
        right = px > (v0 + v1) / 2        # keep the box inside the plot
        self._hover_label.setAnchor((1, 1) if right else (0, 1))
        self._hover_label.setText(self.hover_text)
        self._hover_label.setPos(px, py)
        self._hover_dot.setData([px], [py])
        self._hover_label.setVisible(True)
        self._hover_dot.setVisible(True)
        return self.hover_text

    def _hide_hover(self):
        self._hover_label.setVisible(False)
        self._hover_dot.setVisible(False)

    def leaveEvent(self, ev):
        self._hide_hover()
        super().leaveEvent(ev)
