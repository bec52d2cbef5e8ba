import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# float32 results are checked against float64 ones / the other backend within these
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def make_data(n=60, d=5, loss="cross_entropy", k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, n).astype(np.float64)
    else:
        y = rng.normal(size=(n, k)) if k > 1 else rng.normal(size=n)
    return X, y


@pytest.fixture
def seed_data():
    """The seed's problem: 1000 random records, 10 features, binary labels."""
    rng = np.random.default_rng(0)
    return rng.random((1000, 10)), rng.integers(0, 2, 1000)
