"""``fastbatch-gui``: the desktop app, and its command line for scripted and headless runs.

    fastbatch-gui --records 1000 --batch-size 64 --epochs 5 --learning-rate 0.1 --seed 0 \\
        --autorun --screenshot out.png --export-history out.csv --exit-when-done
    fastbatch-gui --step-batches 3 --full-loss --screenshot lesson.png --exit-when-done

Every flag sets the control of the same name, and ``--autorun`` presses Start: the
same code path as the buttons. Without a display (and with ``--exit-when-done`` or
``--offscreen``) Qt's offscreen platform is used.
"""
import argparse
import os
import sys

from .controls import ACTIVATIONS, BACKENDS, DATASETS, OPTIMIZERS, SPIN_RANGES
from .fmt import load_error
from .lesson import LR_SCALINGS, TASKS

# flag -> control name; the spin boxes' ranges check the values
SPIN_FLAGS = {"records": "records", "features": "features", "batch_size": "batch_size", "epochs": "epochs",
              "learning_rate": "learning_rate", "hidden": "hidden", "layers": "layers", "seed": "seed",
              "validation_split": "validation_split", "reference_batch": "reference_batch", "threads": "threads"}
NO_DISPLAY = ("fastbatch-gui: no display found (DISPLAY and WAYLAND_DISPLAY are unset); run it on a desktop, "
              "or add --offscreen (with --screenshot/--export-* and --exit-when-done) to run without a window")


def _ranged(name, kind):
    _, lo, hi, _ = SPIN_RANGES[name]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not lo <= value <= hi:
            fmt = "{:,}" if kind is int else "{:g}"
            raise argparse.ArgumentTypeError(f"must be between {fmt.format(lo)} and {fmt.format(hi)}, got {text}")
        return value
    parse.__name__ = name
    return parse


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastbatch-gui",
        description="Watch mini-batch training: records, batches, steps and epochs, live.",
        epilog="Example: fastbatch-gui --dataset moons --batch-size 32 --epochs 40 --autorun")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=[k for k, _ in DATASETS if k != "file"],
                   help="a generated dataset (default: moons, two moons with 2 features; random: the seed's "
                        "random labels, nothing to learn)")
    g.add_argument("--data", metavar="FILE", help="train on a .csv (header row), .npy or .npz file instead")
    g.add_argument("--target", metavar="COL", help="the target column of --data: a name or an index "
                                                   "(default: the last column)")
    g.add_argument("--records", type=_ranged("records", int), help="records to generate (default 1000)")
    g.add_argument("--features", type=_ranged("features", int),
                   help="features to generate (default: 2 for the 2-D datasets, 10 for random)")
    g.add_argument("--task", choices=list(TASKS),
                   help="classification or regression (default auto: the library's rule, said in the readout)")
    g.add_argument("--no-standardize", dest="standardize", action="store_false", default=None,
                   help="train on the features as they are (default: standardised over the training records)")
    g.add_argument("--sorted-by-class", action="store_true", default=None,
                   help="records in label order (with --no-shuffle: the shuffle lesson)")
    g.add_argument("--seed", type=_ranged("seed", int), help="seeds the data, the params and the order (default 0)")
    g = p.add_argument_group("network and training")
    g.add_argument("--hidden", type=_ranged("hidden", int), help="units per hidden layer; 0 for none (default 32)")
    g.add_argument("--layers", type=_ranged("layers", int), help="hidden layers (default 1)")
    g.add_argument("--activation", choices=ACTIVATIONS)
    g.add_argument("--batch-size", type=_ranged("batch_size", int), help="records per step (default 64)")
    g.add_argument("--epochs", type=_ranged("epochs", int), help="passes over the records (default 5)")
    g.add_argument("--learning-rate", "--lr", type=_ranged("learning_rate", float), help="(default 0.1)")
    g.add_argument("--scale-lr", dest="lr_scaling", choices=[k for k in LR_SCALINGS if k != "none"],
                   help="scale the rate with the batch size against --reference-batch: linear or sqrt")
    g.add_argument("--reference-batch", type=_ranged("reference_batch", int),
                   help="the batch size at which the rate is as given (default 64)")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--backend", choices=BACKENDS)
    g.add_argument("--threads", type=_ranged("threads", int),
                   help="threads of the kernel's team, at most (n_threads); 0: auto, the BLAS's setting (default)")
    g.add_argument("--validation-split", type=_ranged("validation_split", float),
                   help="fraction held out to validate each epoch (default 0)")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false", default=None,
                   help="visit the records in file order every epoch")
    g.add_argument("--drop-last", action="store_true", default=None, help="drop each epoch's last, short batch")
    g = p.add_argument_group("view")
    g.add_argument("--x-axis", choices=["step", "epoch", "records"], help="the loss plot's x axis")
    g.add_argument("--log-y", action="store_true", help="log-scale loss axis")
    g.add_argument("--log-x", action="store_true", help="log-scale x axis (compare runs of very different lengths)")
    g.add_argument("--full-loss", action="store_true", help="also plot the loss on all training records")
    g.add_argument("--smoothing", type=float, metavar="W", help="EMA smoothing of the per-step loss, 0 to 0.99")
    g = p.add_argument_group("scripting")
    g.add_argument("--autorun", action="store_true", help="press Start at launch")
    g.add_argument("--step-batches", type=int, metavar="K",
                   help="press Step 1 batch K times at launch (then --screenshot etc. as when a run ends)")
    g.add_argument("--screenshot", metavar="PNG", help="when training ends, save a picture of the window")
    g.add_argument("--export-history", metavar="CSV", help="when training ends, write the history")
    g.add_argument("--export-plot", metavar="PNG", help="when training ends, save the loss plot")
    g.add_argument("--compare-batch-sizes", metavar="LIST",
                   help="run the batch-size lab at launch, e.g. 1,8,32,128,full (then --screenshot etc.)")
    g.add_argument("--export-comparison", metavar="CSV",
                   help="when the lab is done, write batch_size,step,epoch,records_seen,seconds,loss")
    g.add_argument("--exit-when-done", action="store_true",
                   help="quit when training ends (exit 0; 1 when training failed)")
    g.add_argument("--offscreen", action="store_true", help="no window on screen (Qt's offscreen platform)")
    return p


def check_args(parser, args):
    """Settings that are each valid but not together: an argparse error (exit 2), as for a bad value."""
    import fastbatch as fb
    from fastbatch import datasets
    if args.target is not None and args.data is None:
        parser.error("--target needs --data FILE")
    if args.data is not None and args.dataset is not None:
        parser.error("give --dataset or --data, not both")
    if args.data is not None:
        try:
            X, _ = datasets.load(args.data, target=args.target)
        except Exception as exc:   # whatever a hostile file raises: one line, exit 2
            parser.error(f"--data: {load_error(exc, repr(args.data))}")
        n = X.shape[0]
    else:
        n = args.records or SPIN_RANGES["records"][3]
        features = args.features or 2
        if (args.dataset or "moons") in datasets.TWO_FEATURE and features < 2:
            parser.error(f"--dataset {args.dataset} needs --features 2 or more")
    split = args.validation_split or 0.0
    n_train, n_val = fb.split_sizes(n, split)
    if split and (n_val < 1 or n_train < 1):
        parser.error(f"--validation-split {split:g} of {n:,} records leaves none for validation or training")
    if args.step_batches is not None and args.step_batches < 1:
        parser.error(f"--step-batches must be at least 1, got {args.step_batches}")
    if sum(bool(a) for a in (args.autorun, args.step_batches, args.compare_batch_sizes)) > 1:
        parser.error("give one of --autorun, --step-batches and --compare-batch-sizes")
    if args.export_comparison and not args.compare_batch_sizes:
        parser.error("--export-comparison needs --compare-batch-sizes LIST")
    if args.compare_batch_sizes:
        from .batch_lab import parse_sizes
        try:
            parse_sizes(args.compare_batch_sizes, 1 << 40)
        except ValueError as exc:
            parser.error(f"--compare-batch-sizes: {exc}")
    if args.smoothing is not None and not 0 <= args.smoothing < 1:
        parser.error(f"--smoothing must be in [0, 1), got {args.smoothing:g}")
    try:
        fb.plan(n_train, args.batch_size or SPIN_RANGES["batch_size"][3], args.epochs or SPIN_RANGES["epochs"][3],
                bool(args.drop_last))
    except ValueError as exc:
        parser.error(str(exc))


def apply_args(window, args):
    """Set the window's controls from the flags, as a person would."""
    c = window.controls
    if args.dataset is not None:   # first: a dataset sets its own feature count, which --features may override
        c.set_value("dataset", args.dataset)
    for flag, name in SPIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            c.set_value(name, value)
    for name in ("optimizer", "activation", "backend", "shuffle", "drop_last", "sorted_by_class", "lr_scaling",
                 "task", "standardize"):
        value = getattr(args, name)
        if value is not None:
            c.set_value(name, value)
    if args.data is not None:
        window.load_file(args.data, args.target)
    if args.x_axis:
        window.x_axis_combo.setCurrentIndex(window.x_axis_combo.findData(args.x_axis))
    if args.log_y:
        window.log_y_check.setChecked(True)
    if args.log_x:
        window.log_x_check.setChecked(True)
    if args.full_loss:
        window.full_loss_check.setChecked(True)
    if args.smoothing is not None:
        from .window import SMOOTHING_STEPS
        window.smoothing_slider.setValue(round(SMOOTHING_STEPS * args.smoothing))


def _headless():
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv=None):
    """Run the app; returns the exit code when ``--exit-when-done`` (else when the window closes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.offscreen or (args.exit_when_done and _headless()):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif _headless() and not os.environ.get("QT_QPA_PLATFORM"):
        print(NO_DISPLAY, file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("fastbatch")
    window = MainWindow()
    apply_args(window, args)
    window.show()
    status = {"code": 0}

    def finish(how="finished"):
        if status.get("finished"):   # (a start refused and its run's end may both report)
            return
        status["finished"] = True
        try:
            if args.export_history and window.trainer is not None:
                window.export_history(args.export_history)
            if args.export_plot:
                window.export_plot(args.export_plot)
            if args.export_comparison:
                window.export_comparison(args.export_comparison)
            if args.screenshot:
                window.screenshot(args.screenshot)
        except (OSError, ValueError) as exc:
            print(f"fastbatch-gui: {exc}", file=sys.stderr)
            status["code"] = 1
        if how == "errored":
            print(f"fastbatch-gui: training failed: {window.last_error or window.plan_error}", file=sys.stderr)
            status["code"] = 1
        if args.exit_when_done:
            window.close()
            app.exit(status["code"])

    if args.autorun:
        # after the window has been laid out, so the screenshot shows it at its size
        window.runEnded.connect(lambda how: QTimer.singleShot(100, lambda: finish(how)))
        def autostart():
            window.controls.start_button.click()
            if window.state == "idle":  # Start was refused: the reason is in the readout
                finish("errored")
        QTimer.singleShot(0, autostart)
    elif args.compare_batch_sizes:
        window.tabs.setCurrentWidget(window.lab)
        window.lab.sizes_edit.setText(args.compare_batch_sizes)
        def lab_done(exc):
            if exc is not None:
                print(f"fastbatch-gui: the comparison failed: {exc}", file=sys.stderr)
                status["code"] = 1
            QTimer.singleShot(200, finish)
        window.lab.done.connect(lab_done)
        QTimer.singleShot(0, window.lab.button.click)
    elif args.step_batches:
        def step(k=args.step_batches):
            if k == 0:
                return QTimer.singleShot(200, finish)
            def next_step():
                window.fitReturned.disconnect(next_step)
                QTimer.singleShot(30, lambda: step(k - 1))
            window.fitReturned.connect(next_step)
            window.controls.step_batch_button.click()
            if window.state == "idle" and window.trainer is None:   # refused: the reason is in the readout
                window.fitReturned.disconnect(next_step)
                finish("errored")
        QTimer.singleShot(0, step)
    elif args.screenshot or args.export_plot or args.exit_when_done:
        QTimer.singleShot(300, finish)
    code = app.exec()
    window.shutdown()
    return status["code"] if args.exit_when_done else code


if __name__ == "__main__":
    sys.exit(main())
