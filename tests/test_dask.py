"""Sweeps on Dask: trainers and estimators travel between processes and continue bit-identically."""
import pickle
import sys

import numpy as np
import pytest

import fastbatch as fb

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")
cloudpickle = pytest.importorskip("cloudpickle")

from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastbatch.sklearn import FastBatchClassifier  # noqa: E402

# the helpers below run on the workers: ship them by value (the workers cannot import this file)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X, y


KW = dict(hidden=(16, 8), optimizer="adam", learning_rate=0.01, batch_size=32, epochs=4, seed=7)


def continue_run(trainer, X, y):
    """On a worker: finish the run, return the trainer (pickled back) and the worker's pid."""
    import os
    trainer.fit(X, y)
    return trainer, os.getpid()


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_pickled_trainer_mid_run_continues_bit_identically():
    X, y = data()
    whole = fb.Trainer(**KW)
    h_whole = whole.fit(X, y)
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=13)  # mid-epoch
    twin = pickle.loads(pickle.dumps(tr))
    assert twin.step == 13 and np.array_equal(twin.history.loss, tr.history.loss)
    h = twin.fit(X, y)
    assert np.array_equal(h.loss, h_whole.loss)
    for (W, b), (W0, b0) in zip(twin.get_params(), whole.get_params()):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)


def test_trainer_travels_to_a_worker_process_and_back(client):
    import os
    X, y = data()
    whole = fb.Trainer(**KW)
    h_whole = whole.fit(X, y)
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=13)
    back, pid = client.submit(continue_run, tr, X, y, pure=False).result(timeout=30)
    assert pid != os.getpid()  # trained in another process
    assert tr.step == 13  # the local trainer is untouched
    assert back.finished and np.array_equal(back.history.loss, h_whole.loss)
    assert np.array_equal(back.predict_proba(X), whole.predict_proba(X))


def test_grid_search_on_a_local_cluster(client):
    X, y = data()
    grid = {"hidden": [(8,), (32,)], "learning_rate": [0.003, 0.03]}
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        search = GridSearchCV(FastBatchClassifier(epochs=5), grid, cv=3, n_jobs=-1).fit(X, y)
    # the fits ran on the cluster (joblib may batch several fits into one task)
    assert len(stream.data) >= 1 and all(t["worker"] for t in stream.data)
    local = GridSearchCV(FastBatchClassifier(epochs=5), grid, cv=3, n_jobs=1).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    # every fit is seeded: the cluster's scores equal the local ones exactly
    assert np.array_equal(search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert search.best_params_ == local.best_params_ and search.best_score_ > 0.8
    assert np.array_equal(search.predict(X), local.predict(X))
