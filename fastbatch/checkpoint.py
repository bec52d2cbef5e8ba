"""Checkpoints: a run's config, its :class:`~fastbatch._run.RunState` and the trainer's ``info``, in one .npz.

No pickle anywhere: loading a file can never run code. The file layer (``_archive.py``)
writes atomically and reads within bounds: every array's declared dtype and shape is
checked against what the config and the run's facts imply before a byte of it is
decompressed, so a hostile file can neither exhaust memory nor crash the reader. A
SHA-256 digest of the contents refuses a truncated, foreign or altered file.
"""
import hashlib
import json

import numpy as np

from . import _archive, config as _config
from ._network import n_params
from ._run import N_OPT_ROWS, RunState

FORMAT = "fastbatch-checkpoint"
VERSION = 3  # 3: losses in the run's dtype, rates as runs of equal rates, open epochs' hit sums
READS = (2, 3)  # versions this fastbatch reads (2: per-step float64 losses, rates and hit fractions)
MAX_LAYER_WIDTH = 1 << 20        # a checkpoint's declared widths are bounded before anything is allocated
MAX_PARAMS = 1 << 31
MAX_STEPS = 1 << 40


def to_arrays(trainer):
    """Everything that defines the trainer, as plain numpy arrays (JSON in 0-d string arrays)."""
    cfg = trainer.config
    arrays = {"config": _json(cfg), "info": _json(trainer.info)}
    st = trainer.run_state
    if st is None and trainer.has_params:  # params set with set_params before the first fit: in float64, as the
        p = trainer._pending_params        # trainer keeps them (a dtype set after loading applies to them exactly)
        arrays["pending_theta"] = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in p])
        arrays["pending_sizes"] = np.array([p[0][0].shape[0]] + [W.shape[1] for W, _ in p], dtype=np.int64)
    if st is not None:
        if st.generator:
            raise ValueError("a fit_batches() run cannot be checkpointed (its data lives in your generator); "
                             "save after reset(), or train with fit(X, y)")
        facts, run_arrays = st.to_arrays()
        arrays["state"] = _json(facts)
        arrays.update(run_arrays)
    return arrays


def _json(obj):
    return np.array(json.dumps(obj, default=_plain))


def _plain(obj):
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, (tuple, np.ndarray)):
        return list(obj)
    raise TypeError(f"{obj!r} ({type(obj).__name__}) cannot be saved in a checkpoint; use JSON values")


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
    arrays["header"] = _json({"format": FORMAT, "version": VERSION, "sha256": _digest(arrays)})
    _archive.write_atomic(path, arrays)


def _bad(path, why):
    return ValueError(f"{path!s} is not a valid fastbatch checkpoint: {why}")


def read_arrays(path):
    """The checked arrays of a checkpoint file (FileNotFoundError / ValueError), read within bounds."""
    with _archive.open_archive(path) as ar:
        names = set(ar.names())
        if "header" not in names:
            raise _bad(path, "it has no fastbatch header")
        raw = {}
        header = _read_json(ar, "header", raw, max_chars=4096)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _bad(path, "its header does not name the fastbatch format")
        version = header.get("version")
        if version not in READS:
            raise _bad(path, f"it has format version {version!r}; this fastbatch reads versions {READS}")
        arrays = {"config": _read_json(ar, "config", raw), "info": _read_json(ar, "info", raw) if "info" in names else {}}
        try:
            cfg = _config.check_config(_from_json_config(arrays["config"]))
        except (TypeError, ValueError, AttributeError) as exc:
            raise _bad(path, f"its config is invalid ({exc})") from None
        dtype = np.dtype(cfg["dtype"])
        expected = {}
        if "pending_sizes" in names:
            sizes = _sizes(ar, "pending_sizes", len(cfg["hidden"]) + 2, path)
            arrays["pending_sizes"] = sizes
            stored = np.float64 if "pending_theta" in names and ar.member_info("pending_theta")[0] == np.float64 \
                else dtype  # (float64 since pending params are kept so; the run's dtype before)
            expected["pending_theta"] = (np.dtype(stored), (n_params(sizes),))
        if "state" in names:
            facts = _read_json(ar, "state", raw)
            if not isinstance(facts, dict):
                raise _bad(path, "its run state is not a mapping")
            arrays["state"] = facts
            sizes = _sizes(ar, "sizes", len(cfg["hidden"]) + 2, path)
            arrays["sizes"] = sizes
            P = n_params(sizes)
            step = facts.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
                raise _bad(path, f"its step {step!r} is not a count of steps")
            f64 = np.dtype(np.float64)
            expected.update(theta=(dtype, (P,)), opt_state=(dtype, (N_OPT_ROWS, P)))
            if version == 2:
                expected.update(loss=(f64, (step,)), lr=(f64, (step,)))
            else:
                runs = facts.get("rate_runs")
                if isinstance(runs, bool) or not isinstance(runs, int) or not 0 <= runs <= step:
                    raise _bad(path, f"its rate_runs {runs!r} is not a count of at most {step} runs")
                expected.update(loss=(dtype, (step,)), lr_starts=(np.dtype(np.int64), (runs,)), lr_values=(f64, (runs,)))
            if facts.get("best") is not None:
                expected["best_theta"] = (dtype, (P,))
            if "noise" in names:
                expected["noise"] = (f64, (step, 2))
            if "epoch_step_weights" in names:  # (an open epoch's per-step sample weights: RunState.epoch_weights)
                spe = facts.get("steps_per_epoch")
                if isinstance(spe, bool) or not isinstance(spe, int) or not 0 < spe <= MAX_STEPS:
                    raise _bad(path, f"its steps_per_epoch {spe!r} is not a count of steps")
                expected["epoch_step_weights"] = (f64, (spe,))
            if "hits" in names and version == 2:
                expected["hits"] = (f64, (step,))
            for key, size in (("x_shift", sizes[0]), ("x_scale", sizes[0]), ("y_shift", sizes[-1]),
                              ("y_scale", sizes[-1])):
                if key in names:
                    expected[key] = (f64, (int(size),))
        unknown = names - set(expected) - {"header", "config", "info", "state", "sizes", "pending_sizes"}
        if unknown:
            raise _bad(path, f"it holds unexpected members {sorted(unknown)}")
        for name, (dt, shape) in expected.items():
            if name not in names:
                raise _bad(path, f"it has no {name!r} array")
            arrays[name] = ar.read_array(name, dt, shape)
    raw.pop("header")
    if header.get("sha256") != _digest({**arrays, **raw}):
        raise _bad(path, "its contents do not match their SHA-256 digest (the file was altered or damaged)")
    if version == 2 and "state" in arrays:
        _upgrade_from_2(arrays, dtype)
    return arrays


def _upgrade_from_2(arrays, dtype):
    """Version 2's per-step arrays in version 3's form (the epoch in progress loses its hit fractions:
    its training accuracy counts the steps after the load only)."""
    from ._run import RateLog
    arrays["loss"] = arrays["loss"].astype(dtype)
    rates = RateLog()
    rates.record(0, arrays.pop("lr"))
    arrays["lr_starts"], arrays["lr_values"] = rates.runs()
    arrays["state"]["rate_runs"] = rates.n
    arrays.pop("hits", None)


def _read_json(ar, name, raw, max_chars=1 << 20):
    """The JSON value of a 0-d string member (its raw array kept in ``raw`` for the digest)."""
    dtype, shape = ar.member_info(name)
    if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * max_chars:
        raise _bad(ar.path, f"its {name!r} must be a JSON string of at most {max_chars} characters, "
                            f"found {dtype} {shape}")
    raw[name] = ar.read_array(name, dtype, ())
    try:
        return json.loads(str(raw[name]))
    except (ValueError, RecursionError) as exc:
        raise _bad(ar.path, f"its {name!r} is not valid JSON ({exc})") from None


def _sizes(ar, name, length, path):
    sizes = ar.read_array(name, np.dtype(np.int64), (length,))
    if (sizes < 1).any() or (sizes > MAX_LAYER_WIDTH).any():
        raise _bad(path, f"its layer sizes {sizes.tolist()} are outside 1..{MAX_LAYER_WIDTH}")
    if n_params(sizes) > MAX_PARAMS:
        raise _bad(path, f"its layer sizes {sizes.tolist()} declare more than {MAX_PARAMS} params")
    return sizes


def _from_json_config(cfg):
    if not isinstance(cfg, dict):
        raise ValueError("config is not a mapping")
    cfg = dict(cfg)
    for key in ("hidden", "betas"):
        if isinstance(cfg.get(key), list):
            cfg[key] = tuple(cfg[key])
    return cfg


def load(cls, path):
    """A ``cls`` (Trainer) restored from ``path``."""
    arrays = read_arrays(path)
    trainer = cls.__new__(cls)
    try:
        from_arrays(trainer, arrays)
    except (KeyError, ValueError, TypeError, OverflowError) as exc:  # (Overflow: a JSON integer beyond float's range)
        raise _bad(path, f"its contents are inconsistent ({exc})") from None
    return trainer


def from_arrays(trainer, arrays):
    """Fill a bare ``trainer`` (made with ``__new__``) from ``to_arrays`` output; raises on anything off."""
    arrays = {k: (json.loads(str(v)) if k in ("config", "info", "state") and isinstance(v, np.ndarray) else v)
              for k, v in arrays.items()}
    type(trainer).__init__(trainer, **_from_json_config(arrays["config"]))
    info = arrays.get("info", {})
    if not isinstance(info, dict):
        raise ValueError("info is not a mapping")
    trainer.info = info
    cfg = trainer.config
    dtype = np.dtype(cfg["dtype"])
    if "pending_theta" in arrays:
        sizes = [int(s) for s in arrays["pending_sizes"]]
        flat = np.asarray(arrays["pending_theta"])
        if flat.dtype not in (dtype, np.float64) or flat.shape != (n_params(sizes),):
            raise ValueError(f"pending_theta must be float64 (or {dtype}) of shape ({n_params(sizes)},)")
        layers, pos = [], 0
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers.append((flat[pos:pos + a * b].reshape(a, b), flat[pos + a * b:pos + a * b + b]))
            pos += a * b + b
        trainer.set_params(layers)
    if "state" not in arrays:
        return
    st = RunState.from_arrays(arrays["state"], arrays, dtype, cfg["hidden"])
    if st.generator:
        raise ValueError("a fit_batches() run cannot be restored from a checkpoint")
    trainer.adopt_run_state(st)  # (which checks the state against the config)
