"""fastbatch against PyTorch (CPU, eager) and scikit-learn's MLPClassifier, with the numpy loop as reference.

    python benches/bench_vs_peers.py                      # float32, all workloads and batch sizes (~8 min on 2 cores)
    python benches/bench_vs_peers.py --dtype float64
    python benches/bench_vs_peers.py --quick              # a smoke test of a few seconds
    python benches/bench_vs_peers.py --workloads seed --batches 1,32 --threads 1

Same network, data, dtype, threads and algorithm for every contender: relu hidden
layers, softmax cross-entropy, plain SGD (momentum 0). PyTorch gets the same initial
params and record order as fastbatch and numpy, so its loss agrees with theirs.
scikit-learn cannot take either (it shuffles with its own generator, initialises its
own params, and models two classes with one logistic output), so its time is comparable
and its loss is only its own (``loss_`` over the steps of the last call). A peer that
is not installed is skipped with a note. Method as in bench_vs_numpy.py.
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

DEFAULT_JSON = os.path.join("bench-results", "bench_vs_peers.json")


class TorchLoop:
    """PyTorch eager as its users write it: nn.Sequential, F.cross_entropy, torch.optim.SGD."""

    name = "torch"

    def __init__(self, X, y, sizes, init, batch, lr, seed, dtype):
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


def make_runners(**kw):
    runners = [NumpyLoop(**kw), FastbatchRun(**kw)]
    if torch is not None:
        runners.append(TorchLoop(**kw))
    if MLPClassifier is not None:
        runners.append(SklearnRun(**kw))
    return runners


def summarize(rows):
    """fastbatch against each peer at every (workload, batch): the ratio of records/s."""
    out = []
    for peer in ("torch", "sklearn"):
        lines = []
        for r in C.find(rows, contender=peer):
            fbr = C.find(rows, contender="fastbatch", workload=r["workload"], batch=r["batch"], dtype=r["dtype"])
            if fbr:
                ratio = fbr[0]["records_per_s"] / r["records_per_s"]
                lines.append(f"  {r['dtype']} {r['workload']:<7} batch {r['batch']:>5}: fastbatch {ratio:6.2f}x "
                             f"{peer}  {'faster' if ratio > 1 else 'SLOWER'}")
        if lines:
            slower = sum("SLOWER" in s for s in lines)
            out += [f"fastbatch vs {peer} (records/s ratio; target: faster at every batch size; "
                    f"slower in {slower} of {len(lines)}):"] + lines
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_arguments(parser, DEFAULT_JSON)
    args = parser.parse_args(argv)
    for mod, peer in ((torch, "torch"), (MLPClassifier, "scikit-learn")):
        if mod is None:
            print(f"note: {peer} is not installed; skipping it (pip install {peer})")
    if torch is not None:
        torch.set_num_threads(args.threads)
    return C.run_suite("bench_vs_peers: fastbatch vs PyTorch eager and scikit-learn, numpy loop as reference",
                       args, argv, make_runners, summarize)


if __name__ == "__main__":
    main()
