"""Typed run configuration, loaded strictly from YAML presets in ``configs/`` plus ``--set`` overrides.

YAML holds values only. Unknown keys, duplicate keys and bad values are errors that name the dotted
key path (``runner.queue_size``, ``stages.video_writer.options.crf``) and the value.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memstream.streaming.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """How the source is opened (see ``memstream.streaming.open_source``)."""

    kind: str | None = None
    stride: int = Field(1, ge=1)
    max_frames: int | None = Field(None, ge=1)
    start_s: float = Field(0.0, ge=0)
    target_fps: float | None = Field(None, gt=0)
    resize: tuple[int, int] | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # backend options of the source kind


class RunnerConfig(_Strict):
    """Threads and queues (see ``memstream.streaming.pipeline.runner``)."""

    queue_size: int = Field(8, ge=1)
    backpressure: Literal["auto", "block", "drop_oldest"] = "auto"


class StageConfig(_Strict):
    """One stage, in pipeline order; ``options`` are validated by the stage itself."""

    name: str
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class RunConfig(_Strict):
    """Everything ``memstream run`` needs besides the source URI and the output folder."""

    source: SourceConfig = Field(default_factory=SourceConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    stages: list[StageConfig] = Field(default_factory=list)

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
    value = yaml.safe_load(raw) if raw else None
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


def known_stage_names() -> list[str]:
    """Names of the registered stages: the built-in ones, those added with ``STAGES.add`` and those
    advertised through the ``memstream.stages`` entry points (named without importing them)."""
    from importlib.metadata import entry_points

    from memstream.streaming.pipeline.stages import ENTRY_POINT_GROUP, STAGES

    return sorted({*STAGES.names(), *(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))})


def check_stage_name(name: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` and the known stages when no stage is registered
    as ``name``."""
    known = known_stage_names()
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
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _dotted(data, first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown config key {path}", "Remove it or check its spelling") from None
        raise ConfigError(
            f"invalid config value {path}={first.get('input')!r}: {first['msg']}",
            "Fix the YAML file or the --set override",
        ) from None


def _dotted(data: dict[str, Any], loc: tuple) -> str:
    """Dotted key path, naming stages by their name rather than their list index."""
    parts, node = [], data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            parts.append(str(node.get("name", part)) if isinstance(node, dict) else str(part))
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def dump_config(config: RunConfig) -> str:
    """The resolved configuration as YAML (saved as ``config.yaml`` beside every run's outputs)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
