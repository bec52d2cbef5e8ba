"""Which batch size? Train the same run at several batch sizes and measure the trade.

Smaller batches give noisier gradients but more updates; larger batches give more
accurate gradients but fewer updates for the same records. :func:`compare_batch_sizes`
trains the same data, network, initial params, seed and record budget (epochs) at each
batch size, and measures steps, time, losses and the gradient noise scale
(McCandlish et al., "An Empirical Model of Large-Batch Training", 2018), whose
value is the batch size beyond which bigger batches mostly waste records.
"""
import math
import time

import numpy as np

from ._validation import check_float, check_int
from .errors import DivergenceError
from .trainer import Trainer

LR_SCALINGS = (None, "linear", "sqrt")
COMPARISON_COLUMNS = ("batch_size", "step", "epoch", "records_seen", "seconds", "loss")


def scaled_learning_rate(learning_rate, batch_size, reference_batch_size, rule):
    """The rate for ``batch_size`` under a scaling rule: ``lr * (b / ref)`` (linear, Goyal et al. 2017),
    ``lr * sqrt(b / ref)`` (sqrt), or ``lr`` (None)."""
    if rule not in LR_SCALINGS:
        raise ValueError(f"scale_lr must be one of {LR_SCALINGS}, got {rule!r}")
    learning_rate = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    if rule is None:
        return learning_rate
    ratio = check_int("batch_size", batch_size, 1) / check_int("reference_batch_size", reference_batch_size, 1)
    return learning_rate * (ratio if rule == "linear" else math.sqrt(ratio))


def suggested_batch_size(batch_sizes, noise_scale):
    """The compared batch size nearest the measured noise scale (on a log scale); None without one."""
    if noise_scale is None or np.isnan(noise_scale) or noise_scale <= 0:
        return None
    if np.isinf(noise_scale):
        return max(batch_sizes)
    return min(batch_sizes, key=lambda b: abs(math.log(b) - math.log(noise_scale)))


def pooled_noise_scale(rows):
    """The comparison's noise scale: the median of its runs' (NaN when none has an estimate)."""
    estimates = [r["noise_scale"] for r in rows if not np.isnan(r["noise_scale"])]
    return float(np.median(estimates)) if estimates else math.nan


def mark_suggested(rows):
    """Set each summary row's ``suggested``: its batch size is the compared one nearest the pooled noise scale."""
    pooled = pooled_noise_scale(rows)
    pick = suggested_batch_size([r["batch_size"] for r in rows], None if math.isnan(pooled) else pooled)
    for r in rows:
        r["suggested"] = r["batch_size"] == pick


def compare_batch_sizes(X, y, batch_sizes, scale_lr=None, reference_batch_size=None, threads=True, stop=None,
                        **trainer_params):
    """Train one run per batch size; return ``(histories, summary)``.

    ``histories`` maps each batch size to its :class:`~fastbatch.History`; ``summary`` has
    one row per batch size (a list of dicts, or a pandas DataFrame when pandas is there):
    steps per epoch, last batch, steps/s, records/s, seconds per epoch, final training and
    validation loss, the measured noise scale, and which one is suggested. Every run is a
    plain :class:`~fastbatch.Trainer` run with ``track_noise=True``: the same as training
    it alone, bit for bit. ``scale_lr`` ("linear" or "sqrt") scales ``learning_rate`` with
    the batch size against ``reference_batch_size`` (default: the smallest compared; one
    without ``scale_lr`` is a ValueError: it would scale nothing).

    With ``threads=True`` (default) each run trains on a thread of its own (the kernel
    releases the GIL; the results are the same as one after another): the runs then share
    the cores, so their speeds compare with each other, not with a run alone. ``threads=False``
    trains them one after another, each timed alone. ``stop`` (a ``threading.Event``) set
    from another thread ends every run within about 0.1 s: the comparison then raises
    ``InterruptedError`` (a partial comparison would compare unequal budgets).
    """
    try:
        sizes = [check_int("batch_sizes", b, 1) for b in batch_sizes]
    except TypeError:
        raise TypeError(f"batch_sizes must be a list of integers >= 1, got {batch_sizes!r}") from None
    if not sizes:
        raise ValueError("batch_sizes must list at least one batch size")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"batch_sizes has repeats: {sizes}")
    if "batch_size" in trainer_params:
        raise TypeError("pass the batch sizes as batch_sizes, not batch_size")
    if trainer_params.get("patience") is not None:  # (each run would stop at its own epoch, on its own best params)
        raise ValueError(f"patience={trainer_params['patience']!r} cannot apply to a batch-size comparison: early "
                         "stopping ends each run at an epoch of its own, and the runs are compared on one budget "
                         "of epochs; leave patience out")
    reference = min(sizes) if reference_batch_size is None else check_int("reference_batch_size",
                                                                            reference_batch_size, 1)
    if reference_batch_size is not None and scale_lr is None:  # (it was ignored: one rate for every size)
        raise ValueError(f"reference_batch_size={reference} scales the learning rate only with "
                         f"scale_lr 'linear' or 'sqrt'; give one, or leave reference_batch_size out")
    base_lr = trainer_params.pop("learning_rate", Trainer().learning_rate)
    trainers = {b: Trainer(**{**trainer_params, "track_noise": True}, batch_size=b,
                           learning_rate=scaled_learning_rate(base_lr, b, reference, scale_lr)) for b in sizes}
    timed = {}

    def train(b):
        tr = trainers[b]
        watch = None if stop is None else (lambda history: tr.stop() if stop.is_set() else None)
        t0 = time.perf_counter()
        try:
            h = tr.fit(X, y, on_progress=watch)
        except DivergenceError as exc:  # (its message spoke of a trainer the caller never sees, of no batch size)
            raise DivergenceError(exc.step, exc.epoch, exc.batch, exc.learning_rate, exc.what, exc.bad_step,
                                  exc.sane, exc.limit, exc.scale, run=f"batch size {b}") from None
        timed[b] = (h, time.perf_counter() - t0)

    if threads and len(sizes) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=len(sizes), thread_name_prefix="fastbatch-compare") as pool:
            for future in [pool.submit(train, b) for b in sizes]:
                future.result()  # re-raises a run's error here
    else:
        for b in sizes:
            train(b)
    if stop is not None and stop.is_set():
        raise InterruptedError("the batch-size comparison was stopped")
    histories, rows = {}, []
    for b, tr in trainers.items():
        h, seconds = timed[b]
        histories[b] = h
        try:
            noise = h.run_noise_scale()
        except ValueError:  # batch 1: no estimate
            noise = math.nan
        epochs = max(len(h.epoch_loss), 1)
        rows.append({"batch_size": b, "learning_rate": tr.learning_rate, "steps_per_epoch": h.steps_per_epoch,
                     "last_batch": int(tr.plan.last_batch_size), "steps": h.n_steps,
                     "steps_per_s": h.n_steps / seconds, "records_per_s": float(h.records_seen[-1]) / seconds,
                     "seconds_per_epoch": seconds / epochs, "train_loss": float(h.epoch_loss[-1]),
                     "val_loss": float(h.val_loss[-1]) if len(h.val_loss) else math.nan, "noise_scale": noise})
    mark_suggested(rows)
    try:
        import pandas as pd
        return histories, pd.DataFrame(rows)
    except ImportError:
        return histories, rows


def comparison_rows(histories, rows):
    """Every step of every run as (batch_size, step, epoch, records_seen, seconds, loss), steps and
    epochs numbered from 1; seconds are the run's steps at its mean speed (``rows``' steps_per_s)."""
    speed = {r["batch_size"]: r["steps_per_s"] for r in rows}
    for b, h in sorted(histories.items()):
        steps = h.step + 1
        yield from zip([b] * h.n_steps, steps.tolist(), (h.epoch + 1).tolist(), h.records_seen.tolist(),
                       (steps / speed[b]).tolist(), h.loss.tolist())


def write_comparison_csv(path, histories, rows):
    """The comparison as CSV: ``batch_size,step,epoch,records_seen,seconds,loss``."""
    from ._archive import open_atomic_text
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    with open_atomic_text(path) as f:  # written whole or not at all: an old file is never left cut short
        f.write(",".join(COMPARISON_COLUMNS) + "\n")
        for b, step, epoch, rec, sec, loss in comparison_rows(histories, rows):
            f.write(f"{b},{step},{epoch},{rec},{sec!r},{loss!r}\n")
