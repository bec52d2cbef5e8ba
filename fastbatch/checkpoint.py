"""Checkpoints: a run's config, params, optimizer state, position and history in one .npz.

No pickle anywhere (``allow_pickle=False``): loading a file can never run code.
Writes are atomic (temporary file + rename). The format carries a version and a
SHA-256 digest of its contents, so a truncated, foreign or altered file is refused.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from ._network import n_params

FORMAT = "fastbatch-checkpoint"
VERSION = 1


def to_arrays(trainer):
    """Everything that defines the trainer, as plain numpy arrays."""
    cfg = trainer.config
    cfg["hidden"] = list(cfg["hidden"])
    cfg["betas"] = list(cfg["betas"])
    arrays = {"config": np.array(json.dumps(cfg))}
    run = trainer._run
    if run is not None and run.get("generator"):
        raise ValueError("a fit_batches() run cannot be checkpointed (its data lives in your generator); "
                         "save after reset(), or train with fit(X, y)")
    if trainer._pending_params is not None:
        flat = [np.concatenate([W.ravel(), b]) for W, b in trainer._pending_params]
        arrays["pending_theta"] = np.concatenate(flat)
        arrays["pending_sizes"] = np.array([trainer._pending_params[0][0].shape[0]]
                                           + [W.shape[1] for W, _ in trainer._pending_params], dtype=np.int64)
    if run is not None:
        s = trainer._step
        state = {k: run[k] for k in ("n_records", "n_features", "loss", "n_outputs", "n_records_all")}
        state.update(step=s, opt_t=trainer._opt_t, stopped_early=trainer._stopped_early,
                     val_loss=list(trainer._val_loss), val_accuracy=list(trainer._val_acc),
                     schedule=trainer._schedule.state(),
                     best=None if trainer._best is None else
                     {"metric": trainer._best["metric"], "epoch": trainer._best["epoch"]})
        arrays.update(state=np.array(json.dumps(state)), sizes=trainer._sizes, theta=trainer._theta,
                      m=trainer._m, v=trainer._v, loss=trainer._hist["loss"][:s], lr=trainer._hist["lr"][:s])
        if trainer._best is not None:
            arrays["best_theta"] = trainer._best["theta"]
    return arrays


def _digest(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(trainer, path):
    """Write ``trainer`` to ``path`` atomically: a crash mid-write leaves the old file intact."""
    arrays = to_arrays(trainer)
    header = {"format": FORMAT, "version": VERSION, "sha256": _digest(arrays)}
    arrays["header"] = np.array(json.dumps(header))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbatch-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _bad(path, why):
    return ValueError(f"{path!s} is not a valid fastbatch checkpoint: {why}")


def read_arrays(path):
    """The checked arrays of a checkpoint file (FileNotFoundError / ValueError)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!s}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise _bad(path, f"it could not be read as an .npz archive ({exc})") from None
    if "header" not in arrays:
        raise _bad(path, "it has no fastbatch header")
    try:
        header = json.loads(str(arrays.pop("header")))
    except (ValueError, TypeError):
        raise _bad(path, "its header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(path, "its header does not name the fastbatch format")
    if header.get("version") != VERSION:
        raise _bad(path, f"it has format version {header.get('version')!r}; this fastbatch reads version {VERSION}")
    if header.get("sha256") != _digest(arrays):
        raise _bad(path, "its contents do not match their SHA-256 digest (the file was altered or damaged)")
    return arrays


def load(cls, path):
    """A ``cls`` (Trainer) restored from ``path``."""
    arrays = read_arrays(path)
    trainer = cls.__new__(cls)
    try:
        from_arrays(trainer, arrays)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"its contents are inconsistent ({exc})") from None
    return trainer


def from_arrays(trainer, arrays):
    """Fill a bare ``trainer`` (made with ``__new__``) from ``to_arrays`` output; raises on anything off."""
    cfg = json.loads(str(arrays["config"]))
    if not isinstance(cfg, dict):
        raise ValueError("config is not a mapping")
    cfg["hidden"] = tuple(cfg["hidden"])
    cfg["betas"] = tuple(cfg["betas"])
    type(trainer).__init__(trainer, **cfg)
    dtype = np.dtype(trainer._cfg["dtype"])
    if "pending_theta" in arrays:
        sizes = [int(s) for s in arrays["pending_sizes"]]
        flat = _float_array(arrays["pending_theta"], dtype, n_params(sizes), "pending_theta")
        layers, pos = [], 0
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers.append((flat[pos:pos + a * b].reshape(a, b), flat[pos + a * b:pos + a * b + b]))
            pos += a * b + b
        trainer.set_params(layers)
    if "state" not in arrays:
        return
    state = json.loads(str(arrays["state"]))
    sizes = np.asarray(arrays["sizes"])
    if sizes.dtype != np.int64 or sizes.ndim != 1 or len(sizes) != len(trainer._cfg["hidden"]) + 2 \
            or (sizes < 1).any() or tuple(sizes[1:-1]) != trainer._cfg["hidden"]:
        raise ValueError(f"layer sizes {sizes!r} do not fit hidden={trainer._cfg['hidden']}")
    P = n_params(sizes)
    theta = _float_array(arrays["theta"], dtype, P, "theta")
    m = _float_array(arrays["m"], dtype, P, "m")
    v = _float_array(arrays["v"], dtype, P, "v")
    step = int(state["step"])
    n_all = int(state["n_records_all"])
    n_out = int(state["n_outputs"])
    if int(state["n_features"]) != sizes[0] or n_out != sizes[-1]:
        raise ValueError("the recorded data shape does not match the layer sizes")
    shape = (int(state["n_records"]), int(sizes[0]))  # only the shape is needed: no memory
    data = {"X": np.broadcast_to(np.empty((1, 1), dtype=dtype), shape), "n_outputs": n_out,
            "loss": state["loss"], "n_records_all": n_all}
    from .schedule import plan as make_plan
    data["plan"] = make_plan(data["X"].shape[0], trainer._cfg["batch_size"], trainer._cfg["epochs"],
                             trainer._cfg["drop_last"])
    if data["loss"] not in ("mse", "binary_crossentropy", "cross_entropy"):
        raise ValueError(f"unknown loss {data['loss']!r}")
    if not 0 <= step <= data["plan"].total_steps:
        raise ValueError(f"step {step} is outside the run's {data['plan'].total_steps} steps")
    loss = _float_array(arrays["loss"], np.float64, step, "loss")
    lr = _float_array(arrays["lr"], np.float64, step, "lr")
    trainer._start_run(data)
    trainer._reserve(step)
    trainer._theta[...] = theta
    trainer._m[...] = m
    trainer._v[...] = v
    trainer._hist["loss"][:step] = loss
    trainer._hist["lr"][:step] = lr
    trainer._step = step
    trainer._opt_t = int(state["opt_t"])
    trainer._stopped_early = bool(state["stopped_early"])
    trainer._val_loss = [float(x) for x in state["val_loss"]]
    trainer._val_acc = [float(x) for x in state["val_accuracy"]]
    trainer._schedule.load_state(state["schedule"]) if state["schedule"] else None
    if state["best"] is not None:
        trainer._best = {"metric": float(state["best"]["metric"]), "epoch": int(state["best"]["epoch"]),
                         "theta": _float_array(arrays["best_theta"], dtype, P, "best_theta").copy()}


def _float_array(a, dtype, size, name):
    a = np.asarray(a)
    if a.dtype != dtype or a.shape != (size,):
        raise ValueError(f"{name} must be {dtype} of shape ({size},), found {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a
