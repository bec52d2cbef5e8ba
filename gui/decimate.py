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
import time

import numpy as np

BASE = 256               # values per finest block
MAX_BLOCKS = 1 << 19     # finest blocks kept at most (~24 MB in all, for any length)
EMA_SECONDS = 0.008      # time a call spends catching the smoothing up at most (about; a frame's share)
EMA_BUDGET = 1 << 19     # values of smoothing recomputed by the first such call (then sized by its time)
EMA_CHUNK = 1 << 20      # values per lfilter call (its float64 temporaries stay ~16 MB)


def ema_filter(values, weight, prev):
    """The EMA accumulator (not debiased) over ``values``, starting from accumulator ``prev``."""
    from scipy.signal import lfilter   # on first use: scipy.signal costs ~50 MB, and most runs are not smoothed
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
        self.ema_budget = EMA_BUDGET   # values a catch-up call takes: about EMA_SECONDS of filtering

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

    def absorb(self, values, budget=None):
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

    def catch_up(self, values, budget=None):
        """Extend the smoothing over at most ``budget`` more values (default: about EMA_SECONDS of work;
        at least one block); True when it has caught up."""
        w, b = self.weight, self.base
        n = self.counts[0] if self.counts else 0
        if w <= 0 or self.ema_done >= n:
            return True
        if budget is None:
            t0 = time.perf_counter()
            todo = min(self.ema_budget, (n - self.ema_done) * b)
            done = self.catch_up(values, todo)
            spent = time.perf_counter() - t0
            if todo == self.ema_budget and spent > 0:   # a full slice: size the next one by its time
                self.ema_budget = int(min(max(todo * EMA_SECONDS / spent, 1 << 16), 1 << 24))
            return done
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
        rest = np.flatnonzero(~at_block & (ends // b <= self.ema_done) & (ends <= len(values)))
        if len(rest):   # one filter from the block end before the first of them (their span is at most
            # about base per column: the narrow columns a log axis gives at its left, a range's last one)
            k = int(ends[rest[0]]) // b
            if int(ends[rest[-1]]) - k * b <= b * (len(rest) + 1):
                acc = ema_filter(values[k * b:int(ends[rest[-1]])], w, self.ema[k - 1] if k else 0.0)
                out[rest] = acc[ends[rest] - k * b - 1]
            else:
                for i in rest:
                    e = int(ends[i])
                    k = e // b
                    out[i] = ema_filter(values[k * b:e], w, self.ema[k - 1] if k else 0.0)[-1]
            known[rest] = True
        return known, debias(out, np.maximum(ends, 1), w)

    # ------------------------------------------------------------------ reading a range

    def buckets(self, values, a, z, cols):
        """``cols`` equal buckets covering [a, z) of ``values``: (starts, ends, mins, maxs) (see :meth:`columns`)."""
        z = min(int(z), len(values))
        a = max(0, min(int(a), z))
        n = max(1, min(int(cols), z - a))
        return self.columns(values, np.linspace(a, z, n + 1))

    def columns(self, values, edges):
        """A bucket per column between increasing ``edges`` (value positions, e.g. pixel columns
        mapped to steps; a log axis gives widening ones): (starts, ends, mins, maxs).

        Each bucket's min and max are exactly those of ``values[start:end]``, and the buckets tile
        [edges[0], edges[-1]) (clipped to the values). A column narrower than ``2·base`` is read from
        the values; a wider one from the coarsest level with at least two blocks in it, its edges
        moved to that level's block boundaries (by less than half its width). Columns past the
        complete blocks (a run's last few) are pieced together from coarser to finer blocks and the
        last values. O(columns · levels) in all, plus the values read.
        """
        n_values = len(values)
        e = np.unique(np.clip(np.asarray(edges, dtype=np.float64).round(), 0, n_values).astype(np.int64))
        if len(e) < 2:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0), np.empty(0)
        width = np.diff(e)
        # each column's level (-1: the values themselves), never finer than a column to its left,
        # so that every edge can sit on the block boundaries of both its columns
        level = np.floor(np.log2(np.maximum(width, 1) / self.base)).astype(np.int64) - 1
        level = np.maximum.accumulate(np.minimum(level, len(self.counts) - 1))
        size = np.where(level >= 0, self.base << np.maximum(level, 0), 1)
        # an edge sits on a block boundary of the coarser of its two columns (the right one); the
        # last edge stays where it is
        e[:-1] = e[:-1] // size * size
        e = np.maximum.accumulate(e)   # (a coarser column's rounding may pass its left neighbour's edge)
        keep = np.append(np.diff(e) > 0, True)
        e, level, size = e[keep], level[keep[:-1]], size[keep[:-1]]
        starts, ends = e[:-1], e[1:]
        mins, maxs = np.empty(len(starts)), np.empty(len(starts))
        for lv in np.unique(level):
            idx = np.flatnonzero(level == lv)
            sz = int(size[idx[0]])
            complete = n_values if lv < 0 else self.counts[lv] * sz
            # whole blocks of this level (anything else, rare, is pieced together exactly below)
            whole = (ends[idx] <= complete) & (ends[idx] % sz == 0) & (starts[idx] % sz == 0)
            inside = idx[whole]
            if len(inside):
                lo, hi = int(starts[inside[0]]), int(ends[inside[-1]])
                rel = (starts[inside] - lo) // sz
                if lv < 0:
                    src_min = src_max = np.asarray(values[lo:hi])
                else:
                    src_min = self.mins[lv][lo // sz:hi // sz]
                    src_max = self.maxs[lv][lo // sz:hi // sz]
                mins[inside] = np.minimum.reduceat(src_min, rel)
                maxs[inside] = np.maximum.reduceat(src_max, rel)
            for i in idx[~whole]:    # e.g. the last column: past this level's complete blocks
                mins[i], maxs[i] = self._range_minmax(values, int(starts[i]), int(ends[i]))
        return starts, ends, mins, maxs

    def _range_minmax(self, values, s, e):
        """Min and max of values[s:e] from the largest aligned complete blocks, then the values: O(levels + base)."""
        lo, hi = math.inf, -math.inf
        pos = s
        while pos < e:
            for j in range(len(self.counts) - 1, -1, -1):
                sz = self.base << j
                k = pos // sz
                if pos % sz == 0 and pos + sz <= e and k < self.counts[j]:
                    lo, hi = min(lo, self.mins[j][k]), max(hi, self.maxs[j][k])
                    pos += sz
                    break
            else:
                nxt = min(e, (pos // self.base + 1) * self.base)
                seg = np.asarray(values[pos:nxt])
                lo, hi = min(lo, float(seg.min())), max(hi, float(seg.max()))
                pos = nxt
        return lo, hi
