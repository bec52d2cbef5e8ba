"""Shared helpers for the benches: thread pinning, workloads, timing, the gemm peak, memory, table and JSON.

This module imports nothing heavy at import time: a bench script imports it first and
calls ``thread_env_from_argv`` *before* numpy is imported, because OpenBLAS, MKL and
OpenMP read their thread counts when the library is loaded.
"""
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# FLOPs of one training step, per record: forward a @ W (2 n_in n_out), backward
# delta @ W.T (2 n_in n_out; skipped for the first layer by every contender, counted
# anyway), gradient a.T @ delta (2 n_in n_out); bias, activation, softmax and the
# update are O(n_out) or O(params) and left out.
FLOP_FORMULA = "GFLOP/step = 6 * batch * sum(n_in * n_out) / 1e9 (forward + backward + weight gradient)"

# name: (n_features, hidden, n_classes, n_records default, n_records in --quick)
WORKLOADS = {
    "seed": (10, (32,), 2, 4096, 256),
    "digits": (64, (64,), 10, 1797, 256),
    "wide": (784, (256, 128), 10, 8192, 512),
}
BATCHES = "1,8,32,128,512,2048,full"
QUICK_BATCHES = "1,32,full"


# ---------------------------------------------------------------- threads

def thread_env_from_argv(argv):
    """Set the BLAS / OpenMP thread variables from ``--threads`` in argv; call before importing numpy.

    With fewer threads than usable cores, the process is also bound to that many cores
    (the first ones it may use). Threads inherit the binding when they are created, and
    none exist yet, so every pool any contender starts later (XLA's, a compiler's helpers)
    shares those cores: "1 thread" is one core, whatever a library does behind its settings.
    Returns the thread count. When numpy is already imported (a test calling ``main``),
    the variables come too late and ``pin_threads`` relies on threadpoolctl instead.
    """
    n = default_threads()
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif arg.startswith("--threads="):
            n = int(arg.split("=", 1)[1])
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    if n == 1:  # XLA (JAX) runs its own Eigen pool: hold it to the caller's thread
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    if hasattr(os, "sched_setaffinity") and 0 < n < USABLE_CORES:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:n])
    return n


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


USABLE_CORES = default_threads()  # before thread_env_from_argv binds the process to fewer
ALL_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

_limits = None  # keeps threadpoolctl's limits in force for the whole run


def bound_cpus():
    """The CPUs this process may run on, as text ("0", "0-1", ...)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return "any"
    return ",".join(map(str, cpus)) if len(cpus) < 3 else f"{cpus[0]}-{cpus[-1]} ({len(cpus)})"


def pin_threads(n):
    """Pin every BLAS / OpenMP pool loaded so far to ``n`` threads; returns how ("threadpoolctl" or "env")."""
    global _limits
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if "numpy" in sys.modules and os.environ.get("OPENBLAS_NUM_THREADS") != str(n):
            print(f"warning: threadpoolctl is not installed and numpy was imported before the thread "
                  f"variables were set; BLAS may not use {n} threads", file=sys.stderr)
        return "env"
    _limits = threadpool_limits(limits=n)
    return "threadpoolctl"


def blas_pools():
    """[(library, version, threads, file name), ...] of the loaded BLAS / OpenMP pools."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [(p.get("internal_api"), p.get("version"), p.get("num_threads"), os.path.basename(p.get("filepath", "")),
             p.get("architecture")) for p in threadpool_info()]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- workloads

def parse_batches(text, n_records):
    """"1,32,full" -> [1, 32, n_records]; sizes >= n_records collapse into one full batch."""
    out = []
    for item in text.split(","):
        item = item.strip()
        b = n_records if item == "full" else min(int(item), n_records)
        if b not in out:
            out.append(b)
    return out


def batches_for(text, name, n_records):
    """Batch sizes of one workload: "1,32,full" for all, or "seed:1,32;wide:32,128" per workload."""
    if ":" not in text:
        return parse_batches(text, n_records)
    for part in text.split(";"):
        key, _, sizes = part.partition(":")
        if key.strip() == name:
            return parse_batches(sizes, n_records)
    return []


def layer_sizes(name):
    d, hidden, k, _, _ = WORKLOADS[name]
    return [d, *hidden, k]


def flops_per_record(sizes):
    return 6 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def make_data(name, n, dtype, data="synthetic", seed=0):
    """(X, y) for a workload: uniform [0, 1) features, labels from a random linear teacher.

    ``data="real"`` uses scikit-learn's bundled digits (1797 records) for the digits workload.
    """
    import numpy as np
    d, _, k, _, _ = WORKLOADS[name]
    if data == "real" and name == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        return np.ascontiguousarray(X[:n] / 16.0, dtype=dtype), y[:n].astype(np.int64)
    rng = np.random.default_rng([seed, d, k])
    X = rng.random((n, d))
    teacher = rng.normal(size=(d, k))
    y = np.argmax((X - 0.5) @ teacher, axis=1).astype(np.int64)  # learnable, so the loss moves
    return np.ascontiguousarray(X, dtype=dtype), y


def init_params(sizes, dtype, seed=0):
    """He-normal weights and zero biases, [(W (n_in, n_out), b), ...]: every contender starts here."""
    import numpy as np
    rng = np.random.default_rng([seed, 0xB3])
    return [(rng.normal(0.0, np.sqrt(2.0 / a), size=(a, b)).astype(dtype), np.zeros(b, dtype=dtype))
            for a, b in zip(sizes[:-1], sizes[1:])]


def records_in_steps(n, batch, start, k):
    """Records the steps start .. start+k-1 train on (the last batch of an epoch is smaller)."""
    spe = -(-n // batch)
    last = n - (spe - 1) * batch
    full_epochs, rest = divmod(k, spe)
    total = full_epochs * n
    for s in range(start + full_epochs * spe, start + k):
        total += last if s % spe == spe - 1 else batch
    return total


# ---------------------------------------------------------------- measuring

def timed(fn, *args):
    """(seconds, result) of one call, with the cyclic GC off (as timeit does)."""
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t0, out
    finally:
        if was:
            gc.enable()


def median(xs):
    return statistics.median(xs)


def gemm_peak(dtype="float32", n=2048, repeats=5):
    """Best GFLOP/s of a numpy n x n matmul (2 n^3 FLOPs) on the pinned threads."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=c)  # warm-up: spins up the BLAS threads
    best = min(timed(np.matmul, a, b, c)[0] for _ in range(repeats))
    # np.matmul(a, b, c) passes c as out
    return 2.0 * n ** 3 / best / 1e9


def _proc_status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) * 1024
    return out


def _malloc_trim():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(fn, *args):
    """(bytes, method): how much memory one call adds at its peak.

    On Linux: peak RSS growth, read as VmHWM after the call minus VmRSS before it, with
    the high-water mark reset through /proc/self/clear_refs and freed heap returned to
    the OS first (so a contender does not reuse memory the previous one left behind).
    Elsewhere: the tracemalloc peak (numpy's buffers are traced; torch's are not).
    """
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status()["VmRSS"]
        fn(*args)
        return max(0, _proc_status()["VmHWM"] - before), "rss"
    except OSError:
        import tracemalloc
        tracemalloc.start()
        try:
            fn(*args)
            return tracemalloc.get_traced_memory()[1], "tracemalloc"
        finally:
            tracemalloc.stop()


def spread_pct(ts):
    """Spread of repeated times: (max - min) / median, in percent (0 for one repeat)."""
    return 100.0 * (max(ts) - min(ts)) / median(ts) if len(ts) > 1 else 0.0


def _round_up(k, g):
    return -(-k // g) * g


def measure(runners, n, batch, check_steps, repeats, target_seconds, memory=True, log=None, settle=1.0):
    """Time each runner on one (workload, batch): the method every bench shares.

    1. agreement + warm-up: each runner starts from the shared initial params and runs
       ``check_steps`` steps (timed too: ``check_us_per_step``); the loss of the last step
       is its "final loss". A runner's ``compile_seconds`` (set by its ``reset``, which
       compiles) is kept.
    2. calibration: steps per measurement (K) so that one measurement takes ~target_seconds.
    3. ``repeats`` rounds, the runners interleaved within each round; medians, the spread
       of the repeats, and the cores used (process CPU time / wall time).
    4. memory: one more un-timed run of K steps under ``peak_memory``.

    A runner with ``granularity`` g (JAX's scan runs whole epochs) gets step counts that are
    multiples of g; the agreement run is then a multiple of g for every runner, so all of
    them end on the same step. Returns {name: dict of results}.
    """
    g_all = 1
    for r in runners:
        g = getattr(r, "granularity", 1)
        g_all = g_all * g // math.gcd(g_all, g)
    check_steps = _round_up(check_steps, g_all)
    out = {}
    for r in runners:
        r.reset()
        t, (loss, _) = timed(r.run, check_steps)
        out[r.name] = {"final_loss": loss, "check_steps": check_steps, "check_us_per_step": t / check_steps * 1e6,
                       "compile_seconds": getattr(r, "compile_seconds", None), "note": getattr(r, "note", "")}
        if hasattr(r, "diagnostics"):
            out[r.name].update(r.diagnostics())
    ks = {}
    for r in runners:
        g = getattr(r, "granularity", 1)
        k = g
        while True:
            t, _ = timed(r.run, k)
            if t >= target_seconds / 8 or k >= 1 << 22:
                break
            k *= 4 if t < target_seconds / 64 else 2
        ks[r.name] = _round_up(max(1, int(round(k * target_seconds / max(t, 1e-9)))), g)
    samples = {r.name: [] for r in runners}
    for _ in range(repeats):
        for r in runners:
            # let the previous contender's BLAS / OpenMP threads stop spinning first: idle
            # OpenBLAS threads busy-wait for a while (here over 0.3 s), and two thread pools
            # on the same two cores slow each other down threefold to a hundredfold
            time.sleep(settle)
            c0 = time.process_time()
            t, (_, records) = timed(r.run, ks[r.name])
            samples[r.name].append((t, records, time.process_time() - c0))
    for r in runners:
        ts = [t for t, _, _ in samples[r.name]]
        t = median(ts)
        records = median([rec for _, rec, _ in samples[r.name]])
        res = out[r.name]
        res.update(steps_per_measurement=ks[r.name], seconds=ts, us_per_step=t / ks[r.name] * 1e6,
                   records_per_s=records / t, spread_pct=spread_pct(ts),
                   cores=sum(c for _, _, c in samples[r.name]) / sum(ts))
        if memory:
            res["mem_bytes"], res["mem_method"] = peak_memory(r.run, ks[r.name])
        if log:
            log(r.name, res)
    return out


# ---------------------------------------------------------------- output

# (key, header, width, format); the numbers are right-aligned
COLUMNS = [
    ("workload", "workload", 8, "{}"),
    ("batch", "batch", 6, "{}"),
    ("contender", "contender", 13, "{}"),
    ("us_per_step", "us/step", 10, "{:.2f}"),
    ("spread_pct", "spread", 7, "{:.0f}%"),
    ("cores", "cores", 5, "{:.2f}"),
    ("records_per_s", "records/s", 12, "{:,.0f}"),
    ("speedup", "vs numpy", 9, "{:.2f}x"),
    ("gflops", "GFLOP/s", 8, "{:.2f}"),
    ("pct_peak", "% peak", 7, "{:.1f}%"),
    ("mem_mib", "mem MiB", 8, "{:.1f}"),
    ("final_loss", "final loss", 11, "{:.6f}"),
    ("loss_rel_diff", "rel diff", 9, "{:.1e}"),
    ("compile_seconds", "compile s", 9, "{:.2f}"),
]


def table_header(columns=None, n_text=3):
    """The header line and its rule; the first ``n_text`` columns are left-aligned text."""
    cells = [h.ljust(w) if i < n_text else h.rjust(w) for i, (_, h, w, _) in enumerate(columns or COLUMNS)]
    line = "  ".join(cells)
    return line + "\n" + "-" * len(line)


def table_row(row, columns=None, n_text=3):
    cells = []
    for i, (key, _, w, fmt) in enumerate(columns or COLUMNS):
        v = row.get(key)
        text = "-" if v is None else fmt.format(v)
        cells.append(text.ljust(w) if i < n_text else text.rjust(w))
    return "  ".join(cells)


def derive(row, ref, flops_rec, peak_gflops, is_ref=False):
    """Add speedup, GFLOP/s, % of peak, MiB and the loss difference to one result row."""
    row["gflops"] = row["records_per_s"] * flops_rec / 1e9
    row["pct_peak"] = 100.0 * row["gflops"] / peak_gflops
    row["speedup"] = row["records_per_s"] / ref["records_per_s"] if ref else None
    if row.get("mem_bytes") is not None:
        row["mem_mib"] = row["mem_bytes"] / 2 ** 20
    comparable = ref is not None and row.get("comparable", True) and not is_ref
    row["loss_rel_diff"] = (abs(row["final_loss"] - ref["final_loss"]) / max(abs(ref["final_loss"]), 1e-30)
                            if comparable else None)
    return row


def fastbatch_version():
    """fastbatch's version and the git commit of its source, '+dirty' when the kernel has local changes."""
    import subprocess
    import fastbatch
    here = os.path.dirname(os.path.abspath(fastbatch.__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return fastbatch.__version__ + (f" (git {commit}{'+dirty' if dirty else ''})" if commit else "")


def header_lines(title, threads, how, peaks, args):
    import numpy as np
    lines = [title,
             f"command: python {' '.join([os.path.basename(sys.argv[0])] + list(args))}".rstrip(),
             f"cpu: {cpu_model()} ({USABLE_CORES} usable cores); threads: {threads} (pinned via {how}); "
             f"process bound to cpu {bound_cpus()}",
             f"python {platform.python_version()}, numpy {np.__version__}, fastbatch {fastbatch_version()}",
             f"started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average (1 min) "
             f"{os.getloadavg()[0]:.2f} (above 0: other processes were using the cores as it started)"]
    for lib, version, n, fname, arch in blas_pools():
        lines.append(f"pool: {lib} {version} x{n} ({fname})" + (f", {arch} kernels" if arch else ""))
    if "OPENBLAS_CORETYPE" in os.environ:  # the environment chose OpenBLAS's kernels (not its own detection)
        lines.append(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} in the environment")
    for dt, p in peaks.items():
        lines.append(f"{'s' if dt == 'float32' else 'd'}gemm peak ({dt}, numpy matmul, best of several): {p:.1f} GFLOP/s")
    lines.append(FLOP_FORMULA + "; % peak = GFLOP/s / gemm peak of the same dtype")
    return lines


def footer_lines(mem_method):
    what = ("peak RSS growth during one un-timed measurement (VmHWM after - VmRSS before, "
            "high-water mark reset via /proc/self/clear_refs)" if mem_method == "rss"
            else "tracemalloc peak during one un-timed measurement (torch's allocator is not traced)")
    return [f"mem MiB: {what}",
            "final loss: loss of the last step after the same number of steps from the same initial params "
            "and record order; rel diff: |loss - numpy's| / numpy's",
            "times: median of the repeats, contenders interleaved in each repeat, after a warm-up; "
            "spread: (slowest - fastest) / median of the repeats; cores: process CPU time / wall time "
            "while measuring (1.00 = one busy core)",
            "compile s: a compiling contender's compile time, paid once per shape before its first step "
            "(not in us/step)"]


def to_jsonable(obj):
    import numpy as np
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path, obj):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_jsonable(obj), f, indent=1, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- the driver both benches share

def add_arguments(parser, default_json, batches=BATCHES):
    """The options both benches take; defaults form one block."""
    parser.add_argument("--workloads", default="seed,digits,wide", help="comma list of: " + ", ".join(WORKLOADS))
    parser.add_argument("--batches", default=batches,
                        help="comma list of batch sizes ('full' = all records), or per workload: "
                             "'seed:1,32;wide:32,128'")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "both"])
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="threads for every contender (default: the usable cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per contender; the median is shown")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of idle before each measurement, so the previous contender's "
                             "BLAS threads stop spinning (default 1.0, or 0.1 with --threads 1; --quick: 0)")
    parser.add_argument("--seconds", type=float, default=0.2, help="target duration of one measurement")
    parser.add_argument("--records", type=int, default=None, help="records per workload (default: per workload)")
    parser.add_argument("--data", default="synthetic", choices=["synthetic", "real"],
                        help="'real' trains the digits workload on scikit-learn's bundled digits")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the initial params and the record order")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory pass")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 1 repeat, batches " + QUICK_BATCHES + ": a smoke test of a few seconds")
    parser.add_argument("--json", default=default_json, help="where to write the results as JSON")
    return parser


def check_steps_for(n, batch, quick):
    """Steps of the agreement run: two epochs, at least 4 steps, at most 256 (32 with --quick)."""
    spe = -(-n // batch)
    return max(4, min(2 * spe, 32 if quick else 256))


def run_suite(title, args, argv, make_runners, summarize=None, default_batches=BATCHES):
    """Measure every (dtype, workload, batch), print the table as it goes, write the JSON; return the rows."""
    if args.settle is None:  # one thread per pool: nothing spins on another core
        args.settle = 1.0 if args.threads > 1 else 0.1
    if args.quick:
        args.repeats, args.seconds, args.settle = 1, min(args.seconds, 0.02), 0.0
        if args.batches == default_batches:
            args.batches = QUICK_BATCHES
    how = pin_threads(args.threads)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    # best of many: on a shared machine the peak is what the cores give when they are free
    peaks = {dt: gemm_peak(dt, n=512 if args.quick else 2048, repeats=5 if args.quick else 10) for dt in dtypes}
    meta_lines = header_lines(title, args.threads, how, peaks, argv)
    print("\n".join(meta_lines), flush=True)
    rows = []
    mem_method = None
    for dtype in dtypes:
        print(f"\ndtype {dtype}", flush=True)
        print(table_header(), flush=True)
        for name in args.workloads.split(","):
            name = name.strip()
            if name not in WORKLOADS:
                raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
            sizes = layer_sizes(name)
            n = args.records or WORKLOADS[name][4 if args.quick else 3]
            X, y = make_data(name, n, dtype, args.data, args.seed)
            n = X.shape[0]
            init = init_params(sizes, dtype, args.seed)
            flops_rec = flops_per_record(sizes)
            for batch in batches_for(args.batches, name, n):
                runners = make_runners(X=X, y=y, sizes=sizes, init=init, batch=batch, lr=args.lr,
                                       seed=args.seed, dtype=dtype)
                res = measure(runners, n, batch, check_steps_for(n, batch, args.quick), args.repeats,
                              args.seconds, memory=not args.no_memory, settle=args.settle)
                ref = res.get("numpy")
                for r in runners:
                    row = {"workload": name, "sizes": sizes, "n_records": n, "dtype": dtype, "batch": batch,
                           "contender": r.name, "comparable": getattr(r, "comparable", True), **res[r.name]}
                    derive(row, ref, flops_rec, peaks[dtype], is_ref=r.name == "numpy")
                    mem_method = row.get("mem_method", mem_method)
                    rows.append(row)
                    print(table_row(row), flush=True)
            print(flush=True)
    notes = footer_lines(mem_method)
    notes += sorted({f"{r['contender']}: {r['note']}" for r in rows if r.get("note")})
    print("\n".join(notes))
    summary = summarize(rows) if summarize else []
    if summary:
        print("\n" + "\n".join(summary))
    write_json(args.json, {
        "title": title, "argv": list(argv), "header": meta_lines, "notes": notes, "summary": summary,
        "threads": args.threads, "pinned_via": how, "cpu": cpu_model(), "usable_cores": USABLE_CORES,
        "bound_cpus": bound_cpus(),
        "blas_pools": blas_pools(), "gemm_peak_gflops": peaks, "flop_formula": FLOP_FORMULA,
        "memory_method": mem_method, "repeats": args.repeats, "target_seconds": args.seconds,
        "results": rows,
    })
    print(f"\nwrote {args.json}")
    return rows


def find(rows, **where):
    """The rows matching every key=value."""
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]
