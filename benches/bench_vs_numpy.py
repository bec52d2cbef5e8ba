"""fastbatch's Cython kernel against the same training loop written in plain numpy.

    python benches/bench_vs_numpy.py                      # float32, all workloads and batch sizes (~6 min on 2 cores)
    python benches/bench_vs_numpy.py --dtype float64
    python benches/bench_vs_numpy.py --quick              # a smoke test of a few seconds
    python benches/bench_vs_numpy.py --workloads wide --batches 32,128 --threads 1 --json out.json

Both contenders train the same network (relu hidden layers, softmax cross-entropy),
on the same data, dtype and threads, with plain SGD (momentum 0), from the same
initial params and in the same record order (``fastbatch.epoch_order``), so their
losses agree; the table shows both. Timing: warm-up, then ``--repeats`` rounds with
the contenders interleaved, each measurement a fixed number of steps lasting about
``--seconds``; medians. The numpy loop is the reference row of each (workload, batch).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports nothing heavy: the thread variables go first)

if __name__ == "__main__":
    C.thread_env_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402

import fastbatch as fb  # noqa: E402

DEFAULT_JSON = os.path.join("bench-results", "bench_vs_numpy.json")


class NumpyLoop:
    """The training loop as a numpy user writes it: gather, matmuls, softmax, backward, in-place SGD."""

    name = "numpy"
    update = None  # a subclass's optimizer: update(layer, W, b, gW, gb) after the step's gradients

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype):
        self.X, self.y, self.init, self.batch, self.lr, self.seed = X, y, init, batch, lr, seed
        self.n = X.shape[0]
        self.steps_per_epoch = -(-self.n // batch)

    def reset(self):
        self.params = [(W.copy(), b.copy()) for W, b in self.init]
        self.step = 0
        self.order_epoch, self.order = -1, None

    def run(self, k):
        """k steps; returns (loss of the last step, records trained on)."""
        X, y, B, lr, params = self.X, self.y, self.batch, self.lr, self.params
        update = self.update  # None: plain SGD, inline
        records = 0
        for _ in range(k):
            epoch, i = divmod(self.step, self.steps_per_epoch)
            if epoch != self.order_epoch:
                self.order, self.order_epoch = fb.epoch_order(self.n, self.seed, epoch), epoch
            idx = self.order[i * B:(i + 1) * B]
            xb, yb = X[idx], y[idx]
            m = len(idx)

            acts = [xb]
            for W, b in params[:-1]:
                acts.append(np.maximum(acts[-1] @ W + b, 0))
            W, b = params[-1]
            z = acts[-1] @ W + b
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(m)
            loss = np.mean(np.log(s[:, 0]) - z[rows, yb])

            d = e / s  # d loss / d logits = (softmax - onehot) / m
            d[rows, yb] -= 1
            d /= m
            for layer in range(len(params) - 1, -1, -1):
                W, b = params[layer]
                gW = acts[layer].T @ d
                gb = d.sum(axis=0)
                if layer:
                    d = (d @ W.T) * (acts[layer] > 0)  # through W before W changes
                if update is None:
                    W -= lr * gW
                    b -= lr * gb
                else:
                    update(layer, W, b, gW, gb)
            self.step += 1
            records += m
        return float(loss), records


class FastbatchRun:
    """fastbatch's Trainer on the Cython kernel, advanced with ``fit(X, y, steps=k)``."""

    name = "fastbatch"

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype, backend="cython", **trainer_params):
        self.X, self.y, self.init = X, y, init
        self.n, self.batch = X.shape[0], batch
        self.kw = dict(hidden=tuple(sizes[1:-1]), activation="relu", loss="cross_entropy", batch_size=batch,
                       epochs=10 ** 9, learning_rate=lr, optimizer="sgd", momentum=0.0, shuffle=True,
                       seed=seed, dtype=dtype, backend=backend)
        self.kw.update(trainer_params)
        if backend != "cython":
            self.name = f"fastbatch-{backend}"

    def reset(self):
        self.tr = fb.Trainer(**self.kw)
        self.tr.set_params(self.init)

    def run(self, k):
        start = self.tr.step
        h = self.tr.fit(self.X, self.y, steps=k)
        return float(h.loss[-1]), C.records_in_steps(self.n, self.batch, start, k)


def make_runners(**kw):
    return [NumpyLoop(**kw), FastbatchRun(**kw)]


def summarize(rows):
    """The issue's targets, each with the measured number and PASS / MISS."""
    out = ["targets (fastbatch, float32):"]

    def check(label, rows_, key, goal, fmt):
        for r in rows_:
            v = r.get(key)
            if v is None:
                continue
            ok = v >= goal
            out.append(f"  {label:<38} batch {r['batch']:>5}: {fmt.format(v):>8} (target >= {fmt.format(goal)})"
                       f"  {'PASS' if ok else 'MISS'}")

    for batch, goal in ((1, 50), (32, 15), (2048, 2)):
        check("seed net vs numpy", C.find(rows, workload="seed", batch=batch, contender="fastbatch",
                                          dtype="float32"), "speedup", goal, "{:.1f}x")
    for batch in (32, 128, 512):
        check("wide net vs numpy", C.find(rows, workload="wide", batch=batch, contender="fastbatch",
                                          dtype="float32"), "speedup", 1.2, "{:.2f}x")
    wide = [r for r in C.find(rows, workload="wide", contender="fastbatch", dtype="float32") if r["batch"] >= 128]
    check("wide net % of sgemm peak", wide, "pct_peak", 60, "{:.0f}%")
    return out if len(out) > 1 else []


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_arguments(parser, DEFAULT_JSON)
    args = parser.parse_args(argv)
    return C.run_suite("bench_vs_numpy: fastbatch (Cython kernel) vs a plain numpy loop", args, argv,
                       make_runners, summarize)


if __name__ == "__main__":
    main()
