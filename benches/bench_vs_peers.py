"""fastbatch against its peers, with the plain numpy loop as reference row.

    python benches/bench_vs_peers.py                      # float32, the issue's 8 points (~10 min on 2 cores)
    python benches/bench_vs_peers.py --threads 1          # 1 thread for every contender
    python benches/bench_vs_peers.py --batches 1,8,32,128,512,2048,full   # the whole sweep
    python benches/bench_vs_peers.py --quick              # a smoke test of a few seconds
    python benches/bench_vs_peers.py --contenders numpy,fastbatch,jax --workloads seed --batches 1,32

Contenders (each optional one is skipped with a note when it is not installed):
- numpy: the loop a numpy user writes (the reference row); fastbatch: ``Trainer.fit(X, y, steps=k)``;
- torch: PyTorch CPU eager (nn.Sequential, F.cross_entropy, torch.optim.SGD);
- torch.compile: a functional step (``torch.func.grad_and_value``, new params returned) under
  ``torch.compile(fullgraph=True, dynamic=False)``, called once per step from Python;
- jax / jax-unroll4: ``jax.jit`` of one epoch, a ``lax.scan`` over its batches with the batch
  gather inside the scan body (``unroll=4`` as a second contender at batches up to 32);
- numba: the whole k-step loop in one ``@njit`` function, matrix products through BLAS (np.dot);
- sklearn: ``MLPClassifier(solver="sgd").partial_fit``.

Same network, data, dtype, threads and algorithm for every contender: relu hidden
layers, softmax cross-entropy, plain SGD (momentum 0). All but scikit-learn start from
the same initial params and visit the records in the same order (``fastbatch.epoch_order``),
so their losses agree. scikit-learn cannot take either (it shuffles with its own generator,
initialises its own params, and models two classes with one logistic output), so its time
is comparable and its loss is only its own (``loss_`` over the steps of the last call).
The compiled contenders are compiled in their ``reset`` (timed: "compile s"; torch.compile
with an empty inductor cache) and timed after it. The JAX contenders run whole epochs, so
every contender's agreement run is rounded up to whole epochs. Method as in bench_vs_numpy.py.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports nothing heavy: the thread variables go first)

if __name__ == "__main__":
    C.thread_env_from_argv(sys.argv[1:])

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # an empty inductor cache: the compile time a first run pays
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastbatch-bench-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], True)

import numpy as np  # noqa: E402

import fastbatch as fb  # noqa: E402
from bench_vs_numpy import FastbatchRun, NumpyLoop  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    from sklearn.neural_network import MLPClassifier
except ImportError:
    MLPClassifier = None
try:
    import jax
    import jax.numpy as jnp
    from jax import lax
    jax.config.update("jax_enable_x64", True)  # so float64 runs are float64; float32 arrays stay float32
except ImportError:
    jax = None
try:
    import numba
    from numba.typed import List as NumbaList
except ImportError:
    numba = None

DEFAULT_JSON = os.path.join("bench-results", "bench_vs_peers.json")
# the table: the points every peer is compared at
PEER_BATCHES = "seed:1,32,2048;digits:32,128;wide:32,128,512"
ALL_CONTENDERS = ("numpy", "fastbatch", "torch", "torch.compile", "jax", "jax-unroll4", "numba", "sklearn")


class TorchLoop:
    """PyTorch eager as its users write it: nn.Sequential, F.cross_entropy, torch.optim.SGD (or Adam)."""

    name = "torch"

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype, optimizer="sgd"):
        self.optimizer = optimizer
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.init, self.batch, self.lr, self.seed = init, batch, lr, seed
        self.n = X.shape[0]
        self.steps_per_epoch = -(-self.n // batch)
        self.dtype = torch.float32 if dtype == "float32" else torch.float64
        self.sizes = sizes

    def reset(self):
        layers = []
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(torch.nn.Linear(a, b, dtype=self.dtype))
            if i < len(self.sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers)
        with torch.no_grad():
            for lin, (W, b) in zip(self.model[::2], self.init):
                lin.weight.copy_(torch.from_numpy(W.T))  # torch keeps W as (n_out, n_in)
                lin.bias.copy_(torch.from_numpy(b))
        if self.optimizer == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=0.0)
        self.step = 0
        self.order_epoch, self.order = -1, None

    def run(self, k):
        X, y, B, model, opt = self.X, self.y, self.batch, self.model, self.opt
        records = 0
        for _ in range(k):
            epoch, i = divmod(self.step, self.steps_per_epoch)
            if epoch != self.order_epoch:
                self.order = torch.from_numpy(fb.epoch_order(self.n, self.seed, epoch))
                self.order_epoch = epoch
            idx = self.order[i * B:(i + 1) * B]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.step += 1
            records += len(idx)
        return loss.item(), records


class SklearnRun:
    """MLPClassifier(solver="sgd"), advanced with partial_fit: one call is one epoch of its data."""

    name = "sklearn"
    comparable = False
    note = ("own init, own shuffle, one logistic output for 2 classes; loss = its loss_ "
            "(mean over the last partial_fit call), not comparable")

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype):
        self.X, self.y, self.batch, self.lr, self.seed = X, y, batch, lr, seed
        self.n, self.hidden, self.k = X.shape[0], tuple(sizes[1:-1]), sizes[-1]
        self.steps_per_epoch = -(-self.n // batch)

    def reset(self):
        self.clf = MLPClassifier(
            hidden_layer_sizes=self.hidden, activation="relu", solver="sgd", learning_rate="constant",
            learning_rate_init=self.lr, momentum=0.0, nesterovs_momentum=False, alpha=0.0,
            batch_size=self.batch, max_iter=10 ** 6, shuffle=True, tol=0.0, n_iter_no_change=10 ** 9,
            early_stopping=False, random_state=self.seed)
        self.classes = np.arange(self.k)

    def run(self, k):
        """k steps: whole epochs on all records, then one call on the first (rest * batch) records."""
        records = 0
        while k > 0:
            m = self.n if k >= self.steps_per_epoch else k * self.batch
            self.clf.partial_fit(self.X[:m], self.y[:m], classes=self.classes)
            k -= -(-m // self.batch)
            records += m
        return float(self.clf.loss_), records


class EpochOrders:
    """The record order of each epoch (``fastbatch.epoch_order``), kept for the epochs in use."""

    def __init__(self, n, seed):
        self.n, self.seed, self.cache = n, seed, {}

    def __call__(self, epoch):
        if epoch not in self.cache:
            if len(self.cache) > 64:
                self.cache.clear()
            self.cache[epoch] = fb.epoch_order(self.n, self.seed, epoch)
        return self.cache[epoch]


class TorchCompileLoop:
    """A functional SGD step (params in, new params out) under torch.compile, one call per step."""

    name = "torch.compile"
    _compiled = {}  # (shapes, dtype, batch, n) -> compile seconds already paid in this process

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype):
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.init, self.batch, self.lr, self.seed = init, batch, lr, seed
        self.n = X.shape[0]
        self.steps_per_epoch = -(-self.n // batch)
        self.orders = EpochOrders(self.n, seed)
        self.key = (tuple(sizes), dtype, batch, self.n)

    @staticmethod
    def _loss(params, xb, yb):
        a = xb
        for W, b in params[:-1]:
            a = torch.relu(a @ W + b)
        W, b = params[-1]
        return F.cross_entropy(a @ W + b, yb)

    @staticmethod
    def _step(params, X, y, idx, lr: float):
        grads, loss = torch.func.grad_and_value(TorchCompileLoop._loss)(params, X[idx], y[idx])
        return tuple((W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, grads)), loss

    def reset(self):
        self.params = tuple((torch.from_numpy(W.copy()), torch.from_numpy(b.copy())) for W, b in self.init)
        self.step = 0
        self.compile_seconds = None
        if self.key not in self._compiled:
            torch._dynamo.reset()  # a fresh cache per point: each point pays its own compiles, no cache limit
            self.fn = torch.compile(self._step, fullgraph=True, dynamic=False)
            t0 = time.perf_counter()
            sizes = {self.batch, self.n - (self.steps_per_epoch - 1) * self.batch}  # full and last batch
            for b in sizes:
                self.fn(self.params, self.X, self.y, torch.arange(b), self.lr)
            self._compiled[self.key] = (self.fn, time.perf_counter() - t0)
            self.compile_seconds = self._compiled[self.key][1]
        self.fn = self._compiled[self.key][0]

    def run(self, k):
        B, spe, fn, params = self.batch, self.steps_per_epoch, self.fn, self.params
        records = 0
        for _ in range(k):
            epoch, i = divmod(self.step, spe)
            idx = torch.from_numpy(self.orders(epoch)[i * B:(i + 1) * B])
            params, loss = fn(params, self.X, self.y, idx, self.lr)
            self.step += 1
            records += len(idx)
        self.params = params
        return loss.item(), records


class JaxScan:
    """``jax.jit`` of one epoch: a ``lax.scan`` over its full batches, the gather inside the scan body.

    A last, short batch is one more step inside the same compiled function. ``run(k)`` takes
    whole epochs (``granularity``), dispatched asynchronously and waited for at the end.
    """

    name = "jax"
    unroll = 1
    _compiled = {}

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype):
        self.X, self.y = jnp.asarray(X), jnp.asarray(y.astype(np.int32))
        self.init, self.batch, self.lr, self.seed = init, batch, lr, seed
        self.n = X.shape[0]
        self.steps_per_epoch = self.granularity = -(-self.n // batch)
        self.orders = EpochOrders(self.n, seed)
        self.key = (tuple(sizes), dtype, batch, self.n, self.unroll)

    def _epoch_fn(self):
        B, n, lr = self.batch, self.n, self.lr
        full = n // B

        def loss_fn(params, xb, yb):
            a = xb
            for W, b in params[:-1]:
                a = jnp.maximum(a @ W + b, 0)
            W, b = params[-1]
            z = a @ W + b
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, yb[:, None], axis=1)[:, 0])

        def step(carry, idx):
            params, X, y = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, X[idx], y[idx])
            params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
            return (params, X, y), loss

        def epoch(params, X, y, order):
            (params, _, _), losses = lax.scan(step, (params, X, y), order[:full * B].reshape(full, B),
                                              unroll=self.unroll)
            loss = losses[-1]
            if n > full * B:
                (params, _, _), loss = step((params, X, y), order[full * B:])
            return params, loss

        return epoch

    def _order(self, epoch):
        return jnp.asarray(self.orders(epoch).astype(np.int32))

    def reset(self):
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in self.init]
        self.step = 0
        self.compile_seconds = None
        if self.key not in self._compiled:
            t0 = time.perf_counter()
            fn = jax.jit(self._epoch_fn()).lower(self.params, self.X, self.y, self._order(0)).compile()
            self._compiled[self.key] = (fn, time.perf_counter() - t0)
            self.compile_seconds = self._compiled[self.key][1]
        self.fn = self._compiled[self.key][0]

    def run(self, k):
        assert k % self.steps_per_epoch == 0 and self.step % self.steps_per_epoch == 0, "whole epochs only"
        params, loss = self.params, None
        for _ in range(k // self.steps_per_epoch):
            params, loss = self.fn(params, self.X, self.y, self._order(self.step // self.steps_per_epoch))
            self.step += self.steps_per_epoch
        self.params = params
        return float(loss), k // self.steps_per_epoch * self.n  # float() waits for the result


class JaxScanUnroll4(JaxScan):
    name = "jax-unroll4"
    unroll = 4


if numba is not None:
    @numba.njit(cache=False)
    def _numba_steps(Ws, bs, X, y, orders, first_epoch, step0, k, B, lr):
        """k SGD steps from step0; orders[e] is the order of epoch first_epoch + e. Returns the last loss."""
        n = X.shape[0]
        spe = (n + B - 1) // B
        L = len(Ws)
        loss = 0.0
        for s in range(step0, step0 + k):
            idx = orders[s // spe - first_epoch, (s % spe) * B:min((s % spe + 1) * B, n)]
            m = idx.shape[0]
            xb = np.empty((m, X.shape[1]), X.dtype)
            for r in range(m):
                xb[r] = X[idx[r]]
            acts = NumbaList()
            acts.append(xb)
            for layer in range(L - 1):
                acts.append(np.maximum(np.dot(acts[layer], Ws[layer]) + bs[layer], 0))
            z = np.dot(acts[L - 1], Ws[L - 1]) + bs[L - 1]
            d = np.empty_like(z)  # (softmax - onehot) / m
            total = 0.0
            for r in range(m):
                zmax = z[r].max()
                ssum = 0.0
                for c in range(z.shape[1]):
                    d[r, c] = np.exp(z[r, c] - zmax)
                    ssum += d[r, c]
                total += np.log(ssum) + zmax - z[r, y[idx[r]]]
                for c in range(z.shape[1]):
                    d[r, c] = d[r, c] / ssum / m
                d[r, y[idx[r]]] -= 1.0 / m
            loss = total / m
            for layer in range(L - 1, -1, -1):
                gW = np.dot(acts[layer].T, d)
                gb = d.sum(axis=0)
                if layer > 0:
                    d = np.dot(d, Ws[layer].T) * (acts[layer] > 0)  # through W before W changes
                Ws[layer] -= lr * gW
                bs[layer] -= lr * gb
        return loss


class NumbaLoop:
    """The whole k-step loop in one ``@numba.njit`` function; matrix products through BLAS (np.dot)."""

    name = "numba"
    _compiled = set()  # numba compiles once per argument types (the dtype)

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype):
        self.X, self.y, self.init, self.batch, self.seed = X, y, init, batch, seed
        self.lr = np.dtype(dtype).type(lr)
        self.n = X.shape[0]
        self.steps_per_epoch = -(-self.n // batch)
        self.orders = EpochOrders(self.n, seed)
        self.dtype = dtype

    def reset(self):
        self.Ws = NumbaList([np.ascontiguousarray(W.copy()) for W, _ in self.init])
        self.bs = NumbaList([b.copy() for _, b in self.init])
        self.step = 0
        self.compile_seconds = None
        if self.dtype not in self._compiled:
            t0 = time.perf_counter()
            Ws = NumbaList([W.copy() for W in self.Ws])
            bs = NumbaList([b.copy() for b in self.bs])
            _numba_steps(Ws, bs, self.X, self.y, self.orders(0)[None], 0, 0, 1, self.batch, self.lr)
            self.compile_seconds = time.perf_counter() - t0
            self._compiled.add(self.dtype)

    def run(self, k):
        spe = self.steps_per_epoch
        first, last = self.step // spe, (self.step + k - 1) // spe
        orders = np.stack([self.orders(e) for e in range(first, last + 1)])
        loss = _numba_steps(self.Ws, self.bs, self.X, self.y, orders, first, self.step, k, self.batch, self.lr)
        records = C.records_in_steps(self.n, self.batch, self.step, k)
        self.step += k
        return float(loss), records


AVAILABLE = {
    "numpy": NumpyLoop, "fastbatch": FastbatchRun,
    "torch": TorchLoop if torch is not None else None,
    "torch.compile": TorchCompileLoop if torch is not None and hasattr(torch, "compile") else None,
    "jax": JaxScan if jax is not None else None,
    "jax-unroll4": JaxScanUnroll4 if jax is not None else None,
    "numba": NumbaLoop if numba is not None else None,
    "sklearn": SklearnRun if MLPClassifier is not None else None,
}
INSTALL = {"torch": "torch", "torch.compile": "torch", "jax": "jax", "jax-unroll4": "jax", "numba": "numba",
           "sklearn": "scikit-learn"}
UNROLL_MAX_BATCH = 32  # the unrolled scan only matters where the step is tiny


def make_runners_for(names):
    def make_runners(**kw):
        out = []
        for name in names:
            cls = AVAILABLE[name]
            if cls is None or (name == "jax-unroll4" and kw["batch"] > UNROLL_MAX_BATCH):
                continue
            out.append(cls(**kw))
        return out
    return make_runners


def jax_goal(row):
    """The issue's target against JAX: 1.5x on the seed and digits nets up to batch 256, else 1.0x."""
    return 1.5 if row["workload"] in ("seed", "digits") and row["batch"] <= 256 else 1.0


def summarize(rows):
    """fastbatch against each peer at every point (records/s ratio, PASS / MISS), and the issue's other targets."""
    out = []
    peers = [p for p in ALL_CONTENDERS if p not in ("fastbatch", "jax-unroll4")]
    for peer in peers:
        lines, misses = [], 0
        for fbr in C.find(rows, contender="fastbatch"):
            point = dict(workload=fbr["workload"], batch=fbr["batch"], dtype=fbr["dtype"])
            cands = C.find(rows, contender=peer, **point)
            if peer == "jax":  # the better of the two scans
                cands += C.find(rows, contender="jax-unroll4", **point)
            if not cands:
                continue
            best = max(cands, key=lambda r: r["records_per_s"])
            ratio = fbr["records_per_s"] / best["records_per_s"]
            goal = jax_goal(fbr) if peer == "jax" else 1.0
            misses += ratio < goal
            lines.append(f"  {fbr['dtype']} {fbr['workload']:<7} batch {fbr['batch']:>5}: fastbatch {ratio:7.2f}x "
                         f"{best['contender']:<13} (target >= {goal:.1f}x)  {'PASS' if ratio >= goal else 'MISS'}")
        if lines:
            out += [f"fastbatch vs {peer} (records/s ratio; {misses} of {len(lines)} below target):"] + lines
    wide = [r for r in C.find(rows, contender="fastbatch", workload="wide") if r["batch"] >= 32]
    if wide:
        out.append("fastbatch on the wide net, % of the gemm peak measured in this run (target >= 90%):")
        out += [f"  {r['dtype']} batch {r['batch']:>5}: {r['pct_peak']:5.1f}%  "
                f"{'PASS' if r['pct_peak'] >= 90 else 'MISS'}"
                for r in wide]
    for r in C.find(rows, contender="fastbatch", workload="seed", batch=32):
        if r["dtype"] == "float32":
            ok = r["us_per_step"] <= 1.5
            out.append(f"fastbatch seed net batch 32: {r['us_per_step']:.2f} us/step (target <= 1.5 at 1 thread)"
                       f"  {'PASS' if ok else 'MISS'}")
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_arguments(parser, DEFAULT_JSON, batches=PEER_BATCHES)
    parser.add_argument("--contenders", default=",".join(ALL_CONTENDERS),
                        help="comma list of: " + ", ".join(ALL_CONTENDERS) + " (numpy is always in: the reference)")
    args = parser.parse_args(argv)
    names = ["numpy"] + [c.strip() for c in args.contenders.split(",") if c.strip() and c.strip() != "numpy"]
    for name in names:
        if name not in AVAILABLE:
            parser.error(f"unknown contender {name!r}; choose from {', '.join(ALL_CONTENDERS)}")
        if AVAILABLE[name] is None:
            print(f"note: {name} is not installed; skipping it (pip install {INSTALL[name]})")
    if torch is not None:
        torch.set_num_threads(args.threads)
    return C.run_suite("bench_vs_peers: fastbatch vs PyTorch (eager, torch.compile), JAX, numba and scikit-learn; "
                       "numpy loop as reference", args, argv, make_runners_for(names), summarize,
                       default_batches=PEER_BATCHES)


if __name__ == "__main__":
    main()
