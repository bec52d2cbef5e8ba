"""The kernel alone (``train_steps``, no Trainer): us/step of optimizers and options, and the cost of a call.

    python benches/bench_kernel.py                          # adam, noise, weights, call: float32, 1 thread
    python benches/bench_kernel.py --sections adam --warm 50000
    python benches/bench_kernel.py --sections noise,call --repeats 21 --json out.json
    python benches/bench_kernel.py --sections products      # own products (AVX-512 / AVX2) against gemm (~1 min)

Sections (each row's contenders are timed interleaved, ``--repeats`` rounds of about
``--seconds`` each; medians, and the spread as the interquartile range):

- ``adam``: SGD, momentum, Nesterov, Adam, AdamW and RMSprop on the seed net (10 -> 32 -> 2,
  relu, cross-entropy) at batch 1 and 32, each after ``--warm`` steps (dead units' moments
  have decayed by then: subnormals, without flush-to-zero), and the numpy reference backend's
  Adam (not warmed: 50k of its steps take seconds). Targets: Adam <= 1.5x SGD, >= 30x numpy.
- ``noise``: SGD with and without the gradient-noise norms. Target: <= 1.15x at batch 32.
- ``weights``: SGD with and without sample weights.
- ``call``: the fixed cost of a ``train_steps`` call of 1 step, warm (seed net, batch 1):
  a call's time minus one step's.
- ``products``: SGD steps with the kernel's own products (``own``, AVX-512 or AVX2 tiles) against the same
  kernel on gemm and its older small loops (``gemm``, ``_kernel._use_own_products(False)``), on
  the seed, digits and wide nets at ``--product-batches``; per-thread CPU time with one thread
  (steadier on a shared machine), wall time otherwise. On a CPU without AVX2 both rows run gemm.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from fastbatch import _kernel, _numpy_backend
from fastbatch._codes import Loss, Optimizer
from fastbatch._kernel_spec import KernelSpec
from fastbatch._network import init_params

NETS = {"seed": (10, (32,), 2, 4096), "digits": (64, (64,), 10, 1797), "wide": (784, (256, 128), 10, 8192)}
OPTIMIZERS = {
    "sgd": dict(optimizer=Optimizer.SGD),
    "momentum": dict(optimizer=Optimizer.SGD, momentum=0.9),
    "nesterov": dict(optimizer=Optimizer.SGD, momentum=0.9, nesterov=True),
    "adam": dict(optimizer=Optimizer.ADAM),
    "adamw": dict(optimizer=Optimizer.ADAMW, weight_decay=0.01),
    "rmsprop": dict(optimizer=Optimizer.RMSPROP),
}


class Run:
    """One kernel run, advanced ``steps`` steps per ``__call__``."""

    def __init__(self, net, batch, dtype, n_threads=1, optimizer="sgd", noise=False, weights=False, lr=None,
                 backend=_kernel):
        self.backend = backend
        d, hidden, k, n = NETS[net]
        rng = np.random.default_rng(0)
        self.X = rng.random((n, d)).astype(dtype)
        self.y = np.argmax((self.X - 0.5) @ rng.normal(size=(d, k)), axis=1).astype(np.int64)
        sizes = np.array([d, *hidden, k], dtype=np.int64)
        self.spec = KernelSpec(sizes=sizes, batch_size=batch, steps_per_epoch=-(-n // batch), shuffle=True, seed=0,
                               activation=1, loss=Loss.CROSS_ENTROPY, n_threads=n_threads, **OPTIMIZERS[optimizer])
        self.theta = init_params(sizes, "relu", 0, np.dtype(dtype))
        self.state = np.zeros((3, len(self.theta)), dtype)
        self.order = np.full(n + 1, -1, np.int64)
        self.targets = np.empty((0, 0), dtype)
        self.weights = rng.uniform(0.5, 2.0, n).astype(dtype) if weights else np.empty(0, dtype)
        self.noise = noise
        self.lr = lr if lr is not None else (0.001 if optimizer in ("adam", "adamw", "rmsprop") else 0.01)
        self.stop = np.zeros(1, np.uint8)
        self.step = 0
        self.steps = 1

    def size(self, steps):
        self.steps = steps
        self.lrs = np.full(steps, self.lr)
        self.losses = np.zeros(steps, self.theta.dtype)  # (the run's dtype, as its history buffer)
        self.noise_out = np.zeros((steps, 2)) if self.noise else np.empty((0, 2))

    def __call__(self):
        done, status = self.backend.train_steps(self.spec, self.X, self.targets, self.y, self.weights, self.theta,
                                           self.state, self.order, self.lrs, self.losses, self.noise_out, self.step,
                                           self.steps, self.step, self.stop, 3600.0)
        assert status == 0, status
        self.step += done


def interleaved(runs, repeats, seconds, warm=0, clock=time.perf_counter, setups=None):
    """{name: (median us/step, interquartile range)} of runs timed in turn, each round ~seconds
    (setups: {name: a function called before each of that run's calls})."""
    setups = setups or {}
    for name, run in runs.items():
        setups.get(name, lambda: None)()
        run.size(2000 if run.spec.sizes[0] < 100 else 20)
        t = time.perf_counter()
        run()
        per_step = (time.perf_counter() - t) / run.steps
        run.size(max(1, int(seconds / max(per_step, 1e-9))))
        while run.step < warm and run.backend is _kernel:
            run()
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            setups.get(name, lambda: None)()
            t = clock()
            run()
            times[name].append((clock() - t) / run.steps * 1e6)
    return {name: (float(np.median(v)), float(np.subtract(*np.percentile(v, [75, 25])))) for name, v in times.items()}


def call_cost(repeats):
    """us of fixed cost per train_steps call (seed net, batch 1, warm): a 1-step call minus a step."""
    run = Run("seed", 1, "float32")
    run.size(10000)
    run()
    out = []
    for _ in range(repeats):
        run.size(10000)
        t = time.perf_counter()
        run()
        per_step = (time.perf_counter() - t) / 10000
        run.size(1)
        t = time.perf_counter()
        for _ in range(2000):
            run()
        out.append(((time.perf_counter() - t) / 2000 - per_step) * 1e6)
    return float(np.median(out)), float(np.subtract(*np.percentile(out, [75, 25])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="adam,noise,weights,call")
    ap.add_argument("--batches", default="1,32", help="batch sizes of the seed net")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1, help="spec.n_threads")
    ap.add_argument("--warm", type=int, default=50000, help="steps before timing (adam section)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.05)
    ap.add_argument("--product-batches", default="seed:32;digits:32,128,256;wide:32,128,512",
                    help="products section: net:batches;...")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"bench_kernel: {os.cpu_count()} cores, {args.dtype}, n_threads={args.threads}, median of "
          f"{args.repeats} interleaved rounds of ~{args.seconds * 1e3:.0f} ms; us/step (IQR)")
    rows = []

    def table(section, batch, res, ref):
        for name, (med, iqr) in res.items():
            row = dict(section=section, batch=batch, contender=name, us_per_step=med, iqr=iqr,
                       ratio=med / res[ref][0])
            rows.append(row)
            print(f"{section:<8} batch {batch:>5}  {name:<14} {med:9.3f} us ({iqr:6.3f})  {row['ratio']:5.2f}x {ref}")

    for section in args.sections.split(","):
        if section == "products":
            own_bits = _kernel._use_own_products(True)
            clock = time.thread_time if args.threads == 1 else time.perf_counter
            setups = {"own": lambda: _kernel._use_own_products(True), "gemm": lambda: _kernel._use_own_products(False)}
            try:
                for item in args.product_batches.split(";"):
                    net, bs = item.split(":")
                    for batch in (int(b) for b in bs.split(",")):
                        runs = {name: Run(net, batch, args.dtype, args.threads) for name in ("own", "gemm")}
                        table(f"{net}", batch, interleaved(runs, args.repeats, args.seconds, clock=clock,
                                                           setups=setups), "gemm")
            finally:
                _kernel._use_own_products(own_bits)
            continue
        for batch in batches if section != "call" else [1]:
            if section == "adam":
                runs = {o: Run("seed", batch, args.dtype, args.threads, o) for o in OPTIMIZERS}
                runs["numpy-adam"] = Run("seed", batch, args.dtype, args.threads, "adam", backend=_numpy_backend)
                table(section, batch, interleaved(runs, args.repeats, args.seconds, args.warm), "sgd")
            elif section == "noise":
                runs = {"sgd": Run("seed", batch, args.dtype, args.threads),
                        "sgd+noise": Run("seed", batch, args.dtype, args.threads, noise=True)}
                table(section, batch, interleaved(runs, args.repeats, args.seconds), "sgd")
            elif section == "weights":
                runs = {"sgd": Run("seed", batch, args.dtype, args.threads),
                        "sgd+weights": Run("seed", batch, args.dtype, args.threads, weights=True)}
                table(section, batch, interleaved(runs, args.repeats, args.seconds), "sgd")
            elif section == "call":
                med, iqr = call_cost(args.repeats)
                rows.append(dict(section="call", batch=1, contender="train_steps", us_per_call=med, iqr=iqr))
                print(f"call     batch     1  fixed cost per call {med:9.3f} us ({iqr:6.3f})")
            else:
                sys.exit(f"unknown section {section!r}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "cores": os.cpu_count(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
