"""The ``fastbatch`` command: plan a schedule, train, evaluate and predict from the shell.

    fastbatch plan --records 1000 --batch-size 64 --epochs 5 --steps
    fastbatch train data.csv --target label --hidden 32,16 --epochs 10 --out-dir run/
    fastbatch train data.csv --target label --resume run/data-checkpoint.npz --epochs 20
    fastbatch evaluate run/data-checkpoint.npz data.csv --target label
    fastbatch predict run/data-checkpoint.npz data.csv --target label --out preds.csv
    fastbatch compare data.csv --target label --batch-sizes 1,8,32,128 --epochs 10 --out run/compare
    fastbatch demo

Every subcommand drives a :class:`~fastbatch.Trainer` (one training loop); the training
flags are made from the Trainer's parameter table (``config.PARAMS``). ``train`` says which
task it picked and why, standardizes the features unless ``--no-standardize``, and records
the data's fingerprint, target column and class names in the checkpoint: ``--resume`` refuses
other data unless ``--force``, and ``evaluate``/``predict`` use the names. ``compare`` runs
:func:`fastbatch.compare_batch_sizes` with train's options, task rule and standardisation, and
``train --track-noise`` reports the gradient noise scale (``History.noise_scale``). Exit codes:
0 done, 1 bad files, columns or data (or a diverged run), 2 bad usage or options,
130 interrupted (after saving a checkpoint to resume from).
"""
import argparse
import json
import math
import os
import signal
import sys
import time
import warnings

from ._text import count

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

OUTPUT_SUFFIXES = {"history": "-history.csv", "checkpoint": "-checkpoint.npz", "plot": "-loss.png"}


class UsageError(Exception):
    """Bad options: reported with exit code 2."""


# ---------------------------------------------------------------------- the parser

class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (the full usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _hidden(text):
    """``"32,16"`` -> (32, 16); ``""`` or ``"none"`` -> () (a linear model)."""
    if text.strip().lower() in ("", "none", "()"):
        return ()
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 32,16; got {text!r}") from None


def _schedule(text):
    """A schedule name, or a JSON object like ``{"name": "step", "step_epochs": 2}``."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    return text


def _int(text):
    """An integer flag: digits only (1e3 or 2.0 is a usage error, not a silent rounding)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


DEFAULT_BATCH_SIZES = "1,8,32,128"


def _batch_sizes(text):
    """``"1,8,32,full"`` -> [1, 8, 32, "full"] (whole numbers >= 1; ``full`` is all records)."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if part in ("full", "all"):
            sizes.append("full")
            continue
        try:
            b = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8,32,128 (or 'full'); got {text!r}") from None
        if b < 1:
            raise argparse.ArgumentTypeError(f"batch sizes must be at least 1; got {b} in {text!r}")
        sizes.append(b)
    return sizes


def _betas(text):
    """``"0.9,0.999"`` -> (0.9, 0.999)."""
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.999; got {text!r}") from None
    return b1, b2


FLAG_TYPES = {"int": _int, "optional_int": _int, "seed": _int, "float": _float, "hidden": _hidden,
              "betas": _betas, "schedule": _schedule}
FLAG_ALIASES = {"learning_rate": ["--lr"]}


def _flag(name):
    return "--" + name.replace("_", "-")


def _add_trainer_options(p, skip=()):
    """One flag per Trainer parameter (fastbatch.config.PARAMS): ``--batch-size`` for ``batch_size``.

    ``skip``: parameters the command sets itself (they keep no flag, and read as not given)."""
    from .config import PARAMS
    g = p.add_argument_group("training options (defaults: the Trainer's, except --standardize)")
    p.set_defaults(**{name: None for name in skip})
    for param in PARAMS:
        if param.name in skip:
            continue
        default = CLI_DEFAULTS.get(param.name, param.default)
        default = default if not isinstance(default, tuple) else ",".join(map(str, default))
        text = param.help
        if default is None:  # ("None" cannot be typed: what leaving the flag out means, in words)
            default = UNSET_DEFAULTS[param.name]
            text = text.replace(UNSET_DEFAULTS_SAID.get(param.name, ""), "")
        kw = {"dest": param.name, "default": None,
              "help": f"{text} (default: {default})".replace("%", "%%")}
        if param.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction  # --shuffle / --no-shuffle
        else:
            kw["type"] = FLAG_TYPES.get(param.kind, str)
            if param.choices and param.kind != "schedule":
                kw["choices"] = param.choices
            else:
                kw["metavar"] = param.name.upper()
        g.add_argument(_flag(param.name), *FLAG_ALIASES.get(param.name, ()), **kw)
    g.add_argument("--task", choices=sorted(TASK_LOSS), help="classification (cross_entropy) or regression (mse); "
                   "default: decided from the target, and said")
    g.add_argument("--beta1", type=_float, help="the first of --betas")
    g.add_argument("--beta2", type=_float, help="the second of --betas")


# what a Trainer parameter left at None means, for --help (and the words of its help that say it for Python)
UNSET_DEFAULTS = {"patience": "none, no early stopping", "n_threads": "the BLAS's thread setting when the run starts"}
UNSET_DEFAULTS_SAID = {"n_threads": "; None: the BLAS's thread setting when the run starts"}


TARGET_HELP = "the target column: a CSV header name or a column index (default: the last column; .npz: y)"


def build_parser():
    parser = _Parser(
        prog="fastbatch", description="Mini-batch training of small dense networks: records, batches, steps, epochs.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"fastbatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("plan", help="print the schedule: steps per epoch, last batch size, total steps")
    p.add_argument("--records", type=int, required=True, help="number of records (rows)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--drop-last", action="store_true", help="drop each epoch's last, short batch")
    p.add_argument("--steps", action="store_true", help="also print every 'Epoch: e, Batch: b, Step: s' line")
    from .config import DEFAULTS, DTYPES, OPTIMIZERS
    g = p.add_argument_group("the network (for the memory a step needs)")
    g.add_argument("--features", type=_int, help="inputs per record")
    g.add_argument("--hidden", type=_hidden, help="hidden layer widths like 32,16 "
                   f"(default: {','.join(map(str, DEFAULTS['hidden']))})")
    g.add_argument("--outputs", type=_int, help="network outputs (classes, or regression targets)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"(default: {DEFAULTS['optimizer']})")
    g.add_argument("--dtype", choices=DTYPES, help=f"(default: {DEFAULTS['dtype']})")

    p = sub.add_parser("train", help="train on a .csv/.npy/.npz file; write history CSV, checkpoint, loss plot")
    p.add_argument("data", help="the data: .csv (with a header row, or numbers only: columns 0, 1, ...), .npy (a 2-D "
                   "array), or .npz with arrays X and y")
    p.add_argument("--target", help=TARGET_HELP)
    p.add_argument("--out-dir", help="where to write the outputs (default: next to the data, "
                                     "or ./fastbatch-run when that folder is not writable)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in CHECKPOINT on the same data "
                                                          "(checked against the checkpoint's fingerprint of it)")
    p.add_argument("--force", action="store_true", help="with --resume: train on data that does not match the "
                                                        "checkpoint's fingerprint")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines (--track-noise's "
                   "included): only the task, the summary and the files written are printed")
    _add_trainer_options(p)

    p = sub.add_parser("evaluate", help="mean loss (and accuracy) of a checkpoint's network on data")
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--target", help=TARGET_HELP)

    p = sub.add_parser("predict", help="predictions of a checkpoint's network for data")
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--target", help="a target column to leave out of the features (without it, a file whose "
                                    "columns are not matched by name and that has one column more than the "
                                    "network's inputs has its last column left out)")
    p.add_argument("--out", help="write the predictions to this CSV (default: print them)")

    p = sub.add_parser("compare", help="train the same run at several batch sizes; print a table, write a "
                                       "figure and a CSV, suggest a batch size from the measured noise scale")
    p.add_argument("data", help="the data, as for train")
    p.add_argument("--target", help=TARGET_HELP)
    p.add_argument("--batch-sizes", type=_batch_sizes, default=_batch_sizes(DEFAULT_BATCH_SIZES),
                   help=f"comma-separated batch sizes; 'full' is all records (default: {DEFAULT_BATCH_SIZES})")
    p.add_argument("--scale-lr", choices=["linear", "sqrt"], help="scale --learning-rate with the batch size "
                   "against --reference-batch-size (linear: the linear scaling rule; default: the same rate)")
    p.add_argument("--reference-batch-size", type=_int, metavar="B",
                   help="the batch size --learning-rate is meant for (default: the smallest compared)")
    p.add_argument("--out", metavar="PREFIX", help="write PREFIX.png and PREFIX.csv (default: next to the data, "
                                                   "named after it with -compare)")
    p.add_argument("--quiet", action="store_true", help="no word of the task decided")
    p.set_defaults(resume=None)
    _add_trainer_options(p, skip=("track_noise",))  # always on: the noise scale is what compare measures

    p = sub.add_parser("demo", help="the seed's demo (as python -m fastbatch)")
    p.add_argument("--steps", action="store_true", help="print every step's line")
    return parser


# ---------------------------------------------------------------------- main

def main(argv=None):
    """Run the ``fastbatch`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2, message printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from .errors import DivergenceError
    try:
        target = getattr(args, "target", None)
        if target is not None and target != "y" and os.path.splitext(os.fspath(args.data))[1].lower() == ".npz":
            raise UsageError(f"--target {target}: a .npz file's target is its array y, it has no columns to name "
                             "(leave --target out)")  # (it was ignored without a word)
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *rest: _err(f"fastbatch {args.command}: warning: {message}")
            return COMMANDS[args.command](args)
    except UsageError as exc:
        _err(f"fastbatch {args.command}: {exc}")
        return EXIT_USAGE
    except DivergenceError as exc:  # (train says its own; this is compare's)
        _err(f"fastbatch {args.command}: {divergence_advice(exc)}")
        return EXIT_DATA
    except BrokenPipeError:  # e.g. `fastbatch plan ... --steps | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return EXIT_DATA
    except (ValueError, TypeError, OSError, RuntimeError) as exc:  # FileNotFoundError is an OSError
        _err(f"fastbatch {args.command}: {_describe(exc)}".replace(  # (the library's advice, in the command's words)
            "call reset() to start a new run on other data", "train without --resume to start a new run on it"))
        return EXIT_DATA
    except MemoryError as exc:
        _err(f"fastbatch {args.command}: out of memory ({exc or 'no detail'}); a smaller network or file needs less")
        return EXIT_DATA
    except KeyboardInterrupt:
        _err("fastbatch: interrupted")
        return EXIT_INTERRUPTED


def _err(message):
    print(message, file=sys.stderr)


def _describe(exc):
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file: {exc.filename}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc)


# ---------------------------------------------------------------------- plan

def cmd_plan(args):
    from .schedule import plan, schedule_lines
    from .config import DEFAULTS
    from .schedule import format_bytes
    network = [args.features, args.outputs]
    if any(v is not None for v in (*network, args.hidden, args.optimizer, args.dtype)) and None in network:
        raise UsageError("the memory a step needs takes the network: give --features and --outputs "
                         "(and --hidden, --optimizer, --dtype, or their defaults)")
    layers = None
    if args.features is not None:
        hidden = DEFAULTS["hidden"] if args.hidden is None else args.hidden
        for flag, widths in (("--features", [args.features]), ("--hidden", hidden), ("--outputs", [args.outputs])):
            bad = [w for w in widths if not 1 <= w < 2 ** 63]  # (said by its flag, not as the plan's "layers")
            if bad:
                raise UsageError(f"{flag} must be {'widths' if flag == '--hidden' else 'a whole number'} from 1 to "
                                 f"2**63 - 1, got {bad[0]}")
        layers = (args.features, *hidden, args.outputs)
    try:
        p = plan(args.records, args.batch_size, args.epochs, args.drop_last, layers=layers,
                 dtype=args.dtype or DEFAULTS["dtype"], optimizer=args.optimizer or DEFAULTS["optimizer"])
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    print(p.describe())
    print(f"steps per epoch: {p.steps_per_epoch}")
    print(f"last batch size: {p.last_batch_size}")
    print(f"total steps: {p.total_steps}")
    memory = p.step_memory()
    if memory:
        print(f"batch {p.effective_batch_size:,}: {format_bytes(memory['total'])} per step "
              f"(network {'-'.join(map(str, layers))}, {p.optimizer}, {p.dtype})")
        for part, n in memory.items():
            if part != "total":
                print(f"  {part.replace('_', ' ') + ':':<17}{format_bytes(n):>10}")
    if args.steps:
        for line in schedule_lines(args.records, args.batch_size, args.epochs, args.drop_last):
            print(line)
    return EXIT_OK


# ---------------------------------------------------------------------- train

# the CLI's own defaults where they differ from the Trainer's: a command-line run on a raw
# file should not fail quietly because one feature is in thousands and another in fractions
CLI_DEFAULTS = {"standardize": True}
TASK_LOSS = {"classification": "cross_entropy", "regression": "mse"}


def _trainer_options(args):
    """The Trainer parameters given on the command line (the rest keep the Trainer's defaults)."""
    from .config import DEFAULTS, PARAMS
    opts = {p.name: getattr(args, p.name) for p in PARAMS if getattr(args, p.name) is not None}
    if args.beta1 is not None or args.beta2 is not None:
        b1, b2 = opts.get("betas", DEFAULTS["betas"])
        opts["betas"] = (b1 if args.beta1 is None else args.beta1, b2 if args.beta2 is None else args.beta2)
    task = getattr(args, "task", None)
    if task is not None:
        if opts.get("loss", "auto") not in ("auto", TASK_LOSS[task]) and not (
                task == "classification" and opts["loss"] == "binary_crossentropy"):
            raise UsageError(f"--task {task} and --loss {opts['loss']} disagree; give one of them")
        opts.setdefault("loss", TASK_LOSS[task])
    return opts


def _stem(data):
    return os.path.splitext(os.path.basename(data))[0] or "run"


def _default_out_dir(data):
    """Next to the data, or ./fastbatch-run when that folder is not writable."""
    out_dir = os.path.dirname(os.path.abspath(data))
    return out_dir if os.access(out_dir, os.W_OK) else "fastbatch-run"


def _out_paths(args):
    stem = _stem(args.data)
    out_dir = args.out_dir if args.out_dir is not None else _default_out_dir(args.data)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"--out-dir {out_dir} is a file, not a folder")
    os.makedirs(out_dir, exist_ok=True)
    _check_writable(out_dir)
    return {k: os.path.join(out_dir, stem + suffix) for k, suffix in OUTPUT_SUFFIXES.items()}


def _check_writable(folder):
    """A folder the outputs cannot be written to is said now, not after the run (which would be lost)."""
    from ._archive import _create_temporary
    try:
        fd, probe = _create_temporary(folder or ".")
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc}: the outputs cannot be written to that folder",
                      folder or ".") from None
    os.close(fd)
    os.unlink(probe)


def _resumed_trainer(args, opts):
    """The checkpoint's trainer, with the options that may change on a live run (--learning-rate, --epochs).

    Another option is accepted when it equals the checkpoint's (``--batch-size 32`` on a run of batch 32) and
    refused, naming the flag as typed and both values, when it differs."""
    from .config import LIVE
    from .trainer import Trainer
    trainer = _checked_info(Trainer.load(args.resume), args.resume)
    differ = _resume_differences(args, opts, trainer.config)
    if differ:
        raise UsageError(f"--resume continues the checkpoint's run with its own options (only "
                         f"{' and '.join(map(_flag, LIVE))} may change): " + "; ".join(differ))
    for name in LIVE:
        if name in opts:
            try:
                setattr(trainer, name, opts[name])
            except (ValueError, TypeError, AttributeError) as exc:
                raise UsageError(str(exc)) from None
    return trainer


def _resume_differences(args, opts, config):
    """``"--batch-size 16, the checkpoint's run has --batch-size 32"`` for each fixed option given that is not
    the checkpoint's (each flag as it was typed)."""
    from .config import BY_NAME, LIVE
    from .schedules import make_schedule
    opts = dict(opts)
    if (args.beta1 is not None or args.beta2 is not None) and args.betas is None:  # the rest: the checkpoint's
        b1, b2 = config["betas"]
        opts["betas"] = (b1 if args.beta1 is None else args.beta1, b2 if args.beta2 is None else args.beta2)
    differ = []
    for name, value in opts.items():
        if name in LIVE:
            continue
        param, held = BY_NAME[name], config[name]
        try:
            value = param.check(value)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        if name == "loss" and value == "auto":  # (the run's loss was decided when it began)
            continue
        if param.kind == "schedule":
            same = make_schedule(value).config() == make_schedule(held).config()
        else:
            same = value == param.check(held)
        if same:
            continue
        if name == "loss" and args.loss is None:  # from --task
            typed = f"--task {args.task}"
        elif name == "betas" and args.betas is None:
            typed = " ".join(f"--beta{i} {v:g}" for i, v, given in ((1, value[0], args.beta1),
                                                                     (2, value[1], args.beta2)) if given is not None)
        else:
            typed = _typed(name, value)
        differ.append(f"got {typed}, the checkpoint's run has {_typed(name, held)}")
    return differ


def _typed(name, value):
    """``--batch-size 32``, ``--no-standardize``: a Trainer parameter's flag with ``value``, as it is typed."""
    if isinstance(value, bool):
        return _flag(name) if value else "--no-" + _flag(name)[2:]
    if value is None:
        return f"no {_flag(name)}"
    if name in ("hidden", "betas"):
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    elif isinstance(value, dict):
        text = "'" + json.dumps(value) + "'"
    else:
        text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{_flag(name)} {text}"


def _target_name(table):
    return f"target {table.target!r}" if table.target is not None else "target y"


def _decide_task(args, trainer, table):
    """Classification or regression, by the library's one rule (or --task / --loss): sets the loss, returns why."""
    import re
    from . import _task
    name = _target_name(table)
    asked = trainer.config["loss"]
    task = _task.decide(table.y, asked, name, coded=True)  # (_as_class_codes codes whole-number labels 0..k-1)
    if table.classes is not None and task.loss not in CLASS_LOSSES:  # (the codes of names are not quantities)
        raise ValueError(f"{args.data}: the {name} holds class names ({_listed(table.classes, 5)}), which a "
                         f"regression (--loss {task.loss}) cannot fit; drop --task regression / --loss mse")
    if not args.resume:
        trainer.loss = task.loss  # decided here, once: the run and its checkpoint name the concrete loss
    reason = task.reason
    if args.resume:  # (its loss is the run's, decided when it began: nobody asked for it now)
        reason = f"{name}: the resumed run's task -> {task.kind} ({task.loss})"
    elif table.classes is not None and asked == "auto":  # y holds the names' codes, not numbers
        reason = f"{name}: {count(len(table.classes), 'class name', sep='')} -> classification ({task.loss})"
    return re.sub(r"loss='(\w+)'", r"--loss \1", reason)


CLASS_LOSSES = ("cross_entropy", "binary_crossentropy")


def _as_class_codes(args, trainer, table, recorded=None):
    """``table`` with numeric class labels coded 0..k-1 in sorted order, their values kept as its classes.

    A classifier's outputs are its labels 0..k-1, so labels -1/1 or 1,2,3 are coded as a text
    target's names are; labels already 0..k-1 are left as they are (the run is the one they always
    gave). ``recorded``: the values a resumed run was trained on, which its codes must keep meaning.
    """
    from . import datasets
    y = table.y
    if (trainer.loss not in CLASS_LOSSES or table.classes is not None or y.dtype.kind not in "iu"
            or y.reshape(len(y), -1).shape[1] != 1):
        return table
    import numpy as np
    values = np.unique(y) if recorded is None else np.asarray(recorded)
    name = _target_name(table)
    if len(values) > datasets.MAX_CLASSES:
        raise ValueError(f"the {name} of {args.data} has {len(values):,} distinct values: as class labels that is "
                         f"more than {datasets.MAX_CLASSES:,} classes. Is it a regression target? Pass --loss mse")
    # labels 0..k-1 already; or one value only, which a network of two outputs or more keeps as it is
    # (coded 0, its other outputs would have no label to write); or a resumed run trained on labels 0..k-1 (none
    # recorded): they mean its outputs, whichever of them this file holds (recoding 1, 2 would move them)
    resumed = getattr(args, "resume", None)
    if recorded is None and (resumed or len(values) == 1 or values[0] >= 0 and values[-1] < len(values)):
        return table
    return table._replace(y=_label_codes(y.reshape(-1), values, name, args.data),
                          classes=[v.item() for v in values])


def _label_codes(y, values, name, data):
    """The code (index in the sorted ``values``) of each label in ``y``; a label not among them is an error."""
    import numpy as np
    codes = np.minimum(np.searchsorted(values, y), len(values) - 1)
    unseen = np.flatnonzero(values[codes] != y)
    if len(unseen):
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        raise ValueError(f"{data}, record {unseen[0] + 1} (counting from 1): the {name} is {y[unseen[0]].item()!r}, "
                         "not one of the labels "
                         f"the network was trained on ({shown})")
    return codes.astype(np.int64)


def _class_names(classes):
    """The recorded classes when they are names (text a CSV reader encodes), else None (numeric labels, or none)."""
    return classes if classes and isinstance(classes[0], str) else None


def _prepared(args, trainer, table, recorded=None, say=True):
    """The task decided (and said, unless ``say`` is false), and ``table`` with its class labels coded 0..k-1."""
    reason = _decide_task(args, trainer, table)
    table = _as_class_codes(args, trainer, table, recorded)  # checked before a word is said
    if say:
        print(reason)
    return table


def _check_data(args, trainer, table):
    """Refuse data that is not the data a resumed run was trained on (unless --force); record what names it."""
    from . import datasets
    current = datasets.fingerprint(table.X, table.y)
    if args.resume:
        recorded = trainer.info.get("data_fingerprint")
        if recorded is None:
            _err(f"fastbatch train: {args.resume} records no fingerprint of its data; the data cannot be checked")
        else:
            sampled = recorded.get("sample_rows")  # (a checkpoint from before every row was hashed)
            now = current if sampled is None else datasets.fingerprint(table.X, table.y, datasets.FINGERPRINT_ROWS)
            diff = datasets.fingerprint_mismatch(recorded, now)
            if diff and not args.force:
                raise ValueError(f"{args.data} is not the data the run in {args.resume} was trained on ({diff}); "
                                 "pass --force to train on it anyway, or start a new run without --resume")
    columns = datasets.columns(args.data, _known(trainer))
    trainer.info.update(data_fingerprint=current, target=table.target, features=table.features,
                        features_named=_has_header(args.data, trainer), classes=table.classes,
                        target_column=columns.index(table.target) if columns and table.target in columns else None)


def cmd_train(args):
    from .trainer import Trainer
    opts = _trainer_options(args)
    if args.resume:
        trainer = _resumed_trainer(args, opts)
        if trainer.finished:
            _err(f"fastbatch train: the run in {args.resume} is finished ({trainer.step} of "
                 f"{count(trainer.total_steps, 'step', sep='')}); nothing to train. Raise --epochs to continue it, "
                 "or start a new run without --resume.")
            return EXIT_DATA
    else:
        try:
            trainer = Trainer(**{**CLI_DEFAULTS, **opts})  # checks every option before any data is read
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
    from . import datasets
    recorded = trainer.info.get("classes") if args.resume else None
    target = _recorded_target(trainer, args) if args.resume else args.target  # (its own column)
    table = datasets.load_table(args.data, target, classes=_class_names(recorded), known=_known(trainer))
    if os.path.splitext(os.fspath(args.data))[1].lower() == ".csv" and not _has_header(args.data, trainer):
        print(f"{args.data} has no header row (its first row is a record): its columns are named 0 to "
              f"{len(table.features)}, the target is column {table.target}")
    # the task is always said (the README's promise); --quiet is only the progress bar
    table = _prepared(args, trainer, table, None if _class_names(recorded) else recorded)
    if args.resume and _has_header(args.data, trainer):
        table = _as_trained(table, trainer)
    X, y = table.X, table.y
    _check_data(args, trainer, table)
    paths = _out_paths(args)
    progress = None if args.quiet else Progress(trainer)
    status = EXIT_OK
    from .errors import DivergenceError
    previous = signal.getsignal(signal.SIGINT)
    interrupted = []

    def on_sigint(signum, frame):  # a cooperative stop: fit returns after the current step
        interrupted.append(True)
        trainer.stop()
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once

    diverged = None
    in_main_thread = _in_main_thread()
    if in_main_thread:
        signal.signal(signal.SIGINT, on_sigint)
    say = progress.write if progress else print
    # --quiet: no per-epoch lines either (the run's noise scale is still in the summary), so it pays no epoch hook
    noise = [NoiseReport(say)] if trainer.config["track_noise"] and progress else []
    try:
        try:
            trainer.fit(X, y, on_progress=progress, callbacks=noise, verbose=say if progress else 0)
        except DivergenceError as exc:
            diverged, status = exc, EXIT_DATA
        finally:
            if progress:
                progress.close()
        if not trainer.started:
            if diverged is not None:
                _err(f"fastbatch train: {divergence_advice(diverged, trainer.learning_rate)}")
            return status or EXIT_DATA
        plot_line = _write_outputs(trainer, paths, args.data)  # (a first Ctrl-C meanwhile waits for them)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    h = trainer.history
    # (History's losses of a standardised target are in its standardised units; evaluate's are in the data's)
    units = " (standardised target units)" if trainer.config["standardize_target"] and trainer.loss == "mse" else ""
    finished = h.finished_epoch_loss(max(len(h.epoch_loss) - 2, 0)) if h.n_steps else []  # (not an epoch cut short)
    trained = f"trained {h.n_steps} of {count(trainer.total_steps, 'step', sep='')}"
    summary = [trainer.plan.describe(),
               f"{trained} ({_epochs(h.n_steps, h.steps_per_epoch)}), " + (
                   f"last epoch loss {finished[-1]:.6g}{units}" if len(finished) else "no epoch finished")
               if h.n_steps else trained]
    if len(h.val_loss):
        summary.append(f"validation loss {h.val_loss[-1]:.6g}{units}"
                       + ("" if math.isnan(h.val_accuracy[-1]) else f", accuracy {h.val_accuracy[-1]:.4f}"))
    if trainer.config["track_noise"]:
        summary.append(noise_suggestion(h))
    summary += [f"history:    {paths['history']}", f"checkpoint: {paths['checkpoint']}", plot_line]
    print("\n".join(summary))
    if interrupted and not trainer.finished:  # (a Ctrl-C after the last step interrupted nothing)
        _err(f"fastbatch train: interrupted at step {trainer.step}; continue with: "
             f"{_resume_command(args, paths['checkpoint'])}")
        return EXIT_INTERRUPTED
    if diverged is not None:
        _err(f"fastbatch train: {divergence_advice(diverged, trainer.learning_rate, args, paths['checkpoint'])}")
    return status


def divergence_advice(exc, learning_rate=None, args=None, checkpoint=None):
    """A DivergenceError said in the command's words: its flags (--learning-rate, --resume, --standardize-target),
    not the library's Python (``trainer.learning_rate /= 100``, ``standardize_target=True``).

    ``learning_rate``: the run's (base) rate, for a smaller one to suggest; ``checkpoint``: where ``train`` saved
    the rewound run (None: nothing to resume, as in ``compare``)."""
    flag = {"the inputs (standardize=True)": "--standardize",
            "the targets (standardize_target=True)": "--standardize-target"}.get(exc.scale)
    smaller = "a smaller --learning-rate" + (f" (such as {learning_rate / 100:g})" if learning_rate else "")
    scale = f", or with {flag}" if flag else ""
    text = f"{exc.headline} (learning rate {exc.learning_rate:g} at that step)"
    if checkpoint is None:
        return f"{text}. Run again with {smaller}{scale}."
    done = f"{count(exc.step, 'step')} done"
    if not exc.sane:
        return (f"{text}, and the run had already blown up at the earliest step it keeps, where the checkpoint "
                f"{checkpoint} is ({done}): a smaller rate may not bring it back. Start a new run (without --resume) "
                f"with {smaller}{scale}.")
    command = _resume_command(args, checkpoint) + (f" --learning-rate {learning_rate / 100:g}" if learning_rate
                                                   else " --learning-rate <smaller>")
    return (f"{text}. The checkpoint holds the run from before it ({done}, the last params whose batch loss was "
            f"{'finite' if exc.limit is None else 'within that'}). Continue with a smaller rate: {command}"
            + (f"; or start a new run with {flag}." if flag else "."))


def _resume_command(args, checkpoint):
    """The command that continues this run from ``checkpoint``, as it can be typed (the README promises it)."""
    import shlex
    words = ["fastbatch", "train", os.fspath(args.data), "--resume", os.fspath(checkpoint)]
    if args.out_dir is not None:  # (without it, the outputs go next to the data again: the same files)
        words += ["--out-dir", os.fspath(args.out_dir)]
    return " ".join(map(shlex.quote, words))


def _epochs(steps, steps_per_epoch):
    """``"3 epochs"``, ``"1 epoch"``, or ``"2.6 epochs"`` for a run that ended mid-epoch."""
    n = steps / steps_per_epoch if steps_per_epoch else 0
    text = f"{n:.0f}" if n == int(n) else f"{n:.1f}" if n >= 1 else f"{n:.2f}"
    return f"{text} epoch{'' if text == '1' else 's'}"


def _in_main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _write_outputs(trainer, paths, data):
    """History CSV, checkpoint, and the loss plot (skipped with a note when matplotlib is missing)."""
    from ._plot import PlotUnavailable, write_loss_plot
    h = trainer.history
    trainer.save(paths["checkpoint"])  # first: the run itself (each file is written whole or not at all)
    h.to_csv(paths["history"])
    try:
        write_loss_plot(paths["plot"], h, _plot_title(trainer, data))
    except PlotUnavailable as exc:
        stale = _remove_stale(paths["plot"], "train")
        paths["plot"] = None
        return f"loss plot:  not written: {exc}" + (f" (removed {stale}: it plotted an earlier run)" if stale else "")
    return f"loss plot:  {paths['plot']}"


def _remove_stale(path, command):
    """An earlier run's output at ``path``, removed (beside this run's other outputs it would pass for
    this run's); ``path``, or None when there was none."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # (e.g. a folder of that name: said, not fatal: the run's own outputs are written)
        _err(f"fastbatch {command}: warning: {path} could not be removed ({exc.strerror}): it is not this run's")
        return None
    return path


def _plot_title(trainer, data):
    c = trainer.config
    hidden = ",".join(map(str, c["hidden"])) or "none"
    rate = f"lr {c['learning_rate']:g}" + ("" if c["lr_schedule"] == "constant" else f" ({c['lr_schedule']})")
    return (f"{os.path.basename(data)}: hidden {hidden}, {c['activation']}, {c['optimizer']} {rate}, "
            f"batch {c['batch_size']}, {trainer.history.loss.size:,} steps")


NO_ESTIMATE_AT_1 = ("batch 1 carries no noise-scale estimate (it compares the records within a batch); "
                    "train with --batch-size 2 or more")


class NoiseReport:
    """A callback for ``--track-noise``: each finished epoch's gradient noise scale, one line
    (History.epoch_noise_scale)."""

    def __init__(self, say):
        self.say = say

    def on_epoch_end(self, trainer, epoch, logs):
        scale = trainer.history.epoch_noise_scale(epoch)
        if not math.isnan(scale):  # (an epoch of batch 1 has none: said once, at the end)
            self.say(f"epoch {epoch + 1}: noise scale {_approx_records(scale)}")


def _approx_records(scale):
    """``"~ 640 records"``: two significant digits, for an estimate is no more precise than that."""
    if math.isinf(scale):
        return "beyond what this batch can measure (the noise swamps the gradient)"
    return f"~ {_num(float(f'{scale:.2g}'))} records"


def noise_suggestion(history):
    """One line: the run's measured noise scale (the median of its epochs'), what it means, a batch size to try."""
    from .compare import suggested_batch_size
    try:
        scale = history.run_noise_scale()
    except ValueError:
        return NO_ESTIMATE_AT_1
    if math.isnan(scale):
        return "no noise-scale estimate: no batch held more than one record"
    n = int(history.n_records)
    candidates = sorted({2 ** k for k in range(n.bit_length()) if 2 ** k <= n} | {n})
    pick = suggested_batch_size(candidates, scale)
    if math.isinf(scale):
        return (f"measured noise scale: beyond what batch {int(history.batch_size.max()):,} can measure (the noise "
                f"swamps the gradient), so a bigger batch would still pay; try {pick:,}")
    return (f"measured noise scale {_approx_records(scale)}: batch sizes well below waste steps, well above waste "
            f"records; try {pick:,}")


class Progress:
    """``on_progress`` for ``Trainer.fit``: a tqdm bar when tqdm is installed, else one rewritten text line."""

    def __init__(self, trainer, file=None):
        self.trainer = trainer
        self.file = file or sys.stderr
        self.bar = None
        self.call = (time.perf_counter(), trainer.step if trainer.started else 0)  # made just before fit
        self.t0 = None  # rates count from the first report, as tqdm's steps/s does (from the bar's start)
        self.step0 = 0
        self.seen0 = None
        self.last_len = 0
        try:
            import tqdm
            self._tqdm = tqdm.tqdm
        except ImportError:
            self._tqdm = None

    def __call__(self, history):
        now = time.perf_counter()
        total = self.trainer.total_steps
        steps = history.n_steps
        seen = history.records_in(steps)
        if self.seen0 is None:  # the first report: the bar starts here, at the steps done
            self.t0, self.step0, self.seen0 = now, steps, seen
            self._start(total, steps)
        t0, step0, seen0 = self.t0, self.step0, self.seen0
        if steps == step0:  # (no step since the first report, e.g. a run shorter than a report's interval: the call's)
            t0, step0 = self.call
            seen0 = history.records_in(step0)
        dt = max(now - t0, 1e-9)
        rate = (seen - seen0) / dt
        step_rate = (steps - step0) / dt
        epoch = history.epoch_of(steps - 1) + 1 if steps else 0
        epochs = total // history.steps_per_epoch if history.steps_per_epoch else 0
        loss = float(history.loss[-1]) if steps else float("nan")
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {epoch}/{epochs}, loss {loss:.4g}, {rate:,.0f} records/s", refresh=False)
            self.bar.update(steps - self.bar.n)
            return
        eta = (total - steps) / step_rate if step_rate > 0 else float("nan")
        line = (f"step {steps}/{total}  epoch {epoch}/{epochs}  loss {loss:.4g}  {rate:,.0f} records/s  "
                f"ETA {_seconds(eta)}")
        self.file.write("\r" + line.ljust(self.last_len))
        self.file.flush()
        self.last_len = len(line)

    def write(self, line):
        """Print ``line`` on stdout, under the bar (or the progress line), which stays at the bottom."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
            return
        if self.last_len:
            self.file.write("\r" + " " * self.last_len + "\r")
            self.file.flush()
            self.last_len = 0
        print(line, flush=True)

    def _start(self, total, steps):
        if self._tqdm is not None:
            self.bar = self._tqdm(total=total, initial=steps, unit="step", file=self.file, dynamic_ncols=True,
                                  desc="training")

    def close(self):
        if self.bar is not None:
            if self.trainer.finished and self.bar.n < self.bar.total:  # early stopping: the run ends here
                self.bar.total = self.bar.n
                self.bar.set_postfix_str(f"{self.bar.postfix}, stopped early", refresh=False)
            self.bar.close()
        elif self.last_len:
            self.file.write("\n")
            self.file.flush()


def _seconds(s):
    if s != s:  # NaN: no rate yet
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------- compare

COMPARE_COLUMNS = [  # (summary key, heading, unit)
    ("batch_size", "batch", "records"), ("learning_rate", "lr", ""), ("steps_per_epoch", "steps/epoch", ""),
    ("last_batch", "last batch", "records"), ("steps", "steps", ""), ("steps_per_s", "steps/s", ""),
    ("records_per_s", "records/s", ""), ("seconds_per_epoch", "s/epoch", ""), ("train_loss", "train loss", ""),
    ("val_loss", "val loss", ""), ("noise_scale", "noise scale", "records")]


def cmd_compare(args):
    """``fastbatch compare``: :func:`fastbatch.compare_batch_sizes` with train's options, task rule and data."""
    from .compare import compare_batch_sizes, write_comparison_csv
    from .trainer import Trainer
    opts = _trainer_options(args)
    if "batch_size" in opts:
        raise UsageError("compare takes its batch sizes as --batch-sizes, not --batch-size")
    if args.reference_batch_size is not None and args.reference_batch_size < 1:
        raise UsageError(f"--reference-batch-size must be at least 1, got {args.reference_batch_size}")
    if args.reference_batch_size is not None and args.scale_lr is None:  # (it was ignored: one rate for every size)
        raise UsageError(f"--reference-batch-size {args.reference_batch_size} scales the rate only with --scale-lr "
                         "linear or sqrt; give one, or leave --reference-batch-size out")
    if opts.get("patience") is not None:
        raise UsageError(f"--patience {opts['patience']}: compare trains every batch size for the same --epochs "
                         "(early stopping would end each run at an epoch of its own); leave --patience out")
    try:
        trainer = Trainer(**{**CLI_DEFAULTS, **opts})  # checks every option before any data is read
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    prefix = args.out if args.out is not None else os.path.join(_default_out_dir(args.data),
                                                                _stem(args.data) + "-compare")
    if os.path.isdir(prefix):
        raise UsageError(f"--out {prefix} is a folder; give a prefix like {os.path.join(prefix, 'compare')}")
    for written in (prefix + ".csv", prefix + ".png"):  # checked before any run: the data must never be overwritten
        if os.path.exists(written) and os.path.exists(args.data) and os.path.samefile(written, args.data):
            raise UsageError(f"--out {prefix} would write {written}, the data file, over it; give another prefix")
    from . import datasets
    table = _prepared(args, trainer, datasets.load_table(args.data, args.target), say=not args.quiet)
    from .schedule import split_sizes
    n_train, _ = split_sizes(len(table.y), trainer.config["validation_split"])
    sizes = sorted({n_train if b == "full" else b for b in args.batch_sizes})
    if os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
    _check_writable(os.path.dirname(prefix))
    params = {**CLI_DEFAULTS, **opts, "loss": trainer.loss}
    _err(f"fastbatch compare: training {count(len(sizes), 'run')} of {_epochs(trainer.config['epochs'], 1)}: "
         "batch "
         + ", ".join(f"{b:,}" for b in sizes))
    histories, summary = compare_batch_sizes(table.X, table.y, sizes, scale_lr=args.scale_lr,
                                             reference_batch_size=args.reference_batch_size, **params)
    rows = summary.to_dict("records") if hasattr(summary, "to_dict") else list(summary)
    print(comparison_table(rows))
    print(_suggestion_line(rows))
    write_comparison_csv(prefix + ".csv", histories, rows)
    print(f"comparison: {prefix}.csv")
    from ._plot import PlotUnavailable, write_comparison_plot
    try:
        write_comparison_plot(prefix + ".png", histories, rows, _compare_title(trainer, args, len(table.y)),
                              trainer.loss)
        print(f"figure:     {prefix}.png")
    except PlotUnavailable as exc:
        stale = _remove_stale(prefix + ".png", "compare")
        print(f"figure:     not written: {exc}" + (f" (removed {stale}: it plotted an earlier comparison)"
                                                    if stale else ""))
    return EXIT_OK


def _num(v):
    """The one number format of the CLI's tables: thousands separators, 4 significant digits below 1,000."""
    if isinstance(v, (bool, str)) or v is None:
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf"
    if v == int(v) or abs(v) >= 1000:
        return f"{v:,.0f}"
    import numpy as np  # positional, never 9.5e-05: one format down the column
    return np.format_float_positional(v, precision=4, unique=False, fractional=False, trim="-")


def comparison_table(rows):
    """The summary as a fixed-width table, the suggested batch size marked."""
    cols = [c for c in COMPARE_COLUMNS if not (c[0] == "val_loss" and all(math.isnan(r[c[0]]) for r in rows))]
    head = [name for _, name, _ in cols]
    units = [f"({unit})" if unit else "" for _, _, unit in cols]
    body = [[_num(r[key]) for key, _, _ in cols] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, units, *body)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in (head, units)]
    for r, line in zip(rows, body):
        mark = "  <- suggested" if r["suggested"] else ""
        lines.append("  ".join(x.rjust(w) for x, w in zip(line, widths)) + mark)
    return "\n".join(line.rstrip() for line in lines)


def _suggestion_line(rows):
    from .compare import pooled_noise_scale
    pick = [r["batch_size"] for r in rows if r["suggested"]]
    if not pick:
        return "no noise-scale estimate (batch 1 carries none): compare batch sizes of 2 or more"
    scale = pooled_noise_scale(rows)
    if math.isinf(scale):
        return (f"suggested batch size: {pick[0]:,} (the noise scale, the median over the runs, is beyond what "
                "these batches can measure: the noise swamps the gradient, so bigger batches still pay)")
    return (f"suggested batch size: {pick[0]:,} (nearest the measured noise scale, {_approx_records(scale)}, "
            "the median over the runs)")


def _compare_title(trainer, args, n_records):
    from .schedule import split_sizes
    c = trainer.config
    hidden = ",".join(map(str, c["hidden"])) or "none"
    rate = f"lr {c['learning_rate']:g}" + (f" scaled {args.scale_lr}" if args.scale_lr else "")
    n_train, n_val = split_sizes(n_records, c["validation_split"])
    records = f"{n_train:,} records" + (f", {n_val:,} held out" if n_val else "")
    return (f"{os.path.basename(args.data)} ({records}): hidden {hidden}, {c['activation']}, "
            f"{c['optimizer']} {rate}, {c['epochs']:,} epochs, seed {c['seed']}")


# ---------------------------------------------------------------------- evaluate / predict

def _features(args, trainer):
    """The features of ``args.data`` as the network takes them; the target column is left out unread.

    The target column is ``--target``, else the one the checkpoint was trained on when the file has
    it. Without either, a CSV whose header names the training features has them all (in any
    order); by position, a .csv/.npy file with exactly the network's inputs is all features, and
    one with a column more has the checkpoint's target column (by index; else its last) taken as the target.
    """
    from . import datasets
    target = _recorded_target(trainer, args)
    trained = _trained_features(trainer)
    known = _known(trainer)
    by_name = _has_header(args.data, trainer) and trained is not None
    if by_name and target is None:  # no target column: every column must be a feature, checked before any is read
        order = _feature_order(datasets.columns(args.data, known), trained, args)
        return _all_columns(args.data, known)[:, order]
    table = datasets.load_table(args.data, target, read_target=False, known=known)
    plain = os.path.splitext(os.fspath(args.data))[1].lower() in (".csv", ".npy")
    if not by_name and target is None and plain and table.X.shape[1] + 1 == _n_inputs(trainer):
        _note_columns_by_position(args, trainer, _has_header(args.data, trainer))
        return _all_columns(args.data, known)  # the last column, taken as the target, was a feature
    return _in_training_order(table, trainer, args)


def _all_columns(path, known=None):
    """Every column of a .csv/.npy file as a feature (the reader's target, its last column, put back)."""
    import numpy as np
    from . import datasets
    table = datasets.load_table(path, None, read_target=True, known=known)
    if table.classes is not None:
        raise ValueError(f"{path!r}, column {table.target!r}: {table.classes[0]!r} is not a number "
                         "(a feature must be numbers)")
    return np.column_stack([table.X, np.asarray(table.y, dtype=np.float64)])


def _n_inputs(trainer):
    return trainer.get_params()[0][0].shape[0]


def _has_header(data, trainer=None):
    """Whether ``data`` names its columns: a .csv file with a header row (of any names, or of the names the
    ``trainer``'s network was trained on, numbers or not)."""
    from . import datasets
    return os.path.splitext(os.fspath(data))[1].lower() == ".csv" and datasets.csv_header(
        data, _known(trainer)) is not None


def _known(trainer):
    """The column names a checkpoint's network was trained on, when a CSV header gave them (features and
    target); None otherwise."""
    info = trainer.info if trainer is not None else {}
    if not info.get("features_named"):
        return None
    return list(info.get("features") or []) + ([info["target"]] if isinstance(info.get("target"), str) else [])


def _trained_features(trainer):
    """The names of the features the network was trained on; None when unknown, or when they name no column.

    A .npy/.npz file's columns are named by their indices ("0", "1", ... without the target's), which
    say nothing a position does not (a checkpoint from before ``features_named`` was recorded: names
    that are those indices are taken as none); nor can repeated names tell their columns apart.
    """
    names = trainer.info.get("features")
    if not names or len(set(names)) < len(names):
        return None
    if trainer.info.get("features_named"):  # a CSV's header: names, even "0", "1", ... (pandas' for unnamed columns)
        return list(names)
    target = trainer.info.get("target")
    indices = [str(j) for j in range(len(names) + 1) if str(j) != target][:len(names)]
    return None if names == indices else list(names)


def _in_training_order(table, trainer, args):
    """``table.X`` with its columns in the order the network takes them: by name when both name them.

    Columns are matched by name, so a file with the same columns in another order gives the same
    results; a file without names (.npy, .npz) is taken by position and only their number is checked.
    """
    trained = _trained_features(trainer)
    named = _has_header(args.data, trainer)
    if named and trained is not None:
        return table.X[:, _feature_order(table.features, trained, args)]
    _note_columns_by_position(args, trainer, named)
    n_inputs = _n_inputs(trainer)
    if table.X.shape[1] != n_inputs:
        hint = " (is the target column missing?)" if table.X.shape[1] + 1 == n_inputs else ""
        raise ValueError(f"{args.data} has {table.X.shape[1]} feature columns besides its target, but the network in "
                         f"{args.checkpoint} takes {n_inputs}{hint}")
    return table.X


def _feature_order(names, trained, args):
    """Where each of the ``trained`` feature names is among a file's feature columns ``names``.

    A missing feature is an error naming it. So is a column the network was not trained on: train
    takes every column but the target as a feature, so such a column is not something to ignore.
    """
    missing = [f for f in trained if f not in names]
    extra = [c for c in names if c not in trained]
    twice = sorted({c for c in names if names.count(c) > 1})
    if missing:
        raise ValueError(f"{args.data} has no feature column {_listed(missing)}: the network in {args.checkpoint} "
                         f"was trained on {_listed(trained)}" + (f" (the file has {_listed(extra)})" if extra else ""))
    if extra:
        raise ValueError(f"{args.data} has column {_listed(extra)}, which the network in {args.checkpoint} was not "
                         f"trained on (its features: {_listed(trained)}); drop it, or name a target column with "
                         "--target")
    if twice:
        raise ValueError(f"{args.data} has more than one column named {_listed(twice)}")
    return [names.index(f) for f in trained]


def _as_trained(table, trainer):
    """A resumed run's table with its feature columns in the order the network takes them, when its header names
    exactly the features the network was trained on, in another order: matched by name, as evaluate and predict
    match them (by position the network would train on scrambled inputs)."""
    trained, names = _trained_features(trainer), table.features
    if trained is None or names == trained or sorted(names) != sorted(trained) or len(set(names)) < len(names):
        return table
    return table._replace(X=table.X[:, [names.index(f) for f in trained]], features=list(trained))


def _listed(names, limit=10):
    """``'a', 'b', 'c'``, cut after ``limit`` names."""
    return ", ".join(map(repr, names[:limit])) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _trained(path):
    from .trainer import Trainer
    trainer = Trainer.load(path)
    if not trainer.started:
        raise ValueError(f"{path} holds an untrained network (no run started)")
    return _checked_info(trainer, path)


def _checked_info(trainer, path):
    """``trainer``, when the names ``train`` recorded in its info fit its network (a checkpoint edited by hand,
    its digest recomputed, is refused here with a ValueError, not by an IndexError later)."""
    info, st = trainer.info, trainer.run_state
    if st is None:
        return trainer
    n_in, n_out = int(st.sizes[0]), int(st.sizes[-1])
    classes, features, target = info.get("classes"), info.get("features"), info.get("target")
    problem = None
    if classes is not None:
        kinds = {str} if classes and isinstance(classes[0], str) else {int, float}
        fits = len(classes) == 1 or len(classes) == (n_out if st.loss == "cross_entropy" else 2)
        if not (isinstance(classes, list) and st.loss in CLASS_LOSSES and fits and len(set(map(repr, classes)))
                == len(classes) and all(type(c) in kinds for c in classes)):
            problem = f"classes {classes!r} do not fit its {st.loss} network of {n_out} outputs"
    if features is not None and not (isinstance(features, list) and len(features) == n_in
                                     and all(isinstance(f, str) for f in features)):
        problem = f"features {features!r} do not fit its network of {n_in} inputs"
    if target is not None and not isinstance(target, str):
        problem = f"target {target!r} is not a column name"
    if "features_named" in info and not isinstance(info["features_named"], bool):
        problem = f"features_named {info['features_named']!r} is not true or false"
    column = info.get("target_column")
    if column is not None and (type(column) is not int or not 0 <= column <= n_in):
        problem = f"target_column {column!r} is not a column of a file of {n_in + 1}"
    if problem:
        raise ValueError(f"{path} is not a valid fastbatch checkpoint: its {problem}")
    return trainer


def _recorded_target(trainer, args):
    """``target``, or the column the checkpoint was trained on when the data file has it: by name in a CSV with
    a header; by index in a file without names (.npy, a CSV without a header) of one column more than the
    network's inputs (with exactly its inputs, every column is a feature)."""
    from . import datasets
    data, target = args.data, args.target
    recorded = trainer.info.get("target")
    if target is not None or recorded is None:
        return target
    columns = datasets.columns(data, _known(trainer))
    if columns is None:  # .npz: its y
        return None
    named = _has_header(data, trainer)
    if named and recorded in columns:
        return recorded
    if len(columns) != _n_inputs(trainer) + 1 or (named and _trained_features(trainer) is not None):
        return None          # (a header of other names than the network's: evaluate says what is missing)
    # by position: the index the target had in the training file (recorded since; before, a .npy's name was it)
    index = trainer.info.get("target_column")
    if index is None and isinstance(recorded, str) and recorded.isdigit():
        index = int(recorded)
    if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(columns)):
        return None
    if not named:
        _note_by_position(args, f"{data} has no column names: its columns are taken in the training file's order, "
                                f"the target ({recorded!r}) as column {index + 1} of {len(columns)}; pass --target "
                                "to name another column")
    return index


def _note_columns_by_position(args, trainer, named):
    """_note_by_position for a CSV read by position (``named``: it has a header, which the network's unnamed
    columns cannot be matched by); a .npy has no names, as in training, and needs no note."""
    if os.path.splitext(os.fspath(args.data))[1].lower() != ".csv":
        return
    _note_by_position(args, f"the network in {args.checkpoint} was trained on columns without names: the columns "
                            f"of {args.data} are taken in the training file's order, not by their names" if named else
                            f"{args.data} has no column names: its columns are taken in the training file's order")


def _note_by_position(args, text):
    """Say on stderr (once a command) that a file's columns are taken by position, not by name: a file laid out
    otherwise than the training file would be read wrongly, without a word."""
    if not getattr(args, "noted_by_position", False):
        print(text, file=sys.stderr)
        args.noted_by_position = True


def cmd_evaluate(args):
    import numpy as np
    from . import datasets
    trainer = _trained(args.checkpoint)
    recorded = trainer.info.get("target")
    target = _recorded_target(trainer, args)
    if target is None and recorded is not None and _has_header(args.data, trainer):
        raise ValueError(f"{args.data} has no column {recorded!r}, the target {args.checkpoint} was trained on; "
                         "evaluate needs the true targets (name another column with --target)")
    classes = trainer.info.get("classes")
    table = datasets.load_table(args.data, target, classes=_class_names(classes), known=_known(trainer))
    X = _in_training_order(table, trainer, args)
    y = _evaluation_labels(table, classes, args)
    res = trainer.evaluate(X, y)
    line = f"loss {res['loss']:.6g}"
    for key in ("accuracy", "r2", "mae"):
        if key in res:
            line += f"  {'R2' if key == 'r2' else key.upper() if key == 'mae' else key} {res[key]:.4f}"
    print(f"{line}  ({count(X.shape[0], 'record', sep='')})")
    if "accuracy" in res:  # per class: records, and how many the network got right
        pred = np.asarray(trainer.predict(X))
        names = classes or [str(c) for c in range(int(max(y.max(), pred.max())) + 1)]
        for c, name in enumerate(names):
            n = int((y == c).sum())
            if n or (pred == c).any():
                print(f"  class {name}: {count(n, 'record', sep='')}, "
                      f"{int(((y == c) & (pred == c)).sum())} predicted right, "
                      f"{int((pred == c).sum())} predicted as it")
    return EXIT_OK


def _evaluation_labels(table, classes, args):
    """``table.y`` as the network's codes: numeric labels coded by the values it was trained on."""
    if not classes or _class_names(classes):  # none recorded, or names the reader has coded already
        return table.y
    import numpy as np
    name = _target_name(table)
    if table.classes is not None:
        raise ValueError(f"{args.data}: the {name} holds class names such as {table.classes[0]!r}, but the network "
                         f"in {args.checkpoint} was trained on the labels {_listed(classes)}")
    return _label_codes(table.y.reshape(-1), np.asarray(classes), name, args.data)


def cmd_predict(args):
    import csv
    import io
    import numpy as np
    if args.out and os.path.exists(args.out) and any(
            os.path.exists(p) and os.path.samefile(args.out, p) for p in (args.checkpoint, args.data)):
        raise ValueError(f"--out {args.out} is the {'checkpoint' if os.path.samefile(args.out, args.checkpoint) else 'data'}"
                         " file: the predictions would overwrite it; name another file")
    trainer = _trained(args.checkpoint)
    X = _features(args, trainer)
    pred = np.asarray(trainer.predict(X))
    pred = pred.reshape(len(pred), -1)
    classes = trainer.info.get("classes")
    one_class = classes is not None and len(classes) == 1  # its network's second output never had a label
    if one_class:
        pred = np.zeros_like(pred)
    cols = ["prediction"] if pred.shape[1] == 1 else [f"prediction_{j}" for j in range(pred.shape[1])]
    if classes:  # the names the CSV had, not their codes
        pred = np.asarray(classes, dtype=object)[pred]
        fmt = [str] * pred.shape[1]
    else:
        fmt = [_fmt_int if pred.dtype.kind in "iub" else _fmt_float] * pred.shape[1]
    try:
        proba = np.ones((len(pred), 1)) if one_class else trainer.predict_proba(X)
    except ValueError:  # an mse network has no probabilities
        proba = np.empty((len(pred), 0))
    cols += [f"proba_{c}" for c in (classes or range(proba.shape[1]))][:proba.shape[1]]
    fmt += [_fmt_float] * proba.shape[1]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for a, b in zip(pred, proba):
        w.writerow([f(v) for f, v in zip(fmt, (*a, *b))])
    text = buf.getvalue()
    if args.out:
        from ._archive import open_atomic_text
        with open_atomic_text(args.out) as f:  # whole or not at all: an interrupt never leaves it cut short
            f.write(text)
        print(f"{count(len(pred), 'prediction', sep='')} written to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _fmt_int(v):
    return str(int(v))


def _fmt_float(v):
    return repr(float(v))


def cmd_demo(args):
    from . import demo
    return demo.main(show_every_step=args.steps)


COMMANDS = {"plan": cmd_plan, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "compare": cmd_compare, "demo": cmd_demo}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
