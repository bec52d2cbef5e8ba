"""The reference backend: the training loop written plainly in numpy.

It implements exactly what the Cython kernel (``_kernel.pyx.tp``) does, one step at a
time, so that anyone can check the algorithm by eye and the tests can hold the
kernel to it. It has the kernel's signature (see ``_kernel_spec.py`` and ``_kernel.train_steps``).
"""
import math
import os
import time

import numpy as np

from ._codes import Activation, Loss, Optimizer, Status
from ._network import unpack
from .schedule import epoch_order


def _activate(code, z):
    if code == Activation.RELU:
        return np.where(z > 0, z, 0).astype(z.dtype)
    if code == Activation.TANH:
        return np.tanh(z)
    if code == Activation.SIGMOID:
        with np.errstate(over="ignore"):  # exp(-z) overflowing for z < -88 (float32) gives 0, as it should
            return (1 / (1 + np.exp(-z))).astype(z.dtype)
    return z


def _activation_grad(code, z, a):
    """d a / d z, from the pre-activation z and the activation a."""
    if code == Activation.RELU:
        return (z > 0).astype(z.dtype)
    if code == Activation.TANH:
        return 1 - a * a
    if code == Activation.SIGMOID:
        return a * (1 - a)
    return np.ones_like(z)


def loss_and_grad(code, logits, targets, labels, scale):
    """The batch's loss sum_i scale_i * l_i and its gradient with respect to the logits.

    ``scale`` holds each record's w_i / sum w (1 / B without weights): the loss is the
    weighted mean of the records' losses l_i.
    """
    n, k = logits.shape
    f = logits.dtype.type
    col = scale[:, None].astype(logits.dtype)
    if code == Loss.MSE:  # l_i: the mean over the k outputs, like torch's mse_loss
        diff = logits - targets
        per_record = np.mean(diff.astype(np.float64) ** 2, axis=1)
        return float(scale @ per_record), diff * (col * f(2.0 / k))
    if code == Loss.BINARY_CROSSENTROPY:  # on one logit, the stable form
        z, y = logits, targets
        per_record = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))[:, 0]
        p = 1 / (1 + np.exp(-z))
        return float(scale @ per_record.astype(np.float64)), ((p - y) * col).astype(z.dtype)
    # cross-entropy: softmax over k logits against integer labels
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    per_record = np.log(s[:, 0]) - shifted[np.arange(n), labels]
    grad = e / s
    grad[np.arange(n), labels] -= 1
    return float(scale @ per_record.astype(np.float64)), (grad * col).astype(logits.dtype)


def _update(spec, p, g, state, lr, t):
    """One optimizer step on one parameter array, as torch.optim does it (t counts from 1).

    ``state`` is the array's (m, v, grad_avg): SGD's and RMSprop's momentum buffer, Adam's
    moments, RMSprop's square average and centered gradient average.
    """
    f = p.dtype.type
    m, v, ga = state
    wd = spec.weight_decay
    if spec.optimizer == Optimizer.SGD:  # L2 decay in the gradient; momentum buffer starts as the first gradient
        if wd:
            g = g + f(wd) * p
        if spec.momentum:
            if t == 1:
                m[...] = g
            else:
                m[...] = f(spec.momentum) * m + g
            g = g + f(spec.momentum) * m if spec.nesterov else m
        p -= f(lr) * g
        return
    if spec.optimizer == Optimizer.RMSPROP:
        if wd:
            g = g + f(wd) * p
        alpha = spec.alpha
        v[...] = v * f(alpha) + f(1 - alpha) * g * g
        if spec.centered:
            ga[...] = ga + f(1 - alpha) * (g - ga) if 1 - alpha < 0.5 else g - (g - ga) * f(alpha)
            avg = np.sqrt(v + (-ga) * ga) + f(spec.eps)
        else:
            avg = np.sqrt(v) + f(spec.eps)
        if spec.momentum > 0:
            m[...] = m * f(spec.momentum) + g / avg
            p += f(-lr) * m
        else:
            p += f(-lr) * (g / avg)
        return
    if spec.optimizer == Optimizer.ADAMW:  # decoupled decay
        p *= f(1 - lr * wd)
    elif wd:  # Adam: L2 decay in the gradient
        g = g + f(wd) * p
    m += (g - m) * f(1 - spec.beta1)
    v[...] = v * f(spec.beta2) + f(1 - spec.beta2) * g * g
    step_size = lr / (1 - spec.beta1 ** t)
    denom = np.sqrt(v) / f(np.sqrt(1 - spec.beta2 ** t)) + f(spec.eps)
    p -= f(step_size) * (m / denom)


def train_steps(spec, X, targets, labels, weights, theta, opt_state, order_cache, lrs, losses, noise,
                start_step, n_steps, opt_t, stop, max_seconds, fd=-1, data_offset=0, hits=None, x_affine=None,
                loss_limit=math.inf):
    """Run up to ``n_steps`` steps from global step ``start_step``; return (steps done, status).

    ``spec`` is a ``KernelSpec``; ``weights`` (n,) or (0,) for none; ``opt_state`` (3, P)
    holds the optimizer's buffers; ``order_cache`` (n + 1 int64: an epoch, then its record
    order; -1 when empty) keeps the current epoch's order between calls; ``losses`` (X's dtype)
    receives each step's loss (one beyond the dtype's range is ``NONFINITE``, a finite one beyond
    ``loss_limit`` is ``BLOWN_UP``: that step makes no update); ``noise`` (n_steps, 2)
    receives each step's |G_B|^2 and S, or is (0, 2). With ``fd >= 0`` the rows are read from that
    file (row i at ``data_offset + i * row bytes``, as the kernel reads them: a file cut short is
    ``READ_ERROR``, never a SIGBUS from touching its map); X gives the shape. ``hits`` (n_steps,),
    for a classification loss, receives each step's (weighted) fraction of its batch classified right.
    ``x_affine`` (2, n_features) float64 standardises the records a step reads:
    ``(x - x_affine[0]) * x_affine[1]`` in float64, rounded to X's dtype (None or empty: none).
    """
    with np.errstate(all="ignore"):  # non-finite values are reported through the status, as the kernel does
        return _train_steps(spec, X, targets, labels, weights, theta, opt_state, order_cache, lrs, losses, noise,
                            start_step, n_steps, opt_t, stop, max_seconds, hits,
                            None if x_affine is None or not x_affine.size else x_affine, fd, data_offset, loss_limit)


def _rows(X, idx, fd, data_offset):
    """X's rows ``idx``: indexed in memory, or read from ``fd`` (None when the file cannot give them)."""
    if fd < 0:
        return X[idx]
    row_bytes = X.shape[1] * X.dtype.itemsize
    out = np.empty((len(idx), X.shape[1]), dtype=X.dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    for r, i in enumerate(idx):
        try:
            got = os.preadv(fd, [view[r * row_bytes:(r + 1) * row_bytes]], data_offset + int(i) * row_bytes)
        except OSError:
            return None
        if got != row_bytes:
            return None
    return out


def _train_steps(spec, X, targets, labels, weights, theta, opt_state, order_cache, lrs, losses, noise,
                 start_step, n_steps, opt_t, stop, max_seconds, hits=None, x_affine=None, fd=-1, data_offset=0,
                 loss_limit=math.inf):
    n = X.shape[0]
    B = min(spec.batch_size, n)
    sizes, activation = spec.sizes, spec.activation
    params = unpack(theta, sizes)
    states = list(zip(*(unpack(row, sizes) for row in opt_state)))  # per layer: ((mW, mb), (vW, vb), (gW, gb))
    deadline = time.perf_counter() + max_seconds
    epoch_now, order = int(order_cache[0]), order_cache[1:]
    for i in range(n_steps):
        if stop[0]:
            return i, Status.STOPPED
        if i and time.perf_counter() > deadline:
            return i, Status.TIME_UP
        epoch, k = divmod(start_step + i, spec.steps_per_epoch)
        if epoch != epoch_now:
            order[:] = epoch_order(n, spec.seed, epoch, spec.shuffle)
            order_cache[0] = epoch_now = epoch
        idx = order[k * B:(k + 1) * B]
        rows = len(idx)
        if weights.size:  # record i's share of the loss: w_i / sum w (nothing for a sum of 0)
            w = weights[idx].astype(np.float64)
            total = w.sum()
            scale = w / total if total > 0 else np.zeros(rows)
        else:
            scale = np.full(rows, 1.0 / rows)

        # forward: keep every layer's pre-activation z and activation a
        xb = _rows(X, idx, fd, data_offset)
        if xb is None:
            return i, Status.READ_ERROR
        if x_affine is not None:
            xb = ((xb - x_affine[0]) * x_affine[1]).astype(X.dtype)
        a, zs, acts = xb, [], [xb]
        for layer, (W, b) in enumerate(params):
            z = a @ W + b
            a = _activate(activation, z) if layer < len(params) - 1 else z
            zs.append(z)
            acts.append(a)
        step_loss, delta = loss_and_grad(spec.loss, a, targets[idx] if targets.size else None,
                                         labels[idx] if labels.size else None, scale)
        if not np.isfinite(step_loss) or abs(step_loss) > np.finfo(X.dtype).max:  # (a float32 loss beyond it: inf)
            return i, Status.NONFINITE
        if abs(step_loss) > loss_limit:
            return i, Status.BLOWN_UP
        losses[i] = step_loss
        if hits is not None and spec.loss != Loss.MSE:
            right = (a.argmax(axis=1) == labels[idx]) if spec.loss == Loss.CROSS_ENTROPY else \
                ((a[:, 0] > 0) == (targets[idx, 0] > 0.5))
            hits[i] = float(np.dot(right, scale))

        # backward, last layer first; the delta goes through W before W is updated
        grads = [None] * len(params)
        record_norms = 0.0  # sum over records and layers of (|a_i|^2 + 1) |delta_i|^2
        for layer in range(len(params) - 1, -1, -1):
            W, _ = params[layer]
            grads[layer] = (acts[layer].T @ delta, delta.sum(axis=0))
            if noise.shape[0]:
                a64, d64 = acts[layer].astype(np.float64), delta.astype(np.float64)
                record_norms += float(((a64 * a64).sum(axis=1) + 1) @ (d64 * d64).sum(axis=1))
            if layer:
                delta = (delta @ W.T) * _activation_grad(activation, zs[layer - 1], acts[layer])

        if noise.shape[0]:
            # g_i = B * scale_i * grad l_i averages to the batch gradient G_B; |g_i|^2 = B^2 * record i's norms
            noise[i, 0] = sum(float(np.sum(gW.astype(np.float64) ** 2) + np.sum(gb.astype(np.float64) ** 2))
                              for gW, gb in grads)
            noise[i, 1] = rows * record_norms

        t = opt_t + i + 1
        for (W, b), (gW, gb), (mm, vv, ga) in zip(params, grads, states):
            for j, (p, g) in enumerate(((W, gW), (b, gb))):
                _update(spec, p, g, (mm[j], vv[j], ga[j]), float(lrs[i]), t)
    return n_steps, Status.DONE
