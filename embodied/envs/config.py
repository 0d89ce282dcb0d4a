"""The settings every task takes, and the checks the task configs share.

Task-specific settings (phase lengths, time limit, speed) live next to each task in a frozen
``*Config`` dataclass (:class:`~memstream.embodied.envs.cue_choice.CueChoiceConfig`,
:class:`~memstream.embodied.envs.order.OrderConfig`); :class:`EnvConfig` holds what is common to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError

MIN_IMAGE_SIZE_PX = 32
MAX_IMAGE_SIZE_PX = 512


def check_int(owner: str, name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int in ``[low, high]``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value <= high)  # type: ignore[operator]
    if not ok:
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{owner}.{name} must be an int {bound}, got {value!r}", f"Pass an int {bound}")


def check_range(owner: str, name: str, value: object, low: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a pair of ints ``(lo, hi)`` with ``low <= lo <= hi``."""
    ok = isinstance(value, tuple) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)  # type: ignore[union-attr]
    if not ok or not low <= value[0] <= value[1]:  # type: ignore[index]
        raise ConfigError(f"{owner}.{name} must be a pair of ints (lo, hi) with {low} <= lo <= hi, "
                          f"got {value!r}",
                          f"Pass e.g. {name}=({low}, {low + 2})")


def check_positive(owner: str, name: str, value: object, high: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number in ``(0, high]``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= high
    if not ok:
        raise ConfigError(f"{owner}.{name} must be a number in (0, {high}], got {value!r}",
                          f"Pass a value in (0, {high}]")


@strict_config
@dataclass(frozen=True)
class EnvConfig:
    """Settings shared by every task.

    Attributes:
        num_envs: number of parallel environments (slots) ``B`` stepped together, >= 1.
        seed: base seed; episode ``i`` of a vector env is drawn from ``default_rng((seed, i))``, so
            the episodes depend on ``(seed, episode index)`` only, not on ``num_envs``.
        image_size: side of the square top-down image in pixels, in [32, 512].
    """

    num_envs: int = 1
    seed: int = 0
    image_size: int = 64

    def __post_init__(self) -> None:
        check_int("EnvConfig", "num_envs", self.num_envs, 1)
        check_int("EnvConfig", "seed", self.seed, 0)
        check_int("EnvConfig", "image_size", self.image_size, MIN_IMAGE_SIZE_PX, MAX_IMAGE_SIZE_PX)
