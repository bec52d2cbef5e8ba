"""No leak in the extension: resident memory stays flat over many fits and predicts."""
import gc

import numpy as np
import pytest

import fastbatch as fb

psutil = pytest.importorskip("psutil")


def test_resident_memory_stays_flat():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 20)).astype(np.float32)
    y = rng.integers(0, 3, 500)
    proc = psutil.Process()

    def churn(rounds):
        for i in range(rounds):
            tr = fb.Trainer(hidden=(32, 16), batch_size=16 + i % 7, epochs=2, optimizer="adam",
                            dtype="float32" if i % 2 else "float64")
            tr.fit(X, y)
            tr.predict(X)
            tr.predict_proba(X)
            tr.evaluate(X, y)

    churn(30)  # warm-up: allocator pools, caches
    gc.collect()
    before = proc.memory_info().rss
    churn(300)
    gc.collect()
    grown = proc.memory_info().rss - before
    # 300 fits each allocate ~100 KB of kernel buffers; a leak of even one would show as > 30 MB
    assert grown < 8e6, f"resident memory grew by {grown / 1e6:.1f} MB over 300 fits"
