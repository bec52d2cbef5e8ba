"""The reference backend: the training loop written plainly in numpy.

It implements exactly what the Cython kernel (``_kernel.pyx``) does, one step at a
time, so that anyone can check the algorithm by eye and the tests can hold the
kernel to it. It has the kernel's signature (see ``_kernel_spec.py`` and ``_kernel.train_steps``).
"""
import time

import numpy as np

from ._network import unpack
from .schedule import epoch_order

from ._codes import Status

DONE, STOPPED, NONFINITE, TIME_UP = Status.DONE, Status.STOPPED, Status.NONFINITE, Status.TIME_UP


def _activate(code, z):
    if code == 1:
        return np.where(z > 0, z, 0).astype(z.dtype)
    if code == 2:
        return np.tanh(z)
    if code == 3:
        return (1 / (1 + np.exp(-z))).astype(z.dtype)
    return z


def _activation_grad(code, z, a):
    """d a / d z, from the pre-activation z and the activation a."""
    if code == 1:
        return (z > 0).astype(z.dtype)
    if code == 2:
        return 1 - a * a
    if code == 3:
        return a * (1 - a)
    return np.ones_like(z)


def loss_and_grad(code, logits, targets, labels):
    """Mean loss over the batch and its gradient with respect to the logits."""
    n, k = logits.shape
    if code == 0:  # mse: mean over every element, like torch's mse_loss
        diff = logits - targets
        return float(np.mean(diff.astype(np.float64) ** 2)), diff * logits.dtype.type(2.0 / (n * k))
    if code == 1:  # binary cross-entropy on one logit, the stable form
        z, y = logits, targets
        loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        p = 1 / (1 + np.exp(-z))
        return float(np.mean(loss.astype(np.float64))), ((p - y) / z.dtype.type(n)).astype(z.dtype)
    # cross-entropy: softmax over k logits against integer labels
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = np.log(s[:, 0]) - shifted[np.arange(n), labels]
    grad = e / s
    grad[np.arange(n), labels] -= 1
    return float(np.mean(loss.astype(np.float64))), (grad / logits.dtype.type(n)).astype(logits.dtype)


def _update(opt, p, g, m, v, lr, t, momentum, nesterov, beta1, beta2, eps, wd):
    """One optimizer step on one parameter array, as torch.optim does it (t counts from 1)."""
    f = p.dtype.type
    if opt == 0:  # SGD: L2 decay in the gradient; momentum buffer starts as the first gradient
        if wd:
            g = g + f(wd) * p
        if momentum:
            if t == 1:
                m[...] = g
            else:
                m[...] = f(momentum) * m + g
            g = g + f(momentum) * m if nesterov else m
        p -= f(lr) * g
        return
    if opt == 2:  # AdamW: decoupled decay
        p *= f(1 - lr * wd)
    elif wd:  # Adam: L2 decay in the gradient
        g = g + f(wd) * p
    m += (g - m) * f(1 - beta1)
    v[...] = v * f(beta2) + g * g * f(1 - beta2)
    step_size = lr / (1 - beta1 ** t)
    denom = np.sqrt(v) / f(np.sqrt(1 - beta2 ** t)) + f(eps)
    p -= f(step_size) * (m / denom)


def train_steps(spec, X, targets, labels, weights, theta, opt_state, order_cache, lrs, losses, noise,
                start_step, n_steps, opt_t, stop, max_seconds, fd=-1, data_offset=0):
    """Run up to ``n_steps`` steps from global step ``start_step``; return (steps done, status).

    ``spec`` is a ``KernelSpec``; ``opt_state`` (3, P) holds the optimizer's buffers;
    ``order_cache`` (n + 1 int64: an epoch, then its record order; -1 when empty) keeps
    the current epoch's order between calls. ``fd`` and ``data_offset`` are the kernel's
    (it reads rows from a file); here X is always read from memory.
    """
    if weights.shape[0] != 0:
        raise NotImplementedError("sample weights: not yet")
    if noise.shape[0] != 0:
        raise NotImplementedError("noise norms: not yet")
    with np.errstate(all="ignore"):  # non-finite values are reported through the status, as the kernel does
        return _train_steps(spec, X, targets, labels, theta, opt_state, order_cache, lrs, losses,
                            start_step, n_steps, opt_t, stop, max_seconds)


def _train_steps(spec, X, targets, labels, theta, opt_state, order_cache, lrs, losses,
                 start_step, n_steps, opt_t, stop, max_seconds):
    n = X.shape[0]
    B = min(spec.batch_size, n)
    sizes, activation = spec.sizes, spec.activation
    params, ms, vs = unpack(theta, sizes), unpack(opt_state[0], sizes), unpack(opt_state[1], sizes)
    deadline = time.perf_counter() + max_seconds
    epoch_now, order = int(order_cache[0]), order_cache[1:]
    for i in range(n_steps):
        if stop[0]:
            return i, STOPPED
        if i and time.perf_counter() > deadline:
            return i, TIME_UP
        epoch, k = divmod(start_step + i, spec.steps_per_epoch)
        if epoch != epoch_now:
            order[:] = epoch_order(n, spec.seed, epoch, spec.shuffle)
            order_cache[0] = epoch_now = epoch
        idx = order[k * B:(k + 1) * B]

        # forward: keep every layer's pre-activation z and activation a
        a, zs, acts = X[idx], [], [X[idx]]
        for layer, (W, b) in enumerate(params):
            z = a @ W + b
            a = _activate(activation, z) if layer < len(params) - 1 else z
            zs.append(z)
            acts.append(a)
        step_loss, delta = loss_and_grad(spec.loss, a, targets[idx] if targets.size else None,
                                         labels[idx] if labels.size else None)
        if not np.isfinite(step_loss):
            return i, NONFINITE
        losses[i] = step_loss

        # backward, last layer first; the delta goes through W before W is updated
        grads = [None] * len(params)
        for layer in range(len(params) - 1, -1, -1):
            W, _ = params[layer]
            grads[layer] = (acts[layer].T @ delta, delta.sum(axis=0))
            if layer:
                delta = (delta @ W.T) * _activation_grad(activation, zs[layer - 1], acts[layer])

        t = opt_t + i + 1
        for (W, b), (gW, gb), (mW, mb), (vW, vb) in zip(params, grads, ms, vs):
            for p, g, mm, vv in ((W, gW, mW, vW), (b, gb, mb, vb)):
                _update(spec.optimizer, p, g, mm, vv, float(lrs[i]), t, spec.momentum, spec.nesterov,
                        spec.beta1, spec.beta2, spec.eps, spec.weight_decay)
    return n_steps, DONE
