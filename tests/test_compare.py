"""Which batch size: the noise scale, the plan's memory, and the batch-size comparison."""
import math
import os

import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data


def test_comparison_runs_equal_separate_trainer_runs_bit_for_bit():
    X, y = make_data(n=300, d=6)
    histories, summary = fb.compare_batch_sizes(X, y, [1, 8, 300], epochs=3, seed=4)
    rows = summary.to_dict("records") if hasattr(summary, "to_dict") else summary
    assert [r["batch_size"] for r in rows] == [1, 8, 300]
    for b, h in histories.items():
        alone = fb.Trainer(batch_size=b, epochs=3, seed=4, track_noise=True).fit(X, y)
        assert np.array_equal(h.loss, alone.loss)
        assert np.array_equal(h.noise, alone.noise)
    assert [r["steps_per_epoch"] for r in rows] == [300, 38, 1]
    assert math.isnan(rows[0]["noise_scale"])  # batch 1: no estimate
    assert sum(r["suggested"] for r in rows) == 1


def test_scaled_rates():
    assert fb.scaled_learning_rate(0.1, 64, 32, "linear") == pytest.approx(0.2)
    assert fb.scaled_learning_rate(0.1, 128, 32, "sqrt") == pytest.approx(0.2)
    assert fb.scaled_learning_rate(0.1, 128, 32, None) == 0.1
    with pytest.raises(ValueError, match="scale_lr"):
        fb.scaled_learning_rate(0.1, 8, 8, "cubic")
    X, y = make_data(n=100)
    _, rows = fb.compare_batch_sizes(X, y, [4, 16], epochs=1, scale_lr="linear", learning_rate=0.01)
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert [r["learning_rate"] for r in rows] == pytest.approx([0.01, 0.04])


def test_noise_scale_from_the_step_numbers():
    X, y = make_data(n=200, d=5)
    h = fb.Trainer(batch_size=20, epochs=4, track_noise=True).fit(X, y)
    B = 20.0
    g2, S = h.noise[:10, 0], h.noise[:10, 1]
    trace = np.sum((S - g2) * B / (B - 1))
    true = np.sum((B * g2 - S) / (B - 1))
    expect = trace / true if true > 0 else np.inf
    assert h.noise_scale()[0] == pytest.approx(expect)
    assert len(h.noise_scale(window=5)) == 8
    with pytest.raises(ValueError, match="batch_size >= 2"):
        fb.Trainer(batch_size=1, epochs=1, track_noise=True).fit(X, y).noise_scale()
    with pytest.raises(ValueError, match="track_noise"):
        fb.Trainer(epochs=1).fit(X, y).noise_scale()


def array_and_generator_runs(track_noise=False):
    """(X, y, an array run of 41 records at batch 4 (a last batch of 1), a fit_batches run of batches
    of 5, 1 and 9 records), 3 epochs each, for the History accessors' tests."""
    X, y = make_data(n=41, d=3)
    h = fb.Trainer(batch_size=4, epochs=3, track_noise=track_noise).fit(X, y)
    batches = [(X[i:i + k], y[i:i + k]) for i, k in ((0, 5), (5, 1), (6, 9))]
    g = fb.Trainer(epochs=3, track_noise=track_noise).fit_batches(lambda: iter(batches))
    return X, y, h, g


def test_one_epochs_noise_scale_is_the_runs_for_that_epoch():
    # epoch_noise_scale (what the command's --track-noise reports each epoch) reads the epoch's steps
    # only: the same numbers as noise_scale(), for array runs with a last batch of one and generator runs
    X, y, h, g = array_and_generator_runs(track_noise=True)
    assert h.batch_size[10] == 1 and len(h.epoch_starts) == 3
    assert len(g.epoch_starts) == 3 and g.n_steps == 9
    for run in (h, g):
        assert [run.epoch_noise_scale(e) for e in range(3)] == pytest.approx(list(run.noise_scale()), nan_ok=True)
        assert np.isnan(run.epoch_noise_scale(3))  # (an epoch not trained)
    ones = fb.Trainer(batch_size=1, epochs=1, track_noise=True).fit(X[:5], y[:5])
    assert np.isnan(ones.epoch_noise_scale(0))  # (noise_scale() raises: a run of batch 1 has no estimate)
    with pytest.raises(ValueError, match="track_noise"):
        fb.Trainer(epochs=1).fit(X, y).epoch_noise_scale(0)


def test_records_in_and_epoch_of_read_the_per_step_arrays():
    # the command's progress line reads these each call (O(an epoch) and O(1)): the arrays' numbers
    _, _, h, g = array_and_generator_runs()
    for run in (h, g):
        seen = run.records_seen
        assert [run.records_in(k) for k in range(run.n_steps + 2)] == [0, *seen.tolist(), seen[-1]]
        assert [run.epoch_of(k) for k in range(run.n_steps)] == run.epoch.tolist()


def test_one_epochs_noise_scale_names_a_bad_epoch():
    # a negative epoch was a numpy broadcasting error on an array run and NaN on a generator run (noise_scale()[-1]
    # is the last epoch's, a number), a fractional one an IndexError from inside: each names epoch, as window does
    _, _, h, g = array_and_generator_runs(track_noise=True)
    for run in (h, g):
        with pytest.raises(ValueError, match="epoch must be an integer >= 0, got -1"):
            run.epoch_noise_scale(-1)
        with pytest.raises(TypeError, match="epoch must be an integer"):
            run.epoch_noise_scale(1.5)
        assert run.epoch_noise_scale(np.int64(1)) == run.noise_scale()[1]


def test_records_in_and_epoch_of_name_a_bad_argument():
    # epoch_of(-1) was -1 on an array run (epoch[-1] is the last epoch; a generator run's said so), a step beyond
    # the run an epoch never trained (a generator run's an IndexError); both took 2.7 as 2 and "3" as 3
    _, _, h, g = array_and_generator_runs()
    for run in (h, g):
        for bad in (-1, run.n_steps):
            with pytest.raises(ValueError, match=f"step must be an integer in \\[0, {run.n_steps - 1}\\], got {bad}"):
                run.epoch_of(bad)
        with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
            run.records_in(-1)
        for bad in (2.7, "3", True):
            with pytest.raises(TypeError, match="step"):
                run.epoch_of(bad)
            with pytest.raises(TypeError, match="steps must be an integer"):
                run.records_in(bad)
        assert run.epoch_of(np.int64(3)) == run.epoch[3] and run.records_in(np.int64(3)) == run.records_seen[2]


def test_a_last_batch_of_one_carries_no_estimate():
    X, y = make_data(n=21, d=3)
    h = fb.Trainer(batch_size=4, epochs=1, track_noise=True).fit(X, y)
    assert h.batch_size[-1] == 1
    assert np.isfinite(h.noise_scale()).all() or np.isinf(h.noise_scale()).all()


def test_plan_knows_the_memory_of_a_step():
    p = fb.plan(60000, 64, 5, layers=(784, 256, 128, 10), dtype="float32", optimizer="adam")
    m = p.step_memory()
    n_params = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert m["batch"] == 64 * 784 * 4
    assert m["activations"] == m["deltas"] == 64 * (256 + 128 + 10) * 4
    assert m["optimizer_state"] == 2 * n_params * 4 and m["params"] == n_params * 4
    assert m["total"] == sum(v for k, v in m.items() if k != "total")
    assert "MB per step" in p.describe()
    assert fb.plan(100, 10, 1).step_memory() is None


def test_checkpoints_keep_the_noise_numbers(tmp_path):
    X, y = make_data(n=100)
    tr = fb.Trainer(batch_size=10, epochs=3, track_noise=True)
    tr.fit(X, y, steps=15)
    tr.save(tmp_path / "n.npz")
    back = fb.Trainer.load(tmp_path / "n.npz")
    assert np.array_equal(back.history.noise, tr.history.noise)
    back.fit(X, y)
    tr.fit(X, y)
    assert np.array_equal(back.history.noise, tr.history.noise)


def test_threaded_comparison_equals_one_after_another():
    X, y = make_data(n=400, d=8)
    a, _ = fb.compare_batch_sizes(X, y, [2, 16, 64, 400], epochs=2, threads=True)
    b, _ = fb.compare_batch_sizes(X, y, [2, 16, 64, 400], epochs=2, threads=False)
    for size in a:
        assert np.array_equal(a[size].loss, b[size].loss)
        assert np.array_equal(a[size].noise, b[size].noise)


def test_a_comparison_can_be_stopped_from_another_thread():
    import threading
    X, y = make_data(n=2000, d=8)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(InterruptedError):
        fb.compare_batch_sizes(X, y, [1, 2], epochs=100000, stop=stop)


@pytest.mark.parametrize("threads", [True, False])
def test_a_diverging_batch_size_is_named_in_the_error(threads):
    """A comparison whose run at one batch size diverges says which one (it spoke of 'the trainer', which the
    caller never holds, and of no batch size), and still carries the step and rate; it pickles with them."""
    import pickle
    from sklearn.datasets import load_diabetes
    X, y = load_diabetes(return_X_y=True)   # raw targets in the hundreds: SGD at 0.5 blows up at batch 4
    with pytest.raises(fb.DivergenceError, match=r"diverged at batch size 4: ") as info:
        fb.compare_batch_sizes(X, y, [4, 64], epochs=2, optimizer="sgd", learning_rate=0.5, threads=threads)
    exc = info.value
    assert exc.run == "batch size 4" and exc.learning_rate == 0.5 and "trainer" not in str(exc)
    back = pickle.loads(pickle.dumps(exc))
    assert str(back) == str(exc) and back.run == exc.run


def test_early_stopping_is_refused_before_any_run():
    """patience made each run stop at an epoch of its own (batch 8 after 11 of 20 epochs, 32 after 20) while the
    table compared them as runs of one budget; it is a ValueError naming it, before any training."""
    X, y = make_data(n=120, d=4)
    with pytest.raises(ValueError, match="patience=2 cannot apply to a batch-size comparison"):
        fb.compare_batch_sizes(X, y, [8, 32], epochs=20, validation_split=0.2, patience=2)
    histories, _ = fb.compare_batch_sizes(X, y, [8, 32], epochs=2, patience=None)   # (None: no early stopping)
    assert all(len(h.epoch_loss) == 2 for h in histories.values())


def test_an_interrupted_comparison_csv_leaves_the_old_file(tmp_path, monkeypatch):
    # (it was written in place with open(path, "w"): a Ctrl-C or a full disk left it cut short, the old one lost)
    from fastbatch import compare
    X, y = make_data(64, 3)
    histories, rows = fb.compare_batch_sizes(X, y, [8, 16], epochs=1, hidden=(4,), track_noise=True)
    path = tmp_path / "compare.csv"
    compare.write_comparison_csv(path, histories, rows)
    whole = path.read_text()
    assert whole.count("\n") > 3
    real = compare.comparison_rows

    def rows_then_ctrl_c(*args):
        for i, row in enumerate(real(*args)):
            if i == 2:
                raise KeyboardInterrupt
            yield row
    monkeypatch.setattr(compare, "comparison_rows", rows_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        compare.write_comparison_csv(path, histories, rows)
    assert path.read_text() == whole and os.listdir(tmp_path) == ["compare.csv"]
