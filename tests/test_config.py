"""Every parameter is stated once (fastbatch.config.PARAMS): the Trainer, the estimators, the CLI
and the README's parameter table are made from it, and agree."""
import inspect
import re
import warnings
from pathlib import Path

import pytest

import fastbatch as fb
from fastbatch import _codes, config as _config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_trainer_signature_is_the_table():
    sig = inspect.signature(fb.Trainer)
    assert [(n, p.default) for n, p in sig.parameters.items()] == [(p.name, p.default) for p in _config.PARAMS]
    tr = fb.Trainer()
    assert tr.config == _config.DEFAULTS
    for p in _config.PARAMS:
        assert getattr(tr, p.name) == p.default
        assert p.help and p.name in fb.Trainer.__doc__


def test_choice_lists_come_from_the_kernels_code_table():
    assert _config.ACTIVATIONS == tuple(n.lower() for n in _codes.Activation.__members__)
    assert _config.OPTIMIZERS == tuple(n.lower() for n in _codes.Optimizer.__members__)
    assert _config.LOSSES[1:] == tuple(n.lower() for n in _codes.Loss.__members__)
    for name, code in _config.OPTIMIZER_CODES.items():
        assert _codes.Optimizer[name.upper()] == code


def test_the_estimators_take_the_same_parameters():
    sk = pytest.importorskip("fastbatch.sklearn")
    names = [p.name for p in _config.PARAMS if p.name != "loss"]
    for Est, extra in ((sk.FastBatchClassifier, ["class_weight"]), (sk.FastBatchRegressor, [])):
        params = Est().get_params()
        assert list(params) == sorted(names + extra) or set(params) == set(names + extra)
        for n in names:
            assert params[n] == _config.DEFAULTS[n]
            assert f"{n} : " in Est.__doc__


def test_the_cli_has_a_flag_for_every_parameter():
    from fastbatch import cli
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    dests = {a.dest for a in train._actions}
    assert {p.name for p in _config.PARAMS} <= dests


def test_the_readme_lists_every_parameter_with_its_default():
    m = re.search(r"^### Parameters$(.*?)^##", README, re.S | re.M)
    assert m, "README has no '### Parameters' section"
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", m.group(1), re.M))
    assert rows == {p.name: repr(p.default) for p in _config.PARAMS}


def test_readme_table_is_what_the_table_generates():
    assert _config.markdown_table() in README


def test_imports_flow_one_way():
    root = Path(__file__).resolve().parent.parent
    for path in (root / "fastbatch").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "fastbatch_gui" not in text and not re.search(r"^\s*(from|import) gui\b", text, re.M), path.name


@pytest.mark.parametrize("optimizer, setting", [("adam", {"momentum": 0.9}), ("adamw", {"centered": True}),
                                                ("sgd", {"betas": (0.8, 0.99)}), ("sgd", {"alpha": 0.9}),
                                                ("rmsprop", {"nesterov": True, "momentum": 0.5})])
def test_a_setting_the_chosen_optimizer_ignores_is_named_in_a_warning(optimizer, setting):
    name = next(iter(setting))
    with pytest.warns(UserWarning, match=f"{name}=.* has no effect with optimizer='{optimizer}'"):
        fb.Trainer(optimizer=optimizer, **setting)


def test_settings_of_the_chosen_optimizer_and_defaults_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.1)
        fb.Trainer(optimizer="rmsprop", momentum=0.5, centered=True, alpha=0.9, eps=1e-6)
        fb.Trainer(optimizer="adamw", betas=(0.8, 0.99), eps=1e-7)
        fb.Trainer(optimizer="adam")


def test_n_threads_with_the_numpy_backend_is_named_in_a_warning():
    """n_threads sizes the compiled kernel's team; backend='numpy' dropped it without a word."""
    with pytest.warns(UserWarning, match="n_threads=2 has no effect with backend='numpy'") as seen:
        fb.Trainer(backend="numpy", n_threads=2)
    assert seen[0].filename == __file__
    tr = fb.Trainer(n_threads=2)
    with pytest.warns(UserWarning, match="n_threads=2 has no effect with backend='numpy'"):
        tr.backend = "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(backend="numpy")
        fb.Trainer(backend="cython", n_threads=2)
        fb.Trainer(backend="numpy").n_threads = None


def test_an_unknown_setting_of_a_schedule_names_lr_schedule():
    with pytest.raises(TypeError, match="lr_schedule 'step' has no setting.*'foo'"):
        fb.Trainer(lr_schedule={"name": "step", "foo": 1})


def test_an_ignored_setting_is_said_once_at_the_users_line():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        tr = fb.Trainer(optimizer="adam", momentum=0.9)   # said here, once
        tr.learning_rate = 0.1                              # nothing to say
        tr.epochs = 3
        tr.momentum = 0.5                                   # said again: a new value the run ignores
    said = [w for w in seen if "has no effect" in str(w.message)]
    assert len(said) == 2 and all(w.filename == __file__ for w in said)
