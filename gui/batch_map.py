"""The batch map: the current epoch's records in the order the epoch visits them, one row per batch.

Each cell is a record coloured by its class, so a new shuffled epoch visibly reorders them
(and with shuffle off they stay put). The batch just trained is outlined, the batches before
it are faded, the last short batch is a short row and the records ``drop_last`` leaves out
are grey. With many records or batches, rows wrap at :data:`COLUMNS` cells and each cell
is a block of records. The order is the library's ``fastbatch.epoch_order``: a pure
function, so the map costs the trainer nothing.
"""
import math
import os
import sys
import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

import fastbatch as fb

from .fmt import count, num
from .surface_plot import CLASS_COLORS

COLUMNS = 64          # cells per row when batches are not drawn one per row
MAX_CELLS = 8192      # cells drawn at most; more records and a cell is a block of records
ROW_LAYOUT_BATCH = 128     # one row per batch while batches are at most this big...
ROW_LAYOUT_STEPS = 64      # ...and there are at most this many per epoch
BIG = 200_000         # more records than this: the epoch's order is computed off the GUI thread


def epoch_order(n, seed, epoch, shuffle):
    """``fb.epoch_order`` for the app (the batch map, the Step panel, the surface's highlight): the kernel's own
    C version (the same permutation, in O(n): numpy's argsort took 50-60 ms of the GUI thread at each epoch
    change for 200k records; for millions, off the GUI thread, it holds the GIL for none of its work, so a
    low-priority thread computing it never keeps the GUI thread waiting for the GIL), else the library's numpy
    one."""
    try:
        from fastbatch import _kernel
        return _kernel.epoch_order(n, seed, epoch, shuffle)
    except (ImportError, AttributeError, TypeError):
        return fb.epoch_order(n, seed, epoch, shuffle)


def positions(order):
    """Each record's place in the visiting ``order`` (its inverse permutation)."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank


def _yield_cpu():
    """Lowest CPU priority for the calling thread (Linux: a thread's own nice value), so that a sort
    of millions of keys at each epoch end takes idle time and never the GUI thread's or training's:
    on two busy cores it made the event loop wait ~100 ms for a CPU."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass


class BatchMap(pg.PlotWidget):
    """objectName ``batchMap``; :meth:`set_run`, then :meth:`show_steps` as steps are done."""

    def __init__(self, parent=None):
        super().__init__(parent, background="w")
        self.setObjectName("batchMap")
        pi = self.getPlotItem()
        pi.setMenuEnabled(False)
        pi.hideButtons()
        pi.hideAxis("bottom")
        pi.hideAxis("left")
        pi.setTitle("batch map: this epoch's records in visiting order", color="#333333", size="10pt")
        vb = pi.getViewBox()
        vb.setMouseEnabled(False, False)
        vb.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        pi.addItem(self.image)
        self.box = pg.QtWidgets.QGraphicsRectItem()
        self.box.setPen(pg.mkPen("#111111", width=2.5))
        self.box.setZValue(10)
        pi.addItem(self.box)
        self.plan = None
        self.hover_text = ""
        self._order = None        # (epoch, order) of the epoch shown
        self._pending = None      # a thread computing a big epoch's order
        self._positions = None    # (epoch, each training record's place in its order): see positions_of
        self._steps = -1
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ------------------------------------------------------------------ the run

    def set_run(self, plan, seed, shuffle, labels, rows=None):
        """A new run over ``plan.n_records`` training records with these class ``labels`` (None: one colour);
        ``rows``: each training record's row in the data (a validation split holds the others out; None: the
        same numbers), which the hover names."""
        self.plan, self.seed, self.shuffle = plan, seed, shuffle
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = plan.n_records
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        B, spe = plan.effective_batch_size, plan.steps_per_epoch
        self.rows_are_batches = B <= ROW_LAYOUT_BATCH and spe <= ROW_LAYOUT_STEPS
        self.block = 1 if self.rows_are_batches else max(1, math.ceil(n / MAX_CELLS))
        self.cols = B if self.rows_are_batches else COLUMNS
        self.n_cells = math.ceil(n / self.block)
        self.n_rows = (spe + (1 if plan.drop_last and n > spe * B else 0)) if self.rows_are_batches else \
            math.ceil(self.n_cells / self.cols)
        r, c = np.divmod(np.arange(self.n_rows * self.cols, dtype=np.int64), self.cols)
        if self.rows_are_batches:   # row r is batch r; a last row holds the records drop_last leaves out
            pos = r * B + c
            sizes = plan.batch_sizes()
            valid = ((r < spe) & (c < sizes[np.minimum(r, spe - 1)])) | ((r >= spe) & (pos < n))
        else:
            pos = (r * self.cols + c) * self.block
            valid = pos < n
        self._pos = np.where(valid, pos, -1)
        self._order, self._steps, self._positions = None, -1, None
        if self._pending is not None and self._pending["key"] != self._key():
            self._pending = None   # (a thread's order for other records or another seed: never this run's)
        self.box.setVisible(False)
        self.show_steps(0)

    def cell(self, row, col):
        """The first visiting position of the cell at (row, col), or None for an empty cell."""
        p = int(self._pos[row * self.cols + col])
        return None if p < 0 else p

    def epoch_shown(self):
        return None if self._order is None else self._order[0]

    def order(self):
        return None if self._order is None else self._order[1]

    def order_of(self, epoch):
        """The run's visiting order of ``epoch`` (0-based), computed once per epoch and kept (the Step panel's
        highlight of each step reads it here: at 2M records computing it took ~110 ms of the GUI thread at every
        step). Above :data:`BIG` records the map computes it off the GUI thread, the next epoch's ahead as soon as it
        has one; asked for before that is done, it is computed here once, and the map draws from it too."""
        if self._order is None or self._order[0] != epoch:
            if not self._fetch_order(epoch):
                self._order = (epoch, epoch_order(self.plan.n_records, self.seed, epoch, self.shuffle))
                if self._pending is not None and self._pending["epoch"] == epoch and \
                        self._pending["key"] == self._key():
                    self._pending = None   # (its thread's result is no longer wanted)
                if self.plan.n_records > BIG:
                    self._compute(epoch + 1)   # (the next epoch's, ahead)
        return self._order[1]

    def positions_of(self, epoch):
        """Where each training record comes in ``epoch``'s visiting order (the inverse of :meth:`order_of`), kept
        per epoch: which of some records an epoch has visited by a batch is then O(those records), not O(n)."""
        if self._positions is None or self._positions[0] != epoch:
            order = self.order_of(epoch)   # (above BIG, the thread that made it made them too)
            if self._positions is None or self._positions[0] != epoch:
                self._positions = (epoch, positions(order))
        return self._positions[1]

    # ------------------------------------------------------------------ progress

    def show_steps(self, steps_done):
        """Draw the epoch of the step just done (its batch outlined, earlier ones faded)."""
        if self.plan is None or steps_done == self._steps and self._order is not None:
            return
        spe = self.plan.steps_per_epoch
        epoch = (steps_done - 1) // spe if steps_done else 0
        batch = (steps_done - 1) % spe if steps_done else -1
        if self._order is None or self._order[0] != epoch:
            if not self._fetch_order(epoch):
                return   # computing; drawn when ready
        self._steps = steps_done
        self.current_batch = batch
        self._draw(batch)

    def _key(self):
        """What an epoch's order is a function of, besides the epoch: a thread's result is taken for these only."""
        return self.plan.n_records, self.seed, self.shuffle

    def waiting(self):
        """True while the map shows nothing yet because a thread is still computing its epoch's order (the window
        asks again at its next frame, a preview too)."""
        return self.plan is not None and self._order is None and self._pending is not None

    def _fetch_order(self, epoch):
        n = self.plan.n_records
        if n <= BIG:
            self._order = (epoch, epoch_order(n, self.seed, epoch, self.shuffle))
            return True
        p = self._pending
        if p is not None and p["epoch"] == epoch and p["key"] == self._key():
            if p["order"] is None:
                return False
            self._order, self._positions, self._pending = (epoch, p["order"]), (epoch, p["rank"]), None
            self._compute(epoch + 1)   # the next epoch's, ahead (its first step then finds it made)
            return True
        self._compute(epoch)
        return False

    def _compute(self, epoch):
        """Start a thread making ``epoch``'s order and positions (above BIG records), unless one is at work for this
        run (one at a time: the window asks again at its next frame). A finished thread's result for another epoch
        is dropped for it (its thread could still be alive for a moment after setting it)."""
        p = self._pending
        if p is not None and p["order"] is None and p["thread"].is_alive() and p["key"] == self._key():
            return
        job = {"epoch": epoch, "order": None, "key": self._key()}

        def work(job=job, n=self.plan.n_records, seed=self.seed, shuffle=self.shuffle):
            _yield_cpu()
            order = epoch_order(n, seed, job["epoch"], shuffle)
            job["rank"] = positions(order)   # (its scatter took ~200 ms of the GUI thread at 2M records)
            job["order"] = order   # (last: the GUI thread takes both once this is set)
        job["thread"] = threading.Thread(target=work, daemon=True)
        job["thread"].start()
        self._pending = job

    def _draw(self, batch):
        plan, order = self.plan, self._order[1]
        B, spe = plan.effective_batch_size, plan.steps_per_epoch
        rgb = np.full((self.n_rows, self.cols, 3), 255, dtype=np.uint8)
        valid = self._pos >= 0
        pos = np.where(valid, self._pos, 0)
        records = order[pos]
        colors = (CLASS_COLORS[self.labels[records] % len(CLASS_COLORS)] if self.labels is not None
                  else np.tile([[31, 119, 180]], (len(pos), 1)).astype(np.float64))
        step_of = pos // B
        dropped = step_of >= spe
        done = step_of < batch
        colors = np.where(done[:, None], 0.35 * colors + 0.65 * 255, colors)
        colors = np.where(dropped[:, None], 200.0, colors)
        flat = rgb.reshape(-1, 3)
        flat[valid] = colors[valid].astype(np.uint8)
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.image.setRect(QRectF(0, 0, self.cols, self.n_rows))
        self.getPlotItem().getViewBox().setRange(QRectF(0, 0, self.cols, self.n_rows), padding=0.02)
        if batch >= 0 and self.rows_are_batches:
            self.box.setRect(QRectF(0, batch, int(plan.batch_sizes()[batch]), 1))
            self.box.setVisible(True)
        elif batch >= 0:   # cells lo..hi (in cell units) hold the batch: outline them, or the rows they span
            size = plan.last_batch_size if batch == spe - 1 else B
            lo, hi = batch * B / self.block, (batch * B + size) / self.block
            r0, r1 = int(lo // self.cols), max(int(math.ceil(hi / self.cols)), int(lo // self.cols) + 1)
            if r1 - r0 == 1:
                self.box.setRect(QRectF(lo - r0 * self.cols, r0, max(hi - lo, 0.6), 1))
            else:
                self.box.setRect(QRectF(0, r0, self.cols, r1 - r0))
            self.box.setVisible(True)
        else:
            self.box.setVisible(False)
        self.colors = rgb

    # ------------------------------------------------------------------ hover

    def describe_cell(self, row, col):
        """What a person reads on hovering the cell: the record, its batch and its step."""
        if self.plan is None or self._order is None or not (0 <= row < self.n_rows and 0 <= col < self.cols):
            return ""
        p = self.cell(int(row), int(col))
        if p is None:
            return ""
        spe, B = self.plan.steps_per_epoch, self.plan.effective_batch_size
        epoch = self._order[0]
        rec = int(self._order[1][p])
        if self.rows is not None:   # the data's row, not the place among the training records
            rec = int(self.rows[rec])
        what = f"record {num(rec)}" if self.block == 1 else \
            f"{count(min(self.block, self.plan.n_records - p), 'record')} from record {num(rec)}"
        if p // B >= spe:
            return f"{what}: dropped this epoch (drop_last)"
        b = p // B
        return f"{what} · epoch {num(epoch + 1)} · batch {num(b + 1)} · step {num(epoch * spe + b + 1)}"

    def _on_mouse_moved(self, pos):
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            return
        pt = vb.mapSceneToView(pos)
        self.hover_text = self.describe_cell(math.floor(pt.y()), math.floor(pt.x()))
        self.setToolTip(self.hover_text)
