"""Typed run configuration, loaded strictly from YAML presets in ``configs/`` plus ``--set`` overrides.

YAML holds values only. Unknown keys, duplicate keys and bad values are errors that name the dotted
key path (``runner.queue_size``, ``stages.video_writer.options.crf``) and the value.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field

from memstream.streaming.configtypes import dump, parse, registered, strict_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.sources import SOURCES

PositiveInt = Annotated[int, Field(ge=1)]


@strict_config
@dataclass(frozen=True)
class SourceConfig:
    """How the source is opened (see ``memstream.streaming.open_source``).

    Attributes:
        kind: a registered source kind (``SOURCES``), or None to tell it from the URI.
        stride: keep every n-th frame.
        max_frames: stop after this many frames (None: the whole stream).
        start_s: seconds to skip at the start.
        target_fps: resample to this rate (None: native).
        resize: ``(width, height)`` in pixels, or None.
        options: backend options of the source kind.
    """

    kind: Annotated[str | None, registered(SOURCES)] = None
    stride: PositiveInt = 1
    max_frames: Annotated[int | None, Field(ge=1)] = None
    start_s: Annotated[float, Field(ge=0)] = 0.0
    target_fps: Annotated[float | None, Field(gt=0)] = None
    resize: tuple[PositiveInt, PositiveInt] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@strict_config
@dataclass(frozen=True)
class RunnerConfig:
    """Threads and queues (see ``memstream.streaming.pipeline.runner``)."""

    queue_size: PositiveInt = 8
    backpressure: Literal["auto", "block", "drop_oldest"] = "auto"


@strict_config
@dataclass(frozen=True)
class StageConfig:
    """One stage, in pipeline order; ``options`` are validated by the stage itself (its own
    config dataclass, through :func:`memstream.streaming.pipeline.stages.parse_options`)."""

    name: str
    enabled: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@strict_config
@dataclass(frozen=True)
class RunConfig:
    """Everything ``memstream run`` needs besides the source URI and the output folder."""

    source: SourceConfig = field(default_factory=SourceConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    stages: list[StageConfig] = field(default_factory=list)

    @property
    def enabled_stages(self) -> list[StageConfig]:
        return [stage for stage in self.stages if stage.enabled]


def config_dir() -> Path:
    """The folder of YAML presets, ``memstream/configs``: ``configs/`` in a checkout, beside the code
    in a wheel (``pyproject.toml`` maps both to the same place relative to this file)."""
    return Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or a preset name (``default``) looked up in :func:`config_dir`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = config_dir() / f"{name_or_path}.yaml"
    if path.suffix == "" and preset.is_file():
        return preset
    raise ConfigError(
        f"config {str(name_or_path)!r} not found",
        f"Pass a YAML file or a preset name ({', '.join(preset_names())})",
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [self.construct_object(key_node, deep=deep) for key_node, _ in node.value]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise ConfigError(
                f"duplicate key {sorted(map(str, duplicates))[0]!r} at line {node.start_mark.line + 1}",
                "Keep one of them",
            )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".replace("\n", " "), "Fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level", "Start it with keys such as runner:")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) in place. A stage is addressed by its name:
    ``stages.video_writer.enabled=false``. A registered stage that the preset does not list is
    added at the end of the pipeline (``--config decode_only --set stages.tracking.enabled=true``);
    a name no stage is registered under is an error that lists the known ones (a typo such as
    ``stages.trackin.enabled=false`` would otherwise add a stage nobody asked for)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not KEY=VALUE", "Write e.g. --set runner.queue_size=16")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:  # an unclosed [ or {, a stray quote
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({problem})",
                          f"Close its brackets and quotes (values are YAML: --set {key}=[1, 2])") from exc
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):  # the stages list: select by stage name
            match = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not match:
                check_stage_name(part, f"--set {key}")
                node.append({"name": part})
                match = [node[-1]]
            node = match[0]
            continue
        nxt = node.get(part)
        if nxt is None:
            nxt = [] if (part == "stages" and i == 0) else {}
            node[part] = nxt
        if not isinstance(nxt, (dict, list)):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])} is not a section", "Check the key path")
        node = nxt
    if isinstance(node, list):
        raise ConfigError(f"override {override!r} must name a stage and a field", "e.g. stages.video_writer.enabled=false")
    node[parts[-1]] = value


def check_stage_name(name: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` and the known stages when no stage is registered
    as ``name``."""
    from memstream.streaming.pipeline.stages import stage_names

    known = stage_names()
    if name in known:
        return
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown stage {name!r} in {where}", f"{hint}Known stages: {', '.join(known)}")


def check_stage_names(data: dict[str, Any]) -> None:
    """Every stage a config lists, enabled or not, is a registered one (a disabled typo would
    otherwise pass unnoticed)."""
    stages = data.get("stages")
    if not isinstance(stages, list):
        return  # validate_config names the bad value
    for item in stages:
        if isinstance(item, dict) and "name" in item:
            check_stage_name(item["name"], f"stages.{item['name']}")


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a preset or YAML file (``default`` when None), apply overrides, validate.

    Example:
        >>> load_config("default", ["runner.queue_size=16"]).runner.queue_size
        16
    """
    data = read_yaml(resolve_config_path(name_or_path or "default"))
    check_stage_names(data)
    for override in overrides or []:
        apply_override(data, override)
    return validate_config(data)


def validate_config(data: dict[str, Any]) -> RunConfig:
    """Validate a whole run config; errors name the dotted key, stages by their name
    (``stages.video_writer.enabeld``)."""
    return parse(RunConfig, data, "")


def dump_config(config: RunConfig) -> str:
    """The resolved configuration as YAML (saved as ``config.yaml`` beside every run's outputs)."""
    return yaml.safe_dump(dump(config), sort_keys=False)
