"""The app at kernel speed: steps/s in the window against headless, peak memory, the longest event-loop gap.

    python benches/bench_app.py                       # the seed net at batch 1 for 200k steps
    python benches/bench_app.py --steps 20000000 --records 2000000 --repeats 1   # a long run

The seed network (10 -> 32 -> 2, relu, SGD, float32) trains on the seed's random records at
batch 1. Headless is ``Trainer.fit`` alone; the window is the app (offscreen) pressing Start,
timed from the click to the end of the run, while a 10 ms timer on the GUI thread records the
event loop's gaps (the longest time between two of its ticks) from the first progress report
until 0.3 s after the run ended (so the end of the run's drawing counts; the start's one-off
work is reported apart). Each measurement runs in a process of its own, and its peak memory
is that whole process's maximum resident set (every thread: Python, Qt, the data, the run and
the plot). Targets (issue #12): the window reaches at least 50% of headless steps/s, with
gaps under 100 ms and memory under 1 GB.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

import fastbatch as fb  # noqa: E402
from fastbatch import datasets  # noqa: E402


# the window's settings below, as Trainer params: the same network and optimizer on both sides (the
# library's defaults are another network: 64 hidden units, Adam); main() checks both runs' configs agree
SEED_NET = dict(hidden=(32,), activation="relu", optimizer="sgd", batch_size=1, learning_rate=0.01, seed=0,
                standardize=False)


def headless(X, y, epochs):
    tr = fb.Trainer(**SEED_NET, epochs=epochs)
    t0 = time.perf_counter()
    tr.fit(X, y)
    return tr.step / (time.perf_counter() - t0), tr.config


def in_window(app, records, epochs):
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    from fastbatch_gui.window import MainWindow

    w = MainWindow()
    w.show()
    c = w.controls
    for name, value in (("dataset", "random"), ("records", records), ("features", 10), ("batch_size", 1),
                        ("epochs", epochs), ("learning_rate", 0.01), ("standardize", False)):
        c.set_value(name, value)
    app.processEvents()
    ticks = []
    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    ended = []

    def on_end(how):
        ended.append(time.perf_counter())
        QTimer.singleShot(300, loop.quit)   # the gaps right after the end (the last redraw) count too
    w.runEnded.connect(on_end)
    first = []
    w.worker.progress.connect(lambda h: first.append(time.perf_counter()) if not first else None)
    timer.start()
    t0 = time.perf_counter()
    w.start()
    loop.exec()
    seconds = ended[0] - t0
    timer.stop()
    steps, config = w.trainer.step, w.trainer.config
    t = np.array(ticks)
    gaps = np.diff(t) if len(t) > 1 else np.array([seconds])
    # while training: from the first progress report on (the start's one-off work is reported apart)
    during = np.diff(t[t >= first[0]]) if first and (t >= first[0]).sum() > 1 else gaps
    w.shutdown()
    w.deleteLater()
    app.processEvents()
    return steps / seconds, float(during.max()), float(gaps.max()), config


def measure(part, records, epochs):
    """One measurement in this process: {"steps_per_s", "gap_ms", "start_gap_ms", "peak_rss_mb"}."""
    X, y = datasets.make("random", records, 10, seed=0)
    X = np.ascontiguousarray(X, dtype=np.float32)   # as the window hands it over: the run's dtype
    out = {}
    if part == "headless":
        headless(X, y, 1)   # warm-up: the kernel's thread team and caches
        out["steps_per_s"], config = headless(X, y, epochs)
    else:
        del X
        from PySide6.QtWidgets import QApplication
        app = QApplication.instance() or QApplication(sys.argv[:1])
        rate, gap, start_gap, config = in_window(app, records, epochs)
        out.update(steps_per_s=rate, gap_ms=gap * 1000, start_gap_ms=start_gap * 1000)
    out["config"] = json.loads(json.dumps(config))   # (tuples as lists, as the other process sends them)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_part(part, records, epochs):
    """:func:`measure` in a fresh process, so that its peak memory is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--part", part, "--records", str(records),
           "--steps", str(records * epochs)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200_000, help="steps per run (a whole number of epochs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--part", choices=["headless", "window"], help=argparse.SUPPRESS)   # one measurement
    args = p.parse_args(argv)
    epochs = max(1, args.steps // args.records)
    if args.part:
        print(json.dumps(measure(args.part, args.records, epochs)))
        return None

    runs = {"headless": [], "window": []}
    for _ in range(args.repeats):   # interleaved, so both see the same machine
        for part in runs:
            runs[part].append(run_part(part, args.records, epochs))
    configs = {part: rs[0]["config"] for part, rs in runs.items()}
    differ = {k for k in configs["headless"].keys() | configs["window"].keys()
              if configs["headless"].get(k) != configs["window"].get(k)}
    if differ:
        raise SystemExit(f"headless and window trained different runs: {sorted(differ)} "
                         f"({ {k: (configs['headless'].get(k), configs['window'].get(k)) for k in sorted(differ)} })")
    rates = {part: [r["steps_per_s"] for r in rs] for part, rs in runs.items()}
    h, w = statistics.median(rates["headless"]), statistics.median(rates["window"])
    gaps = [r["gap_ms"] for r in runs["window"]]
    start_gaps = [r["start_gap_ms"] for r in runs["window"]]
    mem = {part: max(r["peak_rss_mb"] for r in rs) for part, rs in runs.items()}
    print(f"seed net 10-32-2, batch 1, {args.records:,} records x {epochs:,} epochs = {args.records * epochs:,} steps,"
          f" {args.repeats} repeats (medians; min-max), each measurement in its own process")
    print(f"{'':10s} {'steps/s':>12s} {'range':>25s} {'share':>7s} {'peak RSS':>10s}")
    for part, vals in rates.items():
        med = statistics.median(vals)
        print(f"{part:10s} {med:12,.0f} {min(vals):12,.0f}-{max(vals):<12,.0f} {100 * med / h:6.1f}% "
              f"{mem[part]:7,.0f} MB")
    print(f"longest event-loop gap while training: {max(gaps):.0f} ms (median over runs "
          f"{statistics.median(gaps):.0f} ms); including the start: {max(start_gaps):.0f} ms")
    result = {"records": args.records, "epochs": epochs, "steps": args.records * epochs,
              "headless_steps_per_s": rates["headless"], "window_steps_per_s": rates["window"],
              "window_share": w / h, "longest_gap_ms": max(gaps), "longest_gap_with_start_ms": max(start_gaps),
              "peak_rss_mb": mem["window"], "headless_peak_rss_mb": mem["headless"]}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
