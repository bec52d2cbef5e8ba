"""The optimizer dimension: Adam (and momentum, AdamW) against plain SGD, after a long warm-up.

    python benches/bench_optimizers.py                    # seed net, batches 1 and 32, 50k warm steps (~3 min)
    python benches/bench_optimizers.py --threads 1
    python benches/bench_optimizers.py --workloads seed,digits --batches 1,32,128 --warm-steps 20000
    python benches/bench_optimizers.py --quick            # a smoke test of a few seconds

Every contender first trains ``--warm-steps`` steps (default 50,000) from the shared initial
params in the shared record order. That is where Adam used to slow down: dead ReLU units
get exactly-zero gradients, Adam's moments decay into subnormal numbers that never reach
zero, and arithmetic on subnormals is slow unless the CPU flushes them to zero. The
warm-up is timed too ("first N us/step"), and the "subnormal" column counts the subnormal
values left in the optimizer state (m and v) after it. Then the usual method: steps per
measurement calibrated to ``--seconds``, ``--repeats`` interleaved rounds, medians.

Rows: plain numpy loops with SGD (the reference row) and Adam (written as a numpy user
writes it, in torch.optim.Adam's form); fastbatch with sgd, sgd + momentum 0.9, adam and
adamw, and sgd with ``track_noise=True`` when the Trainer has it (the gradient-noise
norms of issue 14); PyTorch eager with SGD and Adam (skipped with a note when torch is
not installed). Defaults: Adam's betas (0.9, 0.999), eps 1e-8, learning rate 0.01 for all.
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
    from bench_vs_peers import TorchLoop
except ImportError:
    torch = None

DEFAULT_JSON = os.path.join("bench-results", "bench_optimizers.json")
BETAS, EPS = (0.9, 0.999), 1e-8
HAS_TRACK_NOISE = "track_noise" in fb.config.BY_NAME

COLUMNS = [
    ("workload", "workload", 8, "{}"),
    ("batch", "batch", 5, "{}"),
    ("contender", "contender", 9, "{}"),
    ("optimizer", "optimizer", 9, "{}"),
    ("us_per_step", "us/step", 9, "{:.2f}"),
    ("spread_pct", "spread", 6, "{:.0f}%"),
    ("cores", "cores", 5, "{:.2f}"),
    ("check_us_per_step", "warm-up us/step", 15, "{:.2f}"),
    ("speedup", "vs numpy sgd", 12, "{:.2f}x"),
    ("vs_numpy_same", "vs numpy same", 13, "{:.1f}x"),
    ("cost_vs_fb_sgd", "x fastbatch sgd", 15, "{:.2f}x"),
    ("subnormals", "subnormal", 9, "{:,}"),
    ("final_loss", "final loss", 10, "{:.6f}"),
    ("loss_rel_diff", "rel diff", 8, "{:.1e}"),
]
N_TEXT = 4


def subnormal_count(arrays):
    """How many values in these float arrays are subnormal (non-zero, below the smallest normal)."""
    total = 0
    for a in arrays:
        a = np.abs(np.asarray(a))
        total += int(np.count_nonzero((a > 0) & (a < np.finfo(a.dtype).tiny)))
    return total


class NumpyAdamLoop(NumpyLoop):
    """The numpy loop with Adam, in torch.optim.Adam's form: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)."""

    def reset(self):
        super().reset()
        self.m = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]
        self.v = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]

    def update(self, layer, W, b, gW, gb):
        b1, b2 = BETAS
        t = self.step + 1
        step_size = self.lr / (1 - b1 ** t)
        root_bc2 = np.sqrt(1 - b2 ** t)
        for p, g, m, v in ((W, gW, *[x[layer][0] for x in (self.m, self.v)]),
                           (b, gb, *[x[layer][1] for x in (self.m, self.v)])):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_bc2 + EPS)

    def diagnostics(self):
        return {"subnormals": subnormal_count([a for pair in self.m + self.v for a in pair])}


class FastbatchOpt(FastbatchRun):
    def diagnostics(self):
        st = getattr(self.tr, "_state", None)
        opt = getattr(st, "opt_state", None)
        return {"subnormals": subnormal_count([opt[:2]]) if opt is not None else None}


def labelled(runner, contender, optimizer, family):
    """Give a runner its table labels; ``family`` is the numpy row its loss is compared with (None: none)."""
    runner.name = f"{contender}/{optimizer}"
    runner.contender, runner.optimizer, runner.family = contender, optimizer, family
    return runner


def make_runners(**kw):
    out = [labelled(NumpyLoop(**kw), "numpy", "sgd", "sgd"),
           labelled(NumpyAdamLoop(**kw), "numpy", "adam", "adam"),
           labelled(FastbatchOpt(**kw), "fastbatch", "sgd", "sgd"),
           labelled(FastbatchOpt(**kw, momentum=0.9), "fastbatch", "momentum", None),
           labelled(FastbatchOpt(**kw, optimizer="adam", betas=BETAS, eps=EPS), "fastbatch", "adam", "adam"),
           labelled(FastbatchOpt(**kw, optimizer="adamw", betas=BETAS, eps=EPS), "fastbatch", "adamw", None)]
    if HAS_TRACK_NOISE:
        out.append(labelled(FastbatchOpt(**kw, track_noise=True), "fastbatch", "sgd+noise", "sgd"))
    if torch is not None:
        out += [labelled(TorchLoop(**kw), "torch", "sgd", "sgd"),
                labelled(TorchLoop(**kw, optimizer="adam"), "torch", "adam", "adam")]
    return out


def derive_rows(name, batch, sizes, n, runners, res):
    """One table row per runner, with the ratios against numpy's rows and fastbatch's SGD row."""
    ref = res["numpy/sgd"]
    fb_sgd = res.get("fastbatch/sgd")
    rows = []
    for r in runners:
        row = {"workload": name, "sizes": sizes, "n_records": n, "batch": batch, "contender": r.contender,
               "optimizer": r.optimizer, **res[r.name]}
        row["speedup"] = row["records_per_s"] / ref["records_per_s"]
        same = res.get(f"numpy/{r.optimizer}")
        row["vs_numpy_same"] = row["records_per_s"] / same["records_per_s"] if same and r.contender != "numpy" else None
        row["cost_vs_fb_sgd"] = row["us_per_step"] / fb_sgd["us_per_step"] if fb_sgd else None
        fam = res.get(f"numpy/{r.family}") if r.family else None
        row["loss_rel_diff"] = (abs(row["final_loss"] - fam["final_loss"]) / max(abs(fam["final_loss"]), 1e-30)
                                if fam and r.contender != "numpy" else None)
        rows.append(row)
    return rows


def summarize(rows):
    """The issue's targets, each with the measured number and PASS / MISS."""
    out = []

    def one(label, value, goal, fmt, at_most):
        ok = value <= goal if at_most else value >= goal
        out.append(f"  {label:<52} {fmt.format(value):>8} (target {'<=' if at_most else '>='} "
                   f"{fmt.format(goal)})  {'PASS' if ok else 'MISS'}")

    for r in C.find(rows, contender="fastbatch", optimizer="adam"):
        one(f"{r['workload']} batch {r['batch']}: fastbatch adam / fastbatch sgd", r["cost_vs_fb_sgd"], 1.5,
            "{:.2f}x", True)
        if r["batch"] == 1 and r["vs_numpy_same"] is not None:
            one(f"{r['workload']} batch {r['batch']}: fastbatch adam vs numpy adam", r["vs_numpy_same"], 30,
                "{:.1f}x", False)
    for r in C.find(rows, contender="fastbatch", optimizer="sgd+noise"):
        if r["batch"] > 1:
            one(f"{r['workload']} batch {r['batch']}: track_noise cost (sgd+noise / sgd)", r["cost_vs_fb_sgd"],
                1.15, "{:.2f}x", True)
    return ["targets:"] + out if out else []


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="seed", help="comma list of: " + ", ".join(C.WORKLOADS))
    parser.add_argument("--batches", default="1,32", help="comma list of batch sizes ('full' = all records)")
    parser.add_argument("--warm-steps", type=int, default=50_000, help="steps before timing (the subnormal trap)")
    parser.add_argument("--threads", type=int, default=C.default_threads(),
                        help="threads for every contender (default: the usable cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per contender; the median is shown")
    parser.add_argument("--seconds", type=float, default=0.2, help="target duration of one measurement")
    parser.add_argument("--settle", type=float, default=None,
                        help="idle seconds before each measurement (default 1.0, or 0.1 with --threads 1)")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of every optimizer")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the initial params and the order")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 200 warm steps, 1 repeat: a smoke test")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results as JSON")
    args = parser.parse_args(argv)
    if args.settle is None:
        args.settle = 1.0 if args.threads > 1 else 0.1
    if args.quick:
        args.repeats, args.seconds, args.settle, args.warm_steps = 1, min(args.seconds, 0.02), 0.0, 200
    if torch is None:
        print("note: torch is not installed; skipping its rows (pip install torch)")
    else:
        torch.set_num_threads(args.threads)
    if not HAS_TRACK_NOISE:
        print("note: this Trainer has no track_noise parameter yet; no sgd+noise row")
    how = C.pin_threads(args.threads)
    meta = C.header_lines("bench_optimizers: Adam, momentum and AdamW against SGD after a warm-up; "
                          "numpy SGD loop as reference", args.threads, how, {}, argv)[:-1]
    meta.insert(1, f"warm-up: {args.warm_steps:,} steps from the shared initial params (timed: warm-up us/step); "
                   f"lr {args.lr}, float32")
    print("\n".join(meta), flush=True)
    print(C.table_header(COLUMNS, N_TEXT), flush=True)
    rows = []
    for name in args.workloads.split(","):
        sizes = C.layer_sizes(name)
        n = C.WORKLOADS[name][4 if args.quick else 3]
        X, y = C.make_data(name, n, "float32", seed=args.seed)
        init = C.init_params(sizes, "float32", args.seed)
        for batch in C.parse_batches(args.batches, n):
            runners = make_runners(X=X, y=y, sizes=sizes, init=init, batch=batch, lr=args.lr, seed=args.seed,
                                   dtype="float32")
            res = C.measure(runners, n, batch, args.warm_steps, args.repeats, args.seconds, memory=False,
                            settle=args.settle)
            for row in derive_rows(name, batch, sizes, n, runners, res):
                rows.append(row)
                print(C.table_row(row, COLUMNS, N_TEXT), flush=True)
        print(flush=True)
    notes = ["vs numpy sgd: records/s over the numpy SGD loop's; vs numpy same: over the numpy loop with the same "
             "optimizer; x fastbatch sgd: us/step over fastbatch's SGD row",
             "subnormal: subnormal values in the optimizer's m and v after the warm-up (fastbatch, numpy)",
             "rel diff: final loss against the numpy loop with the same optimizer (momentum and adamw: none)",
             "times: medians of interleaved repeats after the warm-up; spread: (slowest - fastest) / median"]
    summary = summarize(rows)
    print("\n".join(notes + [""] + summary))
    C.write_json(args.json, {"title": meta[0], "argv": argv, "header": meta, "notes": notes, "summary": summary,
                             "threads": args.threads, "pinned_via": how, "cpu": C.cpu_model(),
                             "usable_cores": C.USABLE_CORES, "bound_cpus": C.bound_cpus(),
                             "warm_steps": args.warm_steps,
                             "repeats": args.repeats, "has_track_noise": HAS_TRACK_NOISE, "results": rows})
    print(f"\nwrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
