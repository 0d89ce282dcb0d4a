"""The one strict base that every configuration of the project is validated by.

A component's settings are defined once, as a frozen dataclass next to its code (``SamuraiConfig``,
``PSMConfig``, ``ReKVConfig``...). YAML presets, ``--set`` overrides and stage options are validated
into those same dataclasses by :func:`parse`, so a default lives in exactly one place::

    @strict_config
    @dataclass(frozen=True)
    class PSMConfig:
        voxel_m: Annotated[float, Field(gt=0)] = 0.04
        block_resolution: Annotated[int, Field(ge=2)] = 8

    parse(PSMConfig, {"voxel_m": 0.02}, "stages.map3d.options.psm")

Unknown keys are errors, and so are bad values; both name the dotted key, the value and the fix.
The field constraints (``Field(gt=0)``) hold however a config is made: :func:`parse` checks them with
the types, and constructing the dataclass in Python checks them after its ``__post_init__`` (a
``ValueError`` naming ``Class.field``), so a range is written once, in the annotation, and
``__post_init__`` keeps only what relates several fields. Fields that name an entry of a registry
use :func:`registered`, which checks the name when the config is parsed (not when the module is
imported), so an entry registered by a user's code is reachable from YAML too.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import cache
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from annotated_types import BaseMetadata
from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from memstream.streaming.errors import ConfigError

if TYPE_CHECKING:
    from memstream.streaming.registry import Registry

T = TypeVar("T")

#: Unknown keys are errors; dataclass fields stay immutable (the dataclasses are frozen).
STRICT = ConfigDict(extra="forbid")


def strict_config(cls: type[T]) -> type[T]:
    """Mark a (frozen) dataclass as a strict config: :func:`parse` refuses unknown keys in it, and
    constructing it checks its fields' constraints (``Annotated[int, Field(ge=1)]``)."""
    cls.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        check_constraints(self)

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def check_constraints(config: Any) -> None:
    """Check the field constraints of a dataclass instance (what :func:`strict_config` adds to its
    constructor; :func:`parse` checks them itself). Registry names are left to :func:`parse`.

    Raises:
        ValueError: ``Class.field=value: what is wrong``, for the first field that breaks its constraint.
    """
    for name, adapter in _constrained_fields(type(config)).items():
        value = getattr(config, name)
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{type(config).__name__}.{name}={value!r}: {exc.errors()[0]['msg']}") from None


@cache
def _constrained_fields(cls: type) -> dict[str, TypeAdapter]:
    """One adapter per field whose annotation carries constraints, checking those constraints only."""
    adapters = {}
    for name, hint in _resolved_hints(cls).items():
        if get_origin(hint) is Annotated:
            base, *metadata = get_args(hint)
            kept = [m for m in metadata if isinstance(m, (FieldInfo, BaseMetadata))]
            if kept:
                adapters[name] = TypeAdapter(Annotated[(base, *kept)])  # type: ignore[valid-type]
    return adapters


def _resolved_hints(cls: type) -> dict[str, Any]:
    """The fields' annotations, resolved; a field whose annotation names something imported only
    for type checkers is left out (it can carry no constraint we could check)."""
    try:
        hints = get_type_hints(cls, include_extras=True)
    except NameError:
        namespace = vars(sys.modules[cls.__module__])
        hints = {}
        for f in fields(cls):
            try:
                hints[f.name] = eval(f.type, namespace) if isinstance(f.type, str) else f.type  # noqa: S307
            except NameError:
                continue
    return {f.name: hints[f.name] for f in fields(cls) if f.name in hints}


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def parse(cls: type[T], data: Mapping[str, Any] | T | None, key: str) -> T:
    """Validate ``data`` (a mapping from YAML, or an instance) into ``cls``.

    Args:
        cls: a dataclass marked with :func:`strict_config`, or a pydantic model.
        data: the values; None means all defaults. An instance of ``cls`` is checked as is.
        key: the dotted path of ``data`` in the run config (``stages.tracking.options``), for errors.

    Raises:
        ConfigError: an unknown key or a bad value, naming ``key.<field>`` and the value.
    """
    if isinstance(data, cls):
        return data
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid config value {key}={data!r}: expected a mapping of keys", "Write it as key: value lines")
    try:
        return _adapter(cls).validate_python(dict(data))
    except ValidationError as exc:
        raise config_error(exc, key, cls, data) from None


def dump(config: Any) -> dict[str, Any]:
    """A parsed config as plain YAML/JSON values (tuples as lists), for saving beside a run's outputs."""
    return _adapter(type(config)).dump_python(config, mode="json")


def config_error(exc: ValidationError, key: str, cls: type | None = None, data: Any = None) -> ConfigError:
    """The first error of ``exc`` as one :class:`ConfigError` line that names the dotted key.

    Args:
        exc: pydantic's error.
        key: the dotted path of the validated data ("" at the top level).
        cls: the validated type, to list the valid keys of the section with an unknown key.
        data: the validated data; an item of a list that has a ``name`` (a stage) is named by it
            rather than by its index.
    """
    first = exc.errors()[0]
    path = ".".join(part for part in (key, _dotted(data, first["loc"])) if part)
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = _section_type(cls, first["loc"][:-1]) if cls is not None else None
        valid = _field_names(section)
        fix = f"Valid keys here: {', '.join(valid)}" if valid else "Remove it or check its spelling"
        nested = _nested_keys(section, str(first["loc"][-1]))
        if nested:  # a key that lives one section down (a layout that moved it there)
            fix = f"Did you mean {' or '.join(nested)}? {fix}"
        return ConfigError(f"unknown config key {path}", fix)
    message = first["msg"].removeprefix("Value error, ")
    fix = "Fix the YAML file or the --set override"
    if isinstance(first.get("input"), Mapping):  # a check across the section's keys (``__post_init__``)
        return ConfigError(f"invalid config {path}: {message}", fix)
    return ConfigError(f"invalid config value {path}={first.get('input')!r}: {message}", fix)


def _dotted(data: Any, loc: tuple) -> str:
    """``loc`` as a dotted path; a list item with a ``name`` key is named by it, not by its index."""
    parts, node = [], data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            parts.append(str(node.get("name", part)) if isinstance(node, Mapping) else str(part))
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, Mapping) else None
    return ".".join(parts)


def _section_type(cls: type, loc: tuple) -> Any:
    """The config type of the (nested) section at ``loc`` inside ``cls``, or None when unknown."""
    node: Any = _config_type(cls)
    for part in loc:
        if isinstance(part, int):  # an item of a list or tuple
            args = [a for a in get_args(node) if a is not Ellipsis]
            node = _config_type(args[0]) if args else None
        else:
            try:
                node = _config_type(get_type_hints(node).get(str(part)))
            except (NameError, TypeError):  # a hint that does not resolve: no list, the plain message
                return None
        if node is None:
            return None
    return node


def _field_names(section: Any) -> list[str]:
    """Field names of a config dataclass or model (none for anything else)."""
    if isinstance(section, type) and is_dataclass(section):
        return [f.name for f in fields(section)]
    return list(getattr(section, "model_fields", {}))


def _nested_keys(section: Any, name: str) -> list[str]:
    """``sub.name`` for each sub-section of ``section`` that has a key ``name`` (or ``rest`` when
    ``name`` is ``sub_rest``, a flattened key such as ``tdm_window_frames``)."""
    try:
        hints = get_type_hints(section) if _field_names(section) else {}
    except (NameError, TypeError):
        return []
    found = []
    for key, hint in hints.items():
        inner = _field_names(_config_type(hint))
        found += [f"{key}.{n}" for n in (name, name.removeprefix(f"{key}_")) if n in inner][:1]
    return found


def _config_type(hint: Any) -> Any:
    """``X`` from ``X | None`` (the one config type a field can hold), else ``hint`` itself."""
    if get_origin(hint) in (Union, UnionType):
        options = [a for a in get_args(hint) if a is not NoneType]
        return options[0] if len(options) == 1 else hint
    return hint


def registered(registry: Registry[Any]) -> AfterValidator:
    """A validator for a field that names an entry of ``registry``: ``Annotated[str, registered(R)]``.

    The name is checked against the registry when a config is parsed, so entries added later (a
    user's own retrieval policy) are accepted as well.
    """

    def check(name: str | None) -> str | None:
        if name is not None and name not in registry:
            raise ValueError(f"unknown {registry.kind} {name!r}; registered: {', '.join(registry.names()) or 'none'}")
        return name

    return AfterValidator(check)
