"""The installed PySide6 keeps its references: 6.12.0 on CPython < 3.12 loses one to None per
void call and one to True per signal emission, and the app then dies after some thousand paints
("Fatal Python error: none_dealloc"). pyproject.toml excludes it; this catches a regression."""
import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    ping = Signal()


def test_void_calls_and_signals_keep_their_references():
    probe = _Probe()
    probe.ping.connect(lambda: None)
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        probe.setObjectName("probe")
        probe.ping.emit()
    assert abs(sys.getrefcount(None) - none0) < 50
    assert abs(sys.getrefcount(True) - true0) < 50
