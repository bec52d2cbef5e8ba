"""Module-level locks that a forked child gets anew.

A lock another thread held when the process forked stays held in the child for good (the child
has only the thread that forked), and the child's next ``with`` on it would wait forever. The
kernel forks cleanly (its thread team and the BLAS are re-made in a child), so the module-level
locks of the Python side must too.
"""
import os
import threading


class ForkSafeLock:
    """A ``threading.Lock`` for a module's shared state, replaced by a new one in a forked child.
    Use it with ``with`` only, never across a fork (nothing in fastbatch forks inside one)."""

    def __init__(self):
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # (module-level locks only: the hook lasts as long as the process)
            os.register_at_fork(after_in_child=self._renew)

    def _renew(self):
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()
