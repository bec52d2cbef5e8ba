"""The seed's example: 1000 random records, 10 features, binary labels; batch 64, 5 epochs.

Run it with ``python -m fastbatch``.
"""
import time

import numpy as np

from .schedule import plan, schedule_lines
from .trainer import Trainer

N_RECORDS, N_FEATURES, BATCH_SIZE, EPOCHS = 1000, 10, 64, 5


def main(show_every_step=False):
    rng = np.random.default_rng(0)
    X = rng.random((N_RECORDS, N_FEATURES))
    y = rng.integers(0, 2, N_RECORDS)
    p = plan(N_RECORDS, BATCH_SIZE, EPOCHS)
    print(p.describe())
    lines = list(schedule_lines(N_RECORDS, BATCH_SIZE, EPOCHS))
    shown = lines if show_every_step else lines[:3] + ["..."] + lines[p.steps_per_epoch - 1:p.steps_per_epoch + 1] \
        + ["..."] + lines[-1:]
    print("\n".join(shown))
    tr = Trainer(hidden=(32,), batch_size=BATCH_SIZE, epochs=EPOCHS, optimizer="sgd", learning_rate=0.1, seed=0)
    t0 = time.perf_counter()
    h = tr.fit(X, y)
    dt = time.perf_counter() - t0
    print("(epochs, batches and steps are counted from 1 here, as in the lines above; "
          "History counts them from 0)")
    for e, loss in enumerate(h.epoch_loss):
        print(f"epoch {e + 1}: loss {loss:.4f} over {p.steps_per_epoch} steps")
    print(f"{h.n_steps} steps, {h.records_seen[-1]:,} records seen in {dt * 1e3:.1f} ms "
          f"({h.n_steps / dt:,.0f} steps/s); the labels are random, so the loss stays near ln 2 = 0.693")
    return 0
