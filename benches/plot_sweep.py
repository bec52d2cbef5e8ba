"""Plot records/s against batch size (log-log), one line per contender, one panel per workload.

    python benches/plot_sweep.py benches/results/bench_vs_peers.json -o benches/results/batch_sweep.png
    python benches/plot_sweep.py bench-results/bench_vs_numpy.json bench-results/bench_vs_peers.json

Reads the JSON the benches write. With several files, each (workload, contender)
comes from the first file that has it. The dashed grey line is the gemm peak in
records/s (peak GFLOP/s / FLOPs per record): the roof no contender can pass.
Uses matplotlib when it is installed, else pyqtgraph's image exporter (offscreen Qt).
"""
import argparse
import json
import os
import sys

COLORS = {"numpy": (31, 119, 180), "fastbatch": (214, 39, 40), "torch": (255, 127, 14),
          "sklearn": (44, 160, 44), "torch.compile": (148, 103, 189), "jax": (140, 86, 75),
          "jax-unroll4": (227, 119, 194), "numba": (23, 190, 207)}
FALLBACK = [(148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def load(paths, dtype):
    """{workload: {contender: [(batch, records/s), ...]}}, the roof per workload, and a subtitle."""
    series, roof, sub = {}, {}, ""
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        n = doc.get("threads", "?")
        sub = sub or f"{doc.get('cpu', '?')}, {n} thread{'' if n == 1 else 's'}, {dtype}"
        peak = doc.get("gemm_peak_gflops", {}).get(dtype)
        taken = {(w, c) for w in series for c in series[w]}
        for r in doc["results"]:
            if r["dtype"] != dtype or (r["workload"], r["contender"]) in taken:
                continue
            series.setdefault(r["workload"], {}).setdefault(r["contender"], []).append(
                (r["batch"], r["records_per_s"]))
            if peak and r["workload"] not in roof:
                flops = 6 * sum(a * b for a, b in zip(r["sizes"][:-1], r["sizes"][1:]))
                roof[r["workload"]] = peak * 1e9 / flops
    for w in series:
        for c in series[w]:
            series[w][c].sort()
    return series, roof, sub


def color(name, i):
    return COLORS.get(name, FALLBACK[i % len(FALLBACK)])


def plot_matplotlib(series, roof, sub, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4.2), squeeze=False)
    for ax, (w, by) in zip(axes[0], series.items()):
        for i, (c, pts) in enumerate(by.items()):
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "o-", label=c, color=[v / 255 for v in color(c, i)])
        if w in roof:
            ax.axhline(roof[w], ls="--", color="grey", label="gemm peak")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(w)
        ax.set_xlabel("batch size (records)")
        ax.set_ylabel("records / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"training throughput vs batch size ({sub})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_pyqtgraph(series, roof, sub, out):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    import pyqtgraph.exporters  # noqa: F401  (registers ImageExporter)
    app = pg.mkQApp()  # noqa: F841  (Qt needs the application to exist)
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    win = pg.GraphicsLayoutWidget()
    win.resize(520 * len(series), 470)
    win.addLabel(f"training throughput vs batch size ({sub})", colspan=len(series), size="11pt")
    win.nextRow()
    plots = []
    for w, by in series.items():
        p = win.addPlot(title=w)
        plots.append(p)
        p.setLogMode(x=True, y=True)
        p.showGrid(x=True, y=True, alpha=0.3)
        p.setLabel("bottom", "batch size (records)")
        p.setLabel("left", "records / s")
        legend = p.addLegend(offset=(-10, -10))  # bottom right: the lines rise to the right
        legend.setBrush(pg.mkBrush(255, 255, 255, 200))
        for i, (c, pts) in enumerate(by.items()):
            xs, ys = zip(*pts)
            col = color(c, i)
            p.plot(xs, ys, pen=pg.mkPen(col, width=2), symbol="o", symbolSize=6, symbolBrush=col, name=c)
        if w in roof:
            xs = [min(x for pts in by.values() for x, _ in pts), max(x for pts in by.values() for x, _ in pts)]
            p.plot(xs, [roof[w]] * 2, pen=pg.mkPen((128, 128, 128), width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine),
                   name="gemm peak")
    win.show()  # offscreen: lays the panels out at the window's size
    for _ in range(3):
        app.processEvents()
    for item in plots:
        item.getViewBox().autoRange(padding=0.08)
    app.processEvents()
    exporter = pg.exporters.ImageExporter(win.scene())
    exporter.parameters()["width"] = 520 * len(series)
    exporter.export(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="results written by bench_vs_numpy.py / bench_vs_peers.py")
    parser.add_argument("-o", "--out", default=os.path.join("bench-results", "batch_sweep.png"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    series, roof, sub = load(args.json, args.dtype)
    if not series:
        raise SystemExit(f"no {args.dtype} results in {', '.join(args.json)}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    try:
        import matplotlib  # noqa: F401
        plot_matplotlib(series, roof, sub, args.out)
    except ImportError:
        plot_pyqtgraph(series, roof, sub, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
