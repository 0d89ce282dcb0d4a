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
Constructing a dataclass in Python runs only its ``__post_init__`` checks; :func:`parse` adds the
field constraints (``Field(gt=0)``) and the type checks. Fields that name an entry of a registry use
:func:`registered`, which checks the name when the config is parsed (not when the module is
imported), so an entry registered by a user's code is reachable from YAML too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError

from memstream.streaming.errors import ConfigError

if TYPE_CHECKING:
    from memstream.streaming.registry import Registry

T = TypeVar("T")

#: Unknown keys are errors; dataclass fields stay immutable (the dataclasses are frozen).
STRICT = ConfigDict(extra="forbid")


def strict_config(cls: type[T]) -> type[T]:
    """Mark a (frozen) dataclass as a strict config: :func:`parse` refuses unknown keys in it."""
    cls.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
    return cls


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
    try:
        return _adapter(cls).validate_python({} if data is None else dict(data))
    except ValidationError as exc:
        raise config_error(exc, key, cls) from None


def config_error(exc: ValidationError, key: str, cls: type | None = None) -> ConfigError:
    """The first error of ``exc`` as one :class:`ConfigError` line that names the dotted key."""
    first = exc.errors()[0]
    path = ".".join([key, *(str(part) for part in first["loc"])]) if key else ".".join(map(str, first["loc"]))
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        valid = _field_names(cls, first["loc"][:-1]) if cls is not None else []
        fix = f"Valid keys here: {', '.join(valid)}" if valid else "Remove it or check its spelling"
        return ConfigError(f"unknown config key {path}", fix)
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"invalid config value {path}={first.get('input')!r}: {message}", "Fix the YAML file or the --set override")


def _field_names(cls: type, loc: tuple) -> list[str]:
    """Field names of the (nested) config at ``loc`` inside ``cls``, for an unknown-key message."""
    node: Any = cls
    for part in loc:
        try:
            node = get_type_hints(node).get(str(part))
        except (NameError, TypeError):  # a hint that does not resolve: no list, the plain message
            return []
        if node is None:
            return []
    if is_dataclass(node):
        return [f.name for f in fields(node)]
    return list(getattr(node, "model_fields", {}))


def registered(registry: Registry[Any]) -> AfterValidator:
    """A validator for a field that names an entry of ``registry``: ``Annotated[str, registered(R)]``.

    The name is checked against the registry when a config is parsed, so entries added later (a
    user's own retrieval policy) are accepted as well.
    """

    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {registry.kind} {name!r}; registered: {', '.join(registry.names()) or 'none'}")
        return name

    return AfterValidator(check)
