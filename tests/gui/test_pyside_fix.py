"""The guard against PySide6 versions that lose references to None and True (CPython < 3.12)."""
import sys

import fastbatch_gui
from fastbatch_gui._pyside_fix import PROBE_CALLS, leaked_references


def test_leaking_pyside_gets_the_guard():
    lost_none, lost_true = leaked_references()
    leaks = max(lost_none, lost_true) >= PROBE_CALLS // 2
    assert fastbatch_gui.SINGLETON_GUARD_APPLIED == leaks
    if leaks:  # a million leaky calls would no longer bring None or True near zero
        assert sys.getrefcount(None) > 2 ** 39 and sys.getrefcount(True) > 2 ** 39
