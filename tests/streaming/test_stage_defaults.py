"""One definition per config: each stage's options take their defaults from the components they
configure (nested as the components' own dataclasses, or checked here against the functions they
are handed to), and every preset validates into them."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
import yaml

from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.bank.stage import BankStage, BankStageOptions
from memstream.embodied.envs.config import EnvConfig
from memstream.embodied.map3d.depth_model import RelativeDepthScale, load_depth_model
from memstream.embodied.map3d.memory import Map3DConfig
from memstream.embodied.map3d.psm import PSMConfig
from memstream.embodied.map3d.registration import RegistrationConfig
from memstream.embodied.map3d.stage import Map3DOptions, Map3DStage
from memstream.embodied.map3d.tdm import TDMConfig
from memstream.embodied.policies.memvla.configuration_memvla import MemoryVLAConfig
from memstream.embodied.scene import SceneConfig
from memstream.embodied.scene.stage import SceneOptions, SceneStage
from memstream.streaming.cli import main
from memstream.streaming.config import RunConfig, load_config, preset_names, validate_config
from memstream.streaming.configtypes import dump, parse
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline.protocol import RunContext
from memstream.streaming.pipeline.stages import VideoWriterOptions, parse_options
from memstream.streaming.sources import SOURCES
from memstream.streaming.types import SourceInfo
from memstream.streaming.videoio import VideoWriter
from memstream.tracking.classical import ClassicalConfig
from memstream.tracking.options import TrackingOptions
from memstream.tracking.sam2_stream.backend import Sam2Backend
from memstream.tracking.selection import SamuraiConfig
from memstream.tracking.stage import TrackingStage
from memstream.tracking.tracker import Tracker

#: The options dataclass of each stage (``video_memory`` is tested with the video memory).
OPTIONS: dict[str, type] = {"tracking": TrackingOptions, "map3d": Map3DOptions,
                             "video_writer": VideoWriterOptions, "bank": BankStageOptions, "scene": SceneOptions}
CONFIGS = [PSMConfig, TDMConfig, RegistrationConfig, Map3DConfig, Map3DOptions, SamuraiConfig, ClassicalConfig,
           TrackingOptions, VideoWriterOptions, RunConfig, MemoryBankConfig, EnvConfig, MemoryVLAConfig,
           SceneConfig, SceneOptions, BankStageOptions]


def signature_defaults(function: Any) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("config_type", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_parses_from_nothing_to_its_defaults_and_refuses_unknown_keys(config_type: type) -> None:
    assert parse(config_type, {}, "k") == config_type()
    assert parse(config_type, dump(config_type()), "k") == config_type()
    with pytest.raises(ConfigError, match="unknown config key k.no_such_key"):
        parse(config_type, {"no_such_key": 1}, "k")


def test_the_tracking_stage_builds_its_components_with_their_own_defaults() -> None:
    options = parse_options(TrackingOptions, "tracking", {})
    assert options.selection == signature_defaults(Tracker)["selection"]
    from_pretrained = signature_defaults(Sam2Backend.from_pretrained)
    assert options.sam2.model_config == from_pretrained["model_config"]
    assert options.sam2.device == from_pretrained["device"]
    assert options.sam2.image_size == from_pretrained["image_size"]
    stage = TrackingStage("tracking", {})
    stage.open(RunContext(SourceInfo(uri="synthetic://demo"), None))
    assert stage.tracker is not None
    assert stage.tracker.backend.config == ClassicalConfig()  # type: ignore[attr-defined]
    assert stage.tracker.selector.config == SamuraiConfig()


def test_the_map3d_stage_builds_its_memory_with_the_memorys_defaults() -> None:
    options = parse_options(Map3DOptions, "map3d", {})
    assert options.memory_config() == Map3DConfig()
    assert options.psm == PSMConfig()  # block_resolution included: a copy of it said 16 (2 GB)
    depth = signature_defaults(load_depth_model)
    assert (options.depth_device, options.depth_dtype) == (depth["device"], depth["dtype"])
    assert options.relative_depth_shift == RelativeDepthScale(1.0).shift
    stage = Map3DStage("map3d", {"psm": {"block_budget": 1000}})  # a small grid: allocated in ms
    small = replace(Map3DConfig(), psm=replace(PSMConfig(), block_budget=1000))
    assert stage.memory.config == small
    assert (stage.memory.psm.config, stage.memory.tdm.config, stage.memory.registration.config) == (
        small.psm, TDMConfig(), RegistrationConfig())


def test_the_scene_and_bank_stages_build_their_memories_with_the_memories_defaults() -> None:
    assert parse_options(SceneOptions, "scene", {}).memory_config() == SceneConfig()
    assert SceneStage("scene", {}).memory.config == SceneConfig()
    assert parse_options(BankStageOptions, "bank", {}).bank == MemoryBankConfig()
    assert BankStage("bank", {}).options.bank == MemoryBankConfig()


def test_the_scene_preset_keeps_the_memories_defaults() -> None:
    stages = {s.name: s for s in load_config("scene").stages}
    enabled = [s.name for s in load_config("scene").enabled_stages]
    assert enabled == ["tracking", "video_memory", "map3d", "bank", "scene"]
    assert parse_options(SceneOptions, "scene", stages["scene"].options).memory_config() == SceneConfig()
    assert parse_options(BankStageOptions, "bank", stages["bank"].options).bank == MemoryBankConfig()


def test_the_video_writer_stage_defaults_are_the_writers() -> None:
    writer = signature_defaults(VideoWriter.__init__)
    assert (VideoWriterOptions().codec, VideoWriterOptions().crf) == (writer["codec"], writer["crf"])


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_validates_into_its_stages_options(preset: str) -> None:
    for stage in load_config(preset).stages:
        if stage.name == "video_memory":  # its options are the video memory's (tests/streaming/videomem)
            continue
        parse_options(OPTIONS[stage.name], stage.name, stage.options)


def test_the_reconstruct_preset_keeps_every_memory_default() -> None:
    stage = next(s for s in load_config("reconstruct").stages if s.name == "map3d")
    assert parse_options(Map3DOptions, "map3d", stage.options).memory_config() == Map3DConfig()


@pytest.mark.parametrize(("size", "samurai"), [
    ("t", SamuraiConfig()), ("s", SamuraiConfig()), ("bp", SamuraiConfig()), ("l", SamuraiConfig(kf_score_weight=0.15)),
])
def test_the_samurai_presets_carry_samurais_constants(size: str, samurai: SamuraiConfig) -> None:
    stage = next(s for s in load_config(f"samurai_{size}").stages if s.name == "tracking")
    options = parse_options(TrackingOptions, "tracking", stage.options)
    assert options.samurai == samurai and options.backend == "sam2"
    assert options.sam2.model_config == f"configs/sam2.1/sam2.1_hiera_{size.replace('bp', 'b+')}.yaml"


def test_the_saved_config_lists_every_value_used_and_runs_again(tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["run", "synthetic://demo?frames=2&size=64x48", "--out", str(out), "--no-progress"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    tracking = next(s for s in saved["stages"] if s["name"] == "tracking")["options"]
    assert tracking["samurai"] == dump(SamuraiConfig()) and tracking["classical"] == dump(ClassicalConfig())
    assert tracking["gt_objects"] == [1]  # the preset's own choice
    writer = next(s for s in saved["stages"] if s["name"] == "video_writer")["options"]
    assert writer == dump(VideoWriterOptions())
    assert validate_config(saved) == load_config(out / "config.yaml")
    again = tmp_path / "again"
    assert main(["run", "synthetic://demo?frames=2&size=64x48", "--config", str(out / "config.yaml"),
                 "--out", str(again), "--no-progress"]) == 0
    assert yaml.safe_load((again / "config.yaml").read_text()) == saved


def test_a_source_kind_registered_later_is_reachable_from_yaml(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="invalid config value source.kind='mine': unknown source 'mine'"):
        load_config(None, ["source.kind=mine"])
    monkeypatch.setitem(SOURCES._entries, "mine", SOURCES.get("synthetic"))
    assert load_config(None, ["source.kind=mine"]).source.kind == "mine"


def test_building_a_stage_imports_only_that_stage() -> None:
    # What keeps `memstream reconstruct` under 1 GB: the video memory's torch is half a gigabyte.
    code = ("import sys; from memstream.streaming.pipeline.stages import build_stage; "
            "build_stage('map3d', {'psm': {'block_budget': 1000}}); "
            "print(sorted(m for m in ('torch', 'transformers', 'memstream.streaming.videomem', 'memstream.tracking') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[-2] == "[]"
