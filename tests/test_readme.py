"""The README: its example runs as written, and its Quick start is what CI runs, naming
extras and commands that exist."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def _quick_start():
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_is_what_ci_runs():
    """The second command installs the test extra and runs the core tier, and .ci/run runs
    it verbatim, first; the first installs the tour's extra and runs the tour."""
    install, test = _quick_start()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci[0] == test
    assert "python -m fastloss tour" in install


def test_quick_start_extras_exist():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for command in _quick_start():
        for named in re.findall(r'"\.\[([\w,]+)\]"', command):
            for extra in named.split(","):
                assert extra in extras, f"the Quick start installs the extra {extra!r}, which pyproject.toml lacks"


def test_tour_command_exists():
    from fastloss.__main__ import main

    with pytest.raises(SystemExit) as unknown:
        main(["no-such-command"])
    assert unknown.value.code == 2
    with pytest.raises(SystemExit) as usage:
        main(["tour", "--help"])
    assert usage.value.code == 0
