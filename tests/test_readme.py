"""The README's commands are what users paste: CI runs exactly its test command, and every shell
line of it means in bash what it says (no unquoted ``&``, ``?`` or ``*`` inside an argument)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def shell_lines() -> list[str]:
    """Each command line of the README's ```bash blocks, comments stripped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            command = re.split(r"\s#\s", line)[0].strip()  # README comments are ` # ...`
            if command:
                lines.append(command)
    return lines


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    tests = [line for line in shell_lines() if "pytest" in line]
    assert len(tests) == 1, tests
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci == tests


@pytest.mark.parametrize("line", [line for line in shell_lines() if line.startswith("memstream ")])
def test_memstream_commands_have_no_unquoted_shell_operators(line: str) -> None:
    for word in re.findall(r"'[^']*'|\"[^\"]*\"|\S+", line):
        if not word.startswith(("'", '"')):
            special = sorted(set("&;|?*[") & set(word))
            assert not special, f"{line!r}: bash reads {special} in {word!r} as operators or globs; quote the argument"


def test_the_checker_sees_an_unquoted_ampersand() -> None:
    with pytest.raises(AssertionError, match="quote the argument"):
        test_memstream_commands_have_no_unquoted_shell_operators("memstream synth distractors?seed=3&frames=300 --out d")
    test_memstream_commands_have_no_unquoted_shell_operators("memstream synth 'distractors?seed=3&frames=300' --out d")
