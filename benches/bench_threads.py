"""Threads: trainers side by side, and the kernel's team beside a busy process.

    python benches/bench_threads.py                      # both sections
    python benches/bench_threads.py --sections pair --steps 200000 --batch-size 1
    python benches/bench_threads.py --sections busy --batches 64,256,1024

- ``pair``: the wall time of one run alone, of two runs one after the other, and of two
  runs in two threads at once (the kernel releases the GIL, and each concurrent caller
  gets its own team); on a 2-core machine the last should be close to the first.
- ``busy``: with one busy-loop process beside it, the default ``n_threads`` (the BLAS's
  thread setting) against ``n_threads=1`` on the seed (10 -> 32 -> 2) and digits
  (64 -> 64 -> 10) nets; interleaved repeats, medians. Target: default <= 1.2x one thread.
"""
import argparse
import os
import subprocess
import sys
import threading
import time

import numpy as np

import fastbatch as fb

NETS = {"seed": (10, (32,), 2), "digits": (64, (64,), 10)}


def data(net, n=4096, seed=0):
    d, _, k = NETS[net]
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)).astype(np.float32)
    return X, np.argmax((X - 0.5) @ rng.normal(size=(d, k)), axis=1)


def trainer(net, batch_size, seed=0, n_threads=None):
    return fb.Trainer(hidden=NETS[net][1], batch_size=batch_size, epochs=10 ** 6, seed=seed, n_threads=n_threads)


def pair(args):
    X, y = data("seed")

    def run(seed):
        trainer("seed", args.batch_size, seed, n_threads=1).fit(X, y, steps=args.steps)

    def alone():
        run(0)

    def sequential():
        run(0)
        run(1)

    def threaded():
        ts = [threading.Thread(target=run, args=(s,)) for s in (0, 1)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    run(0)  # warm-up
    print(f"pair: {args.steps} steps of batch {args.batch_size} on 10 -> 32 -> 2, float32; median of "
          f"{args.repeats}; {os.cpu_count()} cores")
    base = None
    for name, fn in (("one trainer", alone), ("two, one after the other", sequential),
                     ("two, in two threads", threaded)):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        base = base or med
        print(f"  {name:<28} {med * 1e3:9.1f} ms   {med / base:5.2f}x the time of one")


def busy(args):
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        print(f"busy: one busy-loop process beside the run; {os.cpu_count()} cores; median of {args.repeats} "
              f"interleaved rounds of ~{args.seconds:.2f} s")
        print(f"  {'net':<7} {'batch':>5}  {'default us/step':>15}  {'1 thread us/step':>16}  ratio")
        for net in ("seed", "digits"):
            X, y = data(net)
            for batch in (int(b) for b in args.batches.split(",")):
                runs = {"default": trainer(net, batch), "one": trainer(net, batch, n_threads=1)}
                steps = {}
                for name, tr in runs.items():  # warm-up, and steps per round
                    t0 = time.perf_counter()
                    tr.fit(X, y, steps=20)
                    steps[name] = max(20, int(args.seconds / ((time.perf_counter() - t0) / 20)))
                k = min(steps.values())
                times = {name: [] for name in runs}
                for _ in range(args.repeats):
                    for name, tr in runs.items():
                        t0 = time.perf_counter()
                        tr.fit(X, y, steps=k)
                        times[name].append((time.perf_counter() - t0) / k * 1e6)
                d, o = (float(np.median(times[name])) for name in ("default", "one"))
                print(f"  {net:<7} {batch:>5}  {d:15.2f}  {o:16.2f}  {d / o:5.2f}x"
                      f"  {'PASS' if d / o <= 1.2 else 'MISS'} (target <= 1.20x)", flush=True)
    finally:
        hog.kill()
        hog.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="pair,busy")
    ap.add_argument("--steps", type=int, default=200_000, help="pair: steps per run")
    ap.add_argument("--batch-size", type=int, default=1, help="pair: batch size")
    ap.add_argument("--batches", default="64,256,1024", help="busy: batch sizes")
    ap.add_argument("--seconds", type=float, default=0.2, help="busy: duration of a round")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    for section in args.sections.split(","):
        {"pair": pair, "busy": busy}[section](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
