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
