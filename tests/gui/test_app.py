"""fastbatch-gui's command line: the same code path as the buttons, headless."""
import os
import subprocess
import sys

import pytest

SCRIPT = "import sys; from fastbatch_gui.app import main; sys.exit(main())"


def run_app(*args, cwd):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_autorun_writes_the_screenshot_and_history_then_exits_0(tmp_path):
    r = run_app("--records", "1000", "--batch-size", "64", "--epochs", "5", "--learning-rate", "0.1", "--seed", "0",
                "--autorun", "--screenshot", "out.png", "--export-history", "out.csv", "--exit-when-done",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,batch,batch_size,loss,learning_rate,records_seen"
    assert len(lines) == 81
    assert lines[1].split(",")[5] == "0.1"
    png = (tmp_path / "out.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_every_flag_reaches_its_control(tmp_path):
    import numpy as np
    from fastbatch import datasets
    X, y = datasets.make("xor", 90, 2, seed=0)
    np.save(tmp_path / "d.npy", np.column_stack([y, X]))
    r = run_app("--data", "d.npy", "--target", "0", "--batch-size", "32", "--epochs", "2", "--hidden", "8",
                "--layers", "2", "--activation", "tanh", "--optimizer", "adam", "--backend", "numpy",
                "--no-shuffle", "--drop-last", "--validation-split", "0.1", "--learning-rate", "0.01",
                "--autorun", "--export-history", "h.csv", "--exit-when-done", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "h.csv").read_text().splitlines()
    # 81 training records, batches of 32 with the last dropped: 2 steps per epoch, 2 epochs
    assert len(lines) == 1 + 4
    assert [int(row.split(",")[3]) for row in lines[1:]] == [32] * 4


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--epochs", "x"], ["--optimizer", "lbfgs"],
                                  ["--records", "10", "--batch-size", "64", "--drop-last"],
                                  ["--data", "missing.csv"], ["--target", "label"], ["--smoothing", "1.5"]])
def test_bad_flags_are_usage_errors(tmp_path, monkeypatch, capsys, args):
    from fastbatch_gui.app import build_parser, check_args
    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:   # argparse's usage error: exit 2, before any window
        check_args(parser, parser.parse_args([*args, "--exit-when-done"]))
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_step_batches_full_loss_and_scaled_rate_flags(tmp_path):
    r = run_app("--step-batches", "3", "--full-loss", "--scale-lr", "linear", "--batch-size", "500",
                "--export-history", "h.csv", "--screenshot", "s.png", "--exit-when-done", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert [row.split(",")[:3] for row in lines[1:]] == [["1", "1", "1"], ["2", "1", "2"], ["3", "2", "1"]]
    assert float(lines[1].split(",")[5]) == 0.1 * 500 / 64
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_display_one_clear_line_instead_of_an_abort(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "--offscreen" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_view_and_lesson_flags_reach_their_controls(window):
    from fastbatch_gui.app import apply_args, build_parser, check_args
    parser = build_parser()
    args = parser.parse_args(["--dataset", "blobs", "--records", "300", "--sorted-by-class", "--no-shuffle",
                              "--log-x", "--smoothing", "0.6", "--full-loss", "--scale-lr", "sqrt",
                              "--reference-batch", "32", "--task", "regression", "--no-standardize"])
    check_args(parser, args)
    apply_args(window, args)
    c = window.controls.config()
    assert (c["dataset"], c["records"], c["features"], c["sorted_by_class"], c["shuffle"]) == \
        ("blobs", 300, 2, True, False)
    assert (c["lr_scaling"], c["reference_batch"], c["task"], c["standardize"]) == ("sqrt", 32, "regression", False)
    assert window.log_x_check.isChecked() and window.full_loss_check.isChecked()
    assert window.smoothing_slider.value() == 600 and window.loss_plot.smoothing == 0.6


def test_float_flags_reach_their_controls_exactly(window):
    from PySide6.QtWidgets import QDoubleSpinBox
    from fastbatch_gui.app import apply_args, build_parser, check_args
    parser = build_parser()
    args = parser.parse_args(["--learning-rate", "0.000015", "--validation-split", "0.125"])
    check_args(parser, args)
    apply_args(window, args)
    c = window.controls.config()
    assert (c["learning_rate"], c["validation_split"]) == (0.000015, 0.125)   # not 2e-05 and 0.13
    assert window.controls.trainer_params()["learning_rate"] == 0.000015
    lr = window.findChild(QDoubleSpinBox, "learningRateSpin")
    assert lr.text() == "1.5e-05"
    lr.lineEdit().setText("1.23456789e-4")                                    # typed in scientific notation
    lr.interpretText()
    assert lr.value() == 1.23456789e-4
    with pytest.raises(ValueError, match="learning_rate"):                    # refused, not clamped
        window.controls.set_value("learning_rate", 1e-6)
    assert lr.value() == 1.23456789e-4


def test_the_threads_control_and_flag_reach_the_trainer(window, qtbot):
    from PySide6.QtWidgets import QSpinBox
    from fastbatch_gui.app import apply_args, build_parser, check_args
    spin = window.findChild(QSpinBox, "threadsSpin")
    assert spin.text() == "auto" and window.controls.trainer_params()["n_threads"] is None   # the BLAS's setting
    parser = build_parser()
    args = parser.parse_args(["--threads", "1", "--records", "64", "--batch-size", "16", "--epochs", "1"])
    check_args(parser, args)
    apply_args(window, args)
    assert window.controls.trainer_params()["n_threads"] == 1
    with qtbot.waitSignal(window.runEnded, timeout=20_000):
        window.start()
    assert window.trainer.n_threads == 1 and window.trainer.run_state.n_threads == 1   # the run's team: one thread
    with pytest.raises(SystemExit):
        check_args(parser, parser.parse_args(["--threads", "-1", "--exit-when-done"]))


def test_python_m_fastbatch_gui_runs_the_app(tmp_path):
    """``python -m fastbatch_gui`` is the ``fastbatch-gui`` command (it was 'No module named fastbatch_gui.__main__')."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "fastbatch_gui", "--records", "100", "--epochs", "1", "--autorun",
                        "--export-history", "h.csv", "--exit-when-done"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "h.csv").read_text().splitlines()) == 1 + 2   # 100 records / batch 64: 2 steps
