"""Finite differences against the kernel's backward pass.

One full-batch SGD step with learning rate 1 moves the params by exactly minus the
gradient, so the kernel's gradient is theta0 - theta1; the kernel's own step loss
at theta +/- eps gives the finite-difference gradient.
"""
import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data


def flat(params):
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params])


def unflat(theta, like):
    out, pos = [], 0
    for W, b in like:
        out.append((theta[pos:pos + W.size].reshape(W.shape), theta[pos + W.size:pos + W.size + b.size]))
        pos += W.size + b.size
    return out


def step_loss_and_grad(params, X, y, **kw):
    tr = fb.Trainer(batch_size=len(X), epochs=1, learning_rate=1.0, shuffle=False, dtype="float64", **kw)
    tr.set_params(params)
    h = tr.fit(X, y, steps=1)
    return h.loss[0], flat(params) - flat(tr.get_params())


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy", "cross_entropy"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
@pytest.mark.parametrize("hidden", [(), (6,), (5, 4)])
def test_kernel_gradient_matches_finite_differences(loss, activation, hidden):
    X, y = make_data(n=12, d=4, loss=loss, k=3 if loss != "mse" else 2, seed=5)
    base = fb.Trainer(hidden=hidden, activation=activation, loss=loss, batch_size=12, epochs=1,
                      learning_rate=1e-300, dtype="float64", seed=2)
    base.fit(X, y, steps=1)
    params = base.get_params()
    kw = dict(hidden=hidden, activation=activation, loss=loss)
    _, grad = step_loss_and_grad(params, X, y, **kw)
    theta = flat(params)
    eps = 1e-6
    fd = np.empty_like(theta)
    for i in range(len(theta)):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        fd[i] = (step_loss_and_grad(unflat(tp, params), X, y, **kw)[0]
                 - step_loss_and_grad(unflat(tm, params), X, y, **kw)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)
