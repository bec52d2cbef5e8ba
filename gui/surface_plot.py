"""The decision surface of a two-feature classifier: predict_proba on a grid as an image, and the points."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

CLASS_COLORS = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                         [148, 103, 189], [140, 86, 75]], dtype=np.float64)
GRID = 120          # the surface is GRID x GRID predictions
MAX_POINTS = 2500   # points drawn at most (a seeded subsample of bigger datasets)


class SurfacePlot(pg.PlotWidget):
    """Class regions shaded by predicted probability, with the training points on top."""

    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        self.setObjectName("surfacePlot")
        pi = self.getPlotItem()
        pi.setMenuEnabled(False)
        pi.setTitle("decision surface", color="#333333", size="11pt")
        pi.setLabel("bottom", "feature 0")
        pi.setLabel("left", "feature 1")
        pi.setAspectLocked(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setOpacity(0.85)
        pi.addItem(self.image)
        self.points = pg.ScatterPlotItem(size=5, pen=pg.mkPen(255, 255, 255, 160, width=0.6))
        pi.addItem(self.points)
        self.n_features = 2
        self.rect = None
        self.steps_shown = -1

    def set_data(self, X, y, seed=0):
        """Show the points (features 0 and 1) and set the grid around them; clears the surface."""
        X = np.asarray(X)
        self.n_features = X.shape[1]
        if len(X) > MAX_POINTS:
            idx = np.random.default_rng(seed).choice(len(X), MAX_POINTS, replace=False)
            X, y = X[idx], y[idx]
        cols = CLASS_COLORS[np.asarray(y, dtype=np.int64) % len(CLASS_COLORS)]
        self.points.setData(x=X[:, 0], y=X[:, 1],
                            brush=[pg.mkBrush(*c) for c in cols.astype(int)])
        lo, hi = X[:, :2].min(axis=0), X[:, :2].max(axis=0)
        pad = 0.1 * np.maximum(hi - lo, 1e-9)
        lo, hi = lo - pad, hi + pad
        self.rect = QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        self.clear_surface()
        self.getPlotItem().getViewBox().setRange(self.rect, padding=0)

    def clear_surface(self):
        self.image.clear()
        self.steps_shown = -1

    def grid(self):
        """``(points (GRID*GRID, n_features), (GRID, GRID))``; features past the first two are 0."""
        r = self.rect
        xs = np.linspace(r.left(), r.right(), GRID)
        ys = np.linspace(r.top(), r.bottom(), GRID)  # QRectF.top() is the smaller y
        gx, gy = np.meshgrid(xs, ys)                  # row i is y = ys[i]
        pts = np.zeros((GRID * GRID, self.n_features))
        pts[:, 0], pts[:, 1] = gx.ravel(), gy.ravel()
        return pts, (GRID, GRID)

    def set_proba(self, steps_done, proba):
        """Shade each grid cell by the class probabilities: a blend of the class colours."""
        k = proba.shape[-1]
        colors = CLASS_COLORS[np.arange(k) % len(CLASS_COLORS)]
        light = 0.45 * colors + 0.55 * 255       # pastel, so the points stay visible
        rgb = np.clip(proba @ light, 0, 255).astype(np.uint8)
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.image.setRect(self.rect)
        self.steps_shown = steps_done
