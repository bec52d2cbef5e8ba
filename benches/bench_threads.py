"""Two trainers in two threads against one: the kernel releases the GIL, so they run in parallel.

    python benches/bench_threads.py [--steps 200000] [--batch-size 1]

Prints the wall time of one run alone, of two runs one after the other, and of two
runs in two threads at once; on a 2-core machine the last should be close to the first.
BLAS is pinned to one thread so that the two threads are the only parallel layer.
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import fastbatch as fb  # noqa: E402


def run(X, y, steps, batch_size, seed):
    tr = fb.Trainer(hidden=(32,), batch_size=batch_size, epochs=10**6, seed=seed)
    tr.fit(X, y, steps=steps)
    return tr.history.loss[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.random((4096, 10)).astype(np.float32)
    y = rng.integers(0, 2, 4096)
    run(X, y, 1000, args.batch_size, 0)  # warm-up

    def alone():
        run(X, y, args.steps, args.batch_size, 0)

    def sequential():
        run(X, y, args.steps, args.batch_size, 0)
        run(X, y, args.steps, args.batch_size, 1)

    def threaded():
        ts = [threading.Thread(target=run, args=(X, y, args.steps, args.batch_size, s)) for s in (0, 1)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    print(f"{args.steps} steps of batch {args.batch_size} on 10 -> 32 -> 2, float32; "
          f"median of {args.repeats}; {os.cpu_count()} cores")
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
        print(f"{name:<28} {med * 1e3:9.1f} ms   {med / base:5.2f}x the time of one")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
