"""The ``fastbatch`` command: plan, train (outputs, resume, errors), evaluate, predict, demo; the loss plot."""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbatch as fb
from fastbatch import cli, datasets

def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# ---------------------------------------------------------------------- plan, demo, usage

def test_plan_prints_the_schedule(capsys):
    code, out, _ = run(capsys, "plan", "--records", 1000, "--batch-size", 64, "--epochs", 5)
    assert code == 0
    assert "steps per epoch: 16" in out and "last batch size: 40" in out and "total steps: 80" in out
    assert "Epoch:" not in out


def test_plan_steps_lists_every_step(capsys):
    code, out, _ = run(capsys, "plan", "--records", 10, "--batch-size", 4, "--epochs", 2, "--drop-last", "--steps")
    lines = [x for x in out.splitlines() if x.startswith("Epoch:")]
    assert code == 0 and "steps per epoch: 2" in out and "total steps: 4" in out
    assert lines == list(fb.schedule_lines(10, 4, 2, drop_last=True))
    assert lines[-1] == "Epoch: 2, Batch: 2, Step: 4"


@pytest.mark.parametrize("argv, words", [
    (["plan", "--records", "10", "--batch-size", "0", "--epochs", "1"], "batch_size"),
    (["plan", "--records", "10", "--batch-size", "64", "--epochs", "1", "--drop-last"], "drop_last"),
    (["plan", "--records", "ten", "--batch-size", "4", "--epochs", "1"], "invalid int"),
    (["plan", "--records", "10"], "required"),
    ([], "required"),
    (["fly"], "invalid choice"),
    (["plan", "--records", "10", "--batch-size", "2", "--epochs", "1", "--features", "0", "--outputs", "2"],
     "--features must be a whole number from 1"),
    (["plan", "--records", "10", "--batch-size", "2", "--epochs", "1", "--features", "3", "--outputs", "-1"],
     "--outputs must be a whole number from 1"),
    (["plan", "--records", "10", "--batch-size", "2", "--epochs", "1", "--features", "3", "--outputs", "2",
      "--hidden", "4,0"], "--hidden must be widths from 1"),
    (["plan", "--records", "10", "--batch-size", "2", "--epochs", "1", "--features", str(2 ** 64), "--outputs", "2"],
     "--features must be"),
    (["train", "x.csv", "--hidden", "32,abc"], "layer widths"),
    (["train", "x.csv", "--optimizer", "lbfgs"], "invalid choice"),
])
def test_usage_errors_exit_2_with_a_message(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 2 and words in err and out == ""


def test_help_exits_0(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--learning-rate" in out and "--warmup-steps" in out and "--resume" in out


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help_says_what_an_unset_default_means(capsys, command):
    # ("--n-threads ... (default: None)": None cannot be typed)
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "None" not in out
    text = " ".join(out.split())

    def said(flag):  # a flag's help, up to the next flag
        return text.split(f" {flag} {flag[2:].upper().replace('-', '_')} ", 1)[1].split(" --", 1)[0]
    assert said("--n-threads").endswith("(default: the BLAS's thread setting when the run starts)")
    assert said("--patience").endswith("(default: none, no early stopping)")


def test_demo_runs_the_seed_demo(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "x 5 epochs = 80 steps" in out and "epoch 5: loss" in out


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "fastbatch")
    if not os.path.exists(exe):
        pytest.skip("the fastbatch console script is not installed in this environment")
    out = subprocess.run([exe, "plan", "--records", "1000", "--batch-size", "64", "--epochs", "5"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "total steps: 80" in out.stdout


# ---------------------------------------------------------------------- the loss plot

def history_of(epochs, steps_per_epoch=10, validation=True):
    kw = dict(hidden=(4,), epochs=epochs, batch_size=100 // steps_per_epoch, learning_rate=0.05,
              validation_split=0.5 if validation else 0.0)
    X, y = datasets.make("moons", 200 if validation else 100, 2, seed=0)
    return fb.Trainer(**kw).fit(X, y)


@pytest.mark.parametrize("epochs, steps_per_epoch", [(1, 1), (3, 10), (40, 10)])
def test_loss_figure_has_axes_title_means_and_validation(epochs, steps_per_epoch):
    pytest.importorskip("matplotlib")
    from fastbatch._plot import MAX_EPOCH_LINES, loss_figure
    h = history_of(epochs, steps_per_epoch)
    ax = loss_figure(h, "moons: hidden 4").axes[0]
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert ax.get_title() == "moons: hidden 4" and ax.get_xlabel().startswith("step")
    assert ax.get_ylabel().startswith("loss")
    assert "epoch mean loss" in labels and "validation loss" in labels
    assert ("loss per step (smoothed)" in labels) == (h.n_steps > 200)
    boundaries = [line for line in ax.get_lines() if line.get_label().startswith("_") and
                  len(set(line.get_xdata())) == 1]
    assert len(boundaries) == (epochs - 1 if epochs <= MAX_EPOCH_LINES else 0)


def test_smoothing_is_a_debiased_moving_average():
    from fastbatch._plot import smoothed
    assert np.allclose(smoothed(np.full(50, 3.0), 10), 3.0)
    x = np.r_[np.ones(100), np.zeros(100)]
    s = smoothed(x, 10)
    assert s[0] == 1.0 and s[99] == pytest.approx(1.0) and 0 < s[110] < 0.5 and s[-1] < 1e-3


def test_train_without_matplotlib_says_so(capsys, csv_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path, _, _ = csv_data
    code, out, err = run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", "--epochs", "1")
    assert code == 0, err
    assert "loss plot:  not written: matplotlib is not installed: pip install 'fastbatch[plot]'" in out
    assert not (tmp_path / "points-loss.png").exists()

    # an earlier run's plot in the same folder is removed (beside the new history and checkpoint it
    # would pass for this run's), and the summary says so
    (tmp_path / "points-loss.png").write_bytes(b"an earlier run's plot")
    code, out, err = run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", "--epochs", "2")
    assert code == 0, err
    assert f"(removed {tmp_path / 'points-loss.png'}: it plotted an earlier run)" in out
    assert not (tmp_path / "points-loss.png").exists() and (tmp_path / "points-history.csv").exists()


def test_a_plot_that_cannot_be_removed_is_said_in_the_commands_words(capsys, csv_data, tmp_path, monkeypatch):
    # without matplotlib, a folder where the plot goes is left (a read-only file is not: removing it needs the
    # folder's write permission, checked before the run) and said as each command says a warning, "fastbatch
    # train: warning: ..." (it was "fastbatch: warning: ..."), not as an earlier run's plot
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path, _, _ = csv_data
    (tmp_path / "points-loss.png").mkdir()
    (tmp_path / "cmp.png").mkdir()
    code, out, err = run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", "--epochs", "1")
    assert code == 0, err
    assert f"fastbatch train: warning: {tmp_path / 'points-loss.png'} could not be removed (Is a directory)" in err
    assert "earlier run" not in err and (tmp_path / "points-loss.png").is_dir()
    code, out, err = run(capsys, "compare", path, "--batch-sizes", "8", "--out", tmp_path / "cmp", *COMPARE_OPTS)
    assert code == 0, err
    assert f"fastbatch compare: warning: {tmp_path / 'cmp.png'} could not be removed (Is a directory)" in err


# ---------------------------------------------------------------------- the progress line

def test_plain_progress_line_without_tqdm(seed_data):
    import io
    X, y = seed_data
    tr = fb.Trainer(epochs=3, batch_size=64)
    buf = io.StringIO()
    progress = cli.Progress(tr, file=buf)
    progress._tqdm = None  # as when tqdm is not installed
    tr.fit(X, y, on_progress=progress)
    progress.close()
    text = buf.getvalue()
    assert "step 48/48" in text and "epoch 3/3" in text and "records/s" in text and "ETA" in text
    assert text.endswith("\n")


# ---------------------------------------------------------------------- train / evaluate / predict

def write_csv(path, X, y, target="label"):
    cols = [f"f{j}" for j in range(X.shape[1])]
    with open(path, "w") as f:
        f.write(",".join(cols + [target]) + "\n")
        for row, t in zip(X, y):
            f.write(",".join(repr(float(v)) for v in row) + f",{t}\n")


@pytest.fixture
def csv_data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    path = tmp_path / "points.csv"
    write_csv(path, X, y)
    return path, X, y


TRAIN_OPTS = ["--hidden", "8", "--epochs", "3", "--batch-size", "32", "--learning-rate", "0.1", "--seed", "3"]


def test_train_writes_history_checkpoint_and_plot(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", path, "--target", "label", "--out-dir", out_dir, *TRAIN_OPTS)
    assert code == 0, err
    assert "300 records / batch 32 -> 10 steps per epoch" in out
    tr = fb.Trainer.load(out_dir / "points-checkpoint.npz")
    assert tr.finished and tr.step == 30
    rows = (out_dir / "points-history.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,batch,batch_size,loss,learning_rate,records_seen" and len(rows) == 31
    if importlib.util.find_spec("matplotlib"):
        assert (out_dir / "points-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one training loop: the command's run is the Trainer's run with the same options
    ref = fb.Trainer(hidden=(8,), epochs=3, batch_size=32, learning_rate=0.1, seed=3, standardize=True)
    assert np.array_equal(ref.fit(X, y).loss, tr.history.loss)
    assert "target 'label': 2 distinct whole-number values -> classification (cross_entropy); pass --loss mse" in out
    assert "records/s" in err  # the progress bar (tqdm) or line went to stderr


def test_train_defaults_to_writing_next_to_the_data(capsys, csv_data):
    path, _, _ = csv_data
    code, _, err = run(capsys, "train", path, "--target", "label", "--epochs", "1", "--quiet")
    assert code == 0, err
    assert (path.parent / "points-checkpoint.npz").exists() and (path.parent / "points-loss.png").exists()
    assert err == ""  # --quiet: no progress


def test_resume_continues_bit_identically(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    kw = dict(hidden=(8,), epochs=3, batch_size=32, learning_rate=0.1, seed=3, optimizer="adam")
    whole = fb.Trainer(**kw).fit(X, y)
    part = fb.Trainer(**kw)
    part.fit(X, y, steps=13)
    part.save(tmp_path / "mid.npz")
    code, out, err = run(capsys, "train", path, "--target", "label", "--resume", tmp_path / "mid.npz",
                         "--out-dir", tmp_path, "--quiet")
    assert code == 0, err
    done = fb.Trainer.load(tmp_path / "points-checkpoint.npz")
    assert done.finished and np.array_equal(done.history.loss, whole.loss)
    # a finished run has nothing left to train
    code, _, err = run(capsys, "train", path, "--target", "label", "--resume", tmp_path / "points-checkpoint.npz",
                       "--out-dir", tmp_path, "--quiet")
    assert code == 1 and "finished" in err
    # a resumed run keeps its options (only the rate and the epoch budget may change)
    code, _, err = run(capsys, "train", path, "--target", "label", "--resume", tmp_path / "mid.npz",
                       "--batch-size", "9")
    assert code == 2 and "--batch-size" in err and "--epochs" in err
    # a finished run goes on with a raised budget, as if it had been started with it
    code, out, err = run(capsys, "train", path, "--target", "label", "--resume", tmp_path / "points-checkpoint.npz",
                         "--epochs", "5", "--out-dir", tmp_path / "more", "--quiet")
    assert code == 0, err
    longer = fb.Trainer.load(tmp_path / "more" / "points-checkpoint.npz")
    assert longer.finished and np.array_equal(longer.history.loss, fb.Trainer(**{**kw, "epochs": 5}).fit(X, y).loss)


def test_resume_accepts_the_checkpoints_own_options_and_names_a_different_one_as_typed(capsys, csv_data, tmp_path):
    # ("--resume CKPT --no-standardize" was refused as "got --standardize", and "--batch-size 32" on a run of
    # batch 32 was refused too)
    path, _, _ = csv_data
    code, _, err = run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", "--betas", "0.8,0.99", *TRAIN_OPTS)
    assert code == 0, err
    ckpt = tmp_path / "points-checkpoint.npz"
    resume = ["train", path, "--resume", ckpt, "--epochs", "4", "--quiet"]
    code, _, err = run(capsys, *resume, "--out-dir", tmp_path / "same", "--batch-size", "32", "--hidden", "8",
                       "--standardize", "--seed", "3", "--beta2", "0.99", "--task", "classification")
    assert code == 0, err
    assert fb.Trainer.load(tmp_path / "same" / "points-checkpoint.npz").step == 40
    for flags, said in [(["--no-standardize"], "got --no-standardize, the checkpoint's run has --standardize"),
                        (["--batch-size", "16"], "got --batch-size 16, the checkpoint's run has --batch-size 32"),
                        (["--beta1", "0.9"], "got --beta1 0.9, the checkpoint's run has --betas 0.8,0.99"),
                        (["--task", "regression"], "got --task regression, the checkpoint's run has --loss "
                                                   "cross_entropy")]:
        code, out, err = run(capsys, *resume, "--out-dir", tmp_path / "other", *flags)
        assert code == 2 and said in err and "--epochs and --learning-rate may change" in err, (flags, err)
    assert not (tmp_path / "other").exists()


def test_resume_checks_the_data_fingerprint(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    code, _, err = run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)
    assert code == 0, err
    ckpt = tmp_path / "points-checkpoint.npz"
    assert fb.Trainer.load(ckpt).info["data_fingerprint"]["n_records"] == 300
    other = tmp_path / "other.csv"
    write_csv(other, X[::-1], y[::-1])  # the same shape, other rows
    resume = ["train", other, "--target", "label", "--resume", ckpt, "--epochs", "4", "--out-dir", tmp_path / "o",
              "--quiet"]
    code, _, err = run(capsys, *resume)
    assert code == 1 and "is not the data the run" in err and "some values differ" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, *resume, "--force")
    assert code == 0, err
    X2 = X.copy()
    X2[2, 1] += 0.5                     # one value of a row an older, sampled fingerprint never looked at
    write_csv(tmp_path / "edited.csv", X2, y)
    code, _, err = run(capsys, "train", tmp_path / "edited.csv", "--resume", ckpt, "--epochs", "4", "--out-dir",
                       tmp_path / "e", "--quiet")
    assert code == 1 and "some values differ" in err
    # a checkpoint from before (its fingerprint of sampled rows) still resumes on its own data
    tr = fb.Trainer.load(ckpt)
    from fastbatch import datasets as ds
    tr.info["data_fingerprint"] = ds.fingerprint(*ds.load(path), ds.FINGERPRINT_ROWS)
    tr.save(tmp_path / "older.npz")
    code, _, err = run(capsys, "train", path, "--resume", tmp_path / "older.npz", "--epochs", "4", "--out-dir",
                       tmp_path / "old", "--quiet")
    assert code == 0, err


def test_evaluate_and_predict(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    assert run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "points-checkpoint.npz"
    tr = fb.Trainer.load(ckpt)
    code, out, err = run(capsys, "evaluate", ckpt, path, "--target", "label")
    res = tr.evaluate(X, y)
    assert code == 0, err
    assert f"loss {res['loss']:.6g}" in out and f"accuracy {res['accuracy']:.4f}" in out and "300 records" in out
    preds = tmp_path / "preds.csv"
    code, out, err = run(capsys, "predict", ckpt, path, "--target", "label", "--out", preds)
    assert code == 0, err
    rows = preds.read_text().splitlines()
    assert rows[0] == "prediction,proba_0,proba_1" and len(rows) == 301
    got = np.array([int(r.split(",")[0]) for r in rows[1:]])
    assert np.array_equal(got, tr.predict(X))
    code, out, _ = run(capsys, "predict", ckpt, path, "--target", "label")
    assert code == 0 and out.splitlines() == rows


def test_npz_data_and_regression(capsys, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -1.0, 0.5]
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    code, out, err = run(capsys, "train", tmp_path / "reg.npz", "--epochs", "20", "--optimizer", "adam",
                         "--out-dir", tmp_path, "--quiet", "--validation-split", "0.2")
    assert code == 0, err
    assert "validation loss" in out and "accuracy" not in out
    code, out, _ = run(capsys, "predict", tmp_path / "reg-checkpoint.npz", tmp_path / "reg.npz")
    assert code == 0 and out.splitlines()[0] == "prediction" and len(out.splitlines()) == 201


def test_train_says_a_standardised_targets_losses_are_in_its_units(capsys, tmp_path):
    # train said "last epoch loss 0.49" where evaluate on the same data said "loss 2704": one scale, unnamed
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    np.savez(tmp_path / "reg.npz", X=X, y=X @ [100.0, -50.0, 20.0] + 500)
    code, out, err = run(capsys, "train", tmp_path / "reg.npz", "--out-dir", tmp_path, "--quiet", "--epochs", "3",
                         "--validation-split", "0.2", "--standardize-target")
    assert code == 0, err
    trained = fb.Trainer.load(tmp_path / "reg-checkpoint.npz")
    loss_line = next(line for line in out.splitlines() if "last epoch loss" in line)
    val_line = next(line for line in out.splitlines() if line.startswith("validation loss"))
    assert f"{trained.history.epoch_loss[-1]:.6g} (standardised target units)" in loss_line
    assert val_line == f"validation loss {trained.history.val_loss[-1]:.6g} (standardised target units)"
    code, out, err = run(capsys, "train", tmp_path / "reg.npz", "--out-dir", tmp_path, "--quiet", "--epochs", "3")
    assert code == 0 and "standardised target units" not in out


def test_a_target_column_for_npz_data_is_a_usage_error_not_ignored(capsys, tmp_path):
    # a .npz's target is its y: --target 0 (say, meaning its first column) trained on y without a word
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    for command in (["train", tmp_path / "d.npz", "--out-dir", tmp_path, "--quiet", "--epochs", "1"],
                    ["compare", tmp_path / "d.npz", "--out", tmp_path / "cmp", "--epochs", "1"]):
        code, out, err = run(capsys, *command, "--target", "0")
        assert code == 2 and "--target 0" in err and "array y" in err and out == ""
    assert not list(tmp_path.glob("d-*")) and not list(tmp_path.glob("cmp*"))
    code, _, err = run(capsys, "train", tmp_path / "d.npz", "--out-dir", tmp_path, "--quiet", "--epochs", "1",
                       "--target", "y")  # (its name: what it is anyway)
    assert code == 0, err
    for command in ("evaluate", "predict"):
        code, out, err = run(capsys, command, tmp_path / "d-checkpoint.npz", tmp_path / "d.npz", "--target", "2")
        assert code == 2 and "--target 2" in err and out == ""


@pytest.mark.parametrize("make_argv, code_expected, words", [
    (lambda p, d: ["train", d / "nope.csv", "--target", "label"], 1, "nope.csv"),
    (lambda p, d: ["train", p, "--target", "no_such_column"], 1, "no_such_column"),
    (lambda p, d: ["train", p, "--target", "label", "--batch-size", "0"], 2, "batch_size"),
    (lambda p, d: ["train", p, "--target", "label", "--activation", "relu", "--lr-schedule", "wiggly"], 2,
     "lr_schedule"),
    (lambda p, d: ["train", p, "--target", "label", "--nesterov"], 2, "nesterov"),
    (lambda p, d: ["evaluate", p, p, "--target", "label"], 1, "checkpoint"),
    (lambda p, d: ["predict", d / "missing.npz", p], 1, "missing.npz"),
])
def test_bad_files_columns_and_options(capsys, csv_data, tmp_path, make_argv, code_expected, words):
    path, _, _ = csv_data
    code, out, err = run(capsys, *make_argv(path, tmp_path))
    assert code == code_expected and words in err, err
    assert err.startswith("fastbatch ")


def test_bad_data_exits_1(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1.0,nan,0\n2.0,3.0,1\n")
    code, _, err = run(capsys, "train", path, "--target", "label", "--quiet")
    assert code == 1 and err.startswith("fastbatch train:")


def test_divergence_exits_1_and_keeps_a_checkpoint_to_resume(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3)) * 1e3
    np.savez(tmp_path / "wild.npz", X=X, y=X.sum(axis=1) * 1e3)
    code, _, err = run(capsys, "train", tmp_path / "wild.npz", "--learning-rate", "1e6", "--optimizer", "sgd",
                       "--out-dir", tmp_path,
                       "--quiet", "--epochs", "5")
    assert code == 1 and "diverged" in err and "--resume" in err
    tr = fb.Trainer.load(tmp_path / "wild-checkpoint.npz")
    assert np.isfinite(tr.get_params()[0][0]).all()


def mid_epoch_divergence(tmp_path):
    """A regression file and options whose run diverges in its first epoch, after some steps (67 of 125)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3))
    np.savez(tmp_path / "mid.npz", X=X, y=X @ [1.0, 2.0, 3.0] + rng.normal(size=1000))
    return [tmp_path / "mid.npz", "--learning-rate", "0.2", "--optimizer", "sgd", "--batch-size", "8", "--hidden", "8",
            "--epochs", "5", "--out-dir", tmp_path, "--quiet"]


def test_a_divergence_before_an_epoch_ended_prints_no_epoch_loss(capsys, tmp_path):
    code, out, err = run(capsys, "train", *mid_epoch_divergence(tmp_path))
    assert code == 1 and "diverged" in err
    tr = fb.Trainer.load(tmp_path / "mid-checkpoint.npz")
    assert 0 < tr.step < tr.history.steps_per_epoch
    assert f"trained {tr.step} of 625 steps" in out and "epoch loss" not in out and "no epoch finished" in out


def test_a_divergence_is_advised_in_the_commands_flags(capsys, tmp_path):
    # (it said "Continue with a smaller learning rate (e.g. trainer.learning_rate /= 100), or scale the targets
    # (standardize_target=True)", then "--resume CKPT --learning-rate <smaller>" on a line of its own)
    import shlex
    code, _, err = run(capsys, "train", *mid_epoch_divergence(tmp_path))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "trainer." not in err and "=True" not in err and "learning_rate" not in err
    assert "or start a new run with --standardize-target." in err
    command = err.split("Continue with a smaller rate: ", 1)[1].split(";")[0]
    ckpt = tmp_path / "mid-checkpoint.npz"
    assert shlex.split(command) == ["fastbatch", "train", str(tmp_path / "mid.npz"), "--resume", str(ckpt),
                                    "--out-dir", str(tmp_path), "--learning-rate", "0.002"]
    step = fb.Trainer.load(ckpt).step
    code, _, err = run(capsys, *shlex.split(command)[1:], "--quiet", "--epochs", "1")  # as advised: it goes on
    assert code == 0, err
    assert fb.Trainer.load(ckpt).step == 125 > step
    code, _, err = run(capsys, "compare", tmp_path / "mid.npz", "--batch-sizes", "8", "--learning-rate", "0.2",
                       "--optimizer", "sgd", "--hidden", "8", "--epochs", "5", "--out", tmp_path / "c")
    assert code == 1 and "Run again with a smaller --learning-rate, or with --standardize-target." in err


def test_ctrl_c_saves_a_checkpoint_to_resume(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", X=rng.normal(size=(20000, 20)), y=rng.integers(0, 2, 20000))
    cmd = [sys.executable, "-m", "fastbatch.cli", "train", str(tmp_path / "big.npz"), "--epochs", "100000",
           "--batch-size", "8", "--backend", "numpy", "--out-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stderr.read(1)  # the first progress output: training is under way
        assert first, "no progress output"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    tr = fb.Trainer.load(tmp_path / "big-checkpoint.npz")
    assert 0 < tr.step < tr.total_steps


def test_ctrl_c_prints_the_whole_resume_command(capsys, csv_data, tmp_path, monkeypatch):
    # (the README: Ctrl-C "saves the outputs and prints the --resume command"; it printed only --resume PATH)
    import shlex
    path, _, _ = csv_data
    real = fb.Trainer.fit

    def fit(self, X, y, **kw):  # 3 steps, then Ctrl-C
        real(self, X, y, steps=3, **kw)
        signal.raise_signal(signal.SIGINT)
        return self
    monkeypatch.setattr(fb.Trainer, "fit", fit)
    out_dir = tmp_path / "my run"
    code, _, err = run(capsys, "train", path, "--out-dir", out_dir, "--quiet", *TRAIN_OPTS)
    assert code == 130, err
    command = err.strip().splitlines()[-1].split("continue with: ", 1)[1]
    ckpt = out_dir / "points-checkpoint.npz"
    assert shlex.split(command) == ["fastbatch", "train", str(path), "--resume", str(ckpt), "--out-dir", str(out_dir)]
    monkeypatch.setattr(fb.Trainer, "fit", real)
    code, _, err = run(capsys, *shlex.split(command)[1:], "--quiet")  # the command as printed continues the run
    assert code == 0, err
    assert fb.Trainer.load(ckpt).finished


def test_predict_out_is_written_whole_or_not_at_all(capsys, csv_data, tmp_path):
    # (open(--out, "w") truncated the old file first: a full disk or an interrupt left it cut short)
    path, X, y = csv_data
    assert run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt, preds = tmp_path / "points-checkpoint.npz", tmp_path / "preds.csv"
    preds.write_text("the old predictions\n" * 50)

    def full_disk():  # files of the predict process can grow to 100 bytes only (EFBIG past them)
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
    cmd = [sys.executable, "-m", "fastbatch.cli", "predict", str(ckpt), str(path)]
    done = subprocess.run(cmd + ["--out", str(preds)], capture_output=True, text=True, preexec_fn=full_disk)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == f"fastbatch predict: File too large: {preds}\n"
    assert preds.read_text() == "the old predictions\n" * 50  # as it was
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # (no temporary file left)
    done = subprocess.run(cmd + ["--out", "/dev/stdout"], capture_output=True, text=True)  # (stdout: a pipe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("prediction,proba_0,proba_1\n") and done.stdout.count("\n") == 302
    assert run(capsys, "predict", ckpt, path, "--out", preds)[0] == 0
    assert preds.read_text() == done.stdout.split("300 predictions written")[0]


def test_train_warns_of_a_header_row_that_looks_like_a_record(capsys, tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("1,2,cat\n3,4,dog\n5,6,dog\n")
    code, out, err = run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", "--epochs", "1")
    assert code == 0, err
    assert f"fastbatch train: warning: {str(path)!r}, line 1 (1,2,cat) is taken as the header row" in err


def test_counts_of_one_are_singular(capsys, tmp_path):
    # ("1 class names", "training 1 runs", "1 records / batch 1", "(1 records)", "1 predictions written")
    path = tmp_path / "one.csv"
    path.write_text("a,b,c\n1,2,x\n")
    code, out, err = run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", "--epochs", "1")
    assert code == 0, err
    assert "target 'c': 1 class name -> classification" in out
    assert "1 record / batch 32 -> 1 step per epoch x 1 epoch = 1 step" in out and "trained 1 of 1 step (" in out
    ckpt = tmp_path / "one-checkpoint.npz"
    code, out, err = run(capsys, "evaluate", ckpt, path)
    assert code == 0 and "(1 record)" in out and "class x: 1 record, " in out, err
    code, out, err = run(capsys, "predict", ckpt, path, "--out", tmp_path / "p.csv")
    assert code == 0 and out == f"1 prediction written to {tmp_path / 'p.csv'}\n", err
    (tmp_path / "two.csv").write_text("a,b\n1,3\n2,4\n3,5\n")
    code, out, err = run(capsys, "compare", tmp_path / "two.csv", "--batch-sizes", "2", "--epochs", "1",
                         "--out", tmp_path / "c")
    assert code == 0 and "fastbatch compare: training 1 run of 1 epoch: batch 2" in err, err
    (tmp_path / "int.csv").write_text("a,b\n1,3\n2,3\n")
    code, out, err = run(capsys, "train", tmp_path / "int.csv", "--out-dir", tmp_path, "--quiet", "--epochs", "1")
    assert code == 0 and "target 'b': 1 distinct whole-number value -> classification" in out, err


def test_predict_on_features_only_and_npy(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    assert run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "points-checkpoint.npz"
    expected = fb.Trainer.load(ckpt).predict(X[:10])
    new = tmp_path / "new.csv"
    new.write_text("f0,f1,f2,f3\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in X[:10]))
    np.save(tmp_path / "new.npy", np.column_stack([X[:10], y[:10]]))  # the target as the last column
    for data in (new, tmp_path / "new.npy"):
        code, out, err = run(capsys, "predict", ckpt, data)
        assert code == 0, err
        got = np.array([int(r.split(",")[0]) for r in out.splitlines()[1:]])
        assert np.array_equal(got, expected)


def test_train_on_class_names(capsys, tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    names = np.where(X[:, 0] > 0, "yes", "no")
    write_csv(tmp_path / "named.csv", X, names, target="answer")
    code, out, err = run(capsys, "train", tmp_path / "named.csv", "--target", "answer", "--optimizer", "adam",
                         "--epochs", "20", "--quiet")
    assert code == 0, err
    code, out, _ = run(capsys, "evaluate", tmp_path / "named-checkpoint.npz", tmp_path / "named.csv",
                       "--target", "answer")
    assert code == 0 and float(out.split("accuracy ")[1].split()[0]) > 0.9


# ---------------------------------------------------------------------- hostile input: one line, right exit code

def one_line_error(capsys, code_expected, *argv):
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(cli.main([str(a) for a in argv])), daemon=True)
    t.start()
    t.join(30)
    assert result, f"fastbatch {argv[0]} hung"
    out, err = capsys.readouterr()
    assert result[0] == code_expected, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def huge_shape_checkpoint(src, dst):
    """``src`` with its params array's header declaring 10**12 values (the payload left as it was)."""
    import io
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "theta.npy":
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False,
                                                            "shape": (10 ** 12,)})
                data = head.getvalue() + data[data.index(b"\n") + 1:]
            zout.writestr(info.filename, data)


def test_hostile_files_get_one_line_errors(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert "named pipe" in one_line_error(capsys, 1, "train", fifo, "--quiet")
    (tmp_path / "empty.npy").write_bytes(b"")
    assert "empty" in one_line_error(capsys, 1, "train", tmp_path / "empty.npy", "--quiet")
    (tmp_path / "wide.csv").write_text("a,b\n1,\"" + "x" * 200_000 + "\"\n")
    assert "line 2: field larger" in one_line_error(capsys, 1, "train", tmp_path / "wide.csv", "--quiet")
    (tmp_path / "blank.csv").write_text("a,label\n1,0\n2,\n3,1\n")
    assert "line 3: the target 'label' is blank" in one_line_error(capsys, 1, "train", tmp_path / "blank.csv")
    n = datasets.MAX_CLASSES + 1  # ids: one output per distinct value would be too many classes
    (tmp_path / "ids.csv").write_text("a,id\n" + "".join(f"1,{i * 7}\n" for i in range(n)))
    err = one_line_error(capsys, 1, "train", tmp_path / "ids.csv", "--loss", "cross_entropy", "--quiet")
    assert f"{n:,} distinct values" in err and "--loss mse" in err
    assert run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    huge_shape_checkpoint(tmp_path / "points-checkpoint.npz", tmp_path / "huge.npz")
    assert "not a valid fastbatch checkpoint" in one_line_error(capsys, 1, "evaluate", tmp_path / "huge.npz", path)
    assert "named pipe" in one_line_error(capsys, 1, "predict", fifo, path)
    assert "named pipe" in one_line_error(capsys, 1, "evaluate", tmp_path / "points-checkpoint.npz", fifo)


@pytest.mark.parametrize("value", [str(2 ** 63), "2**63", "1e3", str(10 ** 30)])
def test_out_of_range_integers_are_usage_errors(capsys, csv_data, value):
    path, _, _ = csv_data
    err = one_line_error(capsys, 2, "train", path, "--batch-size", value, "--quiet")
    assert "batch" in err


def test_evaluate_refuses_a_file_without_the_target(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    assert run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    features = tmp_path / "features.csv"
    features.write_text("f0,f1,f2,f3\n" + "".join(",".join(map(str, r)) + "\n" for r in X[:20]))
    err = one_line_error(capsys, 1, "evaluate", tmp_path / "points-checkpoint.npz", features)
    assert "no column 'label'" in err
    code, out, err = run(capsys, "evaluate", tmp_path / "points-checkpoint.npz", path)  # found by its name
    assert code == 0 and "300 records" in out
    code, out, _ = run(capsys, "predict", tmp_path / "points-checkpoint.npz", path)
    assert code == 0 and len(out.splitlines()) == 301


def test_every_trainer_parameter_has_a_flag(capsys):
    from fastbatch.config import PARAMS
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    flags = {s for a in train._actions for s in a.option_strings}
    for p in PARAMS:
        assert "--" + p.name.replace("_", "-") in flags
    for old in ("--lr", "--no-shuffle", "--drop-last", "--nesterov", "--beta1", "--beta2", "--resume", "--force"):
        assert old in flags
    args = parser.parse_args(["train", "x.csv", "--no-shuffle", "--betas", "0.8,0.9", "--beta2", "0.99", "--lr", "0.5",
                              "--hidden", "4,2"])
    assert cli._trainer_options(args) == {"shuffle": False, "betas": (0.8, 0.99), "learning_rate": 0.5,
                                          "hidden": (4, 2)}


# ---------------------------------------------------------------------- smaller items (issue 13)

def test_python_m_fastbatch_help_prints_help():
    out = subprocess.run([sys.executable, "-m", "fastbatch", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: fastbatch") and "Epoch:" not in out.stdout


@pytest.mark.parametrize("steps, spe, words", [(30, 10, "3 epochs"), (26, 10, "2.6 epochs"), (10, 10, "1 epoch"),
                                               (3, 10, "0.30 epochs")])
def test_epoch_counts_are_worded_as_they_are(steps, spe, words):
    assert cli._epochs(steps, spe) == words


def test_progress_bar_is_closed_full_after_early_stopping(seed_data):
    import io
    pytest.importorskip("tqdm")
    X, y = seed_data
    tr = fb.Trainer(epochs=50, patience=1, validation_split=0.3, learning_rate=0.5)
    buf = io.StringIO()
    progress = cli.Progress(tr, file=buf)
    tr.fit(X, y, on_progress=progress)
    progress.close()
    assert tr.finished and tr.step < tr.total_steps  # it did stop early
    last = buf.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert "100%" in last and "stopped early" in last


# ---------------------------------------------------------------------- task, class names, metrics (issue 13)

def test_task_flag_and_its_conflict_with_loss(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    code, out, err = run(capsys, "train", path, "--task", "regression", "--out-dir", tmp_path, "--epochs", "1",
                         "--quiet")
    assert code == 0, err
    assert fb.Trainer.load(tmp_path / "points-checkpoint.npz").config["loss"] == "mse"
    err = one_line_error(capsys, 2, "train", path, "--task", "regression", "--loss", "cross_entropy")
    assert "--task regression and --loss cross_entropy disagree" in err


def test_warnings_are_one_line(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2)) * [1e-3, 1e4]
    np.savez(tmp_path / "raw.npz", X=X, y=(X[:, 0] > 0).astype(int))
    code, out, err = run(capsys, "train", tmp_path / "raw.npz", "--no-standardize", "--epochs", "1", "--quiet",
                         "--out-dir", tmp_path)
    assert code == 0 and err.startswith("fastbatch train: warning: X looks unscaled") and len(err.splitlines()) == 1


def test_class_names_are_kept_from_training_to_predictions(capsys, tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 2))
    names = np.select([X[:, 0] > 0.5, X[:, 0] < -0.5], ["high", "low"], "mid, or so")  # a comma, quoted
    write_csv(tmp_path / "named.csv", X, [f'"{n}"' for n in names], target="kind")
    code, out, err = run(capsys, "train", tmp_path / "named.csv", "--target", "kind", "--epochs", "30", "--quiet",
                         "--out-dir", tmp_path)
    assert code == 0, err
    ckpt = tmp_path / "named-checkpoint.npz"
    assert fb.Trainer.load(ckpt).info["classes"] == ["high", "low", "mid, or so"]
    # an evaluation file without any "high" rows: its names still mean what they meant in training
    keep = names != "high"
    write_csv(tmp_path / "part.csv", X[keep], [f'"{n}"' for n in names[keep]], target="kind")
    code, out, err = run(capsys, "evaluate", ckpt, tmp_path / "part.csv")
    assert code == 0, err
    assert float(out.split("accuracy ")[1].split()[0]) > 0.9 and "class low:" in out and "class high: 0" in out
    code, out, err = run(capsys, "predict", ckpt, tmp_path / "part.csv")
    rows = list(__import__("csv").reader(out.splitlines()))
    assert rows[0] == ["prediction", "proba_high", "proba_low", "proba_mid, or so"]
    got = np.array([r[0] for r in rows[1:]])
    assert (got == names[keep]).mean() > 0.9
    write_csv(tmp_path / "new.csv", X[:3], ["high", "zebra", "low"], target="kind")
    err = one_line_error(capsys, 1, "evaluate", ckpt, tmp_path / "new.csv")
    assert "line 3: the target 'kind' is 'zebra', not one of the classes" in err
    write_csv(tmp_path / "blank.csv", X[:3], ["", "", ""], target="kind")  # new records: no target yet
    code, out, err = run(capsys, "predict", ckpt, tmp_path / "blank.csv")
    assert code == 0 and len(out.splitlines()) == 4, err


def test_regression_evaluate_reports_r2_and_mae(capsys, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    np.savez(tmp_path / "reg.npz", X=X, y=X @ [1.0, -1.0, 0.5] + 0.01 * rng.normal(size=300))
    assert run(capsys, "train", tmp_path / "reg.npz", "--epochs", "30", "--optimizer", "adam", "--out-dir", tmp_path,
               "--quiet")[0] == 0
    code, out, _ = run(capsys, "evaluate", tmp_path / "reg-checkpoint.npz", tmp_path / "reg.npz")
    assert code == 0 and "R2 0.9" in out and "MAE " in out and "accuracy" not in out


# ---------------------------------------------------------------------- compare (#14)

COMPARE_OPTS = ["--target", "label", "--hidden", "8", "--epochs", "4", "--learning-rate", "0.05", "--seed", "3"]


def read_comparison(path):
    with open(path) as f:
        header = f.readline().strip()
        rows = np.array([[float(v) for v in line.split(",")] for line in f])
    return header, rows


def test_compare_prints_a_table_and_writes_the_comparison_csv(capsys, csv_data, tmp_path):
    path, X, _ = csv_data
    prefix = tmp_path / "out" / "cmp"
    code, out, err = run(capsys, "compare", path, "--batch-sizes", "1,4,full", "--out", prefix, *COMPARE_OPTS)
    assert code == 0, err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["batch", "lr"])
    assert "steps/s" in lines[head] and "noise scale" in lines[head] and "val loss" not in lines[head]
    assert lines[head + 1].split() == ["(records)", "(records)", "(records)"]  # the units row
    table = lines[head + 2:head + 5]
    assert [line.split()[0] for line in table] == ["1", "4", "300"]
    assert table[0].split()[4] == "1,200"  # one number format: thousands separators (4 epochs x 300 steps)
    assert table[0].split()[-1] == "-"     # batch 1 carries no noise-scale estimate
    assert sum("<- suggested" in line for line in table) == 1
    assert "suggested batch size:" in out and f"comparison: {prefix}.csv" in out
    header, rows = read_comparison(f"{prefix}.csv")
    assert header == "batch_size,step,epoch,records_seen,seconds,loss"
    for b in (1, 4, 300):
        run_rows = rows[rows[:, 0] == b]
        spe = -(-300 // b)
        assert len(run_rows) == 4 * spe
        assert list(run_rows[:, 1]) == list(range(1, 4 * spe + 1))          # steps from 1
        assert list(run_rows[:, 2]) == [1 + i // spe for i in range(4 * spe)]  # epochs from 1
        assert run_rows[-1, 3] == 4 * 300 and np.all(np.diff(run_rows[:, 4]) > 0)


def test_compare_runs_what_train_runs(capsys, csv_data, tmp_path):
    """The same task rule, standardisation and options as train: each run's losses are train's, bit for bit."""
    path, _, _ = csv_data
    code, _, err = run(capsys, "compare", path, "--batch-sizes", "16,32", "--out", tmp_path / "cmp", *COMPARE_OPTS)
    assert code == 0, err
    _, rows = read_comparison(tmp_path / "cmp.csv")
    code, _, err = run(capsys, "train", path, "--batch-size", "16", "--out-dir", tmp_path, "--quiet", *COMPARE_OPTS)
    assert code == 0, err
    trained = np.genfromtxt(tmp_path / "points-history.csv", delimiter=",", names=True)
    assert np.array_equal(rows[rows[:, 0] == 16][:, 5], trained["loss"])


def test_compare_writes_a_figure(capsys, csv_data, tmp_path):
    pytest.importorskip("matplotlib")
    path, _, _ = csv_data
    code, out, err = run(capsys, "compare", path, "--batch-sizes", "2,32", "--out", tmp_path / "cmp", *COMPARE_OPTS)
    assert code == 0, err
    assert f"figure:     {tmp_path / 'cmp'}.png" in out
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from fastbatch._plot import comparison_figure
    histories, summary = fb.compare_batch_sizes(*datasets.load(path), [2, 32], hidden=(4,), epochs=2)
    rows = summary.to_dict("records") if hasattr(summary, "to_dict") else summary
    by_records, by_seconds = comparison_figure(histories, rows, "title").axes
    assert by_records.get_xlabel() == "records seen" and by_seconds.get_xlabel().startswith("seconds")
    assert [t.get_text() for t in by_seconds.get_legend().get_texts()] == ["batch 2", "batch 32"]


def test_compare_without_matplotlib_writes_the_csv(capsys, csv_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path, _, _ = csv_data
    code, out, err = run(capsys, "compare", path, "--batch-sizes", "8", "--out", tmp_path / "cmp", *COMPARE_OPTS)
    assert code == 0, err
    assert "figure:     not written: matplotlib is not installed" in out
    assert (tmp_path / "cmp.csv").exists() and not (tmp_path / "cmp.png").exists()
    (tmp_path / "cmp.png").write_bytes(b"an earlier comparison's figure")  # (removed: it would pass for this one's)
    code, out, err = run(capsys, "compare", path, "--batch-sizes", "8", "--out", tmp_path / "cmp", *COMPARE_OPTS)
    assert code == 0, err
    assert f"(removed {tmp_path / 'cmp'}.png: it plotted an earlier comparison)" in out
    assert not (tmp_path / "cmp.png").exists()


def test_compare_never_writes_over_its_data(capsys, csv_data, tmp_path):
    """--out names a prefix: PREFIX.csv (or .png) being the data file is refused before any run, the data intact."""
    path, _, _ = csv_data
    before = path.read_bytes()
    for prefix in (tmp_path / "points", os.path.relpath(tmp_path / "points")):
        code, out, err = run(capsys, "compare", path, "--batch-sizes", "8", "--out", prefix, *COMPARE_OPTS)
        assert code == 2 and "the data file" in err and "training" not in err and out == ""
        assert path.read_bytes() == before


@pytest.mark.parametrize("extra, words", [
    (["--batch-size", "8"], "--batch-sizes, not --batch-size"),
    (["--batch-sizes", "0,8"], "at least 1"),
    (["--batch-sizes", "8,big"], "batch sizes like"),
    (["--scale-lr", "cubic"], "invalid choice"),
    (["--epochs", "0"], "epochs"),
    (["--patience", "2", "--validation-split", "0.2"], "leave --patience out"),   # (it ran: unequal budgets)
    (["--reference-batch-size", "8"], "only with --scale-lr"),   # (it was ignored: one rate for every size)
])
def test_compare_usage_errors_exit_2(capsys, csv_data, tmp_path, extra, words):
    path, _, _ = csv_data
    code, out, err = run(capsys, "compare", path, "--out", tmp_path / "cmp", *extra)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_comparison_table_format():
    nan = float("nan")
    rows = [{"batch_size": b, "learning_rate": 0.01, "steps_per_epoch": spe, "last_batch": 1, "steps": 10 * spe,
             "steps_per_s": 12345.6, "records_per_s": 1e6, "seconds_per_epoch": 9.5e-5, "train_loss": 0.5,
             "val_loss": nan, "noise_scale": noise, "suggested": b == 64}
            for b, spe, noise in ((1, 1500, nan), (64, 24, 700.0), (1500, 1, float("inf")))]
    text = cli.comparison_table(rows)
    lines = text.splitlines()
    assert len({len(line.split("<-")[0].rstrip()) for line in lines[2:]}) <= 2 and "val loss" not in lines[0]
    assert lines[2].split()[:5] == ["1", "0.01", "1,500", "1", "15,000"]
    assert "0.000095" in lines[2] and "e-" not in text  # one format: never e-notation
    assert lines[3].endswith("<- suggested") and lines[4].split()[-1] == "inf"
    assert cli._suggestion_line(rows).startswith("suggested batch size: 64")


# ---------------------------------------------------------------------- train --track-noise (#14)

def test_train_track_noise_prints_each_epoch_and_a_suggestion(capsys, csv_data, tmp_path):
    path, _, _ = csv_data
    code, out, err = run(capsys, "train", path, "--batch-size", "16", "--track-noise",
                         "--out-dir", tmp_path, *COMPARE_OPTS)
    assert code == 0, err
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1", "epoch 2", "epoch 3", "epoch 4"]
    assert all("noise scale" in line for line in epoch_lines)
    last = next(line for line in out.splitlines() if line.startswith("measured noise scale"))
    assert "well below waste steps, well above waste records; try " in last
    pick = int(last.rsplit("try ", 1)[1].replace(",", ""))
    assert pick == 300 or pick & (pick - 1) == 0  # a power of two, or all the records


def test_train_quiet_prints_no_line_per_epoch(capsys, csv_data, tmp_path, monkeypatch):
    # --quiet: no progress bar and no per-epoch lines (--track-noise's neither), so the run pays no epoch hook
    path, _, _ = csv_data
    hooked = []
    fit = fb.Trainer.fit
    monkeypatch.setattr(fb.Trainer, "fit", lambda self, *a, **kw: hooked.append(
        (kw.get("on_progress"), kw.get("callbacks"), kw.get("verbose"))) or fit(self, *a, **kw))
    code, out, err = run(capsys, "train", path, "--batch-size", "16", "--track-noise", "--quiet",
                         "--out-dir", tmp_path, *COMPARE_OPTS)
    assert code == 0, err
    assert not [line for line in out.lower().splitlines() if line.startswith("epoch ")], out
    assert hooked == [(None, [], 0)] and err == ""
    assert any(line.startswith("measured noise scale") for line in out.splitlines())  # the run's, in the summary


def test_train_track_noise_at_batch_1_says_there_is_no_estimate(capsys, csv_data, tmp_path):
    path, _, _ = csv_data
    code, out, err = run(capsys, "train", path, "--batch-size", "1", "--track-noise", "--quiet",
                         "--out-dir", tmp_path, *COMPARE_OPTS[:-4])
    assert code == 0, err
    assert "batch 1 carries no noise-scale estimate" in out and "epoch 1:" not in out


def noise_history(g2, S, batch=32, steps=10, n_records=1000):
    noise = np.tile([g2, S], (steps, 1)).astype(np.float64)
    return fb.History(np.ones(steps), np.full(steps, 0.01), [batch] * steps, steps, n_records, noise=noise)


def test_noise_suggestion_reads_the_history():
    # B = 32: B_simple = 32 (S - g2) / (32 g2 - S) = 640 with g2 = 1, S = 32 * 641 / 672
    h = noise_history(1.0, 32 * 641 / 672)
    assert h.noise_scale() == pytest.approx([640.0])
    line = cli.noise_suggestion(h)
    assert line.startswith("measured noise scale ~ 640 records") and line.endswith("try 512")
    swamped = cli.noise_suggestion(noise_history(1.0, 64.0))  # |G|^2 estimated below 0: the noise swamps it
    assert "beyond what batch 32 can measure" in swamped and swamped.endswith("try 1,000")


# ---------------------------------------------------------------------- plan: memory per step (#14)

def test_plan_shows_the_memory_a_step_needs(capsys):
    code, out, err = run(capsys, "plan", "--records", 60000, "--batch-size", 64, "--epochs", 1, "--features", 784,
                         "--hidden", "256,128", "--outputs", 10, "--optimizer", "sgd", "--dtype", "float64")
    assert code == 0, err
    memory = fb.plan(60000, 64, 1, layers=(784, 256, 128, 10), dtype="float64", optimizer="sgd").step_memory()
    from fastbatch.schedule import format_bytes
    assert f"batch 64: {format_bytes(memory['total'])} per step" in out
    assert "784-256-128-10, sgd, float64" in out and "optimizer state:" in out


def test_plan_memory_needs_the_network(capsys):
    code, out, err = run(capsys, "plan", "--records", 100, "--batch-size", 8, "--epochs", 1, "--hidden", "4")
    assert code == 2 and "--features and --outputs" in err and out == ""
    code, out, _ = run(capsys, "plan", "--records", 100, "--batch-size", 8, "--epochs", 1)
    assert code == 0 and "per step" not in out


# ---------------------------------------------------------------------- columns by name, numeric labels, --quiet

def test_evaluate_and_predict_take_the_features_by_name(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    assert run(capsys, "train", path, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "points-checkpoint.npz"
    _, evaluated, _ = run(capsys, "evaluate", ckpt, path)
    _, predicted, _ = run(capsys, "predict", ckpt, path)
    order = [3, 1, 0, 2]
    shuffled = tmp_path / "shuffled.csv"  # the same columns in another order, the target first
    shuffled.write_text("label," + ",".join(f"f{j}" for j in order) + "\n" + "".join(
        f"{t}," + ",".join(repr(float(v)) for v in row[order]) + "\n" for row, t in zip(X, y)))
    code, out, err = run(capsys, "evaluate", ckpt, shuffled)
    assert code == 0 and out == evaluated, err
    code, out, err = run(capsys, "predict", ckpt, shuffled)
    assert code == 0 and out == predicted, err
    features = tmp_path / "features.csv"  # no target column: all four features, reordered
    features.write_text(",".join(f"f{j}" for j in order) + "\n" + "".join(
        ",".join(repr(float(v)) for v in row[order]) + "\n" for row in X))
    code, out, err = run(capsys, "predict", ckpt, features)
    assert code == 0 and out == predicted, err
    # a missing feature, or a column the network never saw, is named (train takes every column as a feature)
    write_csv(tmp_path / "three.csv", X[:, :3], y)
    err = one_line_error(capsys, 1, "evaluate", ckpt, tmp_path / "three.csv")
    assert "no feature column 'f3'" in err
    (tmp_path / "extra.csv").write_text(features.read_text().replace("\n", ",1\n").replace("f2,1", "f2,id", 1))
    err = one_line_error(capsys, 1, "predict", ckpt, tmp_path / "extra.csv")
    assert "column 'id', which the network" in err
    # a file without names is taken by position, and must have the network's number of inputs
    np.save(tmp_path / "wide.npy", np.column_stack([X, X[:, :2], y]))
    err = one_line_error(capsys, 1, "evaluate", ckpt, tmp_path / "wide.npy")
    assert "has 6 feature columns besides its target" in err and "takes 4" in err


@pytest.mark.parametrize("labels", [(-1, 1), (1, 2, 3), (0, 10, 20)])
def test_numeric_class_labels_are_coded_and_written_back(capsys, tmp_path, labels):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(240, 2))
    k = len(labels)
    codes = np.digitize(X[:, 0], np.quantile(X[:, 0], np.arange(1, k) / k))
    write_csv(tmp_path / "num.csv", X, np.array(labels)[codes])
    code, out, err = run(capsys, "train", tmp_path / "num.csv", "--epochs", "30", "--optimizer", "adam",
                         "--out-dir", tmp_path, "--quiet", "--seed", "1")
    assert code == 0, err
    ckpt = tmp_path / "num-checkpoint.npz"
    tr = fb.Trainer.load(ckpt)
    assert tr.info["classes"] == list(labels) and tr.get_params()[-1][0].shape[1] == k  # one output per label
    # the run is the one on the codes 0..k-1
    ref = fb.Trainer(epochs=30, optimizer="adam", seed=1, standardize=True).fit(X, codes)
    assert np.array_equal(tr.history.loss, ref.loss)
    code, out, err = run(capsys, "predict", ckpt, tmp_path / "num.csv")
    rows = out.splitlines()
    assert code == 0 and rows[0] == "prediction," + ",".join(f"proba_{v}" for v in labels), err
    got = np.array([int(r.split(",")[0]) for r in rows[1:]])
    assert (got == np.array(labels)[codes]).mean() > 0.85
    keep = codes > 0  # an evaluation file without the first label: its labels still mean what they meant
    write_csv(tmp_path / "part.csv", X[keep], [f"{v}.0" for v in np.array(labels)[codes[keep]]])
    code, out, err = run(capsys, "evaluate", ckpt, tmp_path / "part.csv")
    assert code == 0, err
    assert f"class {labels[1]}: {int((codes == 1).sum())} records" in out and f"class {labels[-1]}:" in out
    assert float(out.split("accuracy ")[1].split()[0]) > 0.85
    write_csv(tmp_path / "unseen.csv", X[:3], [labels[0], 7, labels[0]])
    err = one_line_error(capsys, 1, "evaluate", ckpt, tmp_path / "unseen.csv")
    assert "record 2 (counting from 1): the target 'label' is 7, not one of the labels" in err


@pytest.mark.parametrize("labels", [(0, 1), (0, 1, 2)])
def test_labels_already_0_to_k_minus_1_train_as_before(capsys, tmp_path, labels):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 3))
    y = np.arange(120) % len(labels)
    write_csv(tmp_path / "plain.csv", X, y)
    code, _, err = run(capsys, "train", tmp_path / "plain.csv", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)
    assert code == 0, err
    tr = fb.Trainer.load(tmp_path / "plain-checkpoint.npz")
    ref = fb.Trainer(hidden=(8,), epochs=3, batch_size=32, learning_rate=0.1, seed=3, standardize=True).fit(X, y)
    assert tr.info["classes"] is None and np.array_equal(tr.history.loss, ref.loss)


def test_train_quiet_still_says_which_task_and_why(capsys, csv_data, tmp_path):
    path, _, _ = csv_data
    code, out, err = run(capsys, "train", path, "--out-dir", tmp_path, "--epochs", "1", "--quiet")
    assert code == 0 and err == "", err  # no progress bar
    assert "target 'label': 2 distinct whole-number values -> classification (cross_entropy)" in out


def test_predict_of_a_network_trained_on_one_class_names_that_class(capsys, tmp_path):
    X = np.random.default_rng(4).normal(size=(40, 2))
    write_csv(tmp_path / "one.csv", X, ["only"] * 40, target="kind")
    code, out, err = run(capsys, "train", tmp_path / "one.csv", "--target", "kind", "--epochs", "2", "--quiet",
                         "--out-dir", tmp_path)
    assert code == 0, err
    code, out, err = run(capsys, "predict", tmp_path / "one-checkpoint.npz", tmp_path / "one.csv")
    assert code == 0, err  # (an IndexError's traceback before: the network's second output has no name)
    rows = list(__import__("csv").reader(out.splitlines()))
    assert rows[0] == ["prediction", "proba_only"] and len(rows) == 41
    assert all(r == ["only", "1"] or (r[0] == "only" and float(r[1]) == 1.0) for r in rows[1:])


def test_a_csv_without_a_header_trains_on_every_record_and_predicts_by_position(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    bare = tmp_path / "bare.csv"
    np.savetxt(bare, np.column_stack([X, y]), delimiter=",")   # no header row
    code, out, err = run(capsys, "train", bare, "--out-dir", tmp_path, *TRAIN_OPTS)
    assert code == 0, err
    assert "bare.csv has no header row" in out and "the target is column 4" in out
    tr = fb.Trainer.load(tmp_path / "bare-checkpoint.npz")
    assert tr.plan.n_records == len(X)          # the first record too (it was taken for the header)
    assert tr.info["features"] == ["0", "1", "2", "3"] and not tr.info["features_named"]
    code, out, err = run(capsys, "predict", tmp_path / "bare-checkpoint.npz", bare)
    assert code == 0, err
    assert len(out.splitlines()) == len(X) + 1
    # said (on stderr: stdout is the predictions): a file laid out otherwise would be read wrongly
    assert "has no column names: its columns are taken in the training file's order, the target ('4') as " \
           "column 5 of 5" in err
    code, out, err = run(capsys, "evaluate", tmp_path / "bare-checkpoint.npz", bare)
    assert code == 0 and f"({len(X)} records)" in out, err


def test_a_npy_trained_with_its_target_first_is_predicted_and_evaluated_with_that_column(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    np.save(tmp_path / "first.npy", np.column_stack([y, X]))
    np.save(tmp_path / "features.npy", X)
    assert run(capsys, "train", tmp_path / "first.npy", "--target", "0", "--out-dir", tmp_path, "--quiet",
               *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "first-checkpoint.npz"
    outs = []
    for data in ("first.npy", "features.npy"):      # the target column at index 0, or no target column
        code, out, err = run(capsys, "predict", ckpt, tmp_path / data)
        assert code == 0, err
        outs.append([int(r.split(",")[0]) for r in out.splitlines()[1:]])
    assert outs[0] == outs[1] and np.mean(np.array(outs[0]) == y) > 0.9   # (the last feature was dropped: 0.5)
    code, out, err = run(capsys, "evaluate", ckpt, tmp_path / "first.npy")
    assert code == 0 and float(out.split("accuracy ")[1].split()[0]) > 0.9, err


def test_resuming_on_the_same_columns_in_another_order_matches_them_by_name(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    assert run(capsys, "train", path, "--out-dir", tmp_path / "a", "--quiet", *TRAIN_OPTS)[0] == 0
    order = [2, 0, 3, 1]
    swapped = tmp_path / "swapped.csv"
    swapped.write_text(",".join(f"f{j}" for j in order) + ",label\n" + "".join(
        ",".join(repr(float(v)) for v in row[order]) + f",{t}\n" for row, t in zip(X, y)))
    runs = []
    for data, out in ((path, "b"), (swapped, "c")):   # the same records: the same run, without --force
        code, _, err = run(capsys, "train", data, "--resume", tmp_path / "a" / "points-checkpoint.npz",
                           "--epochs", "6", "--out-dir", tmp_path / out, "--quiet")
        assert code == 0, err
        runs.append(fb.Trainer.load(next((tmp_path / out).glob("*-checkpoint.npz"))))
    for (W1, b1), (W2, b2) in zip(runs[0].get_params(), runs[1].get_params()):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    assert runs[1].info["features"] == ["f0", "f1", "f2", "f3"]


@pytest.mark.parametrize("flag", [["--task", "regression"], ["--loss", "mse"]])
def test_regression_on_class_names_is_refused(capsys, csv_data, tmp_path, flag):
    path, X, y = csv_data
    write_csv(tmp_path / "named.csv", X, np.array(["cat", "dog"])[y])
    err = one_line_error(capsys, 1, "train", tmp_path / "named.csv", *flag, "--out-dir", tmp_path, "--quiet")
    assert "class names ('cat', 'dog')" in err and "regression" in err
    assert not list(tmp_path.glob("*-checkpoint.npz"))   # (it trained on the codes; predict then raised)


@pytest.mark.parametrize("field, value", [("classes", ["a", "b"]), ("classes", "abc"), ("classes", ["a", 1, "c"]),
                                          ("features", ["f0"]), ("target", 3), ("features_named", "yes"),
                                          ("target_column", 7)])
def test_a_checkpoints_names_that_do_not_fit_its_network_are_refused(capsys, tmp_path, field, value):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 2))
    write_csv(tmp_path / "named.csv", X, np.array(["high", "low", "mid"])[rng.integers(0, 3, 60)], target="kind")
    assert run(capsys, "train", tmp_path / "named.csv", "--epochs", "1", "--quiet", "--out-dir", tmp_path)[0] == 0
    tr = fb.Trainer.load(tmp_path / "named-checkpoint.npz")
    tr.info[field] = value                       # a valid file (its digest is right) with names edited
    tr.save(tmp_path / "edited.npz")
    for argv in (["predict", tmp_path / "edited.npz", tmp_path / "named.csv"],
                 ["evaluate", tmp_path / "edited.npz", tmp_path / "named.csv"],
                 ["train", tmp_path / "named.csv", "--resume", tmp_path / "edited.npz", "--epochs", "2",
                  "--out-dir", tmp_path / "more", "--quiet"]):
        err = one_line_error(capsys, 1, *argv)   # (predict raised an IndexError's traceback)
        assert "is not a valid fastbatch checkpoint" in err and field in err


def test_predict_takes_a_npz_of_new_records_without_y(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    np.savez(tmp_path / "new.npz", X=X[:50])
    assert run(capsys, "train", tmp_path / "xy.npz", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    code, out, err = run(capsys, "predict", tmp_path / "xy-checkpoint.npz", tmp_path / "new.npz")
    assert code == 0 and len(out.splitlines()) == 51, err        # (refused: "a .npz needs arrays named 'X' and 'y'")
    err = one_line_error(capsys, 1, "evaluate", tmp_path / "xy-checkpoint.npz", tmp_path / "new.npz")
    assert "needs arrays named 'X' and 'y'" in err                 # evaluate needs the true targets


def test_predict_never_writes_over_its_checkpoint_or_data_and_resume_says_whose_task_it_is(capsys, csv_data,
                                                                                            tmp_path):
    path, X, y = csv_data
    code, out, _ = run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)
    ckpt = tmp_path / "points-checkpoint.npz"
    before = ckpt.read_bytes()
    for target in (ckpt, path):
        err = one_line_error(capsys, 1, "predict", ckpt, path, "--out", target)
        assert "would overwrite it" in err
    assert ckpt.read_bytes() == before and fb.Trainer.load(ckpt).started
    code, out, err = run(capsys, "train", path, "--resume", ckpt, "--epochs", "4", "--out-dir", tmp_path / "r",
                         "--quiet")
    assert code == 0, err
    assert "the resumed run's task -> classification (cross_entropy)" in out and "was asked for" not in out


def test_files_without_names_are_read_with_the_target_where_training_had_it(capsys, tmp_path):
    # a checkpoint from a headed CSV whose target came first: a .npy or headerless CSV of the same values
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    data = np.column_stack([y, X])                                          # the target first
    (tmp_path / "first.csv").write_text("label,f0,f1,f2\n" + "".join(
        f"{int(r[0])}," + ",".join(repr(float(v)) for v in r[1:]) + "\n" for r in data))
    np.save(tmp_path / "first.npy", data)
    np.savetxt(tmp_path / "bare.csv", data, delimiter=",")
    assert run(capsys, "train", tmp_path / "first.csv", "--target", "label", "--out-dir", tmp_path, "--quiet",
               *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "first-checkpoint.npz"
    said = [run(capsys, "evaluate", ckpt, tmp_path / f)[1] for f in ("first.csv", "first.npy", "bare.csv")]
    assert said[0] == said[1].replace("first.npy", "first.csv") and said[1] == said[2]   # (0.28 accuracy before)
    predicted = [run(capsys, "predict", ckpt, tmp_path / f)[1] for f in ("first.csv", "first.npy", "bare.csv")]
    assert predicted[0] == predicted[1] == predicted[2]


def test_a_header_of_numbers_the_network_was_trained_on_is_a_header(capsys, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    years = ["2019", "2020", "2021"]
    write = lambda path, cols, rows: path.write_text(",".join(cols) + "\n" + "".join(
        ",".join(repr(float(v)) for v in r) + "\n" for r in rows))
    write(tmp_path / "years.csv", years + ["label"], np.column_stack([X, y]))
    assert run(capsys, "train", tmp_path / "years.csv", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "years-checkpoint.npz"
    write(tmp_path / "new.csv", years, X[:5])                      # new records: features only, numeric names
    write(tmp_path / "swapped.csv", years[::-1], X[:5, ::-1])
    code, out, err = run(capsys, "predict", ckpt, tmp_path / "new.csv")
    assert code == 0 and len(out.splitlines()) == 6, err            # (6 predictions: the header as a record)
    assert run(capsys, "predict", ckpt, tmp_path / "swapped.csv")[1] == out   # matched by name


def test_a_headerless_csv_with_a_text_target_keeps_its_first_record(capsys, tmp_path):
    # UCI's iris.data: 5.1,3.5,1.4,0.2,Iris-setosa, no header; its first row's one text cell is a class
    rng = np.random.default_rng(2)
    X = rng.normal(size=(90, 4))
    names = np.array(["Iris-setosa", "Iris-versicolor", "Iris-virginica"])[np.arange(90) % 3]
    (tmp_path / "iris.data.csv").write_text("".join(",".join(f"{v:.2f}" for v in r) + f",{c}\n"
                                                    for r, c in zip(X, names)))
    code, out, err = run(capsys, "train", tmp_path / "iris.data.csv", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)
    assert code == 0 and "has no header row" in out, err
    tr = fb.Trainer.load(tmp_path / "iris.data-checkpoint.npz")
    assert tr.plan.n_records == 90 and tr.info["classes"] == list(names[:3])   # (89: the first was the header)


def test_resume_keeps_the_runs_target_column_and_its_labels_meaning(capsys, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 3))
    y = np.arange(150) % 3                                     # labels 0, 1, 2: no classes recorded
    rows = lambda Xs, ys: "".join(f"{t}," + ",".join(repr(float(v)) for v in r) + "\n" for r, t in zip(Xs, ys))
    (tmp_path / "first.csv").write_text("label,a,b,c\n" + rows(X, y))
    assert run(capsys, "train", tmp_path / "first.csv", "--target", "label", "--out-dir", tmp_path / "a",
               "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "a" / "first-checkpoint.npz"
    # resumed without --target: the run's own column (it took the last column, then refused the data)
    code, _, err = run(capsys, "train", tmp_path / "first.csv", "--resume", ckpt, "--epochs", "4", "--out-dir",
                       tmp_path / "b", "--quiet")
    assert code == 0, err
    # other data without label 0, forced: labels 1 and 2 stay outputs 1 and 2 (they became 0 and 1)
    (tmp_path / "other.csv").write_text("label,a,b,c\n" + rows(X, np.where(y == 0, 1, y)))
    code, _, err = run(capsys, "train", tmp_path / "other.csv", "--resume", ckpt, "--epochs", "4", "--force",
                       "--out-dir", tmp_path / "c", "--quiet")
    assert code == 0, err
    code, out, err = run(capsys, "predict", tmp_path / "c" / "other-checkpoint.npz", tmp_path / "first.csv")
    assert code == 0, err                                        # (the checkpoint was refused: classes [1, 2])
    assert {r.split(",")[0] for r in out.splitlines()[1:]} <= {"0", "1", "2"}


def test_a_ctrl_c_while_the_outputs_are_written_waits_for_them(capsys, csv_data, tmp_path, monkeypatch):
    # (the default handler was back by then: the history was cut short, no checkpoint, no --resume line)
    path, X, y = csv_data
    real = fb.History.to_csv

    def to_csv(self, out):
        signal.raise_signal(signal.SIGINT)   # Ctrl-C as the history is written
        return real(self, out)
    monkeypatch.setattr(fb.History, "to_csv", to_csv)
    code, out, err = run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)
    assert code == 0, err                    # the run had ended: a Ctrl-C then interrupts nothing
    assert fb.Trainer.load(tmp_path / "points-checkpoint.npz").finished
    assert len((tmp_path / "points-history.csv").read_text().splitlines()) == fb.Trainer.load(
        tmp_path / "points-checkpoint.npz").step + 1
    assert not list(tmp_path.glob(".history-*")) and not list(tmp_path.glob(".fastbatch-*"))


def test_an_out_dir_that_cannot_be_written_is_refused_before_the_run(capsys, csv_data, tmp_path, monkeypatch):
    """A read-only --out-dir was found out by the checkpoint's save, after the whole run: the run was lost."""
    import errno
    from fastbatch import _archive
    path, _, _ = csv_data
    locked = tmp_path / "locked"
    locked.mkdir()
    real = _archive._create_temporary

    def create(folder):  # as the OS refuses a non-root user a folder of mode 0555 (root is never refused)
        if os.path.samefile(folder, locked):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(folder)
    monkeypatch.setattr(_archive, "_create_temporary", create)
    fits = []
    monkeypatch.setattr(fb.Trainer, "fit", lambda self, *a, **k: fits.append(1))
    code, out, err = run(capsys, "train", path, "--out-dir", locked, "--quiet", *TRAIN_OPTS)
    assert code == 1 and not fits
    assert "Permission denied" in err and str(locked) in err and "cannot be written" in err
    import fastbatch.compare
    runs = []  # compare: its runs were all trained before PREFIX.csv was refused
    monkeypatch.setattr(fastbatch.compare, "compare_batch_sizes", lambda *a, **k: runs.append(1))
    code, out, err = run(capsys, "compare", path, "--out", locked / "cmp", "--batch-sizes", "8", *COMPARE_OPTS)
    assert code == 1 and not runs and "cannot be written" in err and str(locked) in err


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_train_outputs_have_the_modes_the_umask_gives(capsys, csv_data, tmp_path, mask):
    """The history CSV as the checkpoint and the plot: 0644 under umask 022 (it was mkstemp's 0600, whatever the umask)."""
    import stat
    path, _, _ = csv_data
    old = os.umask(mask)
    try:
        code, _, err = run(capsys, "train", path, "--out-dir", tmp_path / "run", "--quiet", *TRAIN_OPTS)
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("points-history.csv", "points-checkpoint.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / "run" / name).st_mode) == 0o666 & ~mask, name


def test_a_csv_header_of_numbers_is_matched_by_name_too(capsys, csv_data, tmp_path):
    # pandas writes "0,1,2,..." for unnamed columns: still a header, so a reordered file is matched by it
    path, X, y = csv_data
    numbered = tmp_path / "numbered.csv"
    numbered.write_text("0,1,2,3,label\n" + "".join(",".join(repr(float(v)) for v in row) + f",{t}\n"
                                                   for row, t in zip(X, y)))
    assert run(capsys, "train", numbered, "--target", "label", "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    ckpt = tmp_path / "numbered-checkpoint.npz"
    _, evaluated, _ = run(capsys, "evaluate", ckpt, numbered)
    order = [3, 1, 0, 2]
    swapped = tmp_path / "swapped.csv"
    swapped.write_text(",".join(map(str, order)) + ",label\n" + "".join(
        ",".join(repr(float(v)) for v in row[order]) + f",{t}\n" for row, t in zip(X, y)))
    code, out, err = run(capsys, "evaluate", ckpt, swapped)
    assert code == 0 and out == evaluated, err  # (positions before: accuracy about a coin's)


def test_a_header_naming_a_column_twice_is_refused(capsys, tmp_path):
    """Columns are matched by name (the target, a checkpoint's features in any order): two columns of one name
    trained, then a reordered file scored 0.51 instead of 0.97, without a word."""
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a,t\n1,2,3,0\n4,5,6,1\n")
    code, out, err = run(capsys, "train", path, "--out-dir", tmp_path, "--quiet")
    assert code == cli.EXIT_DATA
    assert "names column 'a' twice (columns 1 and 3)" in err


def test_python_m_fastbatch_steps_into_a_closed_pipe_is_no_traceback():
    """The demo path of ``python -m fastbatch`` goes through the command's error handling (head closing the
    pipe gave a BrokenPipeError traceback in 2 of 3 runs)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run(f"{sys.executable} -m fastbatch --steps | head -2", shell=True, capture_output=True,
                       text=True, env=env, timeout=120)
    assert "Traceback" not in r.stderr and len(r.stdout.splitlines()) == 2


def test_columns_taken_by_position_are_said_so(capsys, csv_data, tmp_path):
    """A headerless file of features only, and a file with a header for a network trained without names, are read
    by position: said on stderr (they were read silently; the reversed header scored 35%)."""
    path, X, y = csv_data
    assert run(capsys, "train", path, "--out-dir", tmp_path / "named", "--quiet", *TRAIN_OPTS)[0] == 0
    features = tmp_path / "features.csv"
    np.savetxt(features, X, delimiter=",")                        # no header, no target
    code, out, err = run(capsys, "predict", tmp_path / "named" / "points-checkpoint.npz", features)
    assert code == 0 and "features.csv has no column names: its columns are taken in the training file's order" in err
    bare = tmp_path / "bare.csv"
    np.savetxt(bare, np.column_stack([X, y]), delimiter=",")
    assert run(capsys, "train", bare, "--out-dir", tmp_path / "bare", "--quiet", *TRAIN_OPTS)[0] == 0
    headed = tmp_path / "headed.csv"
    write_csv(headed, X[:, ::-1], y)                              # names, in another order
    for command in ("predict", "evaluate"):
        code, out, err = run(capsys, command, tmp_path / "bare" / "bare-checkpoint.npz", headed)
        assert code == 0 and "was trained on columns without names: the columns of" in err, (command, err)
        assert err.count("taken in the training file's order") == 1


def test_a_predict_file_naming_a_column_twice_says_so(capsys, csv_data, tmp_path):
    path, X, y = csv_data
    assert run(capsys, "train", path, "--out-dir", tmp_path, "--quiet", *TRAIN_OPTS)[0] == 0
    dup = tmp_path / "dup.csv"
    header = path.read_text().splitlines()[0].split(",")
    dup.write_text(",".join([header[0], header[1], header[0], header[3]]) + "\n1,2,3,4\n")
    code, out, err = run(capsys, "predict", tmp_path / "points-checkpoint.npz", dup)
    assert code == cli.EXIT_DATA and f"names column {header[0]!r} twice (columns 1 and 3)" in err, err
