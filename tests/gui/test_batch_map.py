"""The batch map against the library: its cells are fb.epoch_order's visiting order, its rows the plan's batches."""
import numpy as np
import pytest
from PySide6.QtWidgets import QPushButton

import fastbatch as fb
from fastbatch_gui.batch_map import BatchMap


def press(qtbot, window, name):
    with qtbot.waitSignal(window.fitReturned, timeout=10_000):
        window.findChild(QPushButton, name).click()


def test_rows_are_batches_in_the_libraries_order(qtbot, window):
    for name, value in (("records", 300), ("batch_size", 32), ("drop_last", True)):
        window.controls.set_value(name, value)
    bmap = window.findChild(BatchMap, "batchMap")
    for _ in range(10):                       # 9 steps per epoch: the 10th is epoch 2's first
        press(qtbot, window, "stepBatchButton")
    window._on_frame()
    plan = fb.plan(300, 32, 5, drop_last=True)
    order = fb.epoch_order(300, 0, 1, True)
    assert bmap.epoch_shown() == 1 and np.array_equal(bmap.order(), order)
    assert (bmap.n_rows, bmap.cols) == (plan.steps_per_epoch + 1, 32)
    for row in range(plan.steps_per_epoch):
        cells = [bmap.cell(row, c) for c in range(32)]
        assert cells == list(range(row * 32, row * 32 + 32))
    dropped = [bmap.cell(9, c) for c in range(32)]
    assert [p for p in dropped if p is not None] == list(range(288, 300))      # 12 records, greyed
    assert (bmap.colors[9, :12] == 200).all() and (bmap.colors[9, 12:] == 255).all()
    assert bmap.current_batch == 0 and bmap.box.rect().y() == 0
    assert bmap.describe_cell(0, 5) == f"record {order[5]} · epoch 2 · batch 1 · step 10"
    assert bmap.describe_cell(9, 0) == f"record {order[288]}: dropped this epoch (drop_last)"
    press(qtbot, window, "stepBatchButton")   # the highlight moves one batch
    window._on_frame()
    assert bmap.current_batch == 1 and bmap.box.rect().y() == 1
    # the batch done before is faded: lighter than the one being trained
    assert bmap.colors[0].astype(int).sum() > bmap.colors[2].astype(int).sum()


def test_shuffle_off_keeps_the_order_and_the_last_batch_is_short(qtbot, window):
    for name, value in (("records", 100), ("batch_size", 30), ("shuffle", False), ("epochs", 3)):
        window.controls.set_value(name, value)
    bmap = window.batch_map
    press(qtbot, window, "stepEpochButton")
    press(qtbot, window, "stepBatchButton")
    window._on_frame()
    assert bmap.epoch_shown() == 1 and np.array_equal(bmap.order(), np.arange(100))
    assert [bmap.cell(3, c) for c in range(30)] == list(range(90, 100)) + [None] * 20   # 10 records: short


def test_many_records_are_blocks(qtbot):
    bmap = BatchMap()
    qtbot.addWidget(bmap)
    plan = fb.plan(100_000, 1, 2)
    bmap.set_run(plan, 0, True, None)
    assert bmap.block * bmap.n_cells >= 100_000 and bmap.n_cells <= 8192
    bmap.show_steps(150_001)                  # epoch 2, its 50,001st step
    assert bmap.epoch_shown() == 1 and bmap.current_batch == 50_000
    text = bmap.describe_cell(0, 0)
    assert text.startswith(f"{bmap.block} records from record {fb.epoch_order(100_000, 0, 1)[0]:,}")


def test_a_batch_of_many_rows_is_outlined_whole(qtbot):
    bmap = BatchMap()
    qtbot.addWidget(bmap)
    bmap.set_run(fb.plan(1000, 1000, 3), 0, True, None)   # one step per epoch: every record in the batch
    bmap.show_steps(2)
    r = bmap.box.rect()
    assert (r.x(), r.y(), r.width(), r.height()) == (0, 0, bmap.cols, bmap.n_rows)


def test_an_epochs_order_is_the_librarys():
    from fastbatch_gui.batch_map import epoch_order
    for n, epoch, shuffle in ((300_001, 2, True), (250_000, 0, False), (200_000, 1, True), (1000, 3, True),
                              (1, 0, True)):
        assert np.array_equal(epoch_order(n, 7, epoch, shuffle), fb.epoch_order(n, 7, epoch, shuffle))


def test_after_a_run_a_preview_of_new_settings_shows_no_old_progress_and_a_continued_run_shows_its_own(qtbot, window):
    set_values = window.controls.set_value
    for name, value in (("records", 200), ("batch_size", 50), ("epochs", 2)):
        set_values(name, value)
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        window.findChild(QPushButton, "startButton").click()
    bmap = window.findChild(BatchMap, "batchMap")
    window._on_frame()
    assert bmap.current_batch == 3                      # the run's last batch, outlined
    set_values("records", 300)                          # new settings: a preview of their records
    window._data_timer.timeout.emit()
    window._on_frame()
    assert bmap.plan.n_records == 300 and bmap.current_batch == -1   # (the old run's progress was drawn over it)
    set_values("records", 200)
    set_values("epochs", 3)                             # Start would continue the run: its progress is shown again
    window._data_timer.timeout.emit()
    with qtbot.waitSignal(window.runEnded, timeout=10_000):
        window.findChild(QPushButton, "startButton").click()
    window._on_frame()
    assert window.trainer.step == 12 and bmap.plan.epochs == 3 and bmap.current_batch == 3


def test_the_hover_names_the_datas_row_of_each_record_of_a_validation_split(qtbot, window):
    """With records held out, the map's records are the training records: its hover names each one's row in the
    data, the records the step panel and the surface's highlight name (it named the place among the training
    records: 'record 2' for row 6)."""
    for name, value in dict(records=10, validation_split=0.5, batch_size=5, epochs=2).items():
        window.controls.set_value(name, value)
    press(qtbot, window, "stepBatchButton")
    window._on_frame()
    bmap, train = window.batch_map, window._rows[0]
    assert len(train) == 5 and not np.array_equal(train, np.arange(5))
    batch = train[window.step_panel.info["records"]]
    assert [bmap.describe_cell(0, c) for c in range(5)] == [
        f"record {r} · epoch 1 · batch 1 · step 1" for r in batch]


@pytest.mark.parametrize("big", [False, True])
def test_the_surfaces_highlight_reads_the_epochs_order_once_per_epoch(qtbot, window, monkeypatch, big):
    from fastbatch_gui import batch_map, window as window_module
    if big:   # the map's order made off the GUI thread (as above BIG records)
        monkeypatch.setattr(batch_map, "BIG", 100)
    calls = []
    real = batch_map.epoch_order
    counted = lambda n, seed, epoch, shuffle: calls.append(epoch) or real(n, seed, epoch, shuffle)
    monkeypatch.setattr(batch_map, "epoch_order", counted)
    monkeypatch.setattr(window_module, "epoch_order", counted)
    for name, value in dict(records=300, batch_size=10, epochs=2, validation_split=0.2).items():
        window.controls.set_value(name, value)
    sp, train, held = window.surface_plot, None, None
    for k in range(1, 31):   # 24 steps per epoch: across the epoch boundary
        press(qtbot, window, "stepBatchButton")
        if train is None:
            train, held = window._rows
        info = window.step_panel.info
        e, b = info["epoch"] - 1, info["batch"] - 1
        order = real(len(train), 0, e, True)
        seen = set(train[order[:b * 10]].tolist()) & set(sp.shown.tolist())
        assert set(sp.faded.tolist()) == seen and not set(sp.faded.tolist()) & set(held.tolist())
        assert set(sp.highlighted.tolist()) == set(train[info["records"]].tolist()) & set(sp.shown.tolist())
    assert info["epoch"] == 2 and info["batch"] == 6
    # each epoch's order made once (the batch map's), not once a step; off the GUI thread at most once more, and
    # there the next epoch's ahead (its first step then finds it made: at 2M records it took 144-207 ms there)
    assert sorted(set(calls)) == ([0, 1, 2] if big else [0, 1]) and len(calls) <= (6 if big else 2)


@pytest.mark.parametrize("change", ["records", "seed", "shuffle"])
def test_an_order_a_thread_made_for_other_settings_is_never_taken(qtbot, monkeypatch, change):
    """Above BIG records a thread computes an epoch's order; settings changed before it is taken (other records,
    another seed, shuffle off) must not get it: it drew the old order (the Step panel and the map disagreed) or
    indexed past the new records (an IndexError that undid the run). A preview's order is drawn when the thread
    is done (nothing asked for it again while idle)."""
    from fastbatch_gui import batch_map
    monkeypatch.setattr(batch_map, "BIG", 100)
    bmap = BatchMap()
    qtbot.addWidget(bmap)
    bmap.set_run(fb.plan(3000, 10, 2), 0, True, None)   # (a thread makes epoch 0's order)
    qtbot.waitUntil(lambda: bmap._pending is None or bmap._pending["order"] is not None, timeout=10_000)
    n, seed, shuffle = {"records": (2500, 0, True), "seed": (3000, 7, True), "shuffle": (3000, 0, False)}[change]
    bmap.set_run(fb.plan(n, 10, 2), seed, shuffle, None)
    want = fb.epoch_order(n, seed, 0, shuffle)
    assert np.array_equal(bmap.order_of(0), want)
    assert np.array_equal(bmap.positions_of(0)[want], np.arange(n))
    bmap.set_run(fb.plan(n, 10, 2), seed, shuffle, None)   # a preview, left to its thread

    def frame():   # what the window's frame does while the map waits (its thread may be ahead on epoch 1 first)
        if bmap.waiting():
            bmap.show_steps(0)
        return not bmap.waiting()
    qtbot.waitUntil(frame, timeout=10_000)
    assert bmap.order() is not None and np.array_equal(bmap.order(), want)
