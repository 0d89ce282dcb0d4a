"""The video memory's options are the components' own config dataclasses: one set of defaults,
registry names (memories, retrieval and eviction policies) checked when parsed, so entries
registered by a user's code are reachable from YAML."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
import yaml

from memstream.streaming.config import config_dir
from memstream.streaming.configtypes import parse
from memstream.streaming.errors import ConfigError
from memstream.streaming.videomem.factory import memory_for
from memstream.streaming.videomem.flash import FlashMemoryConfig
from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig, FlashVStreamMemory
from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.options import VideoMemoryOptions
from memstream.streaming.videomem.protocol import VIDEO_MEMORIES, VideoMemory
from memstream.streaming.videomem.rekv import RETRIEVAL_POLICIES, ReKVConfig, ReKVMemory
from memstream.streaming.videomem.store import EVICTION_POLICIES, LRUEviction
from tests.streaming.videomem.util import make_frames

KEY = "stages.video_memory.options"


@pytest.fixture()
def registries(monkeypatch):
    """Entries a test registers disappear after it (the registries are module-level objects)."""
    for registry in (RETRIEVAL_POLICIES, EVICTION_POLICIES, VIDEO_MEMORIES):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_the_stage_defaults_are_the_components_defaults() -> None:
    options = parse(VideoMemoryOptions, {"model": "m"}, KEY)
    assert options.rekv == ReKVConfig()
    assert options.flash_vstream == FlashVStreamConfig() and options.flash_vstream.memory == FlashMemoryConfig()
    assert options.generation == SamplingConfig()
    assert (options.flash_vstream.memory.csm_clusters, options.flash_vstream.memory.dam_frames) == (60, 30)  # the anchor's
    assert (options.rekv.window_frames, options.rekv.topk, options.rekv.device_cache_blocks) == (76, 64, 128)  # ReKV's


def _assert_preset_states_defaults(values: dict, default, path: str) -> None:
    by_name = {f.name: getattr(default, f.name) for f in fields(default)}
    for key, value in values.items():
        assert key in by_name, f"{path}.{key} is not a field of {type(default).__name__}"
        if isinstance(value, dict):
            _assert_preset_states_defaults(value, by_name[key], f"{path}.{key}")
        else:
            assert value == by_name[key], f"{path}.{key}: the preset says {value!r}, {type(default).__name__} {by_name[key]!r}"


def test_the_videoqa_preset_parses_and_restates_the_components_defaults() -> None:
    stage = yaml.safe_load((config_dir() / "videoqa.yaml").read_text())["stages"][0]
    options = parse(VideoMemoryOptions, stage["options"], KEY)
    assert (options.rekv, options.flash_vstream, options.generation) == (ReKVConfig(), FlashVStreamConfig(), SamplingConfig())
    for section, default in (("rekv", ReKVConfig()), ("flash_vstream", FlashVStreamConfig()), ("generation", SamplingConfig())):
        _assert_preset_states_defaults(stage["options"][section], default, f"{KEY}.{section}")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rekv": {"topk": 0}}, f"invalid config value {KEY}.rekv.topk=0: Input should be greater than or equal to 1"),
        ({"rekv": {"retrival": "x"}}, f"unknown config key {KEY}.rekv.retrival. Valid keys here: window_frames"),
        ({"rekv": {"retrieval": "nearest"}}, "unknown retrieval policy 'nearest'; registered: internal, recent, uniform, random, all, external"),
        ({"rekv": {"eviction": "lfu"}}, f"{KEY}.rekv.eviction='lfu': unknown eviction policy 'lfu'; registered: lru, fifo"),
        ({"rekv": {"codec": "int4"}}, f"{KEY}.rekv.codec='int4': Input should be 'none', 'int8-channel' or 'int8-token'"),
        ({"rekv": {"retrieval": "external"}}, "retrieval 'external' needs external_embedder"),
        ({"flash_vstream": {"csm_clusters": 8}}, f"unknown config key {KEY}.flash_vstream.csm_clusters. Did you mean memory.csm_clusters? Valid keys here: memory, low_res_pool"),
        ({"flash_vstream": {"memory": {"distance": "dot"}}}, f"{KEY}.flash_vstream.memory.distance='dot': Input should be 'l2' or 'cos'"),
        ({"generation": {"top_p": 1.5}}, f"{KEY}.generation.top_p=1.5: Input should be less than or equal to 1"),
        ({"memory": "vstream"}, f"{KEY}.memory='vstream': unknown video memory 'vstream'; registered: rekv, flash_vstream"),
        ({"questions": [{"at_s": 3}]}, f"{KEY}.questions.0.text"),
    ],
)
def test_a_bad_value_names_its_dotted_key(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(VideoMemoryOptions, {"model": "m", **options}, KEY)
    assert message in info.value.one_line()


class OldestRetrieval:
    """A user's retrieval policy: the ``topk`` oldest blocks."""

    name, needs_query = "oldest", False

    def __init__(self, topk: int) -> None:
        self.topk = topk

    @classmethod
    def from_config(cls, config: ReKVConfig, device=None) -> OldestRetrieval:
        return cls(config.topk)

    def count(self, n_blocks: int) -> int:
        return min(n_blocks, self.topk)

    def prepare(self, question, live_ids) -> None:
        return None

    def select(self, layer, query, block_keys) -> torch.Tensor:
        return torch.arange(self.count(block_keys.shape[0]))


def test_a_retrieval_policy_registered_by_the_user_is_reachable_from_yaml(tiny_llava, registries) -> None:
    with pytest.raises(ConfigError, match="unknown retrieval policy 'oldest'"):
        parse(VideoMemoryOptions, {"model": "m", "rekv": {"retrieval": "oldest"}}, KEY)
    RETRIEVAL_POLICIES.register("oldest")(OldestRetrieval)
    options = parse(VideoMemoryOptions, {"model": "m", "rekv": {"retrieval": "oldest", "topk": 2, "window_frames": 4}}, KEY)
    memory = memory_for(tiny_llava, options)
    assert isinstance(memory, ReKVMemory) and isinstance(memory.retrieval, OldestRetrieval)
    for frame in make_frames(5):
        memory.update(frame)
    answer = memory.ask("What moved?", SamplingConfig(max_new_tokens=1))
    assert answer.retrieval.method == "oldest" and answer.retrieval.frames() == [0, 1]
    memory.close()


def test_an_eviction_policy_registered_by_the_user_is_reachable_from_yaml(tiny_llava, registries) -> None:
    class NewestFirst(LRUEviction):
        name = "newest_first"

        def victims(self, candidates, stats, n):
            return sorted(candidates, key=stats.inserted.__getitem__, reverse=True)[:n]

    EVICTION_POLICIES.register("newest_first")(NewestFirst)
    options = parse(VideoMemoryOptions, {"model": "m", "rekv": {"eviction": "newest_first", "window_frames": 2, "topk": 2}}, KEY)
    memory = memory_for(tiny_llava, options)
    for frame in make_frames(3):
        memory.update(frame)
    assert isinstance(memory.store.eviction, NewestFirst)
    memory.close()


def test_the_memory_is_chosen_by_registry_name(tiny_llava, registries) -> None:
    built = []

    @VIDEO_MEMORIES.register("flash_small")
    def flash_small(llm, options):
        built.append(options)
        return FlashVStreamMemory(llm, FlashVStreamConfig(FlashMemoryConfig(csm_clusters=2, dam_frames=1)))

    rekv = memory_for(tiny_llava, parse(VideoMemoryOptions, {"model": "m"}, KEY))
    flash = memory_for(tiny_llava, parse(VideoMemoryOptions, {"model": "m", "memory": "flash_vstream"}, KEY))
    small = memory_for(tiny_llava, parse(VideoMemoryOptions, {"model": "m", "memory": "flash_small"}, KEY))
    assert type(rekv) is ReKVMemory and type(flash) is FlashVStreamMemory and small.flash.config.csm_clusters == 2
    assert len(built) == 1 and built[0].memory == "flash_small"
    for memory in (rekv, flash, small):
        assert isinstance(memory, VideoMemory)  # the protocol every memory satisfies
        memory.update(make_frames(1)[0])
        assert memory.ask("What?", SamplingConfig(max_new_tokens=1)).frames_seen == 1
        assert memory.state_dict()["frames_seen"] == 1
        memory.close()


def test_the_package_face_exports_what_users_need() -> None:
    import memstream.streaming.videomem as videomem

    assert videomem.ReKVMemory is ReKVMemory and videomem.VideoMemory is VideoMemory
    assert videomem.VIDEO_MEMORIES is VIDEO_MEMORIES and videomem.VideoMemoryOptions is VideoMemoryOptions
    for name in videomem.__all__:
        assert getattr(videomem, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'ReKVOptions'"):
        videomem.ReKVOptions  # noqa: B018 (the pydantic copies are gone)
