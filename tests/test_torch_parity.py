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


# ---------------------------------------------------------------- RMSprop, sample weights and the noise norms

def per_record_loss(loss, out, y):
    """Each record's loss l_i (out: (B, k)), as the kernel defines it."""
    if loss == "mse":
        return F.mse_loss(out, y.reshape(out.shape), reduction="none").mean(dim=-1)
    if loss == "binary_crossentropy":
        return F.binary_cross_entropy_with_logits(out[..., 0], y, reduction="none")
    return F.cross_entropy(out, y, reduction="none")


def forward(Ws, bs, x, activation):
    a = x
    for i, (W, b) in enumerate(zip(Ws, bs)):
        a = F.linear(a, W, b)
        if i < len(Ws) - 1:
            a = ACTS[activation](a)
    return a


def torch_steps(params, X, y, w, loss, activation, batch_size, steps, seed, make_opt, norms=True):
    """Train step by step as the kernel does (weighted mean loss); per step: the loss, |G_B|^2 and
    S = mean |g_i|^2 of the per-record gradients g_i = B w_i / sum w * grad l_i (torch.func)."""
    Ws = [torch.tensor(W.T.copy(), requires_grad=True) for W, _ in params]
    bs = [torch.tensor(b.copy(), requires_grad=True) for _, b in params]
    o = make_opt([p for pair in zip(Ws, bs) for p in pair])
    Xt, yt = torch.tensor(X), torch.tensor(y)
    wt = torch.ones(len(X), dtype=torch.float64) if w is None else torch.tensor(w)
    n = len(X)
    spe = fb.steps_per_epoch(n, batch_size)
    out = []

    def one(flat, x, t):
        Wi, bi = flat[0::2], flat[1::2]
        return per_record_loss(loss, forward(Wi, bi, x[None], activation), t[None])[0]

    for step in range(steps):
        e, k = divmod(step, spe)
        idx = torch.tensor(fb.epoch_order(n, seed, e, True))[k * batch_size:(k + 1) * batch_size]
        xb, yb, wb = Xt[idx], yt[idx], wt[idx]
        G_sq = S = np.nan
        if norms:
            flat = [p.detach() for pair in zip(Ws, bs) for p in pair]
            per = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(flat, xb, yb)
            scale = wb / wb.sum()
            g_i = [len(idx) * scale.reshape(-1, *[1] * (g.ndim - 1)) * g for g in per]
            G_sq = sum(float((gi.mean(dim=0) ** 2).sum()) for gi in g_i)
            S = float(sum((gi.reshape(len(idx), -1) ** 2).sum(dim=1) for gi in g_i).mean())
        lv = (wb * per_record_loss(loss, forward(Ws, bs, xb, activation), yb)).sum() / wb.sum()
        o.zero_grad()
        lv.backward()
        o.step()
        out.append((lv.item(), G_sq, S))
    return np.array(out), [(W.detach().numpy().T, b.detach().numpy()) for W, b in zip(Ws, bs)]


def start(loss, activation, seed=4):
    X, y = make_data(n=40, d=5, loss=loss, k=3 if loss != "mse" else 2, seed=11)
    k = 3 if loss == "cross_entropy" else (2 if loss == "mse" else 1)
    sizes = np.array([5, 6, 4, k], dtype=np.int64)
    return X, y, [(W.copy(), b.copy()) for W, b in unpack(init_params(sizes, activation, seed, np.float64), sizes)]


RMSPROP_CASES = [dict(), dict(momentum=0.9), dict(centered=True, weight_decay=1e-2),
                 dict(centered=True, momentum=0.5, alpha=0.9, eps=1e-6)]


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("opt", RMSPROP_CASES, ids=str)
def test_rmsprop_matches_torch(backend, opt):
    X, y, params0 = start("cross_entropy", "tanh")
    steps = 60  # 12 epochs
    r = train(backend, X, y, hidden=(6, 4), activation="tanh", batch_size=8, steps=steps, lr=0.01, seed=4,
              params=params0, optimizer="rmsprop", **opt)
    ref, tp = torch_steps(params0, X, y, None, "cross_entropy", "tanh", 8, steps, 4,
                          lambda ps: torch.optim.RMSprop(ps, lr=0.01, **opt), norms=False)
    np.testing.assert_allclose(r.losses, ref[:, 0], rtol=1e-10, atol=1e-12)
    for (W, b), (Wt, bt) in zip(r.params, tp):
        np.testing.assert_allclose(W, Wt, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, bt, rtol=1e-10, atol=1e-12)


NOISE_CASES = [(loss, act) for loss in ("mse", "binary_crossentropy", "cross_entropy")
               for act in ("relu", "tanh", "sigmoid", "identity")]


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss, activation", NOISE_CASES)
def test_weighted_loss_and_noise_norms_match_torch(backend, weighted, loss, activation):
    X, y, params0 = start(loss, activation)
    w = np.random.default_rng(3).uniform(0.1, 3.0, len(X)) if weighted else None
    steps = 7  # batches of 8, the 5th of each epoch short... n=40: 5 full batches; 7 steps cross an epoch
    r = train(backend, X, y, hidden=(6, 4), activation=activation, loss=loss, batch_size=8, steps=steps, lr=0.1,
              seed=4, params=params0, weights=w, noise=True)
    ref, tp = torch_steps(params0, X, y, w, loss, activation, 8, steps, 4, lambda ps: torch.optim.SGD(ps, lr=0.1))
    np.testing.assert_allclose(r.losses, ref[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.noise[:, 0], ref[:, 1], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(r.noise[:, 1], ref[:, 2], rtol=1e-9, atol=1e-15)
    for (W, b), (Wt, bt) in zip(r.params, tp):
        np.testing.assert_allclose(W, Wt, rtol=1e-9, atol=1e-12)
