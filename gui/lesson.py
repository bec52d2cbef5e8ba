"""What makes the app's data and settings teach: the datasets offered, the sorted-by-class order,
and scaling the learning rate with the batch size.

The datasets themselves are the library's (``fastbatch.datasets``); here is only how the app
names them and which feature count each starts at.
"""
import numpy as np

import fastbatch as fb
from fastbatch import datasets

# (key, what the combo says); the first is the default. Keys are fastbatch.datasets.NAMES, plus "file".
DATASET_LABELS = {"moons": "two moons", "blobs": "blobs (3 classes)", "spirals": "spirals", "xor": "XOR",
                  "random": "random labels (nothing to learn)"}
DATASETS = [(k, DATASET_LABELS[k]) for k in DATASET_LABELS if k in datasets.NAMES] + \
    [("file", "file (.csv / .npy / .npz)")]
# the features each dataset starts at: the two that carry the pattern, or the seed's 10 random columns
NATURAL_FEATURES = {name: 2 for name in datasets.TWO_FEATURE} | {"random": 10}
RANDOM_HINT = "random labels: nothing to learn (the loss stays near ln 2 = 0.69); try two moons or blobs"

# the task box: what it says, and the loss it asks the library for
TASKS = {"auto": ("auto (from the target)", "auto"), "classification": ("classification", "cross_entropy"),
         "regression": ("regression", "mse")}

LR_SCALINGS = {"none": "same rate for every batch size",
               "linear": "× batch / reference (linear rule)",
               "sqrt": "× √(batch / reference)"}


def sorted_by_class(X, y):
    """The records in label order (stable): with shuffle off, each epoch sees one class, then the next."""
    order = np.argsort(np.asarray(y), kind="stable")
    return X[order], y[order]


def scaled_rate(rate, batch_size, reference, scaling):
    """The run's rate: ``fastbatch.scaled_learning_rate`` (linear: Goyal et al. 2017, or sqrt) for a scaling key."""
    if scaling not in LR_SCALINGS:
        raise ValueError(f"lr scaling must be one of {list(LR_SCALINGS)}, got {scaling!r}")
    return fb.scaled_learning_rate(rate, batch_size, reference, None if scaling == "none" else scaling)
