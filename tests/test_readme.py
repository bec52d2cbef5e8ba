"""The README tells the truth: its Python examples run, and CI runs its test command."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    m = re.search(r"^## Quick start$(.*?)^## ", README, re.S | re.M)
    assert m, "no Quick start section"
    cmds = re.findall(r"```bash\n(.*?)\n```", m.group(1), re.S)
    assert len(cmds) == 2
    assert "fastbatch-gui" in cmds[0] and "pytest" in cmds[1]
    assert cmds[1].strip() in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_python_example_runs(i, tmp_path, monkeypatch):
    if "sklearn" in BLOCKS[i]:
        pytest.importorskip("sklearn")
    if "dask" in BLOCKS[i]:
        pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[i], f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})


def test_a_callback_returning_true_does_what_the_readme_says():
    # the README said such a callback "stops the run": it makes fit return, and a later fit continues
    assert "one that returns True makes `fit` return" in " ".join(README.split())
    import numpy as np
    import fastbatch as fb
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    ended = []
    cb = fb.LambdaCallback(on_step_end=lambda tr, step, loss: step == 4, on_run_end=lambda tr: ended.append(tr.step))
    tr = fb.Trainer(hidden=(4,), batch_size=10, epochs=2)
    tr.fit(X, y, callbacks=[cb])
    assert tr.step == 5 and not tr.finished and ended == []
    tr.fit(X, y, callbacks=[fb.LambdaCallback(on_run_end=lambda tr: ended.append(tr.step))])
    assert tr.step == 20 and ended == [20]


def test_partial_fit_equals_fit_except_for_cosine_as_the_readme_says():
    # the README said k partial_fit calls equal fit(epochs=k) "schedule included": not for cosine
    pytest.importorskip("sklearn")
    assert "except a `cosine` schedule" in README
    import numpy as np
    from fastbatch.sklearn import FastBatchClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    for schedule, same in (("exponential", True), ("cosine", False)):
        a = FastBatchClassifier(hidden=(4,), epochs=3, lr_schedule=schedule)
        for _ in range(3):
            a.partial_fit(X, y, classes=[0, 1])
        b = FastBatchClassifier(hidden=(4,), epochs=3, lr_schedule=schedule).fit(X, y)
        assert np.array_equal(a.loss_curve_, b.loss_curve_) == same


def test_the_batch_size_table_does_not_promise_the_same_losses_on_any_machine():
    # "the losses are exact (seeded) and repeat on any machine": batch 1's row depends on the CPU's vector width
    assert "repeat on any machine" not in README
    pytest.importorskip("sklearn")
    import numpy as np
    import fastbatch as fb
    from fastbatch import _kernel
    top = _kernel._isa_level()
    if top == 0:
        pytest.skip("one ISA level on this CPU")
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    ends = []
    for level in (top, 0):
        was = _kernel._use_isa_level(level)
        try:
            tr = fb.Trainer(batch_size=1, epochs=2, standardize=True)
            tr.fit(X, y)
            ends.append(tr.get_params()[0][0])
        finally:
            _kernel._use_isa_level(was)
    assert not np.array_equal(ends[0], ends[1])


def test_history_metrics_and_the_verbose_line_are_as_the_readme_says(capsys):
    # the README left out the training accuracy that metrics and the verbose line carry for a classification
    import numpy as np
    import fastbatch as fb
    text = " ".join(README.split())
    assert "(`loss`, `accuracy` for classification or `r2` for regression" in text
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    h = fb.Trainer(hidden=(4,), epochs=1, validation_split=0.2).fit(X, y, verbose=1)
    assert sorted(h.metrics) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    line = capsys.readouterr().out.strip()
    shown = re.search(r"`(Epoch 3/20 - .*?)`", README).group(1)
    assert [p.split(":")[0] for p in line.split(" - ")[3:]] == [p.split(":")[0] for p in shown.split(" - ")[3:]]


def test_the_layout_names_every_module():
    # the Layout table ("each file has one job") left out _network.py, callbacks.py, errors.py, __main__.py,
    # _codes.pyx and the app's fmt.py and data_memory.py
    layout = re.search(r"^## Layout$(.*)", README, re.S | re.M).group(1)
    named = set(re.findall(r"`(?:fastbatch/|gui/)?([\w.]+\.(?:py|pyx|pxd))`", layout))
    files = {p.name for d in ("fastbatch", "gui") for p in (ROOT / d).iterdir()
             if p.suffix in (".py", ".pyx", ".pxd") and p.name != "__init__.py"
             and not p.with_name(p.name + ".tp").exists()}   # (not the build's output of a template)
    assert files - named == set()
