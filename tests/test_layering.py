"""Imports follow the stage order of ARCHITECTURE.md, checked statically on every module.

frames -> tracking -> video memory -> 3D memory -> bank -> policies / agents -> pipeline wiring.
A module may import modules of its own layer or lower ones, never higher ones; ``kernels`` imports
nothing of ours. A new module must be placed in ``LAYERS`` (the test says so), which keeps this map
and the docs honest as the code grows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streaming", "tracking", "embodied", "kernels")

# Longest prefix wins. Lower number = lower layer.
LAYERS: dict[str, int] = {
    "memstream.kernels": 0,
    "memstream.streaming.errors": 1,
    "memstream.streaming.registry": 1,
    "memstream.streaming.configtypes": 1,
    "memstream.streaming.types": 1,
    "memstream.streaming.geometry": 1,
    "memstream.streaming.sources": 2,
    "memstream.streaming.synthetic": 2,
    "memstream.streaming.videoio": 2,
    "memstream.configs": 2,
    "memstream.tracking": 3,
    "memstream.tracking.stage": 9,  # the tracking stage and commands are pipeline wiring
    "memstream.tracking.cli": 9,
    "memstream.tracking.eval.run": 9,
    "memstream.streaming.videomem": 4,
    "memstream.streaming.videomem.stage": 9,  # the video memory's stage and command are pipeline wiring
    "memstream.streaming.videomem.cli": 9,
    "memstream.streaming.videomem.serve": 9,
    "memstream.embodied": 5,
    "memstream.embodied.map3d.stage": 9,  # the 3D memory's stage and command are pipeline wiring
    "memstream.embodied.map3d.cli": 9,
    "memstream.embodied.bank": 6,
    "memstream.embodied.policies": 7,  # policies and agents sit on the bank; envs (5) are what they act in
    "memstream.streaming.config": 9,
    "memstream.streaming.pipeline": 9,
    "streaming.progress": 9,
    "memstream.streaming.cli": 9,
    "memstream.streaming.info": 9,
    "memstream.streaming": 2,  # the package __init__ re-exports only frames and sources (layers <= 2)
}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["memstream", *parts])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of one of our packages in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
            if node.module is None or node.level:
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[:2] in [["memstream", p] for p in PACKAGES]]
    return found


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in source_files() if layer_of(module_name(p)) is None]
    assert not unplaced, f"add these modules to LAYERS in {__file__}: {unplaced}"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_stage_order(path: Path) -> None:
    me = module_name(path)
    my_layer = layer_of(me)
    assert my_layer is not None
    for line, target in imported_modules(path):
        target_layer = layer_of(target)
        if target_layer is None:  # e.g. `from streaming import x` resolving to a submodule name
            continue
        assert target_layer <= my_layer, f"{me}:{line} imports {target} (layer {target_layer} > {my_layer})"
        top_me, top_target = me.split(".")[1], target.split(".")[1]
        if top_me != top_target:
            private = [part for part in target.split(".")[2:] if part.startswith("_") and part != "__init__"]
            assert not private, f"{me}:{line} reaches into another package's private module {target}"


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The walker resolves relative and absolute imports (so the test above can fail)."""
    bad = ROOT / "streaming" / "sources" / "__init__.py"
    names = [name for _, name in imported_modules(bad)]
    assert "memstream.streaming.errors" in names and "memstream.streaming.sources.protocol" in names
    assert layer_of("memstream.streaming.pipeline.runner") == 9 > layer_of("memstream.streaming.sources.video") == 2
    assert layer_of("memstream.embodied.mem4d") == 5 > layer_of("memstream.tracking.kalman") == 3
