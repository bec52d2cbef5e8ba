import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def seed_data():
    """The seed's problem: 1000 random records, 10 features, binary labels."""
    rng = np.random.default_rng(0)
    return rng.random((1000, 10)), rng.integers(0, 2, 1000)
