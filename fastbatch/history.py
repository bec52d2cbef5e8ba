"""History: what a run has done so far, step by step and epoch by epoch."""
import functools

import numpy as np


def weighted_sum(values, weights):
    """sum(values * weights), in float64: an epoch's sums of its steps (its loss, its hits) are these. numpy's own
    loop (einsum), not a BLAS dot: a dot this long wakes OpenBLAS's thread pool, whose threads then spin for a while;
    called every chunk, they kept the other core busy (training and the app's GUI thread lost it on two cores)."""
    return float(np.einsum("i,i->", values, weights, dtype=np.float64))


class History:
    """The record of a training run, as numpy arrays over all steps so far.

    Attributes
    ----------
    loss : ndarray, one entry per step, in the run's dtype
        The mean loss of each step's batch (before its update).
    learning_rate : ndarray of float64, one entry per step
        The rate each step used.
    epoch, batch, batch_size : ndarray of int64, one entry per step
        Which epoch (0-based) and batch within it each step trained on, and its size.
    epoch_starts : ndarray of int64
        The step index at which each started epoch begins (the epoch boundaries).
    epoch_loss : ndarray of float64
        Per started epoch, the mean of its step losses weighted by batch size (with sample weights, a
        finished epoch's weighs each step by its batch's weights: the weighted mean over its records;
        the epoch in progress is weighted by batch size until it closes).
    val_loss, val_accuracy : ndarray of float64
        Per finished epoch, on the validation data: empty when no epoch was validated, NaN for an
        epoch that ended without validation (validation_data given on some fit calls only).
    steps_per_epoch, n_records : int
    """

    def __init__(self, loss, learning_rate, epoch_batch_sizes, steps_per_epoch, n_records,
                 val_loss=(), val_accuracy=(), per_step=None, closed_epoch_loss=None, noise=None,
                 epoch_metrics=()):
        self.loss = loss
        # an array, or a function making it on first use (a run keeps its rates as runs of equal rates)
        self._learning_rate = learning_rate
        # fit_batches runs give every step's epoch, batch and size explicitly
        self._per_step = per_step
        # one epoch's batch sizes: every step's epoch, batch and size follow from them
        self._sizes = epoch_batch_sizes if type(epoch_batch_sizes) is np.ndarray \
            and epoch_batch_sizes.dtype == np.int64 else np.asarray(epoch_batch_sizes, dtype=np.int64)
        self.steps_per_epoch = steps_per_epoch
        self.n_records = n_records
        # the run's per-epoch lists as they are now: a run's lists only grow, so their first
        # entries are this moment's, converted when first read (a fit call's History costs O(1))
        self._val = (val_loss, len(val_loss), val_accuracy, len(val_accuracy))
        # the mean loss of every finished epoch, kept by the run (None: computed here from the steps)
        self._closed_src = None if closed_epoch_loss is None else (closed_epoch_loss, len(closed_epoch_loss))
        # track_noise: per step |G_B|^2 (the batch-mean gradient's squared norm) and S, the mean of
        # the records' squared gradient norms (McCandlish et al. 2018); None when not tracked
        self.noise = noise
        self._metrics_src = (epoch_metrics, len(epoch_metrics))

    @classmethod
    def of_run(cls, state, epoch_batch_sizes):
        """The History of ``state`` (a RunState) as it stands now, in O(1) (a fit call returns one):
        the run's buffers and lengths are taken now, the attributes made from them on first use. It
        holds what a History holds, never the run state itself (its params, optimizer rows, snapshots)."""
        h = cls.__new__(cls)
        h._moment = (state.step, state.loss_buf, state.noise_buf, state.per_step_buf if state.generator else None,
                     state.rates, epoch_batch_sizes, state.steps_per_epoch, state.n_records,
                     state.epoch_loss, len(state.epoch_loss), state.val_loss, len(state.val_loss),
                     state.val_accuracy, len(state.val_accuracy), state.epoch_metrics, len(state.epoch_metrics))
        return h

    def __getattr__(self, name):
        # only reached for an attribute not set yet: a History of_run makes its attributes now, all
        # at once (one dict update: another thread reading the same History sees all or none of them)
        moment = self.__dict__.get("_moment")
        if moment is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        (s, loss_buf, noise_buf, per_step_buf, rates, sizes, spe, n_records, epoch_loss, n_epochs, val_loss, n_val,
         val_accuracy, n_acc, epoch_metrics, n_metrics) = moment
        per_step = None
        if per_step_buf is not None:
            per_step = {k: per_step_buf[i, :s] for i, k in enumerate(("epoch", "batch", "batch_size"))}
            for view in per_step.values():
                view.flags.writeable = False
        loss, noise = loss_buf[:s], None if noise_buf is None else noise_buf[:s]
        for view in (loss, noise):  # views of the run's own buffers: reading them must not write the run
            if view is not None:
                view.flags.writeable = False
        full = History(loss, functools.partial(rates.per_step, s), sizes, spe, n_records, val_loss,
                       val_accuracy, per_step, epoch_loss, noise, epoch_metrics)
        full._val = (val_loss, n_val, val_accuracy, n_acc)
        full._closed_src = (epoch_loss, n_epochs)
        full._metrics_src = (epoch_metrics, n_metrics)
        self.__dict__.update(full.__dict__)
        self.__dict__.pop("_moment", None)
        return getattr(self, name)

    def __getstate__(self):
        if "_moment" in self.__dict__:  # a pickle holds the History's arrays, not the run they are taken from
            self.__getattr__("loss")
        return self.__dict__

    @functools.cached_property
    def learning_rate(self):
        lr = self._learning_rate
        return lr() if callable(lr) else lr

    @functools.cached_property
    def val_loss(self):
        return self._per_epoch(*self._val[:2])

    @functools.cached_property
    def val_accuracy(self):
        return self._per_epoch(*self._val[2:])

    def _per_epoch(self, values, n, start=0):
        """``values[start:n]``, then NaN up to the finished epochs when some epoch was validated: the epochs
        that ended after the last validation had none (a run's lists hold up to its last validated epoch)."""
        out = np.array(values[start:n], dtype=np.float64)
        finished = self._metrics_src[1]
        if 0 < n < finished and start < finished:
            out = np.append(out, np.full(finished - max(n, start), np.nan))
        return out

    @functools.cached_property
    def _closed(self):
        if self._closed_src is None:
            return None
        values, n = self._closed_src
        return np.array(values[:n], dtype=np.float64)

    @functools.cached_property
    def _epoch_metrics(self):
        values, n = self._metrics_src
        return [dict(d) for d in values[:n]]

    @property
    def epoch(self):
        if self._per_step is not None:
            return self._per_step["epoch"]
        return self.step // self.steps_per_epoch if self.steps_per_epoch else self.step

    @property
    def batch(self):
        if self._per_step is not None:
            return self._per_step["batch"]
        return self.step % self.steps_per_epoch if self.steps_per_epoch else self.step

    @property
    def batch_size(self):
        if self._per_step is not None:
            return self._per_step["batch_size"]
        return self._sizes[self.batch] if self.n_steps else np.empty(0, dtype=np.int64)

    def batch_size_of(self, start, stop):
        """``batch_size[start:stop]``, in O(stop - start)."""
        if self._per_step is not None or not self.steps_per_epoch:
            return self.batch_size[start:stop]
        return self._sizes[np.arange(start, min(stop, self.n_steps)) % self.steps_per_epoch]

    @property
    def epoch_starts(self):
        if self._per_step is not None:
            return np.flatnonzero(self._per_step["batch"] == 0).astype(np.int64)
        if not self.steps_per_epoch:
            return np.empty(0, dtype=np.int64)
        return np.arange(0, self.n_steps, self.steps_per_epoch, dtype=np.int64)

    @property
    def n_steps(self):
        return len(self.loss)

    @property
    def step(self):
        """The global index of every step: 0, 1, 2, ..."""
        return np.arange(self.n_steps, dtype=np.int64)

    @property
    def records_seen(self):
        """Records trained on up to and including each step."""
        return np.cumsum(self.batch_size)

    @property
    def records_trained(self):
        """Records trained on over all the steps (``records_seen[-1]``, 0 before a step): ``records_in``."""
        return self.records_in(self.n_steps)

    def records_in(self, steps):
        """Records trained on over the first ``steps`` steps (``records_seen[steps - 1]``, 0 for none), in
        O(an epoch's steps) for an array run (O(steps) for fit_batches'): a progress report each call
        reads it, where the whole cumulative sum made a long run's reports quadratic."""
        from ._validation import check_int
        steps = min(check_int("steps", steps, 0), self.n_steps)  # (steps beyond the run: all of them)
        if not steps:
            return 0
        if self._per_step is not None or not self.steps_per_epoch:
            return int(self.batch_size[:steps].sum())
        full, part = divmod(steps, self.steps_per_epoch)
        return full * int(self._sizes.sum()) + int(self._sizes[:part].sum())

    def epoch_of(self, step):
        """``epoch[step]``, in O(1)."""
        from ._validation import check_int
        step = check_int("step", step, 0, self.n_steps - 1)  # (arithmetic made up an epoch for -1, or beyond the run)
        if self._per_step is not None:
            return int(self._per_step["epoch"][step])
        return step // self.steps_per_epoch if self.steps_per_epoch else step

    @property
    def epoch_loss(self):
        if not self.n_steps:
            return np.empty(0)
        if self._closed is not None:  # only the epochs not closed by the run are summed here: O(their steps)
            # (the one in progress; and one that ended but is not closed yet: a divergence's rewind or an interrupt
            # came before its closing, which the next fit call makes)
            means, epoch = [], len(self._closed)
            first = self._epoch_first_step(epoch)
            while first < self.n_steps:
                end = min(self._epoch_first_step(epoch + 1), self.n_steps)
                w = self.batch_size_of(first, end).astype(np.float64)   # O(the epoch's steps), not the run's
                means.append(weighted_sum(self.loss[first:end], w) / w.sum())
                epoch, first = epoch + 1, end
            return np.append(self._closed, means) if means else self._closed
        ends = np.append(self.epoch_starts[1:], self.n_steps)
        w = self.batch_size.astype(np.float64)
        wl = np.add.reduceat(self.loss * w, self.epoch_starts)
        ws = np.add.reduceat(w, self.epoch_starts)
        return (wl / ws)[: len(ends)]

    def finished_epoch_loss(self, start=0):
        """``epoch_loss`` of the finished epochs from epoch ``start`` on, in O(those epochs) (a
        display polling a long run reads only what is new)."""
        if self._closed_src is not None:
            values, n = self._closed_src
            return np.array(values[start:n], dtype=np.float64)
        done = self.n_steps // self.steps_per_epoch if self.steps_per_epoch else 0
        return self.epoch_loss[start:done] if start < done else np.empty(0)

    def val_loss_since(self, start):
        """``val_loss[start:]``, in O(the epochs after ``start``)."""
        return self._per_epoch(*self._val[:2], start=start)

    def _epoch_first_step(self, epoch):
        if self._per_step is not None:
            starts = self.epoch_starts
            return int(starts[epoch]) if epoch < len(starts) else self.n_steps
        return epoch * self.steps_per_epoch

    @property
    def metrics(self):
        """Per finished epoch, every metric by name: ``loss``, ``accuracy`` or ``r2`` (of the epoch's
        steps, before each update), and with validation ``val_loss``, ``val_accuracy`` or ``val_r2`` and
        ``val_mae`` (at the epoch's end; with ``standardize_target`` in the data's units, as ``evaluate``'s,
        where the losses are the standardised targets'). A metric missing in an epoch is NaN.

        With several mse outputs the two r2 differ in kind: ``r2`` comes from the epoch's mean loss, so it
        is pooled over the outputs (1 - loss / the targets' mean variance: scikit-learn's
        "variance_weighted"); ``val_r2``, as ``Trainer.evaluate``, averages each output's r2 (its default).
        With one output they are the same measure."""
        names = []
        for logs in self._epoch_metrics:
            names += [k for k in logs if k not in names]
        return {k: np.array([logs.get(k, np.nan) for logs in self._epoch_metrics]) for k in names}

    def noise_scale(self, window=None):
        """The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al., 2018).

        Per epoch (default), or over consecutive windows of ``window`` steps. Each step
        gives unbiased estimates from its batch of B records:
        ``tr(Sigma) ~ (S - |G_B|^2) B / (B - 1)`` and ``|G|^2 ~ (B |G_B|^2 - S) / (B - 1)``;
        numerators and denominators are averaged over the window before dividing. A batch
        of one record carries no estimate: a window of only such steps gives NaN, and a
        run of batch 1 raises ValueError saying so. Where the noise swamps the gradient
        (the estimate of |G|^2 is not positive, typical near convergence) the scale is inf.
        """
        if self.noise is None:
            raise ValueError("this run did not track the noise scale: train with track_noise=True")
        B = self.batch_size.astype(np.float64)
        if self.n_steps and not (B > 1).any():
            raise ValueError("batches of one record carry no noise-scale estimate (it compares records within "
                             "a batch): train with batch_size >= 2")
        if window is None:
            starts = self.epoch_starts
        else:
            from ._validation import check_int
            starts = np.arange(0, self.n_steps, check_int("window", window, 1))
        return _noise_scales(B, self.noise, starts)

    def epoch_noise_scale(self, epoch):
        """``noise_scale()[epoch]`` (NaN for an epoch of batches of one record, or one not trained), in
        O(the epoch's steps) for an array run (fit_batches' first finds the epoch's steps): a report
        at each epoch's end reads only that epoch."""
        if self.noise is None:
            raise ValueError("this run did not track the noise scale: train with track_noise=True")
        from ._validation import check_int
        epoch = check_int("epoch", epoch, 0)  # (an epoch beyond the run is NaN, as one not trained yet)
        n = self.n_steps
        start, stop = min(self._epoch_first_step(epoch), n), min(self._epoch_first_step(epoch + 1), n)
        if start >= stop:
            return float("nan")
        B = self.batch_size_of(start, stop).astype(np.float64)
        return float(_noise_scales(B, self.noise[start:stop], np.zeros(1, dtype=np.int64))[0])

    def run_noise_scale(self):
        """The run's noise scale: the median of its epochs' (NaN when no epoch has an estimate)."""
        scales = self.noise_scale()
        measured = scales[~np.isnan(scales)]
        return float(np.median(measured)) if len(measured) else float("nan")

    def as_dict(self):
        """Plain arrays, e.g. for ``np.savez`` or a DataFrame."""
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch,
                "batch_size": self.batch_size, "loss": self.loss,
                "learning_rate": self.learning_rate, "records_seen": self.records_seen}

    def to_csv(self, path):
        """Write one row per step: step,epoch,batch,batch_size,loss,learning_rate,records_seen.

        Steps, epochs and batches are numbered from 1 there, as a person reads them (the seed's
        ``Epoch: 1, Batch: 1, Step: 1``); the arrays of this class are 0-based indices.
        """
        import os
        from ._archive import _create_temporary
        cols = self.as_dict()
        for key in ("step", "epoch", "batch"):
            cols[key] = cols[key] + 1
        path = os.fspath(path)  # written whole or not at all: a temporary file beside it, renamed over it
        # (made as the checkpoint's is: its mode follows the umask, not mkstemp's 0600)
        fd, tmp = _create_temporary(os.path.dirname(os.path.abspath(path)))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(",".join(cols) + "\n")
                for row in zip(*cols.values()):
                    f.write(",".join(repr(float(v)) if isinstance(v, np.floating) else str(int(v)) for v in row)
                            + "\n")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def __len__(self):
        return self.n_steps

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.4g}" if self.n_steps else ""
        return (f"History({self.n_steps} steps, {len(self.epoch_starts)} epochs, "
                f"{self.steps_per_epoch} steps per epoch over {self.n_records} records{last})")


def _noise_scales(B, noise, starts):
    """B_simple over the windows of steps that begin at ``starts`` (History.noise_scale), from each
    step's batch size ``B`` (float64) and its ``noise`` row (|G_B|^2, S)."""
    g2, S = noise[:, 0], noise[:, 1]
    ok = B > 1
    with np.errstate(divide="ignore", invalid="ignore"):
        trace = np.where(ok, (S - g2) * B / (B - 1), 0.0)
        true_g2 = np.where(ok, (B * g2 - S) / (B - 1), 0.0)
    if not len(starts):
        return np.empty(0)
    num = np.add.reduceat(trace, starts)
    den = np.add.reduceat(true_g2, starts)
    count = np.add.reduceat(ok.astype(np.int64), starts)
    # |G|^2 estimated at or below 0: the noise swamps the gradient, so B_simple is beyond
    # what the batch can measure: inf (a bigger batch would still help)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count == 0, np.nan, np.where(den > 0, num / den, np.inf))
