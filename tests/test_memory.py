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


_PEAK_SCRIPT = """
import sys
import numpy as np
import fastbatch as fb
from fastbatch import trainer as T, _driver
optimizer = sys.argv[1]
rng = np.random.default_rng(0)
X, y = rng.normal(size=(100, 1000)).astype(np.float32), rng.integers(0, 10, 100)
tr = fb.Trainer(hidden=(4000,), optimizer=optimizer, batch_size=20, epochs=4, validation_split=0.2)
def kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")        # the peak resident set starts again from here (what the process held before is not counted)
before = kb("VmRSS:")
tr.fit(X, y)            # a chunk per epoch: the driver's three snapshots take turns
tr.fit(X, y, epochs=6)
peak = kb("VmHWM:") - before
st = tr.run_state
print(peak, T._run_bytes(st.sizes.tobytes(), 4, _driver.opt_rows(tr.config)), st.theta.nbytes)
"""


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_memory_a_network_is_refused_on_covers_what_its_run_takes(optimizer):
    """hidden= of a network too big for the machine is refused before anything is made, from _run_bytes: the
    run's real peak must not exceed it (it counted 6 params' worth; adam's run took 15: killed, not refused)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, optimizer], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    peak, estimate, params = (int(v) for v in out)
    assert peak <= estimate, f"{optimizer}: the run's peak grew {peak / params:.1f}x its params, estimated " \
                             f"{estimate / params:.1f}x"
    assert estimate <= 3 * max(peak, params)   # (and not a refusal of networks that fit)


def test_a_network_beyond_the_free_memory_is_refused_before_it_is_made(monkeypatch):
    from fastbatch import trainer as T
    monkeypatch.setattr(T, "_physical_memory", lambda: 512 << 20)       # a 512 MB machine
    monkeypatch.setattr(T, "_available_memory", lambda: 64 << 20)       # with 64 MB free
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 1000)), rng.integers(0, 2, 50)
    tr = fb.Trainer(hidden=(4000,), optimizer="adam", epochs=1)
    with pytest.raises(ValueError, match=r"hidden=\(4000,\) makes a network of layers \(1000, 4000, 2\) .* GB free"):
        tr.fit(X, y)
    assert not tr.started
