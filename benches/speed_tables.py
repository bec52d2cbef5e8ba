"""The README's Speed tables, in markdown, from the benches' JSON (so each number there has one source).

    python benches/speed_tables.py benches/results             # reads the files named below, prints markdown

Reads, where present: bench_vs_peers_1thread.json and bench_vs_peers.json (2 threads),
bench_optimizers.json, bench_calls.json, bench_busy.json, and the app's bench_app.json,
bench_app_long.json and bench_app_100m.json.
A missing file skips its table.
"""
import argparse
import json
import os
import statistics

NETS = {"seed": "seed 10-32-2", "digits": "digits 64-64-10", "wide": "wide 784-256-128-10"}
PEERS = ("numpy", "torch", "torch.compile", "jax", "numba", "sklearn")


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def us(v):
    return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def by_point(doc):
    """{(workload, batch): {contender: row}} of the float32 rows; JAX is the better of its two scans."""
    out = {}
    for r in doc["results"]:
        if r.get("dtype", "float32") != "float32":
            continue
        name = "jax" if r["contender"] == "jax-unroll4" else r["contender"]
        point = out.setdefault((r["workload"], r["batch"]), {})
        if name not in point or r["us_per_step"] < point[name]["us_per_step"]:
            point[name] = r
    return out


def best_peer(point):
    peers = [r for name, r in point.items() if name != "fastbatch"]
    return min(peers, key=lambda r: r["us_per_step"]) if peers else None


def peers_table(one, two):
    lines = ["| network | batch | fastbatch | numpy | PyTorch eager | torch.compile | JAX scan | numba | scikit-learn "
             "| fastbatch vs best peer, 1 thread | 2 threads: fastbatch | vs best peer |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    p1 = by_point(one)
    p2 = by_point(two) if two else {}
    for (w, b), point in p1.items():
        fbr = point.get("fastbatch")
        cells = [us(point[p]["us_per_step"]) if p in point else "-" for p in PEERS]
        jx = point.get("jax")
        if jx is not None and jx["contender"] == "jax-unroll4":
            cells[3] += " (unroll 4)"
        bp = best_peer(point)
        vs1 = f"{bp['us_per_step'] / fbr['us_per_step']:.2f}x ({bp['contender']})" if bp and fbr else "-"
        fb2 = p2.get((w, b), {}).get("fastbatch")
        bp2 = best_peer(p2.get((w, b), {}))
        vs2 = f"{bp2['us_per_step'] / fb2['us_per_step']:.2f}x ({bp2['contender']})" if bp2 and fb2 else "-"
        peak = f" ({fbr['pct_peak']:.0f}% of peak)" if w == "wide" else ""
        lines.append(f"| {NETS[w]} | {b} | **{us(fbr['us_per_step'])}**{peak} | " + " | ".join(cells)
                     + f" | {vs1} | {us(fb2['us_per_step']) if fb2 else '-'} | {vs2} |")
    compile_s = {}
    for r in one["results"]:
        if r.get("compile_seconds"):
            compile_s.setdefault(r["contender"], []).append(r["compile_seconds"])
    notes = [f"{name} {min(v):.1f}-{max(v):.1f} s" if len(v) > 1 else f"{name} {v[0]:.1f} s"
             for name, v in compile_s.items()]
    return lines, "compile times (1-thread run, paid before the first step, not in us/step): " + ", ".join(notes)


def optimizer_table(doc):
    lines = ["| batch | optimizer | fastbatch us/step | x fastbatch SGD | warm-up us/step (first 50k) "
             "| numpy us/step | fastbatch vs numpy | PyTorch eager us/step |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = doc["results"]
    for r in rows:
        if r["contender"] != "fastbatch":
            continue
        np_row = next((x for x in rows if x["contender"] == "numpy" and x["optimizer"] == r["optimizer"]
                       and x["batch"] == r["batch"]), None)
        th = next((x for x in rows if x["contender"] == "torch" and x["optimizer"] == r["optimizer"]
                   and x["batch"] == r["batch"]), None)
        lines.append(f"| {r['batch']} | {r['optimizer']} | **{us(r['us_per_step'])}** | {ratio(r['cost_vs_fb_sgd'])} "
                     f"| {us(r['check_us_per_step'])} | {us(np_row['us_per_step']) if np_row else '-'} "
                     f"| {ratio(r['vs_numpy_same'])} | {us(th['us_per_step']) if th else '-'} |")
    return lines


def calls_table(doc):
    lines = ["| network | batch | numpy, 1 step | `fit(steps=1)`, warm | in-kernel step | fixed cost per call "
             "| `partial_fit` (estimator) | `MLPClassifier.partial_fit` | fresh `Trainer(...).fit(steps=1)` "
             "| `init_params` alone | `init_params`, a new network | fresh over its init |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    points = {}
    for r in doc["calls"]:
        points.setdefault((r["workload"], r["batch"]), {})[r["call"]] = r
    for (w, b), c in points.items():
        def get(label, key="us_per_call"):
            return us(c[label][key]) if label in c and c[label].get(key) is not None else "-"
        lines.append(f"| {NETS[w]} | {b} | {get('numpy loop, 1 step')} | {get('fit(steps=1), warm trainer')} "
                     f"| {get('fit(steps=K): the in-kernel step', 'step_us')} "
                     f"| **{get('fit(steps=1), warm trainer', 'fixed_us')}** | {get('FastBatchClassifier.partial_fit')} "
                     f"| {get('MLPClassifier.partial_fit (peer)')} | {get('Trainer(...).fit(steps=1), fresh')} "
                     f"| {get('init_params alone')} | {get('init_params, a new network')} "
                     f"| **{get('Trainer(...).fit(steps=1), fresh', 'fixed_us')}** |")
    return lines


def hooks_table(doc):
    lines = ["| epochs | no hook | `on_progress` | `validation_split=0.2` | an `on_epoch_end` callback |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    by = {}
    for r in doc["hooks"]:
        by.setdefault(r["epochs"], {})[r["hook"]] = r
    for e, h in by.items():
        cells = [f"{h['none']['seconds']:.2f} s ({h['none']['us_per_step']:.2f} us/step)"]
        for k in ("on_progress", "validation_split=0.2", "on_epoch_end callback"):
            cells.append(f"{h[k]['seconds']:.2f} s: **{h[k]['ratio_run']:.2f}x** ({h[k]['ratio']:.2f}x per step)"
                         if k in h else "-")
        lines.append(f"| {e:,} | " + " | ".join(cells) + " |")
    cli = {r["command"]: r for r in doc.get("cli", [])}
    note = ""
    if "fastbatch train (progress bar)" in cli:
        bar, quiet = cli["fastbatch train (progress bar)"], cli["fastbatch train --quiet"]
        note = (f"`fastbatch train` on the same records, {bar['epochs']:,} epochs: {bar['seconds']:.2f} s with the "
                f"progress bar, {quiet['seconds']:.2f} s with `--quiet` ({bar['ratio']:.2f}x; whole processes, "
                "start-up included).")
        noise = [r for k, r in cli.items() if k.startswith("fastbatch train --track-noise") and "--quiet" not in k]
        if noise:
            n = noise[0]
            note += (f" With `--track-noise` at batch 4 (a noise-scale line each epoch, under the bar): "
                     f"{n['seconds']:.2f} s, {n['ratio']:.2f}x its `--quiet` run.")
    return lines, note


def busy_table(doc):
    lines = ["| condition | network | batch | numpy | fastbatch default | fastbatch `n_threads=1` "
             "| default / `n_threads=1` |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    by = {}
    for r in doc["results"]:
        by.setdefault((r["condition"], r["workload"], r["batch"]), {})[r["contender"]] = r
    for (cond, w, b), c in by.items():
        d, one, npr = c["fastbatch default"], c["fastbatch n_threads=1"], c["numpy"]
        lines.append(f"| {cond} | {NETS[w]} | {b} | {us(npr['us_per_step'])} | {us(d['us_per_step'])} "
                     f"| {us(one['us_per_step'])} | **{d['vs_one_thread']:.2f}x** |")
    return lines


def app_lines(doc):
    h = statistics.median(doc["headless_steps_per_s"])
    w = statistics.median(doc["window_steps_per_s"])
    return [f"The app (offscreen), seed net at batch 1, {doc['records']:,} records x {doc['epochs']:,} epochs "
            f"({doc['steps']:,} steps): {w:,.0f} steps/s in the window against {h:,.0f} headless "
            f"(**{100 * doc['window_share']:.0f}%**); longest event-loop gap {doc['longest_gap_ms']:.0f} ms; "
            f"peak memory {doc['peak_rss_mb']:,.0f} MB."]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=os.path.join("benches", "results"))
    args = ap.parse_args(argv)
    one = load(args.folder, "bench_vs_peers_1thread.json")
    two = load(args.folder, "bench_vs_peers.json")
    out = []
    if one:
        lines, note = peers_table(one, two)
        out += ["us per step, SGD:", ""] + lines + ["", note, ""]
    for name, fn in (("bench_optimizers.json", optimizer_table), ("bench_calls.json", calls_table),
                     ("bench_busy.json", busy_table), ("bench_app.json", app_lines),
                     ("bench_app_long.json", app_lines), ("bench_app_100m.json", app_lines)):
        doc = load(args.folder, name)
        if doc:
            out += fn(doc) + [""]
            if name == "bench_calls.json":
                lines, note = hooks_table(doc)
                out += lines + ["", note, ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
