"""The dense network's parameters: one flat buffer, with (W, b) views per layer."""
import operator

import numpy as np

from ._locks import ForkSafeLock


def layer_sizes(n_features, hidden, n_outputs):
    """[n_in, h1, ..., n_out] as int64."""
    return np.array([n_features, *hidden, n_outputs], dtype=np.int64)


def n_params(sizes):
    s = [int(v) for v in sizes]
    return sum(a * b + b for a, b in zip(s[:-1], s[1:]))


def aligned_zeros(n, dtype, make=np.zeros):
    """n zeros of ``dtype`` whose first lies on a 64-byte boundary (a cache line): the kernel's
    vector loads and stores of W then never straddle two lines (numpy aligns to 16 bytes), and it
    need not train on an aligned copy of the params. (``make=np.empty``: n values not yet set.)"""
    dtype = np.dtype(dtype)
    base = make(n + 64 // dtype.itemsize, dtype=dtype)
    start = (-base.ctypes.data % 64) // dtype.itemsize
    return base[start:start + n]


def aligned(theta, copy=False):
    """``theta`` itself when it is 64-byte aligned (and no ``copy`` is asked for), else an aligned
    copy (see aligned_zeros). A run's params are made so (``init_params``, ``set_params``, a
    checkpoint's): the kernel trains on them where they lie."""
    if not copy and theta.ctypes.data % 64 == 0:
        return theta
    out = aligned_zeros(theta.shape[0], theta.dtype, np.empty)
    out[...] = theta
    return out


def unpack(flat, sizes):
    """Views [(W, b), ...] into ``flat``; W is shaped (n_in, n_out), row-major."""
    out, pos = [], 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        a, b = int(a), int(b)
        W = flat[pos:pos + a * b].reshape(a, b)
        pos += a * b
        out.append((W, flat[pos:pos + b]))
        pos += b
    return out


# How many float64 draws init_params makes at a time: a wide layer's draws go into the params through a
# buffer that stays in the core's cache instead of one temporary of the whole layer (a 784 x 256 layer's
# is 1.6 MB, twice its float32 params), which would push out of cache what the run reads next.
INIT_CHUNK = 8192


def init_params(sizes, activation, seed, dtype):
    """Seeded initialisation: He normal for relu, Glorot uniform otherwise; zero biases. A new array each
    call. The params of the last few networks made are kept (INIT_KEPT_BYTES, read-only), and the same
    network again (a fresh Trainer per fold of a cross-validation, a grid search, a run started over)
    gets a copy of them: the same bits as drawing them again, at the cost of a copy."""
    dtype = np.dtype(dtype)
    # (operator.index: a seed the draw refuses, a float, is refused here too, not taken for another's)
    key = (tuple(int(v) for v in sizes), activation, operator.index(seed), dtype.str)
    kept = _kept_params.get(key)
    if kept is None:
        kept = _draw_params(sizes, activation, seed, dtype)
        if INIT_KEPT > 0 and kept.nbytes <= INIT_KEPT_BYTES:
            kept.flags.writeable = False
            with _kept_lock:  # (the oldest go first; another thread may be adding or reading)
                while _kept_params and (len(_kept_params) >= INIT_KEPT
                                        or sum(a.nbytes for a in _kept_params.values()) + kept.nbytes > INIT_KEPT_BYTES):
                    _kept_params.pop(next(iter(_kept_params)))
                _kept_params[key] = kept
        else:
            return kept
    return aligned(kept, copy=True)


# the params init_params made lately, by (sizes, activation, seed, dtype): at most INIT_KEPT networks of at
# most INIT_KEPT_BYTES in all
INIT_KEPT, INIT_KEPT_BYTES = 16, 1 << 23
_kept_params = {}
_kept_lock = ForkSafeLock()  # (a forked child gets its own: one another thread held at the fork stays held)


def _draw_params(sizes, activation, seed, dtype):
    """init_params' draws. They are made in chunks of whole rows (INIT_CHUNK): the same stream, so the same
    params, as one draw of each whole layer."""
    rng = np.random.default_rng([seed, 0x1417])  # a stream of its own, apart from the record order
    theta = aligned_zeros(n_params(sizes), dtype)
    for W, _ in unpack(theta, sizes):
        fan_in, fan_out = W.shape
        rows = max(1, INIT_CHUNK // fan_out)
        for r in range(0, fan_in, rows):
            block = W[r:r + rows]
            if activation == "relu":
                block[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=block.shape)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                block[...] = rng.uniform(-limit, limit, size=block.shape)
    return theta
