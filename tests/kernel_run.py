"""Train through a backend's ``train_steps`` directly, as the driver does (for the kernel's tests).

``train(backend, X, y, ...)`` converts the data, makes the ``KernelSpec``, starts from the
seeded initial params (or given ones) and runs every step of ``epochs`` epochs in one call
(or in ``pieces``), returning a ``Run`` with the per-step losses, the params and the status.
"""
import dataclasses

import numpy as np

from fastbatch import _numpy_backend
from fastbatch._codes import Status
from fastbatch.config import ACTIVATION_CODES, LOSS_CODES, OPTIMIZER_CODES
from fastbatch._kernel_spec import KernelSpec
from fastbatch._network import init_params, unpack
from fastbatch.schedule import steps_per_epoch

try:
    from fastbatch import _kernel
except ImportError:  # pragma: no cover
    _kernel = None

BACKENDS = {"cython": _kernel, "numpy": _numpy_backend}


@dataclasses.dataclass
class Run:
    losses: np.ndarray       # each step's batch loss (steps not run stay NaN)
    theta: np.ndarray
    opt_state: np.ndarray
    noise: np.ndarray        # (steps, 2): |G_B|^2 and S per step, or (0, 2)
    done: int
    status: int
    spec: KernelSpec

    @property
    def params(self):
        return unpack(self.theta, self.spec.sizes)


def data(X, y, loss, dtype):
    """(X, targets, labels, n_outputs) as the kernel takes them."""
    X = np.ascontiguousarray(X, dtype=dtype)
    y = np.asarray(y)
    if loss == "cross_entropy":
        labels = np.ascontiguousarray(y, dtype=np.int64)
        return X, np.empty((0, 0), dtype), labels, max(int(labels.max()) + 1, 2)
    targets = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
    return X, targets, np.empty(0, np.int64), targets.shape[1]


def make_spec(sizes, *, batch_size, spe, activation="relu", loss="cross_entropy", optimizer="sgd", shuffle=True,
              seed=0, betas=(0.9, 0.999), n_threads=1, split_columns=None, **opt):
    return KernelSpec(sizes=sizes, batch_size=batch_size, steps_per_epoch=spe, shuffle=shuffle, seed=seed,
                      activation=ACTIVATION_CODES[activation], loss=LOSS_CODES[loss],
                      optimizer=OPTIMIZER_CODES[optimizer], beta1=betas[0], beta2=betas[1],
                      n_threads=n_threads, split_columns=split_columns, **opt)


def train(backend, X, y, *, hidden=(), loss="cross_entropy", activation="relu", batch_size=16, epochs=1,
          steps=None, lr=0.05, seed=0, shuffle=True, drop_last=False, dtype="float64", params=None,
          weights=None, noise=False, pieces=None, stop=None, max_seconds=3600.0, X_read=None, fd=-1,
          data_offset=0, x_affine=None, **spec_kw):
    """Run ``epochs`` epochs (or ``steps`` steps) on ``backend``; see the module docstring."""
    X, targets, labels, k = data(X, y, loss, dtype)
    if X_read is not None:  # what the kernel is given as X (e.g. a memory map), the data checks done on X
        X = X_read
    n = X.shape[0]
    spe = steps_per_epoch(n, batch_size, drop_last)
    total = spe * epochs if steps is None else steps
    sizes = np.array([X.shape[1], *hidden, k], dtype=np.int64)
    spec = make_spec(sizes, batch_size=batch_size, spe=spe, activation=activation, loss=loss, seed=seed,
                     shuffle=shuffle, **spec_kw)
    if params is None:
        theta = init_params(sizes, activation, seed, np.dtype(dtype))
    else:
        theta = np.ascontiguousarray(np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params]),
                                     dtype=dtype)
    opt_state = np.zeros((3, theta.shape[0]), dtype=dtype)
    order_cache = np.full(n + 1, -1, dtype=np.int64)
    w = np.empty(0, dtype) if weights is None else np.ascontiguousarray(weights, dtype=dtype)
    lrs = np.full(total, lr) if np.ndim(lr) == 0 else np.asarray(lr, dtype=np.float64)
    losses = np.full(total, np.nan, dtype=dtype)  # (the run's history buffer: its dtype)
    nz = np.full((total, 2), np.nan) if noise else np.empty((0, 2))
    stop = np.zeros(1, np.uint8) if stop is None else stop
    be = BACKENDS[backend]
    affine = {} if x_affine is None else {"x_affine": x_affine}  # standardisation as records are read
    start, status = 0, Status.DONE
    for piece in (pieces or [total]):
        piece = min(piece, total - start)
        if piece <= 0:
            break
        done, status = be.train_steps(spec, X, targets, labels, w, theta, opt_state, order_cache,
                                      lrs[start:start + piece], losses[start:start + piece],
                                      nz[start:start + piece] if noise else nz, start, piece, start, stop,
                                      max_seconds, fd, data_offset, **affine)
        start += done
        if status != Status.DONE:
            break
    if pieces and status == Status.DONE and start < total:
        done, status = be.train_steps(spec, X, targets, labels, w, theta, opt_state, order_cache, lrs[start:],
                                      losses[start:], nz[start:] if noise else nz, start, total - start, start,
                                      stop, max_seconds, fd, data_offset, **affine)
        start += done
    return Run(losses, theta, opt_state, nz, start, status, spec)
