"""Each package's face: a curated ``__all__`` whose every name resolves, lazily loaded names that come
from the module their ``_LAZY`` table names, and imports that stay light where users expect them to."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("kernels", "streaming", "tracking", "embodied")
PACKAGES = sorted(
    ".".join(["memstream", *init.parent.relative_to(ROOT).parts])
    for folder in FOLDERS
    for init in (ROOT / folder).rglob("__init__.py")
)
HEAVY = ("torch", "transformers", "open3d")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_has_a_curated_all(name: str) -> None:
    package = importlib.import_module(name)
    names = getattr(package, "__all__", None)
    assert isinstance(names, list) and names, f"{name} has no __all__"
    assert all(isinstance(n, str) and not n.startswith("_") for n in names), names
    assert len(set(names)) == len(names), f"{name}.__all__ lists a name twice"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_resolves(name: str) -> None:
    package = importlib.import_module(name)
    missing = [n for n in getattr(package, "__all__", []) if not hasattr(package, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    assert set(getattr(package, "__all__", [])) <= set(dir(package))


@pytest.mark.parametrize("name", [p for p in PACKAGES if hasattr(importlib.import_module(p), "_LAZY")])
def test_lazy_names_come_from_the_module_their_table_names(name: str) -> None:
    package = importlib.import_module(name)
    table: dict[str, str] = package._LAZY
    assert set(table) <= set(package.__all__), f"{name}: lazily loaded but not in __all__: {set(table) - set(package.__all__)}"
    for attribute, module in table.items():
        assert getattr(package, attribute) is getattr(importlib.import_module(module), attribute), attribute
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018


def _loaded_after(code: str, cwd: Path) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("code", "heavy"),
    [
        ("import memstream.streaming", (*HEAVY, "numpy", "cv2")),  # `memstream --help` starts here
        ("from memstream.streaming import Frame, open_source, Runner, run_pipeline", HEAVY),
        ("import memstream.streaming.pipeline", (*HEAVY, "numpy", "cv2")),
        ("from memstream.streaming.pipeline import RunContext, Stage, Upstream", HEAVY),
        ("import memstream.tracking", (*HEAVY, "numpy", "cv2")),
        ("from memstream.tracking import Prompt, Tracker, ClassicalBackend", HEAVY),
        ("import memstream.tracking.sam2_stream", HEAVY),
        ("import memstream.embodied", (*HEAVY, "numpy", "cv2", "scipy")),
        ("import memstream.embodied.map3d, memstream.embodied.policies", HEAVY),
        ("from memstream.embodied.map3d import DualMemory3D, Map3DConfig", HEAVY),
    ],
)
def test_light_imports_stay_light(code: str, heavy: tuple[str, ...], tmp_path: Path) -> None:
    loaded = _loaded_after(code, tmp_path)
    assert "memstream" in loaded  # the probe ran our code
    assert not loaded & set(heavy), f"`{code}` imports {sorted(loaded & set(heavy))}"


def test_the_light_import_probe_sees_heavy_modules(tmp_path: Path) -> None:
    assert "torch" in _loaded_after("from memstream.embodied import PerceptualCognitiveMemory", tmp_path)
