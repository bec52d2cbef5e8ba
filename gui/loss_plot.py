"""The loss plot: per-step loss, per-epoch means, epoch boundaries, validation loss, the last few runs.

Built to stay smooth at a million steps: each run appends into preallocated arrays that
double when full, one reused curve item gets ``setData`` with peak downsampling and
clip-to-view, and redraws run on a ~30 fps timer however fast the steps arrive.
"""
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Qt

X_AXES = {"step": "steps done", "epoch": "epochs done", "records": "records seen"}
RUN_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
MAX_EPOCH_LINES = 10       # more epochs than this: a line every k epochs, k = 1, 2, 5, 10, 20, 50...
MAX_EPOCH_SYMBOLS = 400    # more epochs than this: per-epoch means drawn as a line, not markers
FPS = 30


def nice_step(n, cap):
    """The smallest k in 1, 2, 5, 10, 20, 50, ... with ceil(n / k) <= cap."""
    k = 1
    while math.ceil(n / k) > cap:
        k = _next_nice(k)
    return k


def _next_nice(k):
    digits = 10 ** int(math.floor(math.log10(k)))
    lead = k // digits
    return {1: 2, 2: 5, 5: 10}[lead] * digits


class _Grow:
    """A preallocated 1-D array that doubles when full (pyqtgraph's scrollingPlots, strategy 2)."""

    def __init__(self, dtype=np.float64, capacity=1024):
        self.data = np.empty(capacity, dtype=dtype)
        self.n = 0

    def extend(self, values):
        end = self.n + len(values)
        if end > len(self.data):
            new = np.empty(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            new[:self.n] = self.data[:self.n]
            self.data = new
        self.data[self.n:end] = values
        self.n = end

    def view(self):
        return self.data[:self.n]


class RunTrace:
    """One run's curves on the plot, and the arrays behind them."""

    def __init__(self, plot_item, label, color, plan):
        self.label, self.color, self.plan = label, color, plan
        self.spe = plan.steps_per_epoch
        self.sizes = plan.batch_sizes()
        self.records_per_epoch = int(self.sizes.sum())
        self.loss = _Grow()
        self.x = {axis: _Grow() for axis in X_AXES}
        self.records = 0
        self.epoch_means = _Grow()
        self.val_loss = np.empty(0)
        many = plan.epochs > MAX_EPOCH_SYMBOLS
        self.curve = plot_item.plot([], [], pen=pg.mkPen(color, width=1), name=label)
        self.curve.setDownsampling(auto=True, method="peak")
        self.curve.setClipToView(True)
        dark = pg.mkColor(color).darker(170)
        mean_kw = (dict(pen=pg.mkPen(dark, width=2.5)) if many else
                   dict(pen=None, symbol="o", symbolSize=9, symbolBrush=dark, symbolPen=pg.mkPen("w", width=1.5)))
        self.means_item = plot_item.plot([], [], **mean_kw)
        val_kw = dict(pen=pg.mkPen(dark, width=2, style=Qt.DashLine))
        if not many:
            val_kw.update(symbol="t1", symbolSize=10, symbolBrush="w", symbolPen=pg.mkPen(dark, width=2))
        self.val_item = plot_item.plot([], [], **val_kw)
        for item in (self.means_item, self.val_item):
            item.setZValue(10)  # over the per-step curves
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
        self.items = [self.curve, self.means_item, self.val_item]

    @property
    def n(self):
        return self.loss.n

    def append(self, history):
        """Copy the steps of ``history`` not seen yet; O(new steps)."""
        a, b = self.loss.n, history.n_steps
        if b > a:
            steps = np.arange(a, b)
            sizes = self.sizes[steps % self.spe]
            records = self.records + np.cumsum(sizes)
            self.records = int(records[-1])
            self.loss.extend(history.loss[a:b])
            self.x["step"].extend(steps + 1.0)
            self.x["epoch"].extend((steps + 1.0) / self.spe)
            self.x["records"].extend(records)
            done_epochs = b // self.spe
            for e in range(self.epoch_means.n, done_epochs):
                lo, hi = e * self.spe, (e + 1) * self.spe
                w = self.sizes
                self.epoch_means.extend([float(np.dot(self.loss.data[lo:hi], w) / w.sum())])
        if len(history.val_loss) != len(self.val_loss):
            self.val_loss = np.asarray(history.val_loss, dtype=np.float64).copy()

    def position(self, steps_done, axis):
        """Where ``steps_done`` steps are on the x axis ``axis``."""
        if axis == "step":
            return float(steps_done)
        if axis == "epoch":
            return steps_done / self.spe
        full, part = divmod(int(steps_done), self.spe)
        return float(full * self.records_per_epoch + self.sizes[:part].sum())

    def epoch_x(self, epochs_done, axis):
        """x of the points ``epochs_done`` (an array, may be fractional) epochs into the run."""
        e = np.asarray(epochs_done, dtype=np.float64)
        if axis == "step":
            return e * self.spe
        if axis == "epoch":
            return e
        return e * self.records_per_epoch

    def draw(self, axis):
        n = self.n
        self.curve.setData(self.x[axis].data[:n], self.loss.data[:n])
        m = self.epoch_means.view()
        mid = np.arange(len(m)) + 0.5  # an epoch's mean sits in the middle of the steps it averages
        self.means_item.setData(self.epoch_x(mid, axis), m)
        v = self.val_loss
        self.val_item.setData(self.epoch_x(np.arange(1, len(v) + 1), axis), v)

    def set_current(self, current):
        """The newest run is drawn bold; older ones fade."""
        alpha = 255 if current else 110
        c = pg.mkColor(self.color)
        c.setAlpha(alpha)
        self.curve.setPen(pg.mkPen(c, width=1))
        self.means_item.setVisible(True)
        self.val_item.setVisible(True)


class LossPlot(pg.PlotWidget):
    """The loss plot (objectName ``lossPlot``); feed it with :meth:`begin_run` and :meth:`update_history`."""

    def __init__(self, parent=None, max_runs=3):
        super().__init__(parent, background="w")
        self.setObjectName("lossPlot")
        self.max_runs = max_runs
        self.axis = "step"
        self.log_y = False
        self.runs = []
        self.epoch_lines = []     # (epoch index, InfiniteLine) of the newest run
        self.lr_lines = []        # (steps done, rate, InfiniteLine) of the newest run
        self._epoch_every = 1
        self._dirty = False
        pi = self.getPlotItem()
        pi.setLabel("left", "loss")
        pi.getAxis("left").enableAutoSIPrefix(False)
        pi.getAxis("bottom").enableAutoSIPrefix(False)
        pi.setLabel("bottom", X_AXES[self.axis])
        pi.setMenuEnabled(False)
        self.legend = pi.addLegend(offset=(-10, 10), labelTextSize="10pt", labelTextColor="#222222", brush=pg.mkBrush(255, 255, 255, 220),
                                   pen=pg.mkPen("#bbbbbb"))
        self.hover_text = ""
        self._hover_label = pg.TextItem("", color="#222222", anchor=(0, 1), fill=pg.mkBrush(255, 255, 240, 230),
                                        border=pg.mkPen("#999999"))
        self._hover_dot = pg.ScatterPlotItem(size=10, brush=pg.mkBrush("#ffcc00"), pen=pg.mkPen("#333333"))
        for item in (self._hover_label, self._hover_dot):
            item.setZValue(100)
            item.setVisible(False)
            pi.addItem(item, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.timer = QTimer(self)
        self.timer.setInterval(1000 // FPS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    # ------------------------------------------------------------------ runs

    @property
    def current(self):
        return self.runs[-1] if self.runs else None

    def begin_run(self, label, plan):
        """Add a trace for a new run of ``plan``; the oldest beyond ``max_runs`` goes."""
        used = {r.color for r in self.runs}
        color = next((c for c in RUN_COLORS if c not in used), RUN_COLORS[0])
        while len(self.runs) >= self.max_runs:
            self._remove_trace(self.runs[0])
        self._clear_markers()
        trace = RunTrace(self.getPlotItem(), label, color, plan)
        self.runs.append(trace)
        for r in self.runs:
            r.set_current(r is trace)
        self._epoch_every = nice_step(plan.epochs, MAX_EPOCH_LINES)
        self._n_lines = -(-plan.epochs // self._epoch_every)
        self._dirty = True
        return trace

    def discard_current_run(self):
        """Remove the newest run (Reset)."""
        if self.runs:
            self._remove_trace(self.runs[-1])
            self._clear_markers()
            if self.runs:
                self.runs[-1].set_current(True)
            self._dirty = True

    def clear_runs(self):
        while self.runs:
            self._remove_trace(self.runs[0])
        self._clear_markers()
        self._dirty = True

    def _remove_trace(self, trace):
        pi = self.getPlotItem()
        for item in trace.items:
            pi.removeItem(item)
        self.runs.remove(trace)

    def _clear_markers(self):
        pi = self.getPlotItem()
        for _, line in self.epoch_lines:
            pi.removeItem(line)
        for _, _, line in self.lr_lines:
            pi.removeItem(line)
        self.epoch_lines, self.lr_lines = [], []

    def update_history(self, history):
        """New steps of the newest run (cheap; the drawing waits for the timer)."""
        trace = self.current
        if trace is None:
            return
        trace.append(history)
        started = -(-trace.n // trace.spe) if trace.n else 0  # epochs begun so far
        for e in range(len(self.epoch_lines) * self._epoch_every, started, self._epoch_every):
            self._add_epoch_line(trace, e)
        self._dirty = True

    def _add_epoch_line(self, trace, e):
        line = pg.InfiniteLine(pos=trace.position(e * trace.spe, self.axis), angle=90,
                               pen=pg.mkPen("#888888", width=1, style=Qt.DotLine),
                               label=f"epoch {e + 1}" if e == 0 or self._n_lines <= 6 else str(e + 1),
                               labelOpts=dict(position=0.04, color="#555555", anchors=[(0, 0), (0, 0)],
                                              fill=pg.mkBrush(255, 255, 255, 200)))
        self.getPlotItem().addItem(line, ignoreBounds=True)
        self.epoch_lines.append((e, line))

    def add_lr_marker(self, steps_done, rate):
        """A dashed line where the learning rate changed: it applies from the next step."""
        trace = self.current
        if trace is None:
            return
        line = pg.InfiniteLine(pos=trace.position(steps_done, self.axis), angle=90,
                               pen=pg.mkPen("#e07000", width=1.5, style=Qt.DashLine),
                               label=f"lr {rate:g}",
                               labelOpts=dict(position=0.85, color="#b05000", anchors=[(0, 0), (0, 0)],
                                              fill=pg.mkBrush(255, 255, 255, 220)))
        self.getPlotItem().addItem(line, ignoreBounds=True)
        self.lr_lines.append((steps_done, rate, line))
        self._dirty = True

    # ------------------------------------------------------------------ view options

    def set_x_axis(self, axis):
        if axis not in X_AXES:
            raise ValueError(f"x axis must be one of {list(X_AXES)}, got {axis!r}")
        self.axis = axis
        self.getPlotItem().setLabel("bottom", X_AXES[axis])
        trace = self.current
        if trace is not None:
            for e, line in self.epoch_lines:
                line.setValue(trace.position(e * trace.spe, axis))
            for s, _, line in self.lr_lines:
                line.setValue(trace.position(s, axis))
        self._dirty = True
        self.redraw()
        self.getPlotItem().enableAutoRange()

    def set_log_y(self, on):
        self.log_y = bool(on)
        self.getPlotItem().setLogMode(y=self.log_y)
        self._dirty = True

    def redraw(self):
        """Push the arrays to the items; called by the timer, a no-op when nothing changed."""
        if not self._dirty:
            return
        self._dirty = False
        for r in self.runs:
            r.draw(self.axis)

    # ------------------------------------------------------------------ queries (and tests)

    @property
    def n_plotted_steps(self):
        """Points of the newest run's per-step curve as drawn."""
        self.redraw()
        trace = self.current
        return 0 if trace is None or trace.curve.xData is None else len(trace.curve.xData)

    @property
    def n_epoch_lines(self):
        return len(self.epoch_lines)

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
        self.show_hover_at(x)

    def show_hover_at(self, x):
        """Show step, epoch, batch and loss of the newest run's step nearest to ``x``."""
        trace = self.current
        if trace is None or trace.n == 0:
            return ""
        xs = trace.x[self.axis].view()
        i = int(np.clip(np.searchsorted(xs, x), 0, trace.n - 1))
        if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
            i -= 1
        loss = float(trace.loss.data[i])
        epoch, batch = divmod(i, trace.spe)
        self.hover_text = (f"step {i + 1} · epoch {epoch + 1} · batch {batch + 1} "
                           f"({int(trace.sizes[batch])} records)\nloss {loss:.5g}")
        y = math.log10(loss) if self.log_y and loss > 0 else loss
        self._hover_label.setText(self.hover_text)
        self._hover_label.setPos(xs[i], y)
        self._hover_dot.setData([xs[i]], [y])
        self._hover_label.setVisible(True)
        self._hover_dot.setVisible(True)
        return self.hover_text

    def _hide_hover(self):
        self._hover_label.setVisible(False)
        self._hover_dot.setVisible(False)

    def leaveEvent(self, ev):
        self._hide_hover()
        super().leaveEvent(ev)
