"""A loss plot as a PNG, with numpy and zlib only (no matplotlib, no Qt).

The plot: the loss of every step as a line (peak-downsampled to one min..max span per
pixel column, so a million steps draw as fast as a hundred), grey vertical lines at the
epoch boundaries, a light grid, and a frame. No text: the CSV next to it holds the numbers.
"""
import struct
import zlib

import numpy as np

WHITE, FRAME, GRID, EPOCH, LINE = (255, 255, 255), (60, 60, 60), (236, 236, 236), (170, 170, 170), (31, 119, 180)


def encode_png(rgb):
    """PNG bytes of an (h, w, 3) uint8 image: 8-bit RGB, no filtering, zlib level 6."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"encode_png needs an (h, w, 3) image, got shape {rgb.shape}")
    h, w, _ = rgb.shape
    raw = np.zeros((h, 1 + 3 * w), dtype=np.uint8)  # each row starts with filter type 0
    raw[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no filter, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))


def loss_image(loss, epoch_starts=(), width=800, height=400, margin=20):
    """An (height, width, 3) uint8 image of the loss curve with epoch boundaries."""
    loss = np.asarray(loss, dtype=np.float64)
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[...] = WHITE
    x0, x1, y0, y1 = margin, width - margin - 1, margin, height - margin - 1  # plot area, inclusive
    for i in range(1, 5):  # a light grid in quarters
        img[y0 + (y1 - y0) * i // 5, x0:x1 + 1] = GRID
        img[y0:y1 + 1, x0 + (x1 - x0) * i // 5] = GRID
    finite = loss[np.isfinite(loss)]
    n = len(loss)
    if n and finite.size:
        cols = x1 - x0 + 1
        for s in np.asarray(epoch_starts, dtype=np.int64):
            if 0 < s < n:
                img[y0:y1 + 1, x0 + int(s * (cols - 1) / max(n - 1, 1))] = EPOCH
        lo, hi = float(finite.min()), float(finite.max())
        if hi - lo < 1e-12 * max(1.0, abs(hi)):
            lo, hi = lo - 0.5, hi + 0.5
        vals = np.where(np.isfinite(loss), loss, hi)
        pos = np.arange(n, dtype=np.float64)
        if n < 4 * cols:  # few steps: sample the straight segments between them, 4 points per column
            pos = np.linspace(0.0, n - 1, 4 * cols)
            vals = np.interp(pos, np.arange(n), vals)
        rows = np.rint(y1 - (vals - lo) / (hi - lo) * (y1 - y0)).astype(np.int64)
        # peak downsampling: every pixel column spans the min..max row of its points,
        # joined to the previous column's last point so the line stays connected
        xs = x0 + np.rint(pos * (cols - 1) / max(n - 1, 1)).astype(np.int64)
        prev = rows[0]
        for x, idx in _groups(xs):
            r = rows[idx]
            top, bottom = min(r.min(), prev), max(r.max(), prev)
            img[top:bottom + 1, x] = LINE
            img[top:bottom + 1, min(x + 1, x1)] = LINE  # two pixels wide
            prev = r[-1]
    img[y0, x0:x1 + 1] = img[y1, x0:x1 + 1] = FRAME
    img[y0:y1 + 1, x0] = img[y0:y1 + 1, x1] = FRAME
    return img


def _groups(xs):
    """(x, slice of the steps drawn at column x) for each column that has steps, in order."""
    bounds = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(xs)]])
    for a, b in zip(starts, ends):
        yield int(xs[a]), slice(int(a), int(b))


def write_loss_png(path, loss, epoch_starts=(), width=800, height=400):
    """Write the loss plot of ``loss`` (one value per step) with ``epoch_starts`` marked to ``path``."""
    if width < 50 or height < 50:
        raise ValueError(f"the plot needs width and height >= 50 pixels, got {width}x{height}")
    with open(path, "wb") as f:
        f.write(encode_png(loss_image(loss, epoch_starts, width, height)))
