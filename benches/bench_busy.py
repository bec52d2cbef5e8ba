"""Training next to a busy process: fastbatch's default thread team against ``n_threads=1``.

    python benches/bench_busy.py                          # idle, then one busy-loop process beside it (~4 min)
    python benches/bench_busy.py --busy 2 --points "digits:32,128"
    python benches/bench_busy.py --quick                  # a smoke test of a few seconds

For each condition (``--conditions``: ``idle``, then ``busy`` with ``--busy`` processes
running ``while True: pass`` beside the bench), and each (workload, batch) point, three
contenders train the same network in the same record order: the plain numpy loop (the
reference row; its BLAS on the default threads), fastbatch with its default team
(``n_threads=None``: the BLAS's thread setting, here the usable cores) and fastbatch with
``n_threads=1``. Timing as in bench_vs_numpy.py: warm-up, calibrated measurements,
interleaved repeats, medians and their spread; "cores" is the CPU time the bench process got
per second of wall time. The default points are the issue's (the seed net at batch 1 and 128,
digits at 32 and 128: teams share rows from 128 rows a member, 64 on an AMD CPU with AVX2 and
16 with AVX-512, so two threads run batch 128 as a team on AMD CPUs only) and two where the
default team is used everywhere (seed at 2048, digits at 256).
Target (issue 12): busy, the default is at most 1.2x slower than n_threads=1 and still beats numpy.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402  (imports nothing heavy: the thread variables go first)

if __name__ == "__main__":
    C.thread_env_from_argv(sys.argv[1:])

import fastbatch as fb  # noqa: E402
from bench_vs_numpy import FastbatchRun, NumpyLoop  # noqa: E402

DEFAULT_JSON = os.path.join("bench-results", "bench_busy.json")
POINTS = "seed:1,128,2048;digits:32,128,256"
HAS_N_THREADS = "n_threads" in fb.config.BY_NAME

COLUMNS = [
    ("condition", "condition", 9, "{}"),
    ("workload", "workload", 8, "{}"),
    ("batch", "batch", 5, "{}"),
    ("contender", "contender", 21, "{}"),
    ("us_per_step", "us/step", 9, "{:.2f}"),
    ("spread_pct", "spread", 6, "{:.0f}%"),
    ("cores", "cores", 5, "{:.2f}"),
    ("speedup", "vs numpy", 8, "{:.2f}x"),
    ("vs_one_thread", "x n_threads=1", 13, "{:.2f}x"),
    ("way", "way at the end", 24, "{}"),
]
N_TEXT = 4


class FastbatchThreads(FastbatchRun):
    """FastbatchRun with a given ``n_threads`` (None: the default team)."""

    def __init__(self, n_threads, **kw):
        self.n_threads = n_threads
        extra = {"n_threads": n_threads} if HAS_N_THREADS else {}
        super().__init__(**kw, **extra)
        self.name = "fastbatch default" if n_threads is None else f"fastbatch n_threads={n_threads}"

    def _limits(self):
        if HAS_N_THREADS or self.n_threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits  # the team follows the BLAS's setting
        return threadpool_limits(limits=self.n_threads)

    def reset(self):
        with self._limits():
            super().reset()

    def run(self, k):
        with self._limits():
            return super().run(k)

    def way(self):
        """How the kernel ran this trainer's team at the end ("team" or "one": one thread running
        the members) and how often that changed; None when no team was formed (small steps)."""
        try:
            from fastbatch import _kernel
            spec = self.tr._spec
            for key, ws in getattr(_kernel._local, "workspaces", {}).items():
                if key[0] == getattr(spec, "key", id(spec)) and ws.way["begun"]:  # (workspaces by the spec's key)
                    w = ws.way
                    return (f"{w['way']}, {w['switches']} sw, {w['tries']} tr "
                            f"{100 * w['try_seconds'] / max(w['seconds'], 1e-9):.1f}%")
        except (AttributeError, ImportError):  # an older kernel, or another backend
            pass
        return None


@contextlib.contextmanager
def busy_processes(n):
    """n child processes spinning ``while True: pass`` on any usable core; stopped (by pid) on exit."""
    def unbind():  # not bound to the bench's cores (--threads below the cores binds the bench)
        if C.ALL_CPUS:
            os.sched_setaffinity(0, C.ALL_CPUS)
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=unbind) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them get going
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def summarize(rows):
    out = []
    for r in C.find(rows, condition="busy", contender="fastbatch default"):
        ratio = r["vs_one_thread"]
        out.append(f"  busy, {r['workload']} batch {r['batch']}: default / n_threads=1 = {ratio:.2f}x (target <= 1.20x)"
                   f"  {'PASS' if ratio <= 1.2 else 'MISS'};  vs numpy {r['speedup']:.2f}x (target > 1x)"
                   f"  {'PASS' if r['speedup'] > 1 else 'MISS'}")
    return ["targets:"] + out if out else []


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default=POINTS, help=f"workload:batches (default {POINTS})")
    parser.add_argument("--conditions", default="idle,busy", help="comma list of: idle, busy")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes in the busy condition")
    parser.add_argument("--threads", type=int, default=C.default_threads(),
                        help="the BLAS pools' threads, i.e. the default team (default: the usable cores)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats; the median is shown")
    parser.add_argument("--seconds", type=float, default=0.2, help="target duration of one measurement")
    parser.add_argument("--settle", type=float, default=None,
                        help="idle seconds before each measurement (default 1.0, or 0.1 with --threads 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke test of a few seconds")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results as JSON")
    args = parser.parse_args(argv)
    if args.settle is None:
        args.settle = 1.0 if args.threads > 1 else 0.1
    if args.quick:
        args.repeats, args.seconds, args.settle = 1, min(args.seconds, 0.02), 0.0
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    for c in conditions:
        if c not in ("idle", "busy"):
            parser.error(f"unknown condition {c!r}; choose from idle, busy")
    how = C.pin_threads(args.threads)
    meta = C.header_lines("bench_busy: the default thread team against n_threads=1, idle and next to "
                          f"{args.busy} busy-loop process(es); numpy loop as reference", args.threads, how, {},
                          argv)[:-1]
    if not HAS_N_THREADS:
        meta.append("note: this Trainer has no n_threads parameter; n_threads=1 is set through threadpoolctl "
                    "(the team follows the BLAS's thread setting)")
    print("\n".join(meta), flush=True)
    print(C.table_header(COLUMNS, N_TEXT), flush=True)
    rows = []
    for condition in conditions:
        ctx = busy_processes(args.busy) if condition == "busy" else contextlib.nullcontext()
        with ctx:
            for part in args.points.split(";"):
                name, _, batches = part.partition(":")
                name = name.strip()
                sizes = C.layer_sizes(name)
                n = C.WORKLOADS[name][4 if args.quick else 3]
                X, y = C.make_data(name, n, "float32")
                init = C.init_params(sizes, "float32")
                for batch in C.parse_batches(batches, n):
                    kw = dict(X=X, y=y, sizes=sizes, init=init, batch=batch, lr=0.01, seed=0, dtype="float32")
                    runners = [NumpyLoop(**kw), FastbatchThreads(None, **kw), FastbatchThreads(1, **kw)]
                    res = C.measure(runners, n, batch, C.check_steps_for(n, batch, args.quick), args.repeats,
                                    args.seconds, memory=False, settle=args.settle)
                    one = res["fastbatch n_threads=1"]
                    for r in runners:
                        row = {"condition": condition, "workload": name, "sizes": sizes, "batch": batch,
                               "contender": r.name, **res[r.name]}
                        row["speedup"] = row["records_per_s"] / res["numpy"]["records_per_s"]
                        row["vs_one_thread"] = row["us_per_step"] / one["us_per_step"] if r.name != "numpy" else None
                        row["way"] = r.way() if hasattr(r, "way") else None
                        rows.append(row)
                        print(C.table_row(row, COLUMNS, N_TEXT), flush=True)
        print(flush=True)
    notes = ["x n_threads=1: us/step over fastbatch n_threads=1 in the same condition (above 1: slower)",
             "way at the end: a team's way after the last measurement (team, or one thread running its members), "
             "how often it changed (sw) and the other way was tried (tr) since the trainer started, and the "
             "tries' share of its training time; - : no team (small steps)",
             "cores: CPU seconds the bench process got per wall second while measuring",
             "times: medians of interleaved repeats after a warm-up; spread: (slowest - fastest) / median"]
    summary = summarize(rows)
    print("\n".join(notes + [""] + summary))
    C.write_json(args.json, {"title": meta[0], "argv": argv, "header": meta, "notes": notes, "summary": summary,
                             "threads": args.threads, "busy_processes": args.busy, "pinned_via": how,
                             "cpu": C.cpu_model(), "usable_cores": C.USABLE_CORES, "bound_cpus": C.bound_cpus(),
                             "repeats": args.repeats,
                             "has_n_threads": HAS_N_THREADS, "results": rows})
    print(f"\nwrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
