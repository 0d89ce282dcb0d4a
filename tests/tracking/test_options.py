"""The tracking stage's options: the components' configs nested as they are, bad keys named by
their dotted path, backends chosen from a registry that user code can extend."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

import pytest

from memstream.streaming.config import load_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline.protocol import RunContext
from memstream.streaming.types import SourceInfo
from memstream.tracking.backends import BACKENDS
from memstream.tracking.classical import ClassicalBackend
from memstream.tracking.cli import SELECTIONS
from memstream.tracking.options import TrackingOptions
from memstream.tracking.stage import TrackingStage
from memstream.tracking.tracker import SELECTION_MODES, SelectionMode

KEY = "stages.tracking.options"


@pytest.mark.parametrize(("options", "message"), [
    ({"classical": {"bank_size": -1}},
     f"invalid config value {KEY}.classical.bank_size=-1: Input should be greater than or equal to 0"),
    ({"classical": {"scales": [0.9, 1.1]}}, f"invalid config {KEY}.classical: ClassicalConfig.scales=(0.9, 1.1) must include 1.0"),
    ({"samurai": {"kf_score_weight": 2}}, f"invalid config value {KEY}.samurai.kf_score_weight=2: Input should be less than"),
    ({"kf_score_weight": 0.1}, f"unknown config key {KEY}.kf_score_weight. Did you mean samurai.kf_score_weight?"),
    ({"selection": "best"}, f"invalid config value {KEY}.selection='best': Input should be 'samurai' or 'affinity'"),
    ({"prompts": [{"object_id": 1}]}, f"invalid config {KEY}.prompts.0: prompt for object 1 needs a box or points"),
    ({"prompts": [{"object_id": 1, "box": [0, 0, 4, 4]}, {"object_id": 1, "box": [1, 1, 4, 4]}]},
     f"invalid config {KEY}: an object is prompted twice on the same frame"),
    ({"backend": "mine"}, f"invalid config value {KEY}.backend='mine': unknown tracking backend 'mine'; registered: classical, sam2"),
])
def test_a_bad_option_is_one_line_naming_its_dotted_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrackingStage("tracking", options)
    assert message in info.value.one_line()


def test_prompts_from_yaml_become_typed_prompt_options() -> None:
    options = load_config("track", [f'{KEY}.prompts=[{{object_id: 2, frame: 3, points: [[4, 5]], labels: [0]}}]']).stages[0].options
    prompt = TrackingStage("tracking", options).options.prompts[0]
    assert (prompt.object_id, prompt.frame, prompt.box, prompt.points, prompt.labels) == (2, 3, None, ((4.0, 5.0),), (0,))


def test_a_backend_registered_later_is_reachable_from_yaml(monkeypatch) -> None:
    built: list[TrackingOptions] = []

    def build_mine(options: TrackingOptions) -> ClassicalBackend:
        built.append(options)
        return ClassicalBackend(replace(options.classical, bank_size=2))

    monkeypatch.setitem(BACKENDS._entries, "mine", build_mine)
    config = load_config("track", [f"{KEY}.backend=mine", f"{KEY}.classical.bank_size=3"])
    stage = TrackingStage("tracking", config.stages[0].options)
    stage.open(RunContext(SourceInfo(uri="synthetic://demo"), None))
    assert [options.classical.bank_size for options in built] == [3]
    assert stage.tracker is not None and stage.tracker.backend.config.bank_size == 2  # type: ignore[attr-defined]
    assert stage.summary()["backend"] == "mine"


def test_the_command_line_offers_the_trackers_selection_modes() -> None:
    assert SELECTIONS == get_args(SelectionMode) == SELECTION_MODES
