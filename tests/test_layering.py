"""Imports follow the stage order of ARCHITECTURE.md, checked statically on every module.

frames -> tracking -> video memory -> 3D memory -> bank -> environments -> policies / agents ->
pipeline host -> each component's wiring. ``LAYERS`` places every module (longest prefix wins); a
module may import modules of its own layer or lower ones, never higher ones. On top of the order:

* package direction, ARCHITECTURE.md's "depends on" column (:data:`MAY_IMPORT`): ``kernels``
  imports nothing of ours, ``streaming`` only ``kernels``, ``tracking`` never ``embodied``;
* :data:`FORBIDDEN` pairs the order alone would allow (an environment never imports a memory);
* one component's wiring (its ``stage``, ``cli``, ``serve``) never imports another component's
  wiring: stages meet only through the runner's ``Upstream``, commands only through ``memstream``;
  and a module named ``stage``, ``cli`` or ``serve`` sits at the host or wiring layer;
* no module reaches into another package's private (``_name``) module;
* every import of ours names a module that exists and has a layer, and every ``LAYERS`` entry
  places at least one module (no stale entries).

What counts as an import: every ``import`` / ``from ... import`` anywhere in the file (inside
functions, under ``if TYPE_CHECKING``), ``importlib.import_module("...")`` and ``__import__("...")``
with a literal name, and the entries of a ``_LAZY`` table (name -> module), the one place a package
face's ``__getattr__`` may load from. A module that imports a computed name must hold such a table,
except :data:`LAZY_LOADER` (``memstream.streaming.lazy``), whose one computed import loads the names
of the calling face's own table (checked where it is written).
A name imported from a package resolves to the package's submodule of that name if there is one,
else to the module the package's ``_LAZY`` table loads it from, else to the package's ``__init__``.
A package's own ``_LAZY`` entries are its public face, loaded on first use: they obey the direction,
privacy and wiring rules but not the layer order (``memstream.streaming`` may offer ``Runner``);
whoever imports such a name is checked against the module that defines it.

A new module must be placed in ``LAYERS`` (the test says so), which keeps this map and the docs
honest as the code grows.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streaming", "tracking", "embodied", "kernels")
HOST, WIRING = 9, 10

# Longest prefix wins. Lower number = lower layer.
#: The one module allowed a computed import: it loads a face's names from that face's _LAZY table.
LAZY_LOADER = "memstream.streaming.lazy"

LAYERS: dict[str, int] = {
    "memstream.kernels": 0,
    "memstream.streaming.errors": 1,
    "memstream.streaming.registry": 1,
    "memstream.streaming.configtypes": 1,
    "memstream.streaming.lazy": 1,
    "memstream.streaming.types": 1,
    "memstream.streaming.geometry": 1,
    "memstream.streaming.threads": 1,  # MEMSTREAM_THREADS: a process's codec/OpenCV/torch thread budget
    "memstream.streaming.sources": 2,
    "memstream.streaming.synthetic": 2,
    "memstream.streaming.videoio": 2,
    "memstream.streaming": 2,  # the package's face: errors eagerly, everything else through _LAZY
    "memstream.tracking": 3,
    "memstream.streaming.videomem": 4,
    "memstream.embodied.map3d": 5,  # above tracking (its masks) and the video memory
    "memstream.embodied": 5,  # the package's face, all of it through _LAZY
    "memstream.embodied.bank": 6,
    "memstream.embodied.scene": 6,  # who x where x when: reads tracking's and the 3D memory's results
    "memstream.embodied.envs": 7,  # what policies and agents act in; imports no memory (FORBIDDEN)
    "memstream.embodied.policies": 8,  # policies and agents sit on the bank and act in envs
    "memstream.embodied.agents": 8,  # navigation agents: on the tracking and 3D memories, acting in envs
    # the pipeline host: what every stage and command is written against
    "memstream.streaming.pipeline": HOST,
    "memstream.streaming.config": HOST,
    "memstream.streaming.cli": HOST,
    "memstream.streaming.batch": HOST,  # `memstream batch`: run over many videos, locally or on Ray  # `memstream`; finds the other commands through entry points
    "memstream.streaming.info": HOST,
    # each component's wiring: its stage, its commands, its service
    "memstream.tracking.stage": WIRING,
    "memstream.tracking.cli": WIRING,
    "memstream.tracking.eval.run": WIRING,
    "memstream.streaming.videomem.stage": WIRING,
    "memstream.streaming.videomem.cli": WIRING,
    "memstream.streaming.videomem.serve": WIRING,
    "memstream.streaming.videomem.service": WIRING,  # the service's parts: access, limits, chat, streams
    "memstream.embodied.map3d.stage": WIRING,
    "memstream.embodied.map3d.cli": WIRING,
    "memstream.embodied.bank.stage": WIRING,
    "memstream.embodied.scene.stage": WIRING,
    "memstream.embodied.scene.cli": WIRING,
    "memstream.embodied.scene.grounding": WIRING,  # the memstream.grounding entry point (reads a run folder)
    "memstream.embodied.agents.cli": WIRING,
    "memstream.embodied.policies.serve": WIRING,  # the robots' policy server (WebSocket + msgpack)
    "memstream.embodied.policies.cli": WIRING,  # vla-train / vla-eval (MIKASA-Robo)
}

# What each package may import, itself included (ARCHITECTURE.md's "depends on" column).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "kernels": frozenset({"kernels"}),
    "streaming": frozenset({"streaming", "kernels"}),
    "tracking": frozenset({"tracking", "streaming", "kernels"}),
    "embodied": frozenset({"embodied", "tracking", "streaming", "kernels"}),
}

# (importer prefix, target prefix, why): imports the layer order alone would let through.
_WORLD = "an environment is the world an agent acts in; the memories belong to the agent"
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("memstream.embodied.envs", "memstream.embodied.map3d", _WORLD),
    ("memstream.embodied.envs", "memstream.embodied.bank", _WORLD),
    ("memstream.embodied.envs", "memstream.streaming.videomem", _WORLD),
    ("memstream.embodied.envs", "memstream.tracking", _WORLD),
    ("memstream.embodied.envs", "memstream.embodied.scene", _WORLD),
)

# Whose wiring a module is (longest prefix wins).
COMPONENTS = (
    "memstream.kernels",
    "memstream.streaming",
    "memstream.streaming.videomem",
    "memstream.tracking",
    "memstream.embodied",
    "memstream.embodied.map3d",
    "memstream.embodied.bank",
    "memstream.embodied.scene",
    "memstream.embodied.agents",
)
WIRING_NAMES = frozenset({"stage", "cli", "serve"})


@dataclass(frozen=True)
class Module:
    """One module of ours: dotted name, source text, whether it is a package's ``__init__``."""

    name: str
    source: str
    is_package: bool


@dataclass(frozen=True)
class Import:
    """An import of ours in some module, resolved to the module it loads.

    ``lazy``: an entry of the importing package's own ``_LAZY`` table (its face), not an import it
    uses itself.
    """

    line: int
    target: str
    lazy: bool = False


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    rule: str  # layer, package, forbidden, wiring, wiring-name, private, unplaced, computed-import, lazy-table
    target: str
    detail: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} [{self.rule}] {self.target}: {self.detail}"


def module_name(relative: Path) -> str:
    """``tracking/eval/run.py`` -> ``memstream.tracking.eval.run``; a package is its ``__init__``."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["memstream", *parts])


def modules_from_sources(sources: Mapping[str, str]) -> dict[str, Module]:
    """Modules from ``{"streaming/types.py": source, ...}`` (paths relative to the checkout)."""
    found = {}
    for relative, source in sources.items():
        path = Path(relative)
        found[module_name(path)] = Module(module_name(path), source, path.name == "__init__.py")
    return found


def our_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module of the four packages in the checkout at ``root``."""
    files = sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))
    return modules_from_sources({str(p.relative_to(root)): p.read_text() for p in files})


def layer_of(module: str, layers: Mapping[str, int] = LAYERS) -> int | None:
    entry = placing_entry(module, layers)
    return None if entry is None else layers[entry]


def placing_entry(module: str, layers: Mapping[str, int] = LAYERS) -> str | None:
    """The ``LAYERS`` key that decides ``module``'s layer (its longest listed prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in layers:
            return prefix
    return None


def _longest_prefix(module: str, prefixes: tuple[str, ...]) -> str | None:
    matches = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(matches, key=len, default=None)


def _ours(name: str) -> bool:
    return name == "memstream" or name.startswith("memstream.")


def _top(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


def lazy_table(tree: ast.Module) -> tuple[dict[str, str] | None, int]:
    """The module's ``_LAZY`` table (``{name: module}``) and its line, or ``(None, 0)``.

    Raises:
        ValueError: ``_LAZY`` is not a dict literal of strings (the checker could not read it).
    """
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
            value = node.value
            if not isinstance(value, ast.Dict) or not all(
                isinstance(x, ast.Constant) and isinstance(x.value, str) for x in [*value.keys, *value.values]
            ):
                raise ValueError(f"line {node.lineno}: _LAZY must be a dict literal of strings")
            return {k.value: v.value for k, v in zip(value.keys, value.values)}, node.lineno
    return None, 0


def _lazy_of(module: Module | None) -> dict[str, str]:
    if module is None:
        return {}
    try:
        return lazy_table(ast.parse(module.source))[0] or {}
    except ValueError:
        return {}


def _resolve_from(base: str, name: str, modules: Mapping[str, Module]) -> str:
    """What ``from base import name`` loads: a submodule, a lazily loaded name's module (through
    faces that load it from other faces), or ``base``."""
    if name != "*" and f"{base}.{name}" in modules:
        return f"{base}.{name}"
    seen = {base}
    while (lazy := _lazy_of(modules.get(base)).get(name)) is not None and lazy not in seen:
        base = lazy
        seen.add(base)
    return base


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__")
    )


def imports_of(module: Module, modules: Mapping[str, Module]) -> tuple[list[Import], list[Violation]]:
    """Every import of ours in ``module`` (see the module docstring), and what could not be read."""
    tree = ast.parse(module.source, filename=module.name)
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    found: list[Import] = []
    problems: list[Violation] = []
    try:
        table, table_line = lazy_table(tree)
    except ValueError as exc:
        table, table_line = None, 0
        problems.append(Violation(module.name, 0, "lazy-table", "_LAZY", str(exc)))
    for name, target in (table or {}).items():
        found.append(Import(table_line, target, lazy=True))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names if _ours(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if _ours(base):
                found += [Import(node.lineno, _resolve_from(base, alias.name, modules)) for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if _ours(arg.value):
                    found.append(Import(node.lineno, arg.value))
            elif table is None and module.name != LAZY_LOADER:
                problems.append(Violation(module.name, node.lineno, "computed-import", ast.unparse(arg),
                                          "imports a computed name; load it from a _LAZY table the checker reads"))
    return found, problems


def check_module(module: Module, modules: Mapping[str, Module], layers: Mapping[str, int] = LAYERS) -> list[Violation]:
    """Every rule of the module docstring, for one module; empty when it is clean."""
    me = module.name
    my_layer = layer_of(me, layers)
    imports, violations = imports_of(module, modules)
    if my_layer is None:
        return [*violations, Violation(me, 0, "unplaced", me, "add this module to LAYERS")]
    if me.rpartition(".")[2] in WIRING_NAMES and my_layer < HOST:
        violations.append(Violation(me, 0, "wiring-name", me, f"a stage/cli/serve module is wiring (layer {HOST} or {WIRING}), not {my_layer}"))
    for imp in imports:
        line, target = imp.line, imp.target

        def fail(rule: str, detail: str) -> None:
            violations.append(Violation(me, line, rule, target, detail))

        target_layer = layer_of(target, layers)
        if target not in modules or target_layer is None:
            fail("unplaced", "no module of ours has this name, so it has no layer")
            continue
        if _top(target) not in MAY_IMPORT.get(_top(me), frozenset()):
            fail("package", f"{_top(me)} may import only {sorted(MAY_IMPORT.get(_top(me), ()))} (ARCHITECTURE.md)")
        for importer, forbidden, why in FORBIDDEN:
            if _longest_prefix(me, (importer,)) and _longest_prefix(target, (forbidden,)):
                fail("forbidden", why)
        if _top(me) != _top(target) and any(p.startswith("_") for p in target.split(".")[2:]):
            fail("private", "reaches into another package's private module")
        if my_layer == WIRING and target_layer == WIRING and (
            _longest_prefix(me, COMPONENTS) != _longest_prefix(target, COMPONENTS)
        ):
            fail("wiring", "one component's wiring never imports another's; meet through the pipeline host")
        if not (imp.lazy and module.is_package) and target_layer > my_layer:
            fail("layer", f"layer {target_layer} > {my_layer}")
    return violations


def unplaced_modules(modules: Mapping[str, Module], layers: Mapping[str, int] = LAYERS) -> list[str]:
    return sorted(name for name in modules if layer_of(name, layers) is None)


def stale_entries(modules: Mapping[str, Module], layers: Mapping[str, int] = LAYERS) -> list[str]:
    """``LAYERS`` keys that decide the layer of no module (a typo, a module moved or deleted)."""
    used = {placing_entry(name, layers) for name in modules}
    return sorted(entry for entry in layers if entry not in used)


MODULES = our_modules()


def test_every_module_has_a_layer() -> None:
    unplaced = unplaced_modules(MODULES)
    assert not unplaced, f"add these modules to LAYERS in {__file__}: {unplaced}"


def test_every_layers_entry_places_a_module() -> None:
    stale = stale_entries(MODULES)
    assert not stale, f"these LAYERS entries place no module (remove or fix them): {stale}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_stage_order(name: str) -> None:
    violations = check_module(MODULES[name], MODULES)
    assert not violations, "\n".join(map(str, violations))


def test_the_walker_reads_the_real_tree() -> None:
    """Relative and absolute imports of real modules resolve (so the test above can fail)."""
    targets = {imp.target for imp in imports_of(MODULES["memstream.streaming.sources"], MODULES)[0]}
    assert "memstream.streaming.errors" in targets and "memstream.streaming.sources.protocol" in targets
    assert "memstream.streaming.sources.video" in targets  # `from memstream.streaming.sources import video as _video`
    assert layer_of("memstream.streaming.pipeline.runner") == HOST > layer_of("memstream.streaming.sources.video") == 2
    assert layer_of("memstream.embodied.map3d.memory") == 5 > layer_of("memstream.tracking.kalman") == 3
    kernels = {imp.target for imp in imports_of(MODULES["memstream.kernels.block_topk"], MODULES)[0]}
    assert kernels == {"memstream.kernels._dispatch", "memstream.kernels.block_topk.reference",
                       "memstream.kernels.block_topk.triton_impl"}


# -- the checker itself, on synthetic sources -------------------------------------------------------

_CLEAN = {
    "kernels/__init__.py": "from .quant8 import quantize_int8\n",
    "kernels/quant8.py": "import torch\n",
    "streaming/__init__.py": (
        "from memstream.streaming.errors import MemstreamError\n"
        "_LAZY = {'Frame': 'memstream.streaming.types', 'Runner': 'memstream.streaming.pipeline.runner'}\n"
        "def __getattr__(name):\n"
        "    import importlib\n"
        "    return getattr(importlib.import_module(_LAZY[name]), name)\n"
    ),
    "streaming/errors.py": "",
    "streaming/types.py": "from .errors import MemstreamError\n",
    "streaming/sources/__init__.py": "from ..types import Frame\nfrom . import _base\n",
    "streaming/sources/_base.py": "",
    "streaming/pipeline/__init__.py": "",
    "streaming/pipeline/protocol.py": "from memstream.streaming import Frame\n",
    "streaming/pipeline/runner.py": "from memstream.streaming.pipeline.protocol import Stage\n",
    "streaming/videomem/__init__.py": "",
    "streaming/videomem/memory.py": "from memstream.kernels import quantize_int8\n",
    "streaming/videomem/serve.py": "from memstream.streaming.videomem.stage import answer\n",
    "streaming/videomem/stage.py": "from memstream.streaming.pipeline.protocol import RunContext\n",
    "tracking/__init__.py": "",
    "tracking/tracker.py": "from memstream.streaming import Frame, MemstreamError\n",
    "tracking/stage.py": "from memstream.streaming.pipeline.protocol import Upstream\nfrom memstream.tracking.tracker import Tracker\n",
    "embodied/__init__.py": "_LAZY = {'DualMemory3D': 'memstream.embodied.map3d.memory', 'make_env': 'memstream.embodied.envs.registry'}\n",
    "embodied/map3d/__init__.py": "",
    "embodied/map3d/geometry.py": "",
    "embodied/map3d/memory.py": "from memstream.embodied.map3d.geometry import camera_center\nfrom memstream.tracking.tracker import Tracker\n",
    "embodied/map3d/stage.py": "from memstream.embodied.map3d.memory import DualMemory3D\nfrom memstream.streaming.cli import print_summary\n",
    "embodied/envs/__init__.py": "",
    "embodied/envs/registry.py": "from memstream.streaming.errors import MemstreamError\n",
    "embodied/policies/__init__.py": "",
    "embodied/policies/agent.py": "from memstream.embodied import DualMemory3D, make_env\n",
    "streaming/cli.py": "",
}


def _violations(changes: Mapping[str, str], layers: Mapping[str, int] = LAYERS) -> set[tuple[str, str, str]]:
    """(module, rule, target) of every violation in the clean tree with ``changes`` applied."""
    modules = modules_from_sources({**_CLEAN, **changes})
    return {(v.module, v.rule, v.target) for m in modules.values() for v in check_module(m, modules, layers)}


def test_the_checker_passes_a_clean_tree() -> None:
    assert _violations({}) == set()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(  # a stage-specific hook inside a function of the runner
            {"streaming/pipeline/runner.py": "def run():\n    from memstream.embodied.map3d.stage import hook\n"},
            {("memstream.streaming.pipeline.runner", "package", "memstream.embodied.map3d.stage"),
             ("memstream.streaming.pipeline.runner", "layer", "memstream.embodied.map3d.stage")},
            id="streaming-imports-embodied-lazily",
        ),
        pytest.param(
            {"streaming/types.py": "import memstream.tracking.tracker\n"},
            {("memstream.streaming.types", "package", "memstream.tracking.tracker"),
             ("memstream.streaming.types", "layer", "memstream.tracking.tracker")},
            id="streaming-imports-tracking",
        ),
        pytest.param(  # same layer, wrong direction
            {"streaming/videomem/memory.py": "from memstream.tracking import tracker\n"},
            {("memstream.streaming.videomem.memory", "package", "memstream.tracking.tracker")},
            id="streaming-imports-tracking-downward",
        ),
        pytest.param(
            {"kernels/quant8.py": "from memstream.streaming.errors import MemstreamError\n"},
            {("memstream.kernels.quant8", "package", "memstream.streaming.errors"),
             ("memstream.kernels.quant8", "layer", "memstream.streaming.errors")},
            id="kernels-imports-ours",
        ),
        pytest.param(
            {"tracking/tracker.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from memstream.embodied.map3d.geometry import camera_center\n"},
            {("memstream.tracking.tracker", "package", "memstream.embodied.map3d.geometry"),
             ("memstream.tracking.tracker", "layer", "memstream.embodied.map3d.geometry")},
            id="tracking-imports-embodied-for-typing",
        ),
        pytest.param(
            {"tracking/stage.py": "from memstream.streaming.videomem.serve import VideoQAService\n"},
            {("memstream.tracking.stage", "wiring", "memstream.streaming.videomem.serve")},
            id="wiring-imports-another-components-wiring",
        ),
        pytest.param(
            {"tracking/serve.py": "", "tracking/__init__.py": "from . import serve\n"},
            {("memstream.tracking.serve", "wiring-name", "memstream.tracking.serve")},
            id="wiring-module-below-the-host",
        ),
        pytest.param(
            {"embodied/map3d/memory.py": "from memstream.embodied.envs.registry import make_env\n"},
            {("memstream.embodied.map3d.memory", "layer", "memstream.embodied.envs.registry")},
            id="3d-memory-imports-envs",
        ),
        pytest.param(
            {"embodied/envs/registry.py": "from ..map3d import geometry\n"},
            {("memstream.embodied.envs.registry", "forbidden", "memstream.embodied.map3d.geometry")},
            id="env-imports-a-memory",
        ),
        pytest.param(
            {"tracking/tracker.py": "from memstream.streaming.sources import _base\n"},
            {("memstream.tracking.tracker", "private", "memstream.streaming.sources._base")},
            id="private-module-of-another-package",
        ),
        pytest.param(
            {"tracking/tracker.py": "import memstream.configs\nfrom memstream.tracking.nowhere import x\n"},
            {("memstream.tracking.tracker", "unplaced", "memstream.configs"),
             ("memstream.tracking.tracker", "unplaced", "memstream.tracking.nowhere")},
            id="import-of-no-module",
        ),
        pytest.param(  # a name from a package is the package's __init__, which must then be placed right
            {"streaming/__init__.py": "from memstream.streaming.pipeline.runner import Runner\n",
             "tracking/tracker.py": "from memstream.streaming import Runner\n"},
            {("memstream.streaming", "layer", "memstream.streaming.pipeline.runner")},
            id="name-from-a-package-counts-as-its-init",
        ),
        pytest.param(  # ...unless the package loads it lazily: then it is the defining module
            {"tracking/tracker.py": "from memstream.streaming import Frame, Runner\n"},
            {("memstream.tracking.tracker", "layer", "memstream.streaming.pipeline.runner")},
            id="lazy-name-resolves-to-its-module",
        ),
        pytest.param(  # a face that loads the name from another face: the defining module counts
            {"embodied/__init__.py": "_LAZY = {'Runner': 'memstream.streaming'}\n",
             "tracking/tracker.py": "from memstream.embodied import Runner\n"},
            {("memstream.tracking.tracker", "layer", "memstream.streaming.pipeline.runner")},
            id="lazy-name-through-two-faces",
        ),
        pytest.param(
            {"embodied/__init__.py": "_LAZY = {'Tracker': 'memstream.tracking.tracker'}\n",
             "streaming/__init__.py": "_LAZY = {'Tracker': 'memstream.tracking.tracker'}\n",
             "tracking/tracker.py": ""},
            {("memstream.streaming", "package", "memstream.tracking.tracker")},
            id="lazy-face-obeys-package-direction",
        ),
        pytest.param(
            {"streaming/sources/__init__.py": "from ..pipeline import runner\n"},
            {("memstream.streaming.sources", "layer", "memstream.streaming.pipeline.runner")},
            id="relative-import-of-a-submodule",
        ),
        pytest.param(
            {"streaming/pipeline/runner.py": "import importlib\nimportlib.import_module('memstream.embodied.map3d.stage')\n"},
            {("memstream.streaming.pipeline.runner", "package", "memstream.embodied.map3d.stage"),
             ("memstream.streaming.pipeline.runner", "layer", "memstream.embodied.map3d.stage")},
            id="import-module-with-a-literal",
        ),
        pytest.param(
            {"streaming/pipeline/runner.py": "import importlib\nNAME = 'memstream.embodied'\nimportlib.import_module(NAME)\n"},
            {("memstream.streaming.pipeline.runner", "computed-import", "NAME")},
            id="import-of-a-computed-name",
        ),
        pytest.param(
            {"embodied/__init__.py": "_LAZY = {'x': 'memstream.' + 'embodied.bank'}\n"},
            {("memstream.embodied", "lazy-table", "_LAZY")},
            id="unreadable-lazy-table",
        ),
    ],
)
def test_the_checker_catches(changes: dict[str, str], expected: set[tuple[str, str, str]]) -> None:
    assert _violations(changes) == expected


def test_the_checker_catches_unplaced_modules_and_stale_entries() -> None:
    modules = modules_from_sources(_CLEAN)
    layers = {k: v for k, v in LAYERS.items() if k != "memstream.kernels"}
    assert unplaced_modules(modules, layers) == ["memstream.kernels", "memstream.kernels.quant8"]
    assert ("memstream.kernels.quant8", "unplaced", "memstream.kernels.quant8") in _violations({}, layers)
    stale = {**LAYERS, "memstream.streaming.progress": HOST, "streaming.info": HOST}
    assert {"memstream.streaming.progress", "streaming.info"} <= set(stale_entries(modules, stale))
    assert "memstream.streaming.info" in stale_entries(modules, LAYERS)  # _CLEAN has no streaming/info.py
    # an entry all of whose modules longer entries place is stale too
    shadowed = {"memstream.embodied.envs": 7, "memstream.embodied.envs.registry": 7}
    assert stale_entries(modules_from_sources({"embodied/envs/registry.py": ""}), shadowed) == ["memstream.embodied.envs"]
