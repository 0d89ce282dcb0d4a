"""The strict config base: dataclasses validated directly, errors naming the dotted key, registry
names checked when parsed (so a newly registered entry is reachable from YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest
from pydantic import Field

from memstream.streaming.configtypes import parse, registered, strict_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.registry import Registry

POLICIES: Registry[int] = Registry("retrieval policy")
POLICIES.add("internal", 1)


@strict_config
@dataclass(frozen=True)
class Inner:
    blocks: Annotated[int, Field(ge=0)] = 3

    def __post_init__(self) -> None:
        if self.blocks == 13:
            raise ValueError("13 blocks are unlucky")


@strict_config
@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    retrieval: Annotated[str, registered(POLICIES)] = "internal"
    sizes: tuple[int, ...] = (1, 2)


def test_values_and_defaults_come_from_the_dataclass() -> None:
    assert parse(Outer, None, "k") == Outer()
    assert parse(Outer, {"inner": {"blocks": 5}, "sizes": [4]}, "k") == Outer(Inner(5), sizes=(4,))
    given = Outer(Inner(7))
    assert parse(Outer, given, "k") is given


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"block": 1}}, "unknown config key stages.s.options.inner.block. Valid keys here: blocks"),
        ({"retrival": "x"}, "unknown config key stages.s.options.retrival. Valid keys here: inner, retrieval, sizes"),
        ({"inner": {"blocks": -1}}, "invalid config value stages.s.options.inner.blocks=-1: Input should be greater"),
        ({"inner": {"blocks": 13}}, "13 blocks are unlucky"),
        ({"retrieval": "mine"}, "unknown retrieval policy 'mine'; registered: internal"),
    ],
)
def test_bad_keys_and_values_name_the_dotted_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(Outer, data, "stages.s.options")
    assert message in info.value.one_line()


def test_an_entry_registered_later_is_reachable() -> None:
    with pytest.raises(ConfigError):
        parse(Outer, {"retrieval": "late"}, "k")
    POLICIES.add("late", 2)
    assert parse(Outer, {"retrieval": "late"}, "k").retrieval == "late"
