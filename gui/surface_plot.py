"""The decision surface of a two-feature classifier: predict_proba on a grid as an image, and the records.

After a stepped batch, its records are drawn large with a dark ring, this epoch's records
already trained on are faded, and held-out (validation) records are hollow.

The records are one scatter item whose colours are set once per data set; a highlight only
fills two small items over it (the batch, and a white veil over the faded records, all of
one brush), so a Step or Start never rebuilds a colour per record on the GUI thread.
"""
import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

CLASS_COLORS = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                         [148, 103, 189], [140, 86, 75]], dtype=np.float64)
GRID = 120          # the surface is GRID x GRID predictions,
SURFACE_MACS = 2e9  # ...or fewer, so that one costs at most about this many multiply-adds (a big network's
MIN_GRID = 16       # 14,400 predictions took tens of seconds); never fewer than MIN_GRID x MIN_GRID
MAX_POINTS = 2500   # points drawn at most (a seeded subsample of bigger datasets)
PAD = 0.08          # the view spans the data plus this share on each side
FLAT_SPAN = 1e-6    # records spanning less than this share of their values' size span nothing (float32: ~1.2e-7)
MIN_SPAN_SHARE = 0.1   # ...and the view spans this share of their size instead (at least 1)
FADE_ALPHA = 185    # the veil over a record this epoch has already trained on: its colour shows at about 27%


def view_span(lo, hi):
    """The view's (low, high) per axis for records spanning ``lo``..``hi``, plus PAD on each side. A span that is
    no span (one record, or all on one line: below float32's resolution of the values) gets MIN_SPAN_SHARE of
    the values' size, at least 1, centred on them (a span of ~1e-9 filled the axes with overlapping ten-digit
    ticks). In float64: a float32 span of values near its limit is inf."""
    mid, span = (lo + hi) / 2, hi - lo
    degenerate = span <= FLAT_SPAN * np.abs(mid)
    span = np.where(degenerate, np.maximum(MIN_SPAN_SHARE * np.abs(mid), 1.0), span)
    return mid - (0.5 + PAD) * span, mid + (0.5 + PAD) * span


class SurfacePlot(pg.PlotWidget):
    """Class regions shaded by predicted probability, with the records on top."""

    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        self.setObjectName("surfacePlot")
        pi = self.getPlotItem()
        pi.setMenuEnabled(False)
        pi.hideButtons()
        pi.setTitle("decision surface", color="#333333", size="11pt")
        pi.setLabel("bottom", "feature 1")
        pi.setLabel("left", "feature 2")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setOpacity(0.85)
        pi.addItem(self.image)
        self.points = pg.ScatterPlotItem(size=5, pen=pg.mkPen(255, 255, 255, 160, width=0.6))
        pi.addItem(self.points)
        self.seen_points = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(255, 255, 255, FADE_ALPHA))
        self.seen_points.setZValue(2)
        pi.addItem(self.seen_points)
        self.batch_points = pg.ScatterPlotItem(size=11, pen=pg.mkPen("#111111", width=2))
        self.batch_points.setZValue(5)
        pi.addItem(self.batch_points)
        self.n_features = 2
        self.rect = None
        self.steps_shown = -1
        self.shown = np.empty(0, dtype=np.int64)   # the record index of each drawn point
        self.highlighted = np.empty(0, dtype=np.int64)
        self.faded = np.empty(0, dtype=np.int64)   # the record index of each drawn point shown faded
        self._X = self._y = None
        self._held = np.zeros(0, dtype=bool)
        self._data_id = None      # (X, y, held-out records, seed) of the records drawn
        self._n = 0               # records in the data set
        self._lit = None          # (batch, seen) of the highlight drawn

    def set_names(self, features=None, classes=None):
        """Axis titles from the first two feature names (default feature 1, feature 2) and, in the tooltip,
        which colour is which class (``classes``: names in code order; default the codes)."""
        pi = self.getPlotItem()
        features = list(features or ())[:2]
        for axis, j in (("bottom", 0), ("left", 1)):
            pi.setLabel(axis, html.escape(str(features[j])) if j < len(features) else f"feature {j + 1}")
        colours = ("blue", "orange", "green", "red", "purple", "brown")
        if classes is not None:
            shown = [f"{colours[i % len(colours)]}: {name}" for i, name in enumerate(list(classes)[:12])]
            text = "classes by colour: " + ", ".join(shown) + (", ..." if len(classes) > 12 else "")
            self.setToolTip(f"<span>{html.escape(text)}</span>")   # (shown as named: markup in a name stays text)
        else:
            self.setToolTip("")

    def set_data(self, X, y, held_out=(), seed=0):
        """Show the records (features 1 and 2) and fit the view and the grid to them; clears the surface."""
        X = np.asarray(X)
        held_out = np.asarray(held_out, dtype=np.int64)
        same = self._data_id is not None and self._data_id[0] is X and self._data_id[1] is y and \
            self._data_id[3] == seed and np.array_equal(self._data_id[2], held_out)
        if same:   # the records drawn already (the preview's, as Start begins the run): only the surface goes
            self.highlight((), ())
            self.clear_surface()
            return
        self._data_id = (X, y, held_out, seed)
        self.n_features = X.shape[1]
        n = self._n = len(X)
        self.shown = (np.sort(np.random.default_rng(seed).choice(n, MAX_POINTS, replace=False))
                      if n > MAX_POINTS else np.arange(n))
        self._X, self._y = X[self.shown, :2], np.asarray(y)[self.shown].astype(np.int64)
        held = np.zeros(n, dtype=bool)
        held[held_out] = True
        self._held = held[self.shown]
        self._draw_points()
        self._lit = None
        self.highlight((), ())
        lo, hi = self._X.min(axis=0).astype(np.float64), self._X.max(axis=0).astype(np.float64)
        lo, hi = view_span(lo, hi)
        self.rect = QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        self.clear_surface()
        self.getPlotItem().getViewBox().setRange(self.rect, padding=0)

    def _draw_points(self):
        """The records in their class colours, held-out ones hollow: once per data set (a brush and a pen per
        class, shared by its records)."""
        k = len(CLASS_COLORS)
        cols = CLASS_COLORS.astype(int)
        fill = np.array([pg.mkBrush(*c) for c in cols] + [pg.mkBrush(255, 255, 255, 0)], dtype=object)
        rim = np.array([pg.mkPen(*c, width=1.3) for c in cols] + [pg.mkPen(255, 255, 255, 160, width=0.6)],
                       dtype=object)
        code = self._y % k
        self.points.setData(x=self._X[:, 0], y=self._X[:, 1], brush=list(fill[np.where(self._held, k, code)]),
                            pen=list(rim[np.where(self._held, code, k)]))
        self._batch_brushes = fill[:k]

    def _drawn(self, records):
        """Which drawn points are among ``records`` (indices into the data): a mask over ``shown``, O(n)."""
        mask = np.zeros(self._n, dtype=bool)
        mask[np.asarray(records, dtype=np.int64)] = True
        return mask[self.shown]

    def highlight(self, batch, seen):
        """Draw the records ``batch`` (indices into the data) large, and the records ``seen`` faded."""
        if self._X is None:
            return
        batch, seen = np.asarray(batch, dtype=np.int64), np.asarray(seen, dtype=np.int64)
        lit = self._lit
        if lit is not None and np.array_equal(lit[0], batch) and np.array_equal(lit[1], seen):
            return   # drawn already
        self._lit = (batch, seen)
        faded = self._drawn(seen) & ~self._held
        self.faded = self.shown[faded]
        self.seen_points.setData(x=self._X[faded, 0], y=self._X[faded, 1])
        in_batch = self._drawn(batch)
        self.highlighted = self.shown[in_batch]
        bx = self._X[in_batch]
        self.batch_points.setData(x=bx[:, 0], y=bx[:, 1],
                                  brush=list(self._batch_brushes[self._y[in_batch] % len(CLASS_COLORS)]))

    def clear_surface(self):
        self.image.clear()
        self.steps_shown = -1

    def grid(self, n_params=0):
        """``(points (n*n, n_features), (n, n))``: n = GRID, or fewer for a network of ``n_params`` params whose
        predictions would cost more than SURFACE_MACS; features past the first two are 0."""
        n = GRID
        if n_params and GRID * GRID * n_params > SURFACE_MACS:
            n = max(MIN_GRID, int((SURFACE_MACS / n_params) ** 0.5))
        r = self.rect
        xs = np.linspace(r.left(), r.right(), n)
        ys = np.linspace(r.top(), r.bottom(), n)      # QRectF.top() is the smaller y
        gx, gy = np.meshgrid(xs, ys)                  # row i is y = ys[i]
        pts = np.zeros((n * n, self.n_features))
        pts[:, 0], pts[:, 1] = gx.ravel(), gy.ravel()
        return pts, (n, n)

    def set_proba(self, steps_done, proba):
        """Shade each grid cell by the class probabilities: a blend of the class colours."""
        k = proba.shape[-1]
        colors = CLASS_COLORS[np.arange(k) % len(CLASS_COLORS)]
        light = 0.45 * colors + 0.55 * 255       # pastel, so the points stay visible
        rgb = np.clip(proba @ light, 0, 255).astype(np.uint8)
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.image.setRect(self.rect)
        self.steps_shown = steps_done
