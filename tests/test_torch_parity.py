"""Both backends against PyTorch (skipped when torch is not installed): same losses and updates."""
import numpy as np
import pytest

import fastbatch as fb
from fastbatch._network import init_params, unpack
from helpers import make_data
from kernel_run import train

torch = pytest.importorskip("torch")
F = torch.nn.functional
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
ACTS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda z: z}


def torch_run(params, X, y, loss, activation, batch_size, epochs, seed, shuffle, drop_last, opt, lr):
    Ws = [torch.tensor(W.T.copy(), requires_grad=True) for W, _ in params]   # torch Linear: (out, in)
    bs = [torch.tensor(b.copy(), requires_grad=True) for _, b in params]
    all_p = [p for pair in zip(Ws, bs) for p in pair]
    opt = dict(opt)
    name = opt.pop("optimizer")
    opt.setdefault("weight_decay", 0.0)  # torch's AdamW defaults to 0.01; fastbatch to 0
    o = TORCH_OPTIMIZERS[name](all_p, lr=lr, **opt)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    n = len(X)
    spe = fb.steps_per_epoch(n, batch_size, drop_last)
    losses = []
    for e in range(epochs):
        order = torch.tensor(fb.epoch_order(n, seed, e, shuffle))
        for k in range(spe):
            idx = order[k * batch_size:(k + 1) * batch_size]
            a = Xt[idx]
            for i, (W, b) in enumerate(zip(Ws, bs)):
                a = F.linear(a, W, b)
                if i < len(Ws) - 1:
                    a = ACTS[activation](a)
            if loss == "mse":
                lv = F.mse_loss(a, yt[idx].reshape(a.shape))
            elif loss == "binary_crossentropy":
                lv = F.binary_cross_entropy_with_logits(a[:, 0], yt[idx])
            else:
                lv = F.cross_entropy(a, yt[idx])
            o.zero_grad()
            lv.backward()
            o.step()
            losses.append(lv.item())
    return np.array(losses), [(W.detach().numpy().T, b.detach().numpy()) for W, b in zip(Ws, bs)]


CASES = [
    ("cross_entropy", "relu", dict(optimizer="sgd")),
    ("cross_entropy", "tanh", dict(optimizer="sgd", momentum=0.9)),
    ("binary_crossentropy", "sigmoid", dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("mse", "relu", dict(optimizer="adam", weight_decay=1e-2)),
    ("cross_entropy", "relu", dict(optimizer="adamw", weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)),
    ("mse", "identity", dict(optimizer="adamw")),
]


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("loss, activation, opt", CASES)
def test_matches_torch(backend, loss, activation, opt):
    X, y = make_data(n=70, d=6, loss=loss, k=3 if loss != "mse" else 2, seed=11)
    kw = dict(batch_size=16, epochs=3, seed=4, shuffle=True, drop_last=False)
    k = 3 if loss == "cross_entropy" else (2 if loss == "mse" else 1)
    sizes = np.array([6, 8, 5, k], dtype=np.int64)
    params0 = [(W.copy(), b.copy()) for W, b in unpack(init_params(sizes, activation, 4, np.float64), sizes)]
    lr = 0.05
    r = train(backend, X, y, hidden=(8, 5), activation=activation, loss=loss, lr=lr, dtype="float64",
              params=params0, **kw, **opt)
    tl, tp = torch_run(params0, X, y, loss, activation, lr=lr, opt=opt, **kw)
    np.testing.assert_allclose(r.losses, tl, rtol=1e-10, atol=1e-12)
    for (W, b), (Wt, bt) in zip(r.params, tp):
        np.testing.assert_allclose(W, Wt, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, bt, rtol=1e-9, atol=1e-12)
