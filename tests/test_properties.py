"""Property-based tests (hypothesis): random shapes, batch sizes, optimizers and dtypes."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import fastbatch as fb

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

configs = st.fixed_dictionaries({
    "n": st.integers(1, 60),
    "d": st.integers(1, 6),
    "hidden": st.lists(st.integers(1, 7), max_size=2).map(tuple),
    "batch_size": st.integers(1, 70),
    "epochs": st.integers(1, 3),
    "drop_last": st.booleans(),
    "shuffle": st.booleans(),
    "seed": st.integers(0, 2**32),
    "optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
    "momentum": st.sampled_from([0.0, 0.9]),
    "dtype": st.sampled_from(["float32", "float64"]),
    "activation": st.sampled_from(["relu", "tanh", "sigmoid", "identity"]),
    "loss": st.sampled_from(["mse", "binary_crossentropy", "cross_entropy"]),
})


def setup(c):
    if c["drop_last"] and c["batch_size"] > c["n"]:
        c["drop_last"] = False
    rng = np.random.default_rng(c["seed"] % 1000)
    X = rng.normal(size=(c["n"], c["d"]))
    y = {"mse": rng.normal(size=c["n"]), "binary_crossentropy": rng.integers(0, 2, c["n"]).astype(float),
         "cross_entropy": rng.integers(0, 3, c["n"])}[c["loss"]]
    kw = {k: c[k] for k in ("hidden", "batch_size", "epochs", "drop_last", "shuffle", "seed", "optimizer",
                            "dtype", "activation", "loss")}
    kw["momentum"] = c["momentum"] if c["optimizer"] == "sgd" else 0.0
    kw["learning_rate"] = 0.01
    return X, y, kw


@SETTINGS
@given(configs)
def test_backends_agree(c):
    X, y, kw = setup(c)
    hc = fb.Trainer(backend="cython", **kw).fit(X, y)
    hn = fb.Trainer(backend="numpy", **kw).fit(X, y)
    tol = dict(rtol=1e-4, atol=1e-5) if kw["dtype"] == "float32" else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hc.loss, hn.loss, **tol)


@SETTINGS
@given(configs)
def test_schedule_arithmetic(c):
    X, y, kw = setup(c)
    h = fb.Trainer(**kw).fit(X, y)
    n, b = c["n"], kw["batch_size"]
    spe = n // b if kw["drop_last"] else -(-n // b)
    assert h.steps_per_epoch == spe and h.n_steps == spe * kw["epochs"]
    sizes = h.batch_size[:spe]
    assert sizes.sum() == (spe * b if kw["drop_last"] else n)
    assert np.all(sizes[:-1] == min(b, n)) and 1 <= sizes[-1] <= min(b, n)
    assert list(h.epoch_starts) == [e * spe for e in range(kw["epochs"])]


@SETTINGS
@given(configs, st.lists(st.integers(1, 20), min_size=1, max_size=8), st.sampled_from(["cython", "numpy"]))
def test_resume_in_random_pieces_is_bit_identical(c, pieces, backend):
    X, y, kw = setup(c)
    ref = fb.Trainer(backend=backend, **kw)
    href = ref.fit(X, y)
    tr = fb.Trainer(backend=backend, **kw)
    for p in pieces:
        if tr.finished:
            break
        tr.fit(X, y, steps=p)
    if not tr.finished:
        tr.fit(X, y)
    assert np.array_equal(tr.history.loss, href.loss)
    for (a, b), (c2, d) in zip(tr.get_params(), ref.get_params()):
        assert np.array_equal(a, c2) and np.array_equal(b, d)
