"""A guard against PySide6 6.12's lost references to ``None`` and ``True`` on CPython 3.11 and older.

PySide6-Essentials 6.12.0 returns ``None`` from every void method (``QPainter.drawLine``,
``QWidget.setVisible``, ...) without the reference that CPython < 3.12 needs (3.12 made these
objects immortal), and every signal emission drops a reference to ``True``. Each call lowers the
count by one, and after some thousands of paints CPython aborts with "Fatal Python error:
none_dealloc" (or bool_dealloc). PySide6 6.9 does neither.

When a probe shows either leak, the counts of ``None``, ``True`` and ``False`` are raised by
2**40, which tens of thousands of lost references a second take centuries to use up: what
CPython 3.12 does for these objects anyway. Nothing happens where there is no leak.
"""
import ctypes
import sys

PROBE_CALLS = 64
SINGLETONS = (None, True, False)


def leaked_references():
    """References to None and to True lost by PROBE_CALLS void calls and signal emissions."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    probe.ping.connect(lambda: None)  # any slot: the emission is what leaks
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")
        probe.ping.emit()
    return none0 - sys.getrefcount(None), true0 - sys.getrefcount(True)


def guard_singletons():
    """Apply the guard if this PySide6 needs it; returns whether it did."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if max(leaked_references()) < PROBE_CALLS // 2:
        return False
    for obj in SINGLETONS:
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True
