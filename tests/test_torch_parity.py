"""fastbatch against PyTorch (skipped when torch is not installed): same losses and updates."""
import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_run(params, X, y, loss, activation, batch_size, epochs, seed, shuffle, drop_last, opt, lr):
    torch.manual_seed(0)
    Ws = [torch.tensor(W.T.copy(), requires_grad=True) for W, _ in params]   # torch Linear: (out, in)
    bs = [torch.tensor(b.copy(), requires_grad=True) for _, b in params]
    all_p = [p for pair in zip(Ws, bs) for p in pair]
    name = opt.pop("optimizer")
    opt.setdefault("weight_decay", 0.0)  # torch's AdamW defaults to 0.01; fastbatch to 0
    o = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](all_p, lr=lr, **opt)
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda z: z}[activation]
    Xt = torch.tensor(X)
    yt = torch.tensor(y)
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
                    a = act(a)
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
    lr = 0.05
    # fastbatch's seeded initial params, taken after a step that moves nothing
    init = fb.Trainer(hidden=(8, 5), activation=activation, loss=loss, dtype="float64", seed=4,
                      learning_rate=1e-300, batch_size=70, epochs=1)
    init.fit(X, y)
    params0 = init.get_params()
    tr = fb.Trainer(hidden=(8, 5), activation=activation, loss=loss, learning_rate=lr, dtype="float64",
                    backend=backend, **kw, **opt)
    tr.set_params(params0)
    h = tr.fit(X, y)
    tl, tp = torch_run(params0, X, y, loss, activation, lr=lr, opt=dict(opt), **kw)
    np.testing.assert_allclose(h.loss, tl, rtol=1e-10, atol=1e-12)
    for (W, b), (Wt, bt) in zip(tr.get_params(), tp):
        np.testing.assert_allclose(W, Wt, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, bt, rtol=1e-9, atol=1e-12)
