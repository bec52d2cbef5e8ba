"""The loss plot's bounded view: min/max per block of steps, the History read directly when zoomed in."""
import types

import numpy as np

import fastbatch as fb
from fastbatch_gui.loss_plot import MAX_BLOCKS, RAW_LIMIT, Blocks, LossPlot


def fake_history(loss):
    return types.SimpleNamespace(loss=loss, n_steps=len(loss), val_loss=np.empty(0))


def test_blocks_stay_bounded_and_exact():
    rng = np.random.default_rng(0)
    loss = rng.random(3_000_017)
    b = Blocks()
    for end in range(0, len(loss) + 1, 250_000):     # as the worker's reports arrive
        b.absorb(loss[:end])
    b.absorb(loss)
    assert b.n <= 2 * MAX_BLOCKS and len(b.mins) == 2 * MAX_BLOCKS   # memory independent of the steps
    full = loss[:b.steps].reshape(b.n, b.size)
    assert np.array_equal(b.mins[:b.n], full.min(axis=1)) and np.array_equal(b.maxs[:b.n], full.max(axis=1))
    assert len(loss) - b.steps < 2 * b.size           # the tail is read from the History


def test_a_long_run_draws_min_max_per_column_and_a_zoom_reads_the_history(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plan = fb.plan(1_000_000, 1, 3)
    plot.begin_run("batch 1", 0.1, plan)
    loss = np.random.default_rng(1).random(2_500_000)
    loss[1_234_567] = 7.0                              # one spike must survive the decimation
    plot.update_history(fake_history(loss))
    plot.redraw(force=True)
    trace = plot.current
    assert len(trace.raw.xData) <= 4 * MAX_BLOCKS + 2 * trace.blocks.size + 2
    assert trace.raw.yData.max() == 7.0 and trace.raw.opts["symbol"] is None
    # zoomed in to 1,000 steps: each step drawn from the History, at the middle of its interval
    vb = plot.getPlotItem().getViewBox()
    vb.setXRange(2_000_000, 2_001_000, padding=0)
    plot._user_moved()
    plot.redraw(force=True)
    xs = trace.raw.xData
    assert len(xs) <= RAW_LIMIT and xs[0] <= 2_000_000.5 and xs[-1] >= 2_000_999.5
    i = int(xs[10] - 0.5)
    assert trace.raw.yData[10] == loss[i]
    assert plot.show_hover_at(1_234_567.5).startswith("step 1,234,568 · epoch 2 · batch 234,568")
