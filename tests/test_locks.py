"""Module-level locks (fastbatch._locks.ForkSafeLock): a child forked while another thread holds one takes it."""
import os
import threading
import time

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import _driver, _network
from helpers import make_data

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def fork_while_held(lock, in_child):
    """Fork while another thread holds ``lock``; the child runs in_child() (True: as it should) and exits. The
    child's exit code: 0 right, 1 wrong, 2 an error; a child still running after 20 s hung on the lock."""
    inside, leave = threading.Event(), threading.Event()

    def hold():
        with lock:
            inside.set()
            leave.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    try:
        pid = os.fork()
        if pid == 0:
            try:
                os._exit(0 if in_child() else 1)
            except BaseException:
                os._exit(2)
    finally:
        leave.set()
        holder.join()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"


def test_init_params_kept_params():
    # the child's first network not kept takes init_params' lock (to keep it)
    def child():
        got = _network.init_params(np.array([5, 7, 2]), "relu", 2 ** 40 + 3, np.dtype("float64"))
        return got.tobytes() == _network._draw_params(np.array([5, 7, 2]), "relu", 2 ** 40 + 3,
                                                      np.dtype("float64")).tobytes()
    assert fork_while_held(_network._kept_lock, child) == 0


def test_the_first_epochs_orders_kept():
    # the child's first run on a record count not seen before keeps its first epoch's order, under that lock
    X, y = make_data(n=137, d=4, seed=3)

    def child():
        tr = fb.Trainer(hidden=(5,), batch_size=8, epochs=1, seed=11)
        tr.fit(X, y)
        return tr.step == 18
    assert fork_while_held(_driver._first_orders_lock, child) == 0


def test_the_estimators_running_calls():
    sklearn = pytest.importorskip("fastbatch.sklearn")
    X, y = make_data(n=60, d=4, seed=5)

    def child():
        est = sklearn.FastBatchClassifier(hidden=(4,), epochs=2)
        return est.fit(X, y) is est
    assert fork_while_held(sklearn._running_lock, child) == 0
