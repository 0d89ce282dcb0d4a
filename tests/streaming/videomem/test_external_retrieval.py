"""External retrieval: an image-text model picks the frames, the same in every layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memstream.streaming.types import Frame
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.rekv.external import ExternalRetrieval, FrameTextEmbedder, HFDualEncoder
from tests.streaming.videomem.util import make_frames


class BrightnessEmbedder:
    """A transparent image-text space for testing the policy: an image is a one-hot of its mean
    brightness (8 bins), a text "level N" is the one-hot of bin N."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed_images(self, images):
        self.calls.append(len(images))
        bins = [min(7, int(np.mean(image)) // 32) for image in images]
        return torch.nn.functional.one_hot(torch.tensor(bins), 8).float()

    def embed_text(self, text):
        return torch.nn.functional.one_hot(torch.tensor(int(text.split()[-1])), 8).float()


def _stream(levels):
    return [Frame(index=i, timestamp_s=i * 0.5, rgb=np.full((32, 32, 3), 32 * level + 8, np.uint8)) for i, level in enumerate(levels)]


def test_external_retrieval_picks_the_best_matching_frames_for_every_layer(tiny_llava):
    embedder = BrightnessEmbedder()
    assert isinstance(embedder, FrameTextEmbedder)
    policy = ExternalRetrieval(embedder, topk=2)
    memory = ReKVMemory(tiny_llava, ReKVConfig(window_frames=3, topk=2, device_cache_blocks=0), retrieval=policy)
    for frame in _stream([0, 1, 5, 2, 5, 3, 1, 0]):
        memory.update(frame)
    assert embedder.calls == [1] * 8  # each block's frames embedded once, when stored
    retrieval = memory.retrieve("show me level 5")
    assert retrieval.method == "external"
    assert retrieval.frame_indices.tolist() == [[2, 4]] * tiny_llava.spec.n_layers  # both level-5 frames, in time order
    assert memory.ask("show me level 5").retrieval.frames() == [2, 4]


def test_external_ties_go_to_the_newest_frames_and_retention_forgets_deleted_blocks(tiny_llava):
    policy = ExternalRetrieval(BrightnessEmbedder(), topk=1)
    memory = ReKVMemory(tiny_llava, ReKVConfig(window_frames=2, topk=1, max_blocks=4, device_cache_blocks=0), retrieval=policy)
    for frame in _stream([6, 6, 1, 1, 6, 2]):
        memory.update(frame)
    assert memory.retrieve("level 6").frames() == [4]  # frames 0 and 1 were deleted by retention
    assert sorted(policy._embeddings) == memory.store.live_ids()


def test_a_clip_model_through_transformers_ranks_frames_by_cosine(tiny_llava, tmp_path):
    from memstream.streaming.videomem.tiny import build_tiny_clip

    embedder = HFDualEncoder(str(build_tiny_clip(tmp_path / "clip")), device="cpu")
    frames = make_frames(6, seed=8, size=(40, 40))
    memory = ReKVMemory(tiny_llava, ReKVConfig(window_frames=2, topk=3, device_cache_blocks=0), retrieval=ExternalRetrieval(embedder, topk=3))
    for frame in frames:
        memory.update(frame)
    question = "What is the color of the ball?"
    scores = embedder.embed_images([f.rgb for f in frames]) @ embedder.embed_text(question)
    assert torch.allclose(embedder.embed_images([f.rgb for f in frames]).norm(dim=1), torch.ones(6))
    assert memory.retrieve(question).frames() == sorted(scores.topk(3).indices.tolist())


def test_external_retrieval_from_the_config_loads_the_embedder(tiny_llava, tmp_path):
    from memstream.streaming.videomem.tiny import build_tiny_clip

    clip = str(build_tiny_clip(tmp_path / "clip"))
    memory = ReKVMemory(tiny_llava, ReKVConfig(window_frames=2, topk=2, retrieval="external", external_embedder=clip))
    for frame in make_frames(4):
        memory.update(frame)
    assert memory.retrieve("What moved?").method == "external"
    with pytest.raises(ValueError, match="needs external_embedder"):
        ReKVConfig(retrieval="external")


def test_a_model_that_is_not_an_image_text_encoder_is_refused(tiny_llava_dir):
    from memstream.streaming.errors import MemstreamError

    with pytest.raises(MemstreamError, match="does not embed both images and text|cannot load the retrieval embedder"):
        HFDualEncoder(str(tiny_llava_dir), device="cpu")
