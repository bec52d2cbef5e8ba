"""The schedule arithmetic and the record order."""
import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _kernel


@pytest.mark.parametrize("n, b, drop, spe, last", [
    (1000, 64, False, 16, 40),   # the seed's numbers
    (1000, 64, True, 15, 64),
    (1000, 32, False, 32, 8),
    (1000, 1000, False, 1, 1000),
    (1000, 5000, False, 1, 1000),  # a batch larger than the data: one step over all records
    (1000, 1, False, 1000, 1),
    (10, 3, True, 3, 3),
    (10, 5, False, 2, 5),
])
def test_steps_per_epoch_and_last_batch(n, b, drop, spe, last):
    assert fb.steps_per_epoch(n, b, drop) == spe
    assert fb.last_batch_size(n, b, drop) == last
    p = fb.plan(n, b, 3, drop)
    assert p.batch_sizes().sum() == (n if not drop else spe * b)
    assert p.batch_sizes()[-1] == last


@pytest.mark.parametrize("n, b", [(2 ** 63 - 1, 1), (2 ** 53 + 1, 2), (2 ** 62 + 1, 3), (10 ** 18 + 1, 10 ** 9)])
def test_steps_per_epoch_is_exact_for_counts_beyond_a_float(n, b):
    # ceil(n / b) in floats rounded n: 2**63 - 1 records of batch 1 gave 2**63 steps per epoch (fastbatch plan said so)
    spe = fb.steps_per_epoch(n, b)
    assert spe == (n + b - 1) // b and (spe - 1) * b < n <= spe * b
    p = fb.plan(n, b, 2)
    assert p.total_steps == 2 * spe and p.last_batch_size == n - (spe - 1) * b


def test_seed_plan():
    p = fb.plan(1000, 64, 5)
    assert p.total_steps == 80
    assert list(p.epoch_starts) == [0, 16, 32, 48, 64]
    assert p.describe() == "1000 records / batch 64 -> 16 steps per epoch (last batch 40) x 5 epochs = 80 steps"


def test_drop_last_with_too_few_records_is_an_error():
    with pytest.raises(ValueError, match="drop_last"):
        fb.steps_per_epoch(10, 64, drop_last=True)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "64", None])
def test_bad_batch_size(bad):
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        fb.steps_per_epoch(100, bad)


def test_schedule_lines_match_the_seed():
    lines = list(fb.schedule_lines(1000, 64, 5))
    assert len(lines) == 80
    assert lines[0] == "Epoch: 1, Batch: 1, Step: 1"
    assert lines[16] == "Epoch: 2, Batch: 1, Step: 17"
    assert lines[-1] == "Epoch: 5, Batch: 16, Step: 80"


@pytest.mark.parametrize("n", [1, 2, 7, 32, 33, 100, 1000, 4099])
@pytest.mark.parametrize("seed, epoch", [(0, 0), (0, 1), (12345, 7), (2**63 - 1, 2**40)])
def test_epoch_order_is_a_permutation_and_the_kernel_agrees(n, seed, epoch):
    order = fb.epoch_order(n, seed, epoch)
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(_kernel.epoch_order(n, seed, epoch), order)


def test_epoch_order_is_a_pure_function_and_varies():
    a = fb.epoch_order(500, 3, 2)
    assert np.array_equal(a, fb.epoch_order(500, 3, 2))
    assert not np.array_equal(a, fb.epoch_order(500, 3, 3))
    assert not np.array_equal(a, fb.epoch_order(500, 4, 2))
    assert np.array_equal(fb.epoch_order(500, 3, 2, shuffle=False), np.arange(500))
    # shuffled enough: far from the identity and no fixed drift
    assert abs(np.corrcoef(a, np.arange(500))[0, 1]) < 0.2


def test_trainer_visits_records_in_epoch_order():
    # with a linear model, lr 0 and mse, nothing moves; batch membership shows through the per-step losses
    n = 37
    X = np.arange(n, dtype=np.float64).reshape(n, 1)
    y = np.zeros(n)
    tr = fb.Trainer(hidden=(), activation="identity", batch_size=5, epochs=3, learning_rate=1e-300,
                    dtype="float64", seed=9, drop_last=False)
    tr.set_params([(np.ones((1, 1)), np.zeros(1))])
    h = tr.fit(X, y)
    for e in range(3):
        order = fb.epoch_order(n, 9, e)
        for k in range(h.steps_per_epoch):
            idx = order[k * 5:(k + 1) * 5]
            assert h.loss[e * h.steps_per_epoch + k] == pytest.approx(np.mean(X[idx, 0] ** 2), rel=1e-12)


@pytest.mark.parametrize("call, error, name", [
    (lambda: fb.split_sizes(10, 1.5), ValueError, "validation_split"),
    (lambda: fb.split_sizes(10, -0.2), ValueError, "validation_split"),
    (lambda: fb.split_sizes(10, "0.2"), TypeError, "validation_split"),
    (lambda: fb.split_sizes(10, float("nan")), ValueError, "validation_split"),
    (lambda: fb.plan(100, 10, 2, optimizer="bogus"), ValueError, "optimizer"),
    (lambda: fb.scaled_learning_rate(-1.0, 64, 16, "sqrt"), ValueError, "learning_rate"),
    (lambda: fb.compare_batch_sizes(np.zeros((10, 1)), np.arange(10) % 2, [2, 4], reference_batch_size=0),
     ValueError, "reference_batch_size"),
    (lambda: fb.compare_batch_sizes(np.zeros((10, 1)), np.arange(10) % 2, [2, 4], reference_batch_size=2),
     ValueError, "reference_batch_size=2 scales the learning rate only with scale_lr"),
    (lambda: fb.compare_batch_sizes(np.zeros((10, 1)), np.arange(10) % 2, [2, 4], reference_batch_size=np.int64(2)),
     ValueError, "reference_batch_size=2 scales"),   # (not np.int64(2): the number, as check_int says it)
])
def test_the_planning_helpers_name_a_bad_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
