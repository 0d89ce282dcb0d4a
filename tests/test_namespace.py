"""One import namespace: everything of ours imports as ``memstream.*``, and the bare names of our
folders (``kernels``, ``streaming``, ``tracking``, ``embodied``) stay free for the distributions that
own them, from the checkout's root as from anywhere else."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("kernels", "streaming", "tracking", "embodied")
CODE_DIRS = (*FOLDERS, "tests", "benchmarks")


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(importlib.util.find_spec("kernels") is None, reason="Hugging Face's kernels is not installed")
@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_hugging_face_kernels_and_ours_both_import(where: str, tmp_path: Path) -> None:
    cwd = ROOT if where == "root" else tmp_path
    code = (
        "import kernels, memstream.kernels as ours\n"
        "assert kernels.CUDAProperties\n"  # theirs
        "assert ours.block_topk and ours.dequantize_int8\n"
        "import sys; assert 'memstream.kernels' in sys.modules and sys.modules['kernels'] is kernels\n"
        "print(kernels.__file__)"
    )
    done = _python(code, cwd)
    assert done.returncode == 0, done.stderr
    # theirs, not our kernels/ folder (a .venv inside the checkout puts theirs under ROOT too)
    assert not Path(done.stdout.strip()).resolve().is_relative_to(ROOT / "kernels")


def test_transformers_finds_hugging_faces_kernels_from_the_root() -> None:
    pytest.importorskip("transformers")
    done = _python("from transformers.utils import is_kernels_available; print(is_kernels_available())", ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", [name for name in FOLDERS if name != "kernels"])
def test_a_bare_name_nobody_else_owns_says_where_ours_is(name: str) -> None:
    if importlib.util.find_spec(name) is not None and not Path(importlib.util.find_spec(name).origin).is_relative_to(ROOT / name):
        pytest.skip(f"another distribution provides {name!r}")
    done = _python(f"import {name}", ROOT)
    assert done.returncode != 0
    assert f"import it as memstream.{name}" in done.stderr.strip().splitlines()[-1]
    assert _python(f"import memstream.{name}", ROOT).returncode == 0


def _bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in FOLDERS]
    return found


def test_no_module_imports_a_bare_top_level_name_of_ours() -> None:
    bare = [hit for folder in CODE_DIRS for path in (ROOT / folder).rglob("*.py") for hit in _bare_imports(path)]
    assert not bare, f"import these as memstream.<folder>: {bare}"


def test_the_checker_sees_a_bare_import(tmp_path: Path) -> None:
    module = ROOT / "tests" / "_bare_probe.py"
    try:
        module.write_text("import kernels\nfrom streaming.types import Frame\nfrom memstream.tracking import Tracker\n")
        assert [hit.split()[-1] for hit in _bare_imports(module)] == ["kernels", "streaming.types"]
    finally:
        module.unlink()


def test_every_package_folder_is_in_the_wheel_and_typed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {
        "memstream." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert listed - on_disk == {"memstream.configs"}
    assert {f"memstream.{folder}": folder for folder in FOLDERS}.items() <= setuptools["package-dir"].items()
    assert all((ROOT / folder / "py.typed").is_file() for folder in FOLDERS)


def test_console_script_and_entry_points_name_the_namespace() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    targets = [project["scripts"]["memstream"]]
    targets += [value for group in project["entry-points"].values() for value in group.values()]
    for target in targets:
        module = target.split(":")[0]
        assert module.startswith("memstream."), target
        assert importlib.util.find_spec(module) is not None, target
