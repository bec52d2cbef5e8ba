"""What a generated dataset costs in memory, known before it is made, and whether this machine has room for it."""
import os

import numpy as np

from fastbatch.schedule import format_bytes

from .fmt import num

RAM_SHARE = 4   # making the data may take at most a quarter of the machine's memory: training, the plots
                # and everything else on the machine need the rest (beyond it the app swaps or is killed)
MADE_DTYPE = np.float64   # ``fastbatch.datasets.make`` builds float64; the app then keeps the run's dtype
LABEL_BYTES = 8           # int64 labels
MAKING_BYTES_PER_RECORD = 48   # while it is made: the labels, the shuffle's order and the sort by class's


def ram_bytes():
    """The machine's physical memory in bytes; None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def generated_bytes(n_records, n_features, dtype):
    """``(kept, peak)``: the bytes of ``X`` in ``dtype`` and its labels, and the most held while they are made.

    The peak is two float64 copies at once (the noise columns stacked on, or the records sorted by
    class, or the cast to ``dtype``), as measured with tracemalloc: 16.3 to 16.5 bytes a value.
    """
    values = n_records * n_features
    kept = values * np.dtype(dtype).itemsize + n_records * LABEL_BYTES
    peak = 2 * values * np.dtype(MADE_DTYPE).itemsize + n_records * MAKING_BYTES_PER_RECORD
    return kept, peak


def check_room(n_records, n_features, dtype):
    """The readout's line on the data's size; ValueError, saying so, when making it needs more than its share of
    the machine's memory (nothing is refused where the system does not say how much there is)."""
    kept, peak = generated_bytes(n_records, n_features, dtype)
    ram = ram_bytes()
    if ram is not None and peak > ram / RAM_SHARE:
        raise ValueError(f"{num(n_records)} records × {num(n_features)} features need {format_bytes(peak)} of "
                         f"memory to make ({format_bytes(kept)} kept), more than a quarter of this machine's "
                         f"{format_bytes(ram)}: use fewer records or features")
    return (f"data: {num(n_records)} × {num(n_features)} {np.dtype(dtype).name} = {format_bytes(kept)} in memory "
            f"({format_bytes(peak)} while it is made)")
