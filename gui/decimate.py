"""A growing series drawn from about one bucket per pixel column: an incremental min/max pyramid.

No Qt here. :class:`Pyramid` keeps, for every level k, the min and max of each complete block
of ``base·2^k`` values of a series that only grows (a run's per-step loss, its epoch means).
New values are absorbed in O(new values); any range [a, z) of the series is then described by
about ``cols`` buckets, each with the exact min and max of its values, in O(cols + levels), or
in O(z - a) when the range is short enough to read the values themselves (at most
``base·cols`` of them). That is what peak downsampling draws: each pixel column's extremes,
so a single spike among 100M steps stays visible.

Memory is bounded: past ``max_blocks`` blocks at the finest level, that level is dropped and
``base`` doubles. The series itself stays where it is (the library's History); it is passed
to every call, never copied.

The pyramid also keeps an exponential moving average (TensorBoard's smoothing) sampled at
each finest block's end. A new weight recomputes it over the whole series, which is O(steps):
that work is done ``budget`` values at a time (one slice a frame), so the event loop never
waits for it.
"""
import math

import numpy as np
from scipy.signal import lfilter

BASE = 256               # values per finest block
MAX_BLOCKS = 1 << 19     # finest blocks kept at most (~24 MB in all, for any length)
EMA_BUDGET = 1 << 21     # values of smoothing recomputed per call while catching up (~10 ms)
EMA_CHUNK = 1 << 20      # values per lfilter call (its float64 temporaries stay ~16 MB)


def ema_filter(values, weight, prev):
    """The EMA accumulator (not debiased) over ``values``, starting from accumulator ``prev``."""
    acc, _ = lfilter([1.0 - weight], [1.0, -weight], np.asarray(values, dtype=np.float64), zi=[weight * prev])
    return acc


def debias(acc, t, weight):
    """TensorBoard's debiased EMA: the accumulator after ``t`` values (1-based count) over ``1 - w^t``."""
    return acc / (1.0 - weight ** np.asarray(t, dtype=np.float64))


class Pyramid:
    """Min and max per block of ``base·2^k`` values at every level k of a growing series (see the module)."""

    def __init__(self, base=BASE, max_blocks=MAX_BLOCKS):
        if base < 1 or max_blocks < 2:
            raise ValueError("base must be >= 1 and max_blocks >= 2")
        self.base = int(base)
        self.max_blocks = int(max_blocks)
        self.mins, self.maxs, self.counts = [], [], []   # per level: arrays (with spare room) and blocks in use
        self.weight = 0.0
        self.ema = np.empty(0)     # the EMA accumulator at the end of each finest block
        self.ema_done = 0          # finest blocks whose accumulator is known for ``weight``

    # ------------------------------------------------------------------ growing

    @property
    def steps(self):
        """Values covered by complete finest blocks."""
        return self.counts[0] * self.base if self.counts else 0

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self.mins + self.maxs) + self.ema.nbytes

    @property
    def ema_pending(self):
        """True while the smoothing has not caught up with the blocks (a new weight, a long series)."""
        return self.weight > 0 and self.ema_done < (self.counts[0] if self.counts else 0)

    def absorb(self, values, budget=EMA_BUDGET):
        """Take the complete blocks of ``values`` (the whole series so far) past those held: O(new values),
        plus at most ``budget`` values of smoothing still to catch up."""
        b = self.base
        end = len(values) // b * b
        if end > self.steps:
            new = np.asarray(values[self.steps:end]).reshape(-1, b)
            self._append(0, new.min(axis=1), new.max(axis=1))
            self._cascade()
            if self.counts[0] > self.max_blocks:
                self._coarsen()
                return self.absorb(values, budget)
        self.catch_up(values, budget)

    def _append(self, level, mins, maxs):
        if level == len(self.counts):
            self.mins.append(np.empty(max(16, len(mins))))
            self.maxs.append(np.empty(max(16, len(mins))))
            self.counts.append(0)
        n, k = self.counts[level], len(mins)
        if n + k > len(self.mins[level]):
            cap = max(n + k, 2 * len(self.mins[level]))
            for arrays in (self.mins, self.maxs):
                grown = np.empty(cap)
                grown[:n] = arrays[level][:n]
                arrays[level] = grown
        self.mins[level][n:n + k] = mins
        self.maxs[level][n:n + k] = maxs
        self.counts[level] = n + k

    def _cascade(self):
        """Each level's new complete pairs make the next level's blocks."""
        level = 0
        while self.counts[level] >= 2:
            have = self.counts[level + 1] if level + 1 < len(self.counts) else 0
            want = self.counts[level] // 2
            if want > have:
                lo, hi = 2 * have, 2 * want
                mn, mx = self.mins[level], self.maxs[level]
                self._append(level + 1, np.minimum(mn[lo:hi:2], mn[lo + 1:hi:2]),
                             np.maximum(mx[lo:hi:2], mx[lo + 1:hi:2]))
            level += 1

    def _coarsen(self):
        """Drop the finest level: the next one (blocks twice as long) becomes it."""
        for arrays in (self.mins, self.maxs, self.counts):
            del arrays[0]
        self.base *= 2
        n = self.counts[0]
        done = min(self.ema_done // 2, n)
        self.ema = self.ema[1:2 * done:2].copy()
        self.ema_done = done

    # ------------------------------------------------------------------ smoothing

    def set_weight(self, weight):
        """A new EMA weight: the smoothing is recomputed by later calls to :meth:`catch_up`."""
        if weight != self.weight:
            self.weight = float(weight)
            self.ema_done = 0

    def catch_up(self, values, budget=EMA_BUDGET):
        """Extend the smoothing over at most ``budget`` more values (at least one block); True when done."""
        w, b = self.weight, self.base
        n = self.counts[0] if self.counts else 0
        if w <= 0:
            return True
        if len(self.ema) < n:
            grown = np.empty(max(n, 2 * len(self.ema), 16))
            grown[:self.ema_done] = self.ema[:self.ema_done]
            self.ema = grown
        budget = max(budget, b)
        while self.ema_done < n and budget > 0:
            lo = self.ema_done
            hi = min(n, lo + max(1, min(budget, EMA_CHUNK) // b))
            prev = self.ema[lo - 1] if lo else 0.0
            acc = ema_filter(values[lo * b:hi * b], w, prev)
            self.ema[lo:hi] = acc[b - 1::b]
            self.ema_done = hi
            budget -= (hi - lo) * b
        return self.ema_done >= n

    def smoothed(self, values, a, z):
        """The debiased EMA of every value in [a, z), or None while the smoothing has not reached a.

        Starts from the accumulator at the last finest block end at or before ``a``: O(z - a + base).
        """
        w, b = self.weight, self.base
        if w <= 0 or z <= a:
            return None
        k = min(a // b, self.ema_done)
        if a - k * b > max(b, z - a):      # the smoothing has not reached this range yet
            return None
        acc = ema_filter(values[k * b:z], w, self.ema[k - 1] if k else 0.0)[a - k * b:]
        return debias(acc, np.arange(a + 1, z + 1), w)

    def smoothed_at(self, values, ends):
        """(known, ema): the debiased EMA after each count in ``ends`` (sorted, > 0), where it is known.

        Counts at finest block ends are read from the pyramid; any other is computed from the block
        end before it (at most ``base`` values; only a range's last bucket needs that)."""
        w, b = self.weight, self.base
        ends = np.asarray(ends, dtype=np.int64)
        out = np.zeros(len(ends))
        known = np.zeros(len(ends), dtype=bool)
        if w <= 0 or not len(ends):
            return known, out
        at_block = (ends % b == 0) & (ends <= self.ema_done * b)
        out[at_block] = self.ema[ends[at_block] // b - 1]
        known |= at_block
        for i in np.flatnonzero(~at_block):
            e = int(ends[i])
            k = e // b
            if k <= self.ema_done and e <= len(values):
                out[i] = ema_filter(values[k * b:e], w, self.ema[k - 1] if k else 0.0)[-1]
                known[i] = True
        return known, debias(out, np.maximum(ends, 1), w)

    # ------------------------------------------------------------------ reading a range

    def buckets(self, values, a, z, cols):
        """About ``cols`` buckets covering [a, z) of ``values``: (starts, ends, mins, maxs).

        Each bucket's min and max are exactly those of ``values[start:end]``. Buckets tile the range
        from ``a`` (or the start of the block holding it) to ``z`` (or the end of the block holding
        it). Fine ranges (at most ``base·cols`` values) are cut into ``cols`` equal buckets from the
        values themselves; longer ones come from the finest level with at most ``cols`` blocks in
        range, and its end from finer levels and the last values: at most ``cols + levels + 3``
        buckets, in O(that).
        """
        z = min(int(z), len(values))
        a = max(0, min(int(a), z))
        cols = max(1, int(cols))
        if z <= a:
            e = np.empty(0, dtype=np.int64)
            return e, e, np.empty(0), np.empty(0)
        if z - a <= self.base * cols or not self.counts:
            n = min(cols, z - a)
            edges = np.unique(np.linspace(a, z, n + 1).round().astype(np.int64))
            seg = np.asarray(values[a:z])
            mins = np.minimum.reduceat(seg, edges[:-1] - a).astype(np.float64)
            maxs = np.maximum.reduceat(seg, edges[:-1] - a).astype(np.float64)
            return edges[:-1], edges[1:], mins, maxs
        level = max(0, math.ceil(math.log2((z - a) / (self.base * cols))))
        level = min(level, len(self.counts) - 1)
        starts, ends, mins, maxs = [], [], [], []
        covered = a // (self.base << level) * (self.base << level)
        for j in range(level, -1, -1):
            size = self.base << j
            k0 = covered // size
            k1 = min(-(-z // size), self.counts[j])
            if k1 > k0:
                idx = np.arange(k0, k1, dtype=np.int64)
                starts.append(idx * size)
                ends.append((idx + 1) * size)
                mins.append(self.mins[j][k0:k1])
                maxs.append(self.maxs[j][k0:k1])
                covered = k1 * size
            if covered >= z:
                break
        if covered < z:        # the values past the last complete finest block
            seg = np.asarray(values[covered:z])
            starts.append(np.array([covered]))
            ends.append(np.array([z]))
            mins.append(np.array([seg.min()], dtype=np.float64))
            maxs.append(np.array([seg.max()], dtype=np.float64))
        return (np.concatenate(starts), np.concatenate(ends), np.concatenate(mins).astype(np.float64),
                np.concatenate(maxs).astype(np.float64))
