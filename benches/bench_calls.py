"""What a call costs around the steps: fit-call overhead, a fresh Trainer, partial_fit, epoch hooks, the CLI's bar.

    python benches/bench_calls.py                         # all parts (~3 min on 2 cores)
    python benches/bench_calls.py --parts calls,hooks --threads 1
    python benches/bench_calls.py --hook-epochs 1000,5000 --cli-epochs 1000
    python benches/bench_calls.py --quick                 # a smoke test of a few seconds

Every run is the seed's setting: SGD at learning rate 0.01 (not the Trainer's defaults).

Parts (``--parts``):
- calls: the fixed cost of one call on a warm trainer. ``fit(X, y, steps=1)`` in a loop, against
  the in-kernel cost of a step (from one ``fit(steps=K)`` over many steps): fixed = per call -
  per step. The same for the scikit-learn estimator's ``partial_fit`` on a chunk of one batch,
  and scikit-learn's own ``MLPClassifier.partial_fit`` as a peer; one step of the plain numpy
  loop is the reference row. Then a fresh ``Trainer(...).fit(X, y, steps=1)`` against the
  parameter initialisation alone (``fastbatch._network.init_params``): its fixed cost is the
  median, over pairs of one call each side by side, of the fresh fit minus the initialisation,
  less the in-kernel step (see paired_difference; the spread is over the repeats' medians).
  init_params gives a network it made lately as a copy of the params it kept (a fresh Trainer per
  fold); the row "init_params, a new network" is the draw a network not made before pays.
- hooks: epoch hooks. 300 records, batch 1, ``--hook-epochs`` epochs: the same run with no hook
  (the reference row), with ``on_progress``, with ``validation_split=0.2`` and with an
  ``on_epoch_end`` callback. Compared as whole runs (the issue's target: the same run with and
  without the option), and per training step (a validation split trains on 240 records per
  epoch, not 300, so per step it is the stricter figure).
- cli: ``fastbatch train data.csv`` (the default progress bar) against ``--quiet``, on the same
  300 records, batch 1, ``--cli-epochs`` epochs; and ``--track-noise`` at batch 4 (a line of the
  noise scale each epoch, under the bar) against ``--track-noise --quiet``; whole processes, so
  start-up is in both.

Method: warm-up, then ``--repeats`` rounds with the variants interleaved; medians and the
spread of the repeats. The targets (issues 10 and 12) are printed with PASS / MISS.
"""
import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports nothing heavy: the thread variables go first)

if __name__ == "__main__":
    C.thread_env_from_argv(sys.argv[1:])

import numpy as np  # noqa: E402

import fastbatch as fb  # noqa: E402
from bench_vs_numpy import NumpyLoop  # noqa: E402
from fastbatch import _network  # noqa: E402
from fastbatch._network import init_params  # noqa: E402

try:
    from fastbatch.sklearn import FastBatchClassifier
    from sklearn.neural_network import MLPClassifier
except ImportError:
    FastBatchClassifier = MLPClassifier = None

DEFAULT_JSON = os.path.join("bench-results", "bench_calls.json")
PARTS = ("calls", "hooks", "cli")
CALL_POINTS = "seed:1;digits:32;wide:32"

CALL_COLUMNS = [
    ("workload", "workload", 8, "{}"),
    ("batch", "batch", 5, "{}"),
    ("call", "call", 34, "{}"),
    ("us_per_call", "us/call", 9, "{:.1f}"),
    ("spread_pct", "spread", 6, "{:.0f}%"),
    ("step_us", "us/step", 8, "{:.2f}"),
    ("fixed_us", "fixed us", 8, "{:.1f}"),
    ("speedup", "vs numpy", 8, "{:.2f}x"),
]
HOOK_COLUMNS = [
    ("epochs", "epochs", 6, "{}"),
    ("hook", "hook", 22, "{}"),
    ("seconds", "seconds", 8, "{:.3f}"),
    ("spread_pct", "spread", 6, "{:.0f}%"),
    ("steps", "steps", 10, "{:,}"),
    ("us_per_step", "us/step", 8, "{:.3f}"),
    ("ratio_run", "run x none", 10, "{:.2f}x"),
    ("ratio", "step x none", 11, "{:.2f}x"),
]
CLI_NOISE = "fastbatch train --track-noise, batch 4"   # (each epoch's noise scale said under the bar)
CLI_NOISE_QUIET = "fastbatch train --track-noise --quiet, batch 4"
CLI_COLUMNS = [
    ("epochs", "epochs", 6, "{}"),
    ("command", "command", 48, "{}"),
    ("seconds", "seconds", 8, "{:.2f}"),
    ("spread_pct", "spread", 6, "{:.0f}%"),
    ("ratio", "x --quiet", 9, "{:.2f}x"),
]


def interleaved(fns, repeats, settle=0.0):
    """{name: [seconds, ...]}: each fn timed once per round, the fns interleaved within a round."""
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(settle)
            out[name].append(C.timed(fn)[0])
    return out


def paired_difference(fn_a, fn_b, pairs, repeats, settle=0.0):
    """[us, ...] per repeat: the median over ``pairs`` of one call of fn_a minus the call of fn_b
    next to it, the order alternating (a then b, b then a). A small difference between two large,
    drifting times (a fresh Trainer's first fit and its init_params, both milliseconds on a wide
    net): each pair sees the same machine state, where loops of one call and then the other
    compare two moments."""
    out = []
    clock = time.perf_counter
    for _ in range(repeats):
        time.sleep(settle)
        diffs = []
        was = gc.isenabled()
        gc.disable()
        try:
            for i in range(max(pairs, 20)):
                if i % 2:
                    t0 = clock(); fn_a(); t1 = clock(); fn_b(); t2 = clock()
                    diffs.append((t1 - t0) - (t2 - t1))
                else:
                    t0 = clock(); fn_b(); t1 = clock(); fn_a(); t2 = clock()
                    diffs.append((t2 - t1) - (t1 - t0))
        finally:
            if was:
                gc.enable()
        out.append(C.median(diffs) * 1e6)
    return out


def calibrate(fn_of_n, target):
    """The n for which fn_of_n(n) takes about ``target`` seconds."""
    n = 1
    while True:
        t = C.timed(fn_of_n, n)[0]
        if t >= target / 8 or n >= 1 << 22:
            return max(1, int(round(n * target / max(t, 1e-9))))
        n *= 4


# ---------------------------------------------------------------- calls

def trainer_kw(sizes, batch, threads_kw):
    return dict(hidden=tuple(sizes[1:-1]), batch_size=batch, epochs=10 ** 9, optimizer="sgd", learning_rate=0.01,
                seed=0, **threads_kw)


def bench_calls(args, threads_kw):
    rows = []
    for name, sizes in ((w, C.layer_sizes(w)) for w in args.workloads_calls):
        n = C.WORKLOADS[name][4 if args.quick else 3]
        X, y = C.make_data(name, n, "float32")
        for batch in C.batches_for(args.call_points, name, n):
            kw = trainer_kw(sizes, batch, threads_kw)
            warm = fb.Trainer(**kw)
            warm.fit(X, y, steps=200 if args.quick else 2000)
            npl = NumpyLoop(X, y, sizes, C.init_params(sizes, "float32"), batch, 0.01, 0, "float32")
            npl.reset()
            X_chunk, y_chunk = X[:batch], y[:batch]
            fns = {}

            def loop(fn):
                return lambda k: [fn() for _ in range(k)]

            calls = {"numpy loop, 1 step": lambda: npl.run(1),
                     "fit(steps=1), warm trainer": lambda: warm.fit(X, y, steps=1)}
            if FastBatchClassifier is not None:
                est = FastBatchClassifier(**{k: v for k, v in kw.items() if k != "epochs"})
                classes = np.unique(y)
                est.partial_fit(X_chunk, y_chunk, classes=classes)
                mlp = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), solver="sgd", batch_size=batch,
                                    learning_rate_init=0.01, momentum=0.0, random_state=0)
                mlp.partial_fit(X_chunk, y_chunk, classes=classes)
                calls["FastBatchClassifier.partial_fit"] = lambda: est.partial_fit(X_chunk, y_chunk)
                calls["MLPClassifier.partial_fit (peer)"] = lambda: mlp.partial_fit(X_chunk, y_chunk)
            calls["Trainer(...).fit(steps=1), fresh"] = lambda: fb.Trainer(**kw).fit(X, y, steps=1)
            calls["init_params alone"] = lambda: init_params(np.array(sizes), "relu", 0, "float32")
            calls["init_params, a new network"] = lambda: (_network._kept_params.clear(),
                                                           init_params(np.array(sizes), "relu", 0, "float32"))
            for label, fn in calls.items():
                k = calibrate(loop(fn), args.seconds)
                fns[label] = (lambda f, k: (lambda: [f() for _ in range(k)]))(fn, k), k
            k_steps = calibrate(lambda k: warm.fit(X, y, steps=k), args.seconds)
            fns["fit(steps=K): the in-kernel step"] = (lambda: warm.fit(X, y, steps=k_steps)), k_steps
            times = interleaved({label: f for label, (f, _) in fns.items()}, args.repeats, args.settle)
            over_init = paired_difference(calls["Trainer(...).fit(steps=1), fresh"], calls["init_params alone"],
                                          fns["init_params alone"][1], args.repeats, args.settle)
            per = {label: C.median(ts) / fns[label][1] * 1e6 for label, ts in times.items()}
            step_us = per["fit(steps=K): the in-kernel step"]
            ref = per["numpy loop, 1 step"]
            for label, ts in times.items():
                us = per[label]
                row = {"workload": name, "sizes": sizes, "batch": batch, "call": label, "us_per_call": us,
                       "spread_pct": C.spread_pct(ts), "calls_per_measurement": fns[label][1],
                       "speedup": ref / us}
                if label in ("fit(steps=1), warm trainer", "FastBatchClassifier.partial_fit"):
                    row["step_us"], row["fixed_us"] = step_us, us - step_us
                elif label == "Trainer(...).fit(steps=1), fresh":
                    # over what the params cost to make, and the step itself
                    row["step_us"] = step_us
                    row["fixed_us"] = C.median(over_init) - step_us
                    row["fixed_spread_us"] = max(over_init) - min(over_init)
                elif label == "fit(steps=K): the in-kernel step":
                    row["us_per_call"], row["step_us"] = us * fns[label][1], us
                    row["speedup"] = None
                rows.append(row)
                print(C.table_row(row, CALL_COLUMNS), flush=True)
            print(flush=True)
    return rows


# ---------------------------------------------------------------- hooks

def bench_hooks(args, threads_kw):
    X, y = C.make_data("seed", 300, "float32")
    rows = []
    cb = fb.callbacks.LambdaCallback(on_epoch_end=lambda tr, e, logs: None)
    for epochs in args.hook_epochs:
        kw = dict(hidden=(32,), batch_size=1, epochs=epochs, optimizer="sgd", learning_rate=0.01, seed=0,
                  **threads_kw)
        variants = {
            "none": (kw, {}),
            "on_progress": (kw, {"on_progress": lambda h: None}),
            "validation_split=0.2": ({**kw, "validation_split": 0.2}, {}),
            "on_epoch_end callback": (kw, {"callbacks": [cb]}),
        }
        steps = {}

        def run(label):
            params, fit_kw = variants[label]
            tr = fb.Trainer(**params)
            tr.fit(X, y, **fit_kw)
            steps[label] = tr.step

        for label in variants:  # warm-up, and the step counts
            fb.Trainer(**{**variants[label][0], "epochs": 2}).fit(X, y, **variants[label][1])
        times = interleaved({label: (lambda lb: lambda: run(lb))(label) for label in variants}, args.repeats,
                            args.settle)
        t_none = C.median(times["none"])
        for label, ts in times.items():
            t = C.median(ts)
            row = {"epochs": epochs, "hook": label, "seconds": t, "spread_pct": C.spread_pct(ts),
                   "steps": steps[label], "us_per_step": t / steps[label] * 1e6, "ratio_run": t / t_none,
                   "ratio": t / steps[label] / (t_none / steps["none"])}
            rows.append(row)
            print(C.table_row(row, HOOK_COLUMNS, n_text=2), flush=True)
        print(flush=True)
    return rows


# ---------------------------------------------------------------- cli

def bench_cli(args):
    X, y = C.make_data("seed", 300, "float32")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastbatch-bench-cli-") as tmp:
        path = os.path.join(tmp, "records.csv")
        header = ",".join([f"x{i}" for i in range(X.shape[1])] + ["label"])
        np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="",
                   fmt=["%.7g"] * X.shape[1] + ["%d"])
        env = {**os.environ, "COLUMNS": "100"}
        for epochs in args.cli_epochs:
            base = [sys.executable, "-m", "fastbatch", "train", path, "--target", "label", "--hidden", "32",
                    "--optimizer", "sgd", "--learning-rate", "0.01", "--batch-size", "1", "--epochs", str(epochs),
                    "--out-dir", os.path.join(tmp, "out")]
            noise = base[:base.index("--batch-size")] + ["--batch-size", "4", "--track-noise"] + base[
                base.index("--batch-size") + 2:]
            commands = {"fastbatch train (progress bar)": base, "fastbatch train --quiet": base + ["--quiet"],
                        CLI_NOISE: noise, CLI_NOISE_QUIET: noise + ["--quiet"]}

            def run(cmd):
                proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=3600)
                if proc.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-2000:]}")

            times = interleaved({label: (lambda c: lambda: run(c))(cmd) for label, cmd in commands.items()},
                                args.repeats, args.settle)
            for label, ts in times.items():
                quiet = times[CLI_NOISE_QUIET if label in (CLI_NOISE, CLI_NOISE_QUIET) else "fastbatch train --quiet"]
                row = {"epochs": epochs, "command": label, "seconds": C.median(ts), "spread_pct": C.spread_pct(ts),
                       "ratio": C.median(ts) / C.median(quiet)}
                rows.append(row)
                print(C.table_row(row, CLI_COLUMNS, n_text=2), flush=True)
            print(flush=True)
    return rows


# ---------------------------------------------------------------- targets

def summarize(calls, hooks, cli):
    out = []

    def one(label, value, goal, fmt, at_most=True):
        ok = value <= goal if at_most else value >= goal
        out.append(f"  {label:<58} {fmt.format(value):>9} (target {'<=' if at_most else '>='} {fmt.format(goal)})"
                   f"  {'PASS' if ok else 'MISS'}")

    for r in calls:
        if r["call"] == "fit(steps=1), warm trainer" and r["workload"] == "seed":
            one(f"fixed cost of fit(steps=1), seed net batch {r['batch']}", r["fixed_us"], 10.0, "{:.1f} us")
        if r["call"] == "Trainer(...).fit(steps=1), fresh":
            one(f"fresh Trainer's first fit over init_params, {r['workload']} batch {r['batch']}", r["fixed_us"],
                100.0, "{:.0f} us")
            out[-1] += f"; repeats spread {r['fixed_spread_us']:.0f} us"
    for r in hooks:
        if r["hook"] != "none":
            one(f"{r['hook']}, {r['epochs']} epochs (run, x no hook)", r["ratio_run"], 1.3, "{:.2f}x")
            out[-1] += f"; per step {r['ratio']:.2f}x"
    for r in cli:
        if r["command"] == "fastbatch train (progress bar)":
            one(f"CLI progress bar, {r['epochs']} epochs (x --quiet)", r["ratio"], 1.3, "{:.2f}x")
        elif r["command"] == CLI_NOISE:
            one(f"CLI --track-noise lines and bar, {r['epochs']} epochs (x --quiet)", r["ratio"], 1.3, "{:.2f}x")
    return ["targets:"] + out if out else []


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of: " + ", ".join(PARTS))
    parser.add_argument("--call-points", default=CALL_POINTS,
                        help=f"workload:batches of the calls part (default {CALL_POINTS})")
    parser.add_argument("--hook-epochs", default="1000,5000", help="epoch counts of the hooks part")
    parser.add_argument("--cli-epochs", default="1000", help="epoch counts of the cli part")
    parser.add_argument("--threads", type=int, default=C.default_threads(),
                        help="threads (BLAS pools and the Trainer's n_threads; default: the usable cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is shown")
    parser.add_argument("--seconds", type=float, default=0.2, help="target duration of one call-loop measurement")
    parser.add_argument("--settle", type=float, default=0.1, help="idle seconds before each measurement")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke test of a few seconds")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results as JSON")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for p in parts:
        if p not in PARTS:
            parser.error(f"unknown part {p!r}; choose from {', '.join(PARTS)}")
    args.hook_epochs = [int(e) for e in args.hook_epochs.split(",")]
    args.cli_epochs = [int(e) for e in args.cli_epochs.split(",")]
    if args.quick:
        args.repeats, args.seconds, args.settle = 1, min(args.seconds, 0.02), 0.0
        args.hook_epochs, args.cli_epochs = [20], [5]
    args.workloads_calls = [part.split(":")[0].strip() for part in args.call_points.split(";")]
    how = C.pin_threads(args.threads)
    threads_kw = {"n_threads": args.threads} if "n_threads" in fb.config.BY_NAME else {}
    meta = C.header_lines("bench_calls: the cost of a call around the steps (fit calls, a fresh Trainer, "
                          "partial_fit, epoch hooks, the CLI's progress bar)", args.threads, how, {}, argv)[:-1]
    if FastBatchClassifier is None:
        meta.append("note: scikit-learn is not installed; no partial_fit rows (pip install scikit-learn)")
    print("\n".join(meta), flush=True)
    calls = hooks = cli = []
    if "calls" in parts:
        print("\nfit-call cost (fixed = us/call - the in-kernel us/step; fresh: paired, fresh - init_params - step)")
        print(C.table_header(CALL_COLUMNS), flush=True)
        calls = bench_calls(args, threads_kw)
    if "hooks" in parts:
        print("\nepoch hooks: 300 records, batch 1 (run x none: whole run against the run with no hook; "
              "step x none: per training step)")
        print(C.table_header(HOOK_COLUMNS, n_text=2), flush=True)
        hooks = bench_hooks(args, threads_kw)
    if "cli" in parts:
        print("\nthe CLI: fastbatch train on a 300-record CSV, batch 1 (whole processes, start-up included)")
        print(C.table_header(CLI_COLUMNS, n_text=2), flush=True)
        cli = bench_cli(args)
    summary = summarize(calls, hooks, cli)
    notes = ["times: medians of interleaved repeats after a warm-up; spread: (slowest - fastest) / median"]
    print("\n".join(notes + [""] + summary))
    C.write_json(args.json, {"title": meta[0], "argv": argv, "header": meta, "notes": notes, "summary": summary,
                             "threads": args.threads, "pinned_via": how, "cpu": C.cpu_model(),
                             "usable_cores": C.USABLE_CORES, "bound_cpus": C.bound_cpus(), "repeats": args.repeats,
                             "calls": calls, "hooks": hooks, "cli": cli})
    print(f"\nwrote {args.json}")
    return calls, hooks, cli


if __name__ == "__main__":
    main()
