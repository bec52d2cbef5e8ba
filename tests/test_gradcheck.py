"""Finite differences against the kernel's backward pass.

One full-batch SGD step with learning rate 1 moves the params by exactly minus the
gradient, so the kernel's gradient is theta0 - theta1; the kernel's own step loss
at theta +/- eps gives the finite-difference gradient.
"""
import numpy as np
import pytest

from fastbatch._network import init_params, unpack
from helpers import make_data
from kernel_run import train


def step_loss_and_grad(theta, sizes, X, y, **kw):
    r = train("cython", X, y, params=unpack(theta, sizes), batch_size=len(X), steps=1, lr=1.0, shuffle=False,
              dtype="float64", **kw)
    return r.losses[0], theta - r.theta


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy", "cross_entropy"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
@pytest.mark.parametrize("hidden", [(), (6,), (5, 4)])
def test_kernel_gradient_matches_finite_differences(loss, activation, hidden):
    X, y = make_data(n=12, d=4, loss=loss, k=3 if loss != "mse" else 2, seed=5)
    k = {"mse": 2, "binary_crossentropy": 1, "cross_entropy": 3}[loss]
    sizes = np.array([4, *hidden, k], dtype=np.int64)
    theta = init_params(sizes, activation, 2, np.float64)
    kw = dict(hidden=hidden, activation=activation, loss=loss)
    _, grad = step_loss_and_grad(theta, sizes, X, y, **kw)
    eps = 1e-6
    fd = np.empty_like(theta)
    for i in range(len(theta)):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        fd[i] = (step_loss_and_grad(tp, sizes, X, y, **kw)[0] - step_loss_and_grad(tm, sizes, X, y, **kw)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)
