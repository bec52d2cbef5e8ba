"""How records, batches, steps and epochs relate: the schedule arithmetic and the record order.

One epoch is one pass over all records. The records are split into batches of
``batch_size`` (the last one smaller, unless dropped). One step trains on one batch,
so ``steps_per_epoch`` is the number of batches.
"""
from dataclasses import dataclass

import numpy as np

from ._text import count
from ._validation import check_choice, check_float, check_int
from .config import OPTIMIZERS

__all__ = ["Plan", "plan", "steps_per_epoch", "last_batch_size", "epoch_order", "schedule_lines"]

_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def steps_per_epoch(n_records, batch_size, drop_last=False):
    """Number of batches (= steps) in one epoch: ceil(n / B), or floor(n / B) with drop_last."""
    n = check_int("n_records", n_records, 1)
    b = check_int("batch_size", batch_size, 1)
    if drop_last:
        if n < b:
            raise ValueError(
                f"drop_last=True with batch_size={b} larger than n_records={n} leaves no full batch; "
                "use a smaller batch_size or drop_last=False")
        return n // b
    return -(-n // b)  # (exact: n / b is a float, which rounds n above 2**53)


def last_batch_size(n_records, batch_size, drop_last=False):
    """Size of the last batch of an epoch (``batch_size`` when it divides evenly or is dropped)."""
    n = check_int("n_records", n_records, 1)
    b = check_int("batch_size", batch_size, 1)
    steps_per_epoch(n, b, drop_last)  # validates drop_last
    return _last_batch(n, b, drop_last)


def _last_batch(n, b, drop_last):
    """last_batch_size of checked arguments."""
    return n if b >= n and not drop_last else b if (drop_last or n % b == 0) else n % b


@dataclass(frozen=True)
class Plan:
    """The schedule of a run: how many steps, and how big each batch is."""

    n_records: int
    batch_size: int
    epochs: int
    drop_last: bool
    steps_per_epoch: int
    last_batch_size: int
    total_steps: int
    layers: tuple = None      # the network's widths (n_features, *hidden, n_outputs), when known
    dtype: str = "float32"
    optimizer: str = "sgd"

    @property
    def effective_batch_size(self):
        """Rows in a full batch: ``batch_size``, or all records when the batch is larger than the data."""
        return min(self.batch_size, self.n_records)

    @property
    def records_per_epoch(self):
        """Records an epoch trains on: all of them, less a dropped last batch."""
        return (self.steps_per_epoch - 1) * self.effective_batch_size + self.last_batch_size

    @property
    def epoch_starts(self):
        """Step index at which each epoch begins (the epoch boundaries)."""
        return np.arange(self.epochs, dtype=np.int64) * self.steps_per_epoch

    def batch_sizes(self):
        """Size of the batch of every step of one epoch."""
        sizes = np.empty(self.steps_per_epoch, dtype=np.int64)
        sizes.fill(self.effective_batch_size)
        sizes[-1] = self.last_batch_size
        return sizes

    def shared_batch_sizes(self):
        """``batch_sizes()``, read-only, and the very array of the last plan with the same batches
        (what a run keeps: a fresh run of the same shape does not make it again), for an epoch of up
        to SHARED_MAX_STEPS steps (a bigger one is made anew: it is not kept after its run)."""
        global _last_sizes
        key = (self.steps_per_epoch, self.effective_batch_size, self.last_batch_size)
        last = _last_sizes
        if last[0] != key:
            sizes = self.batch_sizes()
            sizes.flags.writeable = False
            if self.steps_per_epoch > SHARED_MAX_STEPS:
                return sizes
            _last_sizes = last = (key, sizes)
        return last[1]

    def step_memory(self):
        """Bytes one step of a full batch needs, by part (None without ``layers``).

        ``batch``: the gathered records; ``activations`` and ``deltas``: every layer's outputs
        and their gradients for the batch; ``params`` and ``gradient``: the network's weights
        and biases, and their gradient; ``optimizer_state``: momentum / Adam / RMSprop buffers.
        """
        if self.layers is None:
            return None
        item = np.dtype(self.dtype).itemsize
        B = self.effective_batch_size
        sizes = [int(s) for s in self.layers]
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        rows = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 3}.get(self.optimizer, 2)
        out = {"batch": B * sizes[0] * item, "activations": B * sum(sizes[1:]) * item,
               "deltas": B * sum(sizes[1:]) * item, "params": n_params * item, "gradient": n_params * item,
               "optimizer_state": (rows if self.optimizer != "sgd" else 0) * n_params * item}
        out["total"] = sum(out.values())
        return out

    def describe(self):
        """One line of arithmetic, e.g. ``1000 records / batch 64 -> 16 steps per epoch (last batch 40) x 5 epochs = 80 steps``."""
        last = "" if self.last_batch_size == self.effective_batch_size else f" (last batch {self.last_batch_size})"
        dropped = self.n_records - self.steps_per_epoch * self.effective_batch_size if self.drop_last else 0
        drop = f", {count(dropped, 'record', sep='')} dropped per epoch" if dropped else ""
        memory = self.step_memory()
        per_step = f"; {format_bytes(memory['total'])} per step" if memory else ""
        return (f"{count(self.n_records, 'record', sep='')} / batch {self.batch_size} -> "
                f"{count(self.steps_per_epoch, 'step', sep='')} per epoch{last}{drop} x "
                f"{count(self.epochs, 'epoch', sep='')} = {count(self.total_steps, 'step', sep='')}{per_step}")


_last_sizes = (None, None)  # Plan.shared_batch_sizes: (steps, batch, last batch) and its array
SHARED_MAX_STEPS = 1 << 16  # an epoch's arrays shared by equal runs, kept after them, have at most this many steps


def plan(n_records, batch_size, epochs, drop_last=False, layers=None, dtype="float32", optimizer="sgd"):
    """Return the :class:`Plan` for ``n_records`` records, ``batch_size`` and ``epochs``.

    With ``layers`` (the network's widths, e.g. ``(784, 256, 128, 10)``), ``dtype`` and
    ``optimizer``, the plan also knows the memory a step needs (:meth:`Plan.step_memory`).
    """
    e = check_int("epochs", epochs, 1)
    spe = steps_per_epoch(n_records, batch_size, drop_last)  # (checks n_records, batch_size and drop_last)
    n, b = int(n_records), int(batch_size)
    if layers is not None:
        try:
            layers = tuple(check_int("layers", w, 1) for w in layers)
        except TypeError:
            raise TypeError(f"layers must be a tuple of widths (n_features, *hidden, n_outputs), got {layers!r}") from None
        if len(layers) < 2:
            raise ValueError(f"layers must list at least the inputs and the outputs, got {layers!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    check_choice("optimizer", optimizer, OPTIMIZERS)
    return Plan(n, b, e, bool(drop_last), spe, _last_batch(n, b, drop_last), spe * e, layers, dtype, optimizer)


def format_bytes(n):
    """1536 -> '1.5 KB' (powers of 1024; the unit a person reads)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024


def split_sizes(n_records, validation_split):
    """(training records, validation records) for a seeded ``validation_split`` of ``n_records``.

    The one rounding rule: ``round(n_records * validation_split)`` records are held out.
    """
    n = check_int("n_records", n_records, 1)
    split = check_float("validation_split", validation_split, 0.0, 1.0, high_open=True)  # as the Trainer's
    n_val = int(round(n * split)) if split else 0
    return n - n_val, n_val


def _mix64(z):
    """splitmix64's finaliser on numpy uint64 (wraps mod 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix64_int(z):
    z &= _U64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    return z ^ (z >> 31)


def epoch_order(n_records, seed, epoch, shuffle=True):
    """The order in which epoch ``epoch`` (0-based) visits the records.

    A permutation of ``range(n_records)`` that is a pure function of
    ``(n_records, seed, epoch)``: every record gets the key
    ``mix64(stream + (i + 1) * golden)`` with ``stream = mix64(mix64(seed) ^ epoch)``,
    and the order sorts the keys (ties by index). The Cython kernel computes the
    same permutation in C. With ``shuffle=False`` it is the identity.
    """
    n = check_int("n_records", n_records, 1)
    s = check_int("seed", seed, 0, _U64)
    e = check_int("epoch", epoch, 0)
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    stream = _mix64_int(_mix64_int(s) ^ (e & _U64))
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        keys = _mix64(np.uint64(stream) + i * np.uint64(_GOLDEN))
    return np.argsort(keys, kind="stable").astype(np.int64)


def schedule_lines(n_records, batch_size=None, epochs=None, drop_last=False):
    """Yield the seed's ``Epoch: e, Batch: b, Step: s`` line for every step (all 1-based).

    Takes ``(n_records, batch_size, epochs[, drop_last])`` or a :class:`Plan`.
    """
    if isinstance(n_records, Plan):
        p = n_records
    else:
        if batch_size is None or epochs is None:
            raise TypeError("schedule_lines takes a Plan, or n_records, batch_size and epochs")
        p = plan(n_records, batch_size, epochs, drop_last)
    step = 0
    for e in range(p.epochs):
        for b in range(p.steps_per_epoch):
            step += 1
            yield f"Epoch: {e + 1}, Batch: {b + 1}, Step: {step}"
