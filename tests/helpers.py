"""Shared test data."""
import numpy as np


# the seed's run (the first README example): used where a test depends on these settings
SEED_RUN = dict(hidden=(32,), batch_size=64, epochs=5, optimizer="sgd", learning_rate=0.01)


def make_data(n=60, d=5, loss="cross_entropy", k=3, seed=0):
    """Random records with targets for ``loss`` (k classes, or k regression targets)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, n).astype(np.float64)
    else:
        y = rng.normal(size=(n, k)) if k > 1 else rng.normal(size=n)
    return X, y


def spy_row_sources(monkeypatch):
    """A list that gets every array a fit reads rows from: each one handed to ``_rows.RowSource.open``
    (statistics, conversions, a memory map's file) or bound to the kernel's ``_driver.ArraySource``."""
    from fastbatch import _driver, _rows
    seen = []
    original = _rows.RowSource.open.__func__
    bind = _driver.ArraySource.bind

    def spy(cls, X, *name):
        seen.append(X)
        return original(cls, X, *name)

    def spy_bind(self, data, rows, recheck):
        if rows is None:  # (else RowSource.open saw it)
            seen.append(data.X)
        return bind(self, data, rows, recheck)

    monkeypatch.setattr(_rows.RowSource, "open", classmethod(spy))
    monkeypatch.setattr(_driver.ArraySource, "bind", spy_bind)
    return seen


def interrupt_before_closing(monkeypatch, at_chunk):
    """A KeyboardInterrupt as if it came between chunk ``at_chunk``'s commit and its epoch's closing (outside
    either's undo): the chunk stays, its epoch is left to close."""
    from fastbatch import _driver as driver
    real_close, real_undo, chunks = driver._close_epochs, driver._undo, []

    def close(*args):
        chunks.append(1)
        if len(chunks) == at_chunk:
            monkeypatch.setattr(driver, "_undo", lambda *a: None)   # (no undo: the interrupt came before the try)
            raise KeyboardInterrupt
        monkeypatch.setattr(driver, "_undo", real_undo)
        return real_close(*args)
    monkeypatch.setattr(driver, "_close_epochs", close)


def run_interrupted_before_closing(monkeypatch, epochs, at_chunk):
    """(trainer, reference, X, y): a validation-split run of ``epochs`` epochs (8 steps each) interrupted as
    ``interrupt_before_closing`` says, and the same run uninterrupted."""
    import numpy as np
    import pytest

    import fastbatch as fb
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 5)).astype(np.float32), rng.integers(0, 2, 200)
    cfg = dict(hidden=(8,), batch_size=20, epochs=epochs, seed=0, validation_split=0.25)
    ref = fb.Trainer(**cfg)
    ref.fit(X, y)
    tr = fb.Trainer(**cfg)
    interrupt_before_closing(monkeypatch, at_chunk)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(X, y)
    monkeypatch.undo()
    return tr, ref, X, y
