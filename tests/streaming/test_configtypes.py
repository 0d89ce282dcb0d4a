"""The strict config base: dataclasses validated directly, errors naming the dotted key, registry
names checked when parsed (so a newly registered entry is reachable from YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest
from pydantic import Field

from memstream.streaming.configtypes import dump, parse, registered, strict_config
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


def test_constructing_a_config_checks_its_field_constraints() -> None:
    with pytest.raises(ValueError, match=r"Inner.blocks=-1: Input should be greater than or equal to 0"):
        Inner(blocks=-1)
    with pytest.raises(ValueError, match="13 blocks are unlucky"):
        Inner(blocks=13)
    assert Inner(blocks=0).blocks == 0


@strict_config
@dataclass(frozen=True)
class Named:
    retrieval: Annotated[str | None, registered(POLICIES)] = None
    inners: tuple[Inner, ...] = ()


def test_an_optional_registry_name_may_be_none_and_sequence_items_are_addressed() -> None:
    assert parse(Named, {"retrieval": None}, "k") == Named()
    with pytest.raises(ConfigError) as info:
        parse(Named, {"inners": [{"blocks": 1}, {"blcks": 2}]}, "k")
    assert info.value.one_line() == "unknown config key k.inners.1.blcks. Valid keys here: blocks"


def test_a_check_across_a_section_names_the_section_without_dumping_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse(Outer, {"inner": {"blocks": 13}}, "stages.s.options")
    assert info.value.what == "invalid config stages.s.options.inner: 13 blocks are unlucky"


def test_a_key_that_lives_one_section_down_is_pointed_to() -> None:
    for key in ("blocks", "inner_blocks"):  # as written, and as a flattened layout spelled it
        with pytest.raises(ConfigError) as info:
            parse(Outer, {key: 4}, "k")
        assert info.value.fix == "Did you mean inner.blocks? Valid keys here: inner, retrieval, sizes"


def test_a_section_that_is_not_a_mapping_is_one_error() -> None:
    with pytest.raises(ConfigError, match=r"invalid config value k=\[1, 2\]: expected a mapping"):
        parse(Outer, [1, 2], "k")  # type: ignore[arg-type]


def test_dump_gives_plain_values_that_parse_back_to_the_same_config() -> None:
    config = Outer(Inner(5), sizes=(3, 4))
    assert dump(config) == {"inner": {"blocks": 5}, "retrieval": "internal", "sizes": [3, 4]}
    assert parse(Outer, dump(config), "k") == config
