"""The loss plot's bounded view: a min/max pyramid drawn at about one bucket per pixel column, at any zoom."""
import types

import numpy as np
import pytest

import fastbatch as fb
from fastbatch_gui.decimate import Pyramid, debias, ema_filter
from fastbatch_gui.loss_plot import MAX_EPOCH_LINES, RAW_LIMIT, LossPlot


def fake_history(loss, val=()):
    return types.SimpleNamespace(loss=loss, n_steps=len(loss), val_loss=np.asarray(val, dtype=np.float64))


def check_buckets(values, pyr, a, z, cols):
    starts, ends, mins, maxs = pyr.buckets(values, a, z, cols)
    assert starts[0] <= a < ends[0] and starts[-1] < z <= ends[-1] <= len(values)   # they cover the range...
    assert np.array_equal(starts[1:], ends[:-1]) and (ends > starts).all()   # ...and tile it
    assert len(starts) <= cols                                      # at most one per column
    assert np.array_equal(mins, np.minimum.reduceat(values[starts[0]:ends[-1]], starts - starts[0]))
    assert np.array_equal(maxs, np.maximum.reduceat(values[starts[0]:ends[-1]], starts - starts[0]))
    return starts, ends


def test_pyramid_buckets_are_exact_at_every_zoom():
    rng = np.random.default_rng(0)
    values = rng.random(3_000_017).astype(np.float32)
    values[1_234_567] = 7.0
    pyr = Pyramid()
    for end in (0, 5, 1000, 250_000, 250_001, 2_999_999, len(values)):   # as the worker's reports arrive
        pyr.absorb(values[:end])
    assert len(values) - pyr.steps < pyr.base
    for a, z, cols in ((0, len(values), 800), (1_234_000, 1_240_000, 800), (17, 2_900_001, 333),
                       (2_999_000, len(values), 100), (0, 100_000, 800), (1_000_000, 1_204_800, 800)):
        check_buckets(values, pyr, a, z, cols)
    starts, ends = check_buckets(values, pyr, 0, len(values), 800)
    assert pyr.buckets(values, 0, len(values), 800)[3].max() == 7.0      # the spike survives


def test_columns_widening_to_the_right_are_exact():
    values = np.random.default_rng(6).random(1_000_003).astype(np.float32)
    pyr = Pyramid(base=64)
    pyr.absorb(values)
    edges = np.geomspace(1, len(values), 600)          # a log axis's pixel columns
    starts, ends, mins, maxs = pyr.columns(values, edges)
    assert starts[0] <= 1 and ends[-1] == len(values) and np.array_equal(starts[1:], ends[:-1])
    assert len(starts) <= 600
    assert np.array_equal(mins, np.minimum.reduceat(values[starts[0]:], starts - starts[0]))
    assert np.array_equal(maxs, np.maximum.reduceat(values[starts[0]:], starts - starts[0]))
    assert (ends - starts)[:50].max() < 64 and (ends - starts)[-1] > 1000   # narrow at the left, wide at the right


def test_pyramid_memory_is_bounded_and_stays_exact():
    values = np.random.default_rng(1).random(200_003)
    pyr = Pyramid(base=4, max_blocks=256)
    sizes = []
    for end in range(0, len(values) + 1, 7_919):
        pyr.absorb(values[:end])
        sizes.append(pyr.nbytes)
    pyr.absorb(values)
    assert pyr.counts[0] <= 256 and pyr.base > 4                 # the finest level went, its blocks doubled
    assert max(sizes) < 64 * 1024                                # not growing with the values
    check_buckets(values, pyr, 0, len(values), 100)
    check_buckets(values, pyr, 123_456, 130_000, 100)


def test_smoothing_is_tensorboards_ema_and_catches_up_a_slice_at_a_time():
    values = np.random.default_rng(2).random(100_000)
    w = 0.99
    expect = debias(ema_filter(values, w, 0.0), np.arange(1, len(values) + 1), w)
    pyr = Pyramid(base=16)
    pyr.absorb(values)
    pyr.set_weight(w)
    calls = 0
    while not pyr.catch_up(values, budget=10_000):
        calls += 1
        assert pyr.ema_pending
    assert calls >= 5 and not pyr.ema_pending
    assert np.allclose(pyr.smoothed(values, 54_321, 60_000), expect[54_321:60_000])
    ends = np.array([16, 4096, 99_984, 100_000])
    known, got = pyr.smoothed_at(values, ends)
    assert known.all() and np.allclose(got, expect[ends - 1])
    pyr.set_weight(0.5)                                          # a new weight: nothing known until recomputed
    assert not pyr.smoothed_at(values, ends)[0][:3].any()


def test_a_long_run_draws_min_max_per_column_and_a_zoom_reads_the_history(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plan = fb.plan(1_000_000, 1, 3)
    plot.begin_run("batch 1", 0.1, plan)
    loss = np.random.default_rng(1).random(2_500_000).astype(np.float32)
    loss[1_234_567] = 7.0                              # one spike must survive the decimation
    trace = plot.current
    drawn = []
    for end in (10_000, 500_000, 1_000_000, 2_500_000):   # the data drawn stays bounded as steps grow
        plot.update_history(fake_history(loss[:end]))
        plot.redraw(force=True)
        drawn.append(len(trace.raw.xData))
    pixels = int(plot.getPlotItem().getViewBox().width())
    assert max(drawn) <= 2 * (max(pixels, 100) + len(trace.pyramid.counts) + 3)
    assert trace.raw.yData.max() == 7.0 and trace.raw.opts["symbol"] is None
    # each column is a (min, max) pair of a bucket of steps at its middle: numpy's min and max over it
    starts, ends = trace.drawn_buckets
    assert np.array_equal(starts[1:], ends[:-1]) and ends[-1] == len(loss)
    assert np.allclose(trace.raw.xData[0::2], (starts + ends) / 2)
    assert np.array_equal(trace.raw.yData[0::2], np.minimum.reduceat(loss, starts))
    assert np.array_equal(trace.raw.yData[1::2], np.maximum.reduceat(loss, starts))
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


def test_smoothing_a_long_run_is_drawn_as_it_is_recomputed(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plot.begin_run("batch 1", 0.1, fb.plan(500_000, 1, 4))
    loss = np.random.default_rng(3).random(2_000_000).astype(np.float32)
    plot.update_history(fake_history(loss))
    plot.set_smoothing(0.9)
    trace = plot.current
    plot.redraw()
    assert trace.pyramid.ema_pending                  # one slice a frame...
    partial = trace.smooth.xData
    while trace.pyramid.ema_pending:
        plot.redraw()
    assert len(trace.smooth.xData) > len(partial)     # ...until the whole run is smoothed
    expect = ema(loss, 0.9)
    ends = np.round(trace.smooth.xData + 0.5).astype(np.int64)
    assert np.allclose(trace.smooth.yData, expect[ends - 1], rtol=1e-6)


def ema(values, w):
    return debias(ema_filter(values, w, 0.0), np.arange(1, len(values) + 1), w)


def test_a_million_epochs_stay_bounded(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plan = fb.plan(3, 3, 1_000_000)                    # one step an epoch
    plot.begin_run("batch 3", 0.1, plan)
    loss = np.random.default_rng(4).random(1_000_000)
    val = np.random.default_rng(5).random(1_000_000)
    val[777_777] = -1.0
    for end in (1_000, 300_000, 1_000_000):
        plot.update_history(fake_history(loss[:end], val[:end]))
        plot.add_epoch_means(len(plot.current.means), loss[len(plot.current.means):end])
        plot.redraw(force=True)
    trace = plot.current
    assert np.array_equal(trace.epoch_means, loss) and np.array_equal(trace.val_loss, val)
    pixels = max(int(plot.getPlotItem().getViewBox().width()), 100)
    for item in (trace.means_item, trace.val_item):
        assert len(item.xData) <= 2 * (pixels + 30) and item.opts["symbol"] is None
    assert trace.val_item.yData.min() == -1.0          # the one low validation loss is drawn
    assert plot.n_epoch_lines <= MAX_EPOCH_LINES + 2
    assert [e for e, _ in plot.epoch_lines] == list(range(0, 1_000_001, 100_000))
    plot.set_log_x(True)                               # labels on a log axis: a few, however many epochs
    plot.redraw(force=True)
    assert 1 <= len(plot.epoch_label_texts()) <= 30


@pytest.mark.parametrize("axis", ["step", "epoch", "records"])
def test_epoch_means_in_view_are_each_drawn_when_few(qtbot, axis):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plan = fb.plan(100, 30, 5)                         # 4 steps an epoch, the last of 10 records
    plot.begin_run("batch 30", 0.1, plan)
    plot.set_x_axis(axis)
    plot.update_history(fake_history(np.linspace(1, 0, 20)))
    plot.add_epoch_means(0, [0.9, 0.7])
    plot.add_epoch_means(2, [0.5, 0.3, 0.1])
    plot.redraw(force=True)
    trace = plot.current
    assert list(trace.means_item.yData) == [0.9, 0.7, 0.5, 0.3, 0.1]
    assert np.allclose(trace.means_item.xData, trace.epoch_x(np.arange(5) + 0.5, axis))
    assert trace.means_item.opts["symbol"] == "o"


@pytest.mark.parametrize("seed", range(6))
def test_columns_at_any_edges_are_exact(seed):
    rng = np.random.default_rng(seed)
    values = rng.random(rng.integers(1, 300_000)).astype(np.float32)
    pyr = Pyramid(base=int(rng.choice([1, 4, 64])), max_blocks=int(rng.choice([64, 1 << 19])))
    pyr.absorb(values)
    n = len(values)
    kind = seed % 3
    if kind == 0:
        edges = np.sort(rng.integers(0, n + 1, rng.integers(2, 900)))
    elif kind == 1:
        edges = np.geomspace(1, n + 1, 700) - 1
    else:
        edges = np.cumsum(rng.integers(1, 2000, 500))
        edges = edges[edges <= n]
    starts, ends, mins, maxs = pyr.columns(values, edges)
    if len(starts):
        assert np.array_equal(starts[1:], ends[:-1]) and (ends > starts).all()
        assert np.array_equal(mins, [values[s:e].min() for s, e in zip(starts, ends)])
        assert np.array_equal(maxs, [values[s:e].max() for s, e in zip(starts, ends)])


def test_an_older_long_run_moves_to_a_file_and_draws_the_same(qtbot, monkeypatch):
    from fastbatch_gui import loss_plot
    monkeypatch.setattr(loss_plot, "SPILL_STEPS", 100_000)
    monkeypatch.setattr(loss_plot, "SPILL_CHUNK", 50_000)
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    loss = np.random.default_rng(7).random(300_000).astype(np.float32)
    plot.begin_run("batch 1", 0.1, fb.plan(100_000, 1, 3))
    plot.update_history(fake_history(loss))
    plot.redraw(force=True)
    old = plot.current
    before = (old.raw.xData.copy(), old.raw.yData.copy())
    plot.begin_run("batch 2", 0.1, fb.plan(1000, 2, 1))       # the first run is now an older one
    frames = 0
    while old.spilling:
        plot.redraw(force=True)
        frames += 1
    assert frames >= 6                                         # a slice a frame
    assert isinstance(old.loss, np.memmap) and old.history is None
    assert np.array_equal(old.loss, loss)
    plot.redraw(force=True)
    assert np.array_equal(old.raw.xData, before[0]) and np.array_equal(old.raw.yData, before[1])
    plot.discard_current_run()                                 # Reset: the older run is the newest again
    plot.redraw(force=True)
    assert plot.show_hover_at(1234.5).endswith(f"loss {loss[1234]:.5g}")
    plot.set_smoothing(0.9)                                    # smoothed from the file
    while plot.current.pyramid.ema_pending:
        plot.redraw()
    assert plot.current.smooth.yData is not None and len(plot.current.smooth.yData)


def test_a_rate_changed_before_any_step_at_it_replaces_it_in_the_legend(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.begin_run("batch 64", 0.1, fb.plan(1000, 64, 5))
    plot.add_lr_marker(0, 0.01)            # before the first step: the run's rate, no marker
    assert plot.legend_labels()[0] == "batch 64, lr 0.01" and plot.lr_lines == []
    plot.add_lr_marker(16, 0.05)
    plot.add_lr_marker(16, 0.02)           # changed again before a step at 0.05: that marker says 0.02
    assert plot.legend_labels()[0] == "batch 64, lr 0.01 → 0.02"
    assert [(s, r) for s, r, _ in plot.lr_lines] == [(16, 0.02)] and plot.lr_lines[0][2].label.format == "lr 0.02"



def test_a_big_networks_decision_surface_has_fewer_points(qtbot):
    # 14,400 predictions of a 1024 x 4 network took tens of seconds a surface: the grid keeps them to SURFACE_MACS
    from fastbatch_gui.surface_plot import GRID, MIN_GRID, SURFACE_MACS, SurfacePlot
    plot = SurfacePlot()
    qtbot.addWidget(plot)
    X = np.random.default_rng(0).normal(size=(50, 2))
    plot.set_data(X, (X[:, 0] > 0).astype(int), held_out=np.zeros(0, int), seed=0)
    assert plot.grid()[1] == plot.grid(1_000)[1] == (GRID, GRID)               # small networks: every point
    pts, (n, m) = plot.grid(3_150_000)
    assert n == m and n * n * 3_150_000 <= SURFACE_MACS < (n + 1) ** 2 * 3_150_000 and pts.shape == (n * n, 2)
    assert plot.grid(10 ** 12)[1] == (MIN_GRID, MIN_GRID)


@pytest.mark.parametrize("n", [300, 100_000])   # each step drawn; min/max pairs per column
def test_a_loss_of_zero_on_the_log_axis_is_drawn_at_the_bottom(qtbot, n):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plot.begin_run("batch 1", 0.1, fb.plan(n, 1, 1))
    loss = np.random.default_rng(0).random(n).astype(np.float32) + 0.01
    loss[::2] = 0.0                                  # (batch 1 on separable data: half the float32 losses are 0)
    plot.update_history(fake_history(loss))
    plot.set_log_y(True)
    plot.redraw(force=True)
    y = plot.current.raw.yData
    assert len(y) and (y > 0).all()                  # log10 of every value drawn is finite: the curve is whole
    if n == 300:                                     # at the smallest positive loss in view
        assert y.min() == loss[loss > 0].min() and np.array_equal(y[1::2], loss[1::2])
    plot.set_log_y(False)
    plot.redraw(force=True)
    assert plot.current.raw.yData.min() == 0.0       # the linear axis draws them as they are


@pytest.mark.parametrize("X, width", [([[-0.43033382, 0.97289216]], (1.0, 1.0)),      # one record
                                      ([[1e6, 5.0], [1e6, 7.0]], (1e5, 2.0)),         # one column constant
                                      ([[0.0, 0.0], [0.0, 0.0]], (1.0, 1.0)),
                                      ([[0.0, 1e-12], [0.01, 3e-12]], (0.01, 2e-12))])  # small, not degenerate
def test_the_surfaces_view_spans_a_sensible_width_for_records_on_a_point_or_a_line(qtbot, X, width):
    from fastbatch_gui.surface_plot import PAD, SurfacePlot
    sp = SurfacePlot()
    qtbot.addWidget(sp)
    X = np.asarray(X, dtype=np.float32)
    sp.set_data(X, np.zeros(len(X), dtype=np.int64))
    got = (sp.rect.width(), sp.rect.height())
    assert got == pytest.approx(tuple(w * (1 + 2 * PAD) for w in width), rel=1e-3)
    centre = (X.min(axis=0).astype(np.float64) + X.max(axis=0)) / 2
    assert (sp.rect.center().x(), sp.rect.center().y()) == pytest.approx(tuple(centre), rel=1e-6, abs=1e-15)
    (x0, x1), (y0, y1) = sp.getPlotItem().getViewBox().viewRange()
    assert x1 - x0 == pytest.approx(got[0], rel=1e-3) and y1 - y0 == pytest.approx(got[1], rel=1e-3)
