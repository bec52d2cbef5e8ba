"""The CLI's pictures, drawn with matplotlib (an optional extra: ``pip install 'fastbatch[plot]'``).

A run's loss: per-step loss (smoothed when there are many steps, the raw curve faint behind
it), the mean loss of each epoch, the validation loss, and epoch boundaries when there are
few enough to read. A batch-size comparison: each run's loss against records seen and
against seconds. No pyplot: the figure is drawn off-screen, and nothing global changes.
"""
import numpy as np

MAX_EPOCH_LINES = 30       # more epoch boundaries than this would be a grey wash
SMOOTH_ABOVE = 200         # steps: beyond this the raw curve is drawn faint, under a moving average
MAX_POINTS = 4000          # a curve is peak-downsampled to about this many points


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("matplotlib is not installed: pip install 'fastbatch[plot]' (or matplotlib) "
                              "for the loss plot") from None
    return Figure


def smoothed(loss, span):
    """TensorBoard's smoothing: an exponential moving average with weight 1 - 1/span, debiased at the start."""
    from scipy.signal import lfilter
    loss = np.asarray(loss, dtype=np.float64)
    keep = 1.0 - 1.0 / max(span, 1.0)
    ema = lfilter([1.0 - keep], [1.0, -keep], loss)
    return ema / (1.0 - keep ** np.arange(1, len(loss) + 1))


def _envelope(y, n_bins):
    """(x centres, min, max) of ``y`` over ``n_bins`` equal runs of steps: every spike stays visible."""
    k = -(-len(y) // n_bins)
    pad = (-len(y)) % k
    blocks = np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, k)
    x = np.arange(blocks.shape[0]) * k + (k - 1) / 2
    return x, np.nanmin(blocks, axis=1), np.nanmax(blocks, axis=1)


def loss_figure(history, title=""):
    """A matplotlib Figure of a run's :class:`~fastbatch.History`."""
    Figure = _matplotlib()
    fig = Figure(figsize=(9, 4.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    loss = np.asarray(history.loss, dtype=np.float64)
    n = len(loss)
    steps = np.arange(n)
    if n > SMOOTH_ABOVE:
        if n > MAX_POINTS:
            x, lo, hi = _envelope(loss, MAX_POINTS)
            ax.fill_between(x, lo, hi, color="C0", alpha=0.2, linewidth=0, label="loss per step (range)")
        else:
            ax.plot(steps, loss, color="C0", alpha=0.25, linewidth=0.6, label="loss per step")
        smooth = smoothed(loss, max(10.0, n / 100))
        every = max(1, n // MAX_POINTS)
        ax.plot(steps[::every], smooth[::every], color="C0", linewidth=1.5, label="loss per step (smoothed)")
    else:
        if n:
            ax.plot(steps, loss, color="C0", linewidth=1.2, marker="." if n <= 50 else None, label="loss per step")
        smooth = loss
    starts = np.asarray(history.epoch_starts, dtype=np.int64)
    epoch_loss = np.asarray(history.epoch_loss, dtype=np.float64)
    val = np.asarray(getattr(history, "val_loss", ()), dtype=np.float64)
    if len(epoch_loss):
        ends = np.append(starts[1:], n)[:len(epoch_loss)] - 1  # each epoch's mean, drawn at its last step
        ax.plot(ends, epoch_loss, color="C1", marker="o", markersize=3, linewidth=1.5, label="epoch mean loss")
        if len(val):
            ax.plot(ends[:len(val)], val[:len(ends)], color="C2", marker="s", markersize=3, linewidth=1.5,
                    label="validation loss")
    if 1 < len(starts) <= MAX_EPOCH_LINES:
        for s in starts[1:]:
            ax.axvline(s - 0.5, color="0.85", linewidth=0.8, zorder=0)
    # the scale and the view follow the trend (smoothed loss, means); raw spikes may leave the view
    trend = np.concatenate([smooth, epoch_loss, val])
    trend = trend[np.isfinite(trend)]
    if trend.size:
        lo, hi = float(trend.min()), float(trend.max())
        if lo > 0 and hi / lo > 30:
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.5, hi * 1.5)
        elif n > SMOOTH_ABOVE:
            pad = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
            ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("step" + (f" ({len(starts)} epochs; grey lines: epoch starts)"
                            if 1 < len(starts) <= MAX_EPOCH_LINES else ""))
    ax.set_ylabel(f"loss ({history.loss_name})" if getattr(history, "loss_name", None) else "loss")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if n:
        ax.set_xlim(-0.5, max(n - 0.5, 0.5))
        ax.legend(loc="upper right", fontsize=8)
    return fig


def write_loss_plot(path, history, title=""):
    """Write the loss picture of ``history`` to ``path`` (PNG, or any format matplotlib knows by the suffix)."""
    loss_figure(history, title).savefig(path)


# ---------------------------------------------------------------------- the batch-size comparison

def comparison_figure(histories, rows, title="", loss_name=None):
    """Loss against records seen (left) and against seconds (right), one colour per batch size.

    ``histories`` and ``rows`` are :func:`fastbatch.compare_batch_sizes`'s results. Each run's
    epoch means are drawn as a line with markers at the epoch ends, over its per-step loss
    smoothed and faint. Seconds are each run's steps at its mean speed (``steps_per_s``).
    """
    Figure = _matplotlib()
    fig = Figure(figsize=(11, 4.8), dpi=100, layout="constrained")
    by_records, by_seconds = fig.subplots(1, 2, sharey=True)
    speed = {r["batch_size"]: r["steps_per_s"] for r in rows}
    trend, first_epoch_ends = [], []
    for i, (b, h) in enumerate(sorted(histories.items())):
        loss = np.asarray(h.loss, dtype=np.float64)
        n = len(loss)
        if not n:
            continue
        colour = f"C{i % 10}"
        records = np.asarray(h.records_seen, dtype=np.float64)
        seconds = (np.arange(n) + 1.0) / speed[b]
        every = max(1, n // MAX_POINTS)
        smooth = smoothed(loss, max(10.0, n / 30)) if n > 1 else loss  # batch 1's steps are mostly noise
        ends = np.append(np.asarray(h.epoch_starts[1:]), n)[:len(h.epoch_loss)] - 1
        means = np.asarray(h.epoch_loss, dtype=np.float64)
        label = f"batch {b:,}"
        for ax, x in ((by_records, records), (by_seconds, seconds)):
            ax.plot(x[::every], smooth[::every], color=colour, alpha=0.3, linewidth=0.8)
            ax.plot(x[ends], means, color=colour, marker="o", markersize=3, linewidth=1.5, label=label)
        trend += [smooth, means]
        first_epoch_ends.append(seconds[ends[0]] if len(ends) else seconds[-1])
    trend = np.concatenate(trend) if trend else np.empty(0)
    trend = trend[np.isfinite(trend)]
    if trend.size and trend.min() > 0 and trend.max() / trend.min() > 30:
        by_records.set_yscale("log")
    by_seconds.set_xscale("log")
    if first_epoch_ends:  # from a little before the first epoch mean: the first steps' seconds are noise
        by_seconds.set_xlim(left=min(first_epoch_ends) / 4)
    by_records.set_xlabel("records seen")
    by_seconds.set_xlabel("seconds (log scale; each run's steps at its mean speed)")
    by_records.set_ylabel(f"loss ({loss_name})" if loss_name else "loss")
    for ax in (by_records, by_seconds):
        ax.grid(True, alpha=0.3)
    by_seconds.legend(loc="lower left", fontsize=8, title="epoch means (dots)\nper step, smoothed (faint)",
                      title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def write_comparison_plot(path, histories, rows, title="", loss_name=None):
    """Write :func:`comparison_figure` to ``path`` (PNG, or any format matplotlib knows by the suffix)."""
    comparison_figure(histories, rows, title, loss_name).savefig(path)
