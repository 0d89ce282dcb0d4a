"""The classical backend's proposers (correlation filter, colour mean shift, optical flow), the one scale
their candidates are scored on, and absence with whole-frame re-detection at a lower rate.

Hand-made scenes: striped patches on a fixed noise background at exact positions (as test_classical).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from memstream.streaming import Frame
from memstream.tracking.classical import ClassicalBackend, ClassicalConfig
from memstream.tracking.classical.calibration import CALIBRATION
from memstream.tracking.classical.matching import combine_templates, match_peaks
from memstream.tracking.classical.memory import ObjectMemory
from memstream.tracking.classical.proposers import (
    CorrelationProposer,
    colour_box,
    equivalent_score,
    feature_image,
    flow_box,
    verify_score,
)
from memstream.tracking.classical.segmentation import ColourModel
from memstream.tracking.kalman import box_iou_xywh
from memstream.tracking.outputs import reports_present
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

HEIGHT, WIDTH, SIDE = 120, 160, 24
BACKGROUND = cv2.GaussianBlur(np.random.default_rng(0).integers(60, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
ORANGE = (240, 140, 30)


def patch(seed: int = 1) -> np.ndarray:
    stripes = ((np.arange(SIDE) // 3) % 2).astype(np.float32)[None, :, None]
    noise = 1 + 0.15 * np.random.default_rng(seed).uniform(-1, 1, (SIDE, SIDE, 1))
    return np.clip(np.asarray(ORANGE, np.float32) * (0.55 + 0.45 * stripes) * noise, 0, 255).astype(np.uint8)


def frame(index: int, at: tuple[int, int] | None, background: np.ndarray = BACKGROUND) -> Frame:
    rgb = background.copy()
    if at is not None:
        rgb[at[1] : at[1] + SIDE, at[0] : at[0] + SIDE] = patch()
    return Frame(index=index, timestamp_s=index / 30, rgb=rgb)


def box(x: float, y: float) -> np.ndarray:
    return np.array([x, y, SIDE, SIDE], np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou_xywh(a, b)[0, 0])


def grey(f: Frame) -> np.ndarray:
    return cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY)


def test_flow_carries_the_box_with_the_object_and_the_camera() -> None:
    shifted = np.roll(BACKGROUND, (2, 5), axis=(0, 1))  # a camera pan moves everything by (5, 2)
    proposal = flow_box(grey(frame(0, (40, 40))), grey(frame(1, (45, 42), shifted)), box(40, 40), 2.0)
    assert proposal is not None and proposal.proposer == "flow" and proposal.raw > 0.8
    assert np.allclose(proposal.box_xywh, box(45, 42), atol=0.75)
    assert flow_box(grey(frame(0, (40, 40))), grey(frame(1, (40, 40))), box(40, 40, ), 2.0).box_xywh == pytest.approx(box(40, 40), abs=0.1)


def test_colour_mean_shift_converges_on_the_objects_colour() -> None:
    start = frame(0, (40, 40))
    hsv = cv2.cvtColor(start.rgb, cv2.COLOR_RGB2HSV)
    colour = ColourModel.fit(hsv, box(40, 40), 0.5)
    moved = cv2.cvtColor(frame(1, (50, 46)).rgb, cv2.COLOR_RGB2HSV)
    proposal = colour_box(colour.probability(moved), (0, 0, WIDTH, HEIGHT), box(40, 40))
    assert proposal is not None and proposal.proposer == "colour" and proposal.raw > 0.5
    assert iou(proposal.box_xywh, box(50, 46)) > 0.6  # from 10 px away, within 2 px


@pytest.mark.parametrize("kind", ["kcf", "csrt"])
def test_the_correlation_filter_follows_the_object_and_stops_on_request(kind: str) -> None:
    proposer = CorrelationProposer(kind, 0.3)
    proposer.start(cv2.cvtColor(frame(0, (40, 40)).rgb, cv2.COLOR_RGB2BGR), box(40, 40))
    for t in range(1, 6):
        proposal = proposer.propose(cv2.cvtColor(frame(t, (40 + 2 * t, 40)).rgb, cv2.COLOR_RGB2BGR))
        assert proposal is not None and proposal.proposer == "correlation"
        assert iou(proposal.box_xywh, box(40 + 2 * t, 40)) > 0.7
    proposer.stop()
    assert not proposer.active and proposer.propose(frame(6, (52, 40)).rgb) is None
    proposer.start(frame(0, (40, 40)).rgb, np.array([157.0, 117.0, 20.0, 20.0]))  # 3x3 px inside: too small
    assert not proposer.active


@pytest.mark.parametrize("kind, factory", [("kcf", "TrackerKCF_create"), ("csrt", "TrackerCSRT_create")])
def test_an_opencv_without_contrib_is_one_error_naming_the_reinstall(kind: str, factory: str, monkeypatch) -> None:
    """sapien (the mikasa extra) pulls opencv-python, whose cv2 replaces the contrib build's."""
    from memstream.streaming.errors import ConfigError

    monkeypatch.delattr(cv2, factory)
    with pytest.raises(ConfigError) as caught:
        CorrelationProposer(kind, 0.3)
    message = caught.value.one_line()
    assert f"cv2.{factory}" in message and "pip install --force-reinstall --no-deps opencv-contrib-python-headless" in message


def test_every_proposers_box_is_verified_on_the_template_matchers_scale() -> None:
    """A box scored by ``verify_score`` gets the score the template matcher gives a peak there, so the
    affinity of a candidate does not depend on who proposed it."""
    config = ClassicalConfig()
    first, second = frame(0, (40, 40)), frame(1, (44, 42))
    hsv0 = cv2.cvtColor(first.rgb, cv2.COLOR_RGB2HSV)
    memory = ObjectMemory.start(1, 0, grey(first), box(40, 40), ColourModel.fit(hsv0, box(40, 40), 0.5), config)
    templates, weights = memory.templates()
    window = (0, 0, WIDTH, HEIGHT)
    probability = memory.colour.probability(cv2.cvtColor(second.rgb, cv2.COLOR_RGB2HSV))
    peak = match_peaks(grey(second), probability, window, memory.size_wh, templates, weights, config, 1)[0]
    combined, gain = combine_templates(templates, weights)
    score = verify_score(grey(second), probability, window, peak.box_xywh, combined, gain, config.colour_weight)
    assert score == pytest.approx(peak.score, abs=0.03) and peak.score > 0.9
    elsewhere = verify_score(grey(second), probability, window, box(100, 80), combined, gain, config.colour_weight)
    assert elsewhere < 0.4


def test_calibration_keeps_a_lone_template_peak_and_rewards_agreement() -> None:
    for score in (0.3, 0.65, 0.9):
        assert equivalent_score("template", score, score, 0, CALIBRATION) == pytest.approx(score)
    for proposer in ("template", "correlation", "colour", "flow"):
        low, high = (equivalent_score(proposer, s, 0.5, 0, CALIBRATION) for s in (0.4, 0.8))
        assert high > low  # a better verified match is always more likely right
        assert equivalent_score(proposer, 0.6, 0.5, 2, CALIBRATION) >= equivalent_score(proposer, 0.6, 0.5, 0, CALIBRATION)


def test_feature_images_are_uint8_and_smooth_out_block_noise() -> None:
    image = grey(frame(0, (40, 40)))
    for kind in ("grey", "smooth", "gradient"):
        out = feature_image(image, kind)
        assert out.shape == image.shape and out.dtype == np.uint8
    blocky = image.copy()
    blocky[::8] = 255  # a grid of compression-like block edges
    assert np.abs(feature_image(blocky, "smooth").astype(int) - feature_image(image, "smooth")).mean() < np.abs(
        blocky.astype(int) - image).mean()


def test_config_refuses_unknown_or_repeated_proposers_and_an_inverted_hysteresis() -> None:
    with pytest.raises(ValueError, match="ClassicalConfig.proposers=.*unknown"):
        ClassicalConfig(proposers=("template", "sift"))
    with pytest.raises(ValueError, match="ClassicalConfig.proposers=.*twice"):
        ClassicalConfig(proposers=("flow", "flow"))
    with pytest.raises(ValueError, match="ClassicalConfig.presence_keep_score="):
        ClassicalConfig(presence_keep_score=0.6, presence_score=0.5)
    with pytest.raises(ValueError, match="ClassicalConfig.proposers="):
        ClassicalConfig(proposers=())


@pytest.mark.parametrize("proposers", [("template",), ("template", "correlation"), ("template", "colour"),
                                       ("template", "flow"), ("template", "correlation", "colour", "flow")])
def test_each_proposer_beside_the_template_tracks_a_moving_object_and_wins_are_counted(
    proposers: tuple[str, ...],
) -> None:
    backend = ClassicalBackend(ClassicalConfig(proposers=proposers))
    tracker = Tracker(backend, "samurai")
    for t in range(30):
        x, y = 20 + 3 * t, 40 + t
        state = tracker.update(frame(t, (x, y)), [Prompt(1, box(20, 40))] if t == 0 else []).get(1)
        assert iou(state.box_xywh, box(x, y)) > 0.7, (t, state.box_xywh)
    wins = backend.proposer_wins
    assert sum(wins.values()) == 29 and set(wins) <= set(proposers)


def test_an_object_that_leaves_is_reported_absent_and_redetected_anywhere_at_a_lower_rate() -> None:
    config = ClassicalConfig(lost_after_frames=4, redetect_every=3)
    backend = ClassicalBackend(config)
    backend.trace = []
    tracker = Tracker(backend, "samurai")
    reported = []
    for t in range(40):
        # It walks out of the left border (fully out from frame 10), stays away, and comes back far away.
        at = (20 - 4 * t, 30) if t < 10 else None if t < 25 else (120, 85)
        if at is not None and at[0] < 0:
            at = None if at[0] <= -SIDE else at
        rgb_at = at if at is None or at[0] >= 0 else None
        f = frame(t, rgb_at)
        if at is not None and at[0] < 0:  # partly out of the view: draw the part inside
            rgb = BACKGROUND.copy()
            rgb[30 : 30 + SIDE, : SIDE + at[0]] = patch()[:, -at[0] :]
            f = Frame(index=t, timestamp_s=t / 30, rgb=rgb)
        state = tracker.update(f, [Prompt(1, box(20, 30))] if t == 0 else []).get(1)
        reported.append(reports_present(state))
        if t >= 12 and at is None:
            assert not state.present and np.array_equal(state.box_xywh, np.zeros(4)) and not state.in_memory
    assert all(reported[:4]) and not any(reported[12:25])
    back = reported.index(True, 25)
    assert back <= 25 + config.redetect_every  # found at the first whole-frame search after it returns
    assert all(reported[back:])
    assert iou(tracker.update(frame(40, (120, 85))).get(1).box_xywh, box(120, 85)) > 0.8
    searched = [len(r["candidates"]) for r in backend.trace if 14 <= r["frame"] < 25]
    assert len(searched) == 11 and all(n >= 1 for n in searched)


def test_memory_changes_only_through_the_gate_while_followers_restart_from_a_restore() -> None:
    tracker = Tracker(ClassicalBackend(), "samurai")
    for t in range(10):
        tracker.update(frame(t, (20 + 2 * t, 40)), [Prompt(1, box(20, 40))] if t == 0 else [])
    state = tracker.state_dict()
    restored = Tracker(ClassicalBackend(), "samurai")
    restored.load_state_dict(state)
    for t in range(10, 16):
        a = tracker.update(frame(t, (20 + 2 * t, 40))).get(1)
        b = restored.update(frame(t, (20 + 2 * t, 40))).get(1)
        assert iou(a.box_xywh, box(20 + 2 * t, 40)) > 0.8 and iou(b.box_xywh, box(20 + 2 * t, 40)) > 0.8


@pytest.mark.parametrize("gate", [0.5, None])
def test_a_followers_box_the_memory_does_not_verify_moves_the_object_but_is_not_remembered(gate) -> None:
    from memstream.tracking.types import Decision

    backend = ClassicalBackend(ClassicalConfig(follower_memory_gate=gate))
    backend.add_prompts(frame(0, (40, 40)), [Prompt(1, box(40, 40))])
    backend.propose(frame(1, (42, 40)), [1])
    backend.commit({1: Decision(0, True)})
    memory = backend._objects[1]
    recent, bank = memory.recent.template.copy(), len(memory.bank)
    # The object turns: the same colours, stripes now horizontal, so the templates no longer match it
    # but the followers (colour mean shift, flow, the correlation filter) still put a box on it.
    rgb = BACKGROUND.copy()
    rgb[40 : 40 + SIDE, 44 : 44 + SIDE] = np.ascontiguousarray(patch().transpose(1, 0, 2))
    turned = Frame(index=2, timestamp_s=2 / 30, rgb=rgb)
    backend.propose(turned, [1])
    pending = backend._pending.proposals[1]
    rows = [i for i, s in enumerate(pending.sources) if s not in (None, "template")]
    assert rows, pending.sources  # the templates alone reported it absent: the followers joined
    row = rows[0]
    assert backend.config.affinity(pending.verified[row]) <= 0.5  # the memory's templates score the box low
    backend.commit({1: Decision(row, True)})  # SAMURAI's gate let it in
    assert np.allclose(memory.center_xy, pending.match_boxes[row][:2] + pending.match_boxes[row][2:] / 2)
    if gate is None:  # as first built: the follower's box is remembered on SAMURAI's word
        assert len(memory.bank) == bank + 1 and not np.array_equal(memory.recent.template, recent)
    else:  # the memory verified it below the gate: the object moved, its templates learnt nothing
        assert len(memory.bank) == bank and np.array_equal(memory.recent.template, recent)
