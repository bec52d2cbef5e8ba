"""Checkpoints: exact resumption (even mid-epoch, in a new process), atomic writes, hostile files refused."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastbatch as fb
from helpers import make_data

KW = dict(hidden=(12, 6), optimizer="adam", learning_rate=0.01, batch_size=16, epochs=4, seed=7,
          weight_decay=1e-3, lr_schedule="cosine", warmup_steps=5)


def data():
    return make_data(n=150, d=5, loss="cross_entropy", k=3)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("at", [0, 1, 9, 10, 23, 39])  # before, mid-epoch, at an epoch boundary (10 steps/epoch)
def test_save_load_continue_is_bit_identical(tmp_path, backend, at):
    X, y = data()
    ref = fb.Trainer(backend=backend, **KW)
    href = ref.fit(X, y)
    tr = fb.Trainer(backend=backend, **KW)
    if at:
        tr.fit(X, y, steps=at)
    path = tmp_path / "run.npz"
    tr.save(path)
    back = fb.Trainer.load(path)
    assert back.step == at and back.config == tr.config
    h = back.fit(X, y)
    assert np.array_equal(h.loss, href.loss)
    assert np.array_equal(h.learning_rate, href.learning_rate)
    for (a, b), (c, d) in zip(back.get_params(), ref.get_params()):
        assert np.array_equal(a, c) and np.array_equal(b, d)


def test_resume_in_a_new_process(tmp_path):
    X, y = data()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=13)
    tr.save(tmp_path / "ck.npz")
    code = (
        "import numpy as np, fastbatch as fb, sys\n"
        "d = sys.argv[1]\n"
        "tr = fb.Trainer.load(d + '/ck.npz')\n"
        "h = tr.fit(np.load(d + '/X.npy'), np.load(d + '/y.npy'))\n"
        "np.save(d + '/loss.npy', h.loss)\n"
        "tr.save(d + '/done.npz')\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    ref = fb.Trainer(**KW)
    assert np.array_equal(np.load(tmp_path / "loss.npy"), ref.fit(X, y).loss)
    done = fb.Trainer.load(tmp_path / "done.npz")
    assert done.finished
    assert np.array_equal(done.get_params()[0][0], ref.get_params()[0][0])


def test_unstarted_trainer_with_set_params_round_trips(tmp_path):
    tr = fb.Trainer(hidden=(3,))
    params = [(np.ones((5, 3)), np.zeros(3)), (np.ones((3, 3)), np.zeros(3))]
    tr.set_params(params)
    tr.save(tmp_path / "a.npz")
    back = fb.Trainer.load(tmp_path / "a.npz")
    assert np.array_equal(back.get_params()[0][0], np.ones((5, 3), np.float32))
    fresh = fb.Trainer()
    fresh.save(tmp_path / "b.npz")
    assert fb.Trainer.load(tmp_path / "b.npz").step == 0


def test_params_set_before_the_first_fit_keep_their_exact_values_through_a_checkpoint_and_a_pickle(tmp_path):
    """set_params keeps params as given until the run starts (a dtype set afterwards applies exactly); a
    checkpoint or pickle of that trainer stored them in the run's dtype (0.1 came back 0.1 + 1.5e-9 in float64),
    and params too large for float32 made a checkpoint that could not load. They are stored in float64 now; a
    checkpoint that stored them in the run's dtype still loads."""
    import pickle
    params = [(np.full((5, 3), 0.1), np.zeros(3)), (np.full((3, 2), 1e39), np.full(2, 0.3))]
    tr = fb.Trainer(hidden=(3,))
    tr.set_params(params)
    tr.save(tmp_path / "a.npz")
    for back in (fb.Trainer.load(tmp_path / "a.npz"), pickle.loads(pickle.dumps(tr))):
        back.dtype = "float64"
        for (W, b), (W0, b0) in zip(back.get_params(), params):
            assert W.dtype == np.float64 and np.array_equal(W, W0) and np.array_equal(b, b0)
        with pytest.raises(ValueError, match="too large for float32"):   # (as the trainer itself: at fit)
            fb.Trainer.load(tmp_path / "a.npz").fit(np.ones((4, 5)), np.array([0, 1, 0, 1]))
    # a checkpoint of the earlier form: pending_theta in the run's dtype
    with np.load(tmp_path / "a.npz") as f:
        assert f["pending_theta"].dtype == np.float64
    small = fb.Trainer(hidden=(3,))
    small.set_params([(np.full((5, 3), 0.5), np.zeros(3)), (np.ones((3, 2)), np.zeros(2))])
    from fastbatch.checkpoint import from_arrays, to_arrays
    arrays = to_arrays(small)
    arrays["pending_theta"] = arrays["pending_theta"].astype(np.float32)
    old = fb.Trainer.__new__(fb.Trainer)
    from_arrays(old, arrays)
    assert np.array_equal(old.get_params()[0][0], np.full((5, 3), 0.5, np.float32))


def test_early_stopping_and_plateau_state_round_trip(tmp_path):
    X, y = data()
    kw = dict(KW, lr_schedule={"name": "plateau", "patience": 1, "factor": 0.5}, patience=3, epochs=8,
              validation_split=0.2)
    ref = fb.Trainer(**kw)
    href = ref.fit(X, y)
    tr = fb.Trainer(**kw)
    tr.fit(X, y, steps=25)
    tr.save(tmp_path / "p.npz")
    back = fb.Trainer.load(tmp_path / "p.npz")
    h = back.fit(X, y)
    assert np.array_equal(h.loss, href.loss) and np.array_equal(h.val_loss, href.val_loss)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        fb.Trainer.load("no/such/checkpoint.npz")


def make_checkpoint(tmp_path):
    X, y = data()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=5)
    path = tmp_path / "ck.npz"
    tr.save(path)
    return path


def rewrite(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_hostile_files_are_refused(tmp_path):
    good = make_checkpoint(tmp_path)
    raw = good.read_bytes()
    cases = {}
    cases["empty"] = b""
    cases["truncated"] = raw[: len(raw) // 2]
    cases["foreign text"] = b"hello, I am not a checkpoint\n" * 10
    (tmp_path / "other.npz").write_bytes(b"")
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    cases["foreign npz"] = (tmp_path / "foreign.npz").read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    cases["flipped byte"] = bytes(flipped)
    for name, content in cases.items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(content)
        with pytest.raises(ValueError, match="not a valid fastbatch checkpoint"):
            fb.Trainer.load(p)


@pytest.mark.parametrize("change", [
    lambda a: a.__setitem__("theta", a["theta"] * 2),                                   # numbers altered
    lambda a: a.__setitem__("header", np.array(json.dumps({"format": "fastbatch-checkpoint", "version": 99}))),
    lambda a: a.__setitem__("obj", np.array([{"x": 1}], dtype=object)),                 # a pickled object
])
def test_tampered_files_are_refused(tmp_path, change):
    path = make_checkpoint(tmp_path)
    rewrite(path, change)
    with pytest.raises(ValueError, match="not a valid fastbatch checkpoint"):
        fb.Trainer.load(path)


def forge(path, change, out):
    """A copy of the checkpoint at ``path`` with ``change(arrays, facts)`` made and its digest recomputed."""
    from fastbatch import checkpoint
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "header"}
    facts = json.loads(str(arrays["state"]))
    change(arrays, facts)
    arrays["state"] = np.array(json.dumps(facts))
    arrays["header"] = np.array(json.dumps({"format": checkpoint.FORMAT, "version": checkpoint.VERSION,
                                            "sha256": checkpoint._digest(arrays)}))
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    return out


@pytest.mark.parametrize("what", ["stopped_early a string", "generator a number", "plateau scale negative",
                                  "plateau state incomplete", "target scaling on a classifier",
                                  "a shift without its scale", "the best's metric kind a string",
                                  "epoch metrics not dicts", "more validation losses than epochs",
                                  "an epoch loss beyond float's range", "a learning rate beyond float's range",
                                  "a hundred billion records"])
def test_forged_run_facts_are_refused(tmp_path, what):
    # a forger who recomputes the digest: facts the run could never have reached are refused
    X, y = data()
    tr = fb.Trainer(**{**KW, "lr_schedule": {"name": "plateau", "patience": 2}, "warmup_steps": 0,
                       "standardize": True, "patience": 50})
    tr.fit(X, y, steps=25)
    assert tr._state.best is not None
    good = tmp_path / "ck.npz"
    tr.save(good)
    fb.Trainer.load(good)  # (the unforged file loads)
    change = {
        "stopped_early a string": lambda a, f: f.__setitem__("stopped_early", "no"),
        "generator a number": lambda a, f: f.__setitem__("generator", 0),
        "plateau scale negative": lambda a, f: f["schedule_state"].__setitem__("scale", -5.0),
        "plateau state incomplete": lambda a, f: f.__setitem__("schedule_state", {"scale": 0.5}),
        "target scaling on a classifier": lambda a, f: a.update(y_shift=np.zeros(3), y_scale=np.ones(3)),
        "a shift without its scale": lambda a, f: a.pop("x_scale"),
        "the best's metric kind a string": lambda a, f: f["best"].__setitem__("validated", "no"),
        "epoch metrics not dicts": lambda a, f: f.__setitem__("epoch_metrics", [1] * len(f["epoch_metrics"])),
        "more validation losses than epochs": lambda a, f: (f.__setitem__("val_loss", [1.0] * 9),
                                                            f.__setitem__("val_accuracy", [1.0] * 9)),
        # (a raw OverflowError before)
        "an epoch loss beyond float's range": lambda a, f: f.__setitem__("epoch_loss", [10 ** 400]),
        "a learning rate beyond float's range": lambda a, f: a.__setitem__("config", np.array(json.dumps(
            {**json.loads(str(a["config"])), "learning_rate": 10 ** 400}))),
        # a small file whose epoch's batch sizes alone would take 93 GB (a raw MemoryError at their first use)
        "a hundred billion records": lambda a, f: f.update(n_records=10 ** 11, n_records_all=10 ** 11,
                                                           steps_per_epoch=-(-10 ** 11 // KW["batch_size"]),
                                                           epoch_loss=[], epoch_metrics=[], val_loss=[],
                                                           val_accuracy=[], hit_sums={}, epoch_weights=None),
    }[what]
    with pytest.raises(ValueError, match="not a valid fastbatch checkpoint.*" + (
            "for the epoch's batch sizes" if what == "a hundred billion records" else "")):
        fb.Trainer.load(forge(good, change, tmp_path / "forged.npz"))


def test_consistent_but_wrong_contents_are_refused(tmp_path):
    # a forger who also recomputes the digest still cannot smuggle in a wrong shape or config
    from fastbatch import checkpoint
    path = make_checkpoint(tmp_path)
    for change in (lambda a: a.__setitem__("theta", a["theta"][:-1]),
                   lambda a: a.__setitem__("config", np.array(json.dumps({"batch_size": -1}))),
                   lambda a: a.__setitem__("opt_state", np.full_like(a["opt_state"], np.nan))):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "header"}
        change(arrays)
        header = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "sha256": checkpoint._digest(arrays)}
        arrays["header"] = np.array(json.dumps(header))
        bad = tmp_path / "forged.npz"
        with open(bad, "wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(ValueError, match="not a valid fastbatch checkpoint"):
            fb.Trainer.load(bad)


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = make_checkpoint(tmp_path)
    before = path.read_bytes()
    X, y = data()
    tr = fb.Trainer.load(path)
    tr.fit(X, y, steps=3)

    def crash(member, array, **kw):
        member.write(b"partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np.lib.format, "write_array", crash)
    with pytest.raises(KeyboardInterrupt):
        tr.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert fb.Trainer.load(path).step == 5


def test_no_pickle_in_the_file(tmp_path):
    path = make_checkpoint(tmp_path)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            with z.open(name) as f:
                head = f.read(10)
            assert head.startswith(b"\x93NUMPY")
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_pickle_round_trip_for_other_processes():
    import pickle
    X, y = data()
    tr = fb.Trainer(**KW)
    tr.fit(X, y, steps=17)
    back = pickle.loads(pickle.dumps(tr))
    ref = fb.Trainer(**KW)
    assert np.array_equal(back.fit(X, y).loss, ref.fit(X, y).loss)


@pytest.mark.parametrize("other, words", [({"batch_size": 7}, "steps per epoch do not follow"),
                                          ({"dtype": "float64"}, "params are float32"),
                                          ({"epochs": 1}, "beyond the"),
                                          ({"batch_size": 64, "drop_last": True}, "steps per epoch do not follow"),
                                          ({"loss": "mse"}, "loss is 'cross_entropy'"),
                                          ({"standardize": True}, "made without standardize"),
                                          ({"track_noise": True}, "made without track_noise"),
                                          ({"validation_split": 0.0, "_split": 0.2}, "records out for validation")])
def test_a_run_state_that_does_not_follow_from_the_config_is_refused(other, words):
    # (a batch_size of 7 trained the state past its plan, then failed inside; epochs=1 said "step 15 of 10")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 4)).astype(np.float32), rng.integers(0, 3, 200)
    cfg = dict(hidden=(8,), batch_size=32, epochs=3, seed=0)
    split = other.pop("_split", 0.0)      # (the state's own split: validation_split 0.0 then refuses it)
    tr = fb.Trainer(**cfg, validation_split=split)
    tr.fit(X, y, steps=15 if not split else 10)
    other_tr = fb.Trainer(**{**cfg, **other})
    with pytest.raises(ValueError, match=words):
        other_tr.adopt_run_state(tr.run_state)
    assert not other_tr.started


def test_a_checkpoint_saved_after_an_interrupt_left_an_epoch_unclosed_loads_and_goes_on(tmp_path, monkeypatch):
    from helpers import run_interrupted_before_closing
    tr, ref, X, y = run_interrupted_before_closing(monkeypatch, epochs=5, at_chunk=1)
    assert tr.step == 8 and len(tr.run_state.epoch_loss) == 0     # its first epoch ended, not closed
    tr.save(tmp_path / "ck.npz")
    back = fb.Trainer.load(tmp_path / "ck.npz")
    back.fit(X, y)
    assert np.array_equal(back.history.val_loss, ref.history.val_loss)
    assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(back.get_params(), ref.get_params()))


def test_a_run_of_validation_data_with_a_split_in_its_config_loads(tmp_path):
    # validation_data replaces the split: the run trains on every record though its config has a split
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    tr = fb.Trainer(validation_split=0.2, epochs=3)
    tr.fit(X, y, validation_data=(X[:20], y[:20]), steps=5)
    tr.save(tmp_path / "c.npz")
    back = fb.Trainer.load(tmp_path / "c.npz")   # (refused for a while: "made without validation_split")
    assert back.step == 5 and back.run_state.n_records == 100

