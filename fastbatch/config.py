"""Every Trainer parameter, declared once: name, type, default, allowed values and a one-line help.

The Trainer's signature, the scikit-learn estimators' parameters and docs, the CLI's
flags and the app's choice lists are all made from :data:`PARAMS` (see ``tests/test_config.py``).
The choice lists come from the kernel's code table (``_codes.pxd``): a name's code is
its position there.
"""
import dataclasses
import inspect
import warnings
from . import _codes
from . import _validation as V
from .schedules import SCHEDULES, make_schedule


def _names(enum):
    return tuple(name.lower() for name in enum.__members__)


ACTIVATIONS = _names(_codes.Activation)
LOSSES = ("auto",) + _names(_codes.Loss)
OPTIMIZERS = _names(_codes.Optimizer)
BACKENDS = ("cython", "numpy")
DTYPES = ("float32", "float64")
ACTIVATION_CODES = {name: i for i, name in enumerate(ACTIVATIONS)}
LOSS_CODES = {name: i for i, name in enumerate(LOSSES[1:])}
OPTIMIZER_CODES = {name: i for i, name in enumerate(OPTIMIZERS)}


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: ``check(value)`` returns the normalised value or raises TypeError / ValueError."""

    name: str
    default: object
    kind: str            # int, float, bool, choice, hidden, betas, schedule, dtype, optional_int
    help: str
    choices: tuple = ()
    low: float = None    # bounds of an int / float
    high: float = None
    live: bool = False   # may be assigned once a run has started
    optimizers: tuple = ()  # the optimizers it is a setting of (empty: every one)

    def check(self, value):
        n = self.name
        if self.kind == "int":
            return V.check_int(n, value, int(self.low))
        if self.kind == "optional_int":
            return None if value is None else V.check_int(n, value, int(self.low))
        if self.kind == "float":
            return V.check_float(n, value, self.low, self.high, low_open=self.name == "learning_rate",
                                 high_open=self.high is not None)
        if self.kind == "bool":
            return V.check_bool(n, value)
        if self.kind == "choice":
            return V.check_choice(n, value, self.choices)
        if self.kind == "dtype":
            return V.check_dtype(value)
        if self.kind == "hidden":
            return V.check_hidden(value)
        if self.kind == "betas":
            return V.check_betas(value)
        if self.kind == "seed":
            return V.check_seed(value)
        if self.kind == "schedule":
            if isinstance(value, str):
                return V.check_choice(n, value, SCHEDULES)
            try:
                return make_schedule(value).config()
            except (ValueError, TypeError) as exc:  # a setting's error, said as lr_schedule's
                message = str(exc)
                raise type(exc)(message if message.startswith(n) else f"{n}: {message}") from None
        raise AssertionError(self.kind)  # pragma: no cover

    @property
    def doc_type(self):
        """The numpydoc type line: ``{"relu", "tanh"}, default="relu"``."""
        if self.choices:
            kind = "{" + ", ".join(f'"{c}"' for c in self.choices) + "}"
        else:
            kind = {"int": "int", "optional_int": "int or None", "float": "float", "bool": "bool",
                    "hidden": "tuple of int", "betas": "(float, float)", "seed": "int",
                    "schedule": "str or dict", "dtype": '{"float32", "float64"}'}[self.kind]
        return f"{kind}, default={self.default!r}"


# The defaults of hidden, batch_size, epochs, optimizer and learning_rate were chosen on scikit-learn's
# bundled datasets, raw and standardised (benches/defaults_study.py; the README's defaults table).
PARAMS = (
    Param("hidden", (64,), "hidden", "Widths of the hidden layers; () is linear / logistic / softmax regression."),
    Param("activation", "relu", "choice", "Activation of the hidden layers; the output layer is linear (logits).",
          ACTIVATIONS),
    Param("loss", "auto", "choice", "'auto': whole-number targets with at most 20 distinct values are classes "
          "(cross_entropy), anything else regression (mse); a warning says so where it is not obvious.",
          LOSSES),
    Param("batch_size", 32, "int", "Records per step; the last batch of an epoch is smaller unless drop_last.",
          low=1),
    Param("epochs", 50, "int", "Passes over all records in the run; may be raised to continue a run.", low=1,
          live=True),
    Param("learning_rate", 0.01, "float", "The rate (the base of lr_schedule); may change between fit calls.",
          low=0.0, live=True),
    Param("optimizer", "adam", "choice", "As torch.optim.SGD, Adam, AdamW (and RMSprop).", OPTIMIZERS),
    Param("momentum", 0.0, "float", "SGD and RMSprop momentum.", low=0.0, optimizers=("sgd", "rmsprop")),
    Param("nesterov", False, "bool", "Nesterov momentum (needs momentum > 0).", optimizers=("sgd",)),
    Param("betas", (0.9, 0.999), "betas", "Adam's moment decay rates.", optimizers=("adam", "adamw")),
    Param("eps", 1e-8, "float", "Adam's and RMSprop's denominator term.", low=0.0,
          optimizers=("adam", "adamw", "rmsprop")),
    Param("alpha", 0.99, "float", "RMSprop's smoothing constant (torch.optim.RMSprop's alpha).", low=0.0, high=1.0,
          optimizers=("rmsprop",)),
    Param("centered", False, "bool", "RMSprop: normalise by the gradient's estimated variance (centered RMSprop).",
          optimizers=("rmsprop",)),
    Param("weight_decay", 0.0, "float", "L2 penalty (SGD, Adam, RMSprop) or decoupled decay (AdamW), on weights "
          "and biases; 0 for every optimizer (torch.optim.AdamW's default is 0.01: pass it for AdamW as torch has it).",
          low=0.0),
    Param("shuffle", True, "bool", "Visit the records in a seeded new order each epoch (epoch_order)."),
    Param("drop_last", False, "bool", "Drop the last, short batch of each epoch."),
    Param("seed", 0, "seed", "Seeds the initial params, the record order and the validation split."),
    Param("dtype", "float32", "dtype", "Precision of the params and of training.", DTYPES),
    Param("backend", "cython", "choice", "The compiled kernel, or the plain numpy reference (same results).",
          BACKENDS),
    Param("validation_split", 0.0, "float", "Fraction of the records held out (seeded) to validate each epoch.",
          low=0.0, high=1.0),
    Param("patience", None, "optional_int", "Early stopping: epochs without improvement before the run ends.",
          low=1),
    Param("lr_schedule", "constant", "schedule", "'constant', 'step', 'exponential', 'cosine' or 'plateau' "
          "(or a dict with 'name' and its settings).", SCHEDULES),
    Param("warmup_steps", 0, "int", "Linear warm-up of the rate over the first steps.", low=0),
    Param("standardize", False, "bool", "Standardise each feature with the training records' mean and std, "
          "weighted by sample_weight when given (stored with the params; predict and evaluate apply it)."),
    Param("standardize_target", False, "bool", "Standardise mse targets too (predictions come back in the "
          "data's units; History's losses are in standardised units, its `val_mae` in the data's)."),
    Param("track_noise", False, "bool", "Record each step's squared norm of the batch's mean gradient and the "
          "mean squared norm of its records' gradients, for History.noise_scale()."),
    Param("n_threads", None, "optional_int", "Threads of the kernel's team, at most; None: the BLAS's thread "
          "setting when the run starts. With the step's shapes and the CPU it decides the team; the load never does.",
          low=1),
)
BY_NAME = {p.name: p for p in PARAMS}
DEFAULTS = {p.name: p.default for p in PARAMS}
LIVE = tuple(p.name for p in PARAMS if p.live)
_CHECKED_DEFAULTS = {p.name: p.check(p.default) for p in PARAMS}  # (each an immutable value)


_NAMES = frozenset(BY_NAME)
_OPTIMIZER_SETTINGS = tuple((p.name, p.check(p.default), p.optimizers) for p in PARAMS if p.optimizers)
# checked values of immutable types, by (name, type, value) (and a tuple's item types): a config's
# check then costs a dict lookup per parameter passed, since a value's types and equality decide
# its check (a float 0.0 is left out: -0.0 equals it). Errors are never stored; the memo is
# cleared when it grows large.
_SCALARS = frozenset((int, float, str, bool, type(None)))
_CHECKED = {}
_CHECKED_MAX = 4096


def _checked(p, value):
    cls = value.__class__
    if cls in _SCALARS:
        if cls is float and value == 0.0:
            return p.check(value)
        key = (p.name, cls, value)
    elif cls is tuple and len(value) <= 8:
        kinds = tuple(v.__class__ for v in value)
        if not _SCALARS.issuperset(kinds) or 0.0 in value:
            return p.check(value)
        key = (p.name, cls, value, kinds)
    else:
        return p.check(value)
    out = _CHECKED.get(key, _CHECKED)
    if out is _CHECKED:
        out = p.check(value)
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = out
    return out


def check_config(params, defaults=DEFAULTS):
    """The full, checked, normalised config from keyword parameters (TypeError on an unknown name)."""
    if not _NAMES.issuperset(params):
        unknown = set(params) - _NAMES
        raise TypeError(f"unknown parameter(s) {sorted(unknown)}; allowed: {sorted(BY_NAME)}")
    if defaults is DEFAULTS:  # the defaults, checked once; then only what is passed
        cfg = dict(_CHECKED_DEFAULTS)
        for name, value in params.items():
            cfg[name] = _checked(BY_NAME[name], value)
    else:
        cfg = {p.name: _checked(p, params.get(p.name, defaults.get(p.name, p.default))) for p in PARAMS}
    if cfg["nesterov"] and cfg["momentum"] == 0.0:
        raise ValueError("nesterov=True needs momentum > 0 (as in torch.optim.SGD), got momentum=0.0")
    schedule = cfg["lr_schedule"]
    if isinstance(schedule, dict):
        # the warm-up is the warmup_steps parameter's, stated once: a schedule's own warmup_steps (a dict's, or a
        # Schedule object's) moves there, and the two must agree when both are given
        warmup = schedule.get("warmup_steps", 0)
        if warmup and cfg["warmup_steps"] and warmup != cfg["warmup_steps"]:
            raise ValueError(f"lr_schedule has warmup_steps={warmup} but warmup_steps={cfg['warmup_steps']}; "
                             "give the warm-up once")
        cfg["lr_schedule"] = {k: v for k, v in schedule.items() if k != "warmup_steps"}
        cfg["warmup_steps"] = warmup or cfg["warmup_steps"]
        make_schedule(cfg["lr_schedule"], cfg["warmup_steps"])
    return cfg


def warn_ignored(cfg, names=None):
    """Warn, once each, of the settings (of ``names``, default all) the chosen optimizer ignores: a setting
    that changes nothing is said, not silently dropped. The warning points at the caller's own line."""
    from ._task import caller_stacklevel
    if (names is None or "n_threads" in names or "backend" in names) and cfg["backend"] == "numpy" \
            and cfg["n_threads"] is not None:
        warnings.warn(f"n_threads={cfg['n_threads']!r} has no effect with backend='numpy': it sizes the compiled "
                      "kernel's team (numpy's own BLAS threads are set by OPENBLAS_NUM_THREADS or threadpoolctl)",
                      UserWarning, stacklevel=caller_stacklevel())
    optimizer = cfg["optimizer"]
    for name, default, optimizers in _OPTIMIZER_SETTINGS:
        if (names is None or name in names) and optimizer not in optimizers and cfg[name] != default:
            warnings.warn(f"{name}={cfg[name]!r} has no effect with optimizer={optimizer!r}: it is a setting of "
                          f"{' and '.join(repr(o) for o in optimizers)} only", UserWarning,
                          stacklevel=caller_stacklevel())


def signature(defaults=DEFAULTS, first=("self",)):
    """An ``inspect.Signature`` of keyword-only parameters with these defaults (for help() and IDEs)."""
    params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in first]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
               for name, default in defaults.items()]
    return inspect.Signature(params)


def numpydoc(defaults=DEFAULTS):
    """The ``Parameters`` section for these parameters, with these defaults."""
    lines = ["Parameters", "----------"]
    for p in PARAMS:
        if p.name in defaults:
            lines.append(f"{p.name} : {dataclasses.replace(p, default=defaults[p.name]).doc_type}")
            lines.append(f"    {p.help}")
    return "\n".join(lines)



def markdown_table():
    """The README's parameter table (tests/test_config.py checks the README holds exactly this)."""
    lines = ["| parameter | default | what it does |", "| --- | --- | --- |"]
    for p in PARAMS:
        choices = f" One of {', '.join(f'`{c}`' for c in p.choices)}." if p.choices and p.kind == "choice" else ""
        live = " Can change during a run." if p.live else ""
        lines.append(f"| `{p.name}` | `{p.default!r}` | {p.help}{choices}{live} |")
    return "\n".join(lines)
