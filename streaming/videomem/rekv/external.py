"""External retrieval: frames chosen by a separate image-text model, the same frames in every layer.

ReKV's paper (Table 5) compares its internal retrieval with an external one: a CLIP-like model
scores every frame against the question and the top frames are loaded into all layers. The released
code has only the hook (``set_retrieved_block_indices``); the maintainers' snippet (ReKV issue #4)
used ``siglip-so400m-patch14-384``. Here any transformers dual encoder with ``get_image_features``
and ``get_text_features`` serves (CLIP, SigLIP, SigLIP 2), loaded from a path or hub id.

Frames are embedded once, when their block is stored (:meth:`ExternalRetrieval.observe`, called by
the memory); a question costs one text embedding and a dot product per stored block. Embeddings are
kept in RAM beside the block ids (``E`` floats per block); blocks stored before a restart have none
and are ranked last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from memstream.streaming.errors import MemstreamError
from memstream.streaming.videomem.adapters.hf import writable
from memstream.streaming.videomem.rekv.retrieval import RETRIEVAL_POLICIES


@runtime_checkable
class FrameTextEmbedder(Protocol):
    """Images and text in one embedding space (unit vectors; higher dot product = more similar)."""

    def embed_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """float32 ``(n, E)`` unit vectors of uint8 ``(H, W, 3)`` images."""
        ...

    def embed_text(self, text: str) -> torch.Tensor:
        """float32 ``(E,)`` unit vector of a text."""
        ...




class HFDualEncoder:
    """A transformers CLIP / SigLIP model as a :class:`FrameTextEmbedder`.

    Args:
        model: local directory or hub id (e.g. ``google/siglip-so400m-patch14-384``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...

    Raises:
        ConfigError: ``model`` is a local path that does not exist.
        MemstreamError: the model cannot be loaded or is not an image-text dual encoder.
    """

    def __init__(self, model: str, device: str | torch.device = "auto") -> None:
        from transformers import AutoModel, AutoProcessor

        from memstream.streaming.paths import check_local_path
        from memstream.streaming.videomem.adapters.loading import resolve_device
        from memstream.streaming.videomem.model_paths import MISSING_EMBEDDER_FIX

        model = check_local_path(model, what="embedder folder", fix=MISSING_EMBEDDER_FIX)
        try:
            self.processor = AutoProcessor.from_pretrained(model)
            network = AutoModel.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise MemstreamError(
                f"cannot load the retrieval embedder {model!r}: {str(exc).splitlines()[0]}",
                "Give a CLIP or SigLIP directory or hub id, e.g. google/siglip-so400m-patch14-384",
            ) from exc
        if not (hasattr(network, "get_image_features") and hasattr(network, "get_text_features")):
            raise MemstreamError(
                f"{model!r} ({network.config.model_type}) does not embed both images and text",
                "Use a CLIP or SigLIP checkpoint for external retrieval",
            )
        self.model = network.to(resolve_device(device)).eval()
        self.padding = "max_length" if "siglip" in network.config.model_type else True  # SigLIP is trained padded

    @staticmethod
    def _unit(features) -> torch.Tensor:
        features = getattr(features, "pooler_output", features)
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu()

    def embed_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        inputs = self.processor(images=writable(images), return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            return self._unit(self.model.get_image_features(pixel_values=inputs["pixel_values"]))

    def embed_text(self, text: str) -> torch.Tensor:
        inputs = self.processor(text=[text], padding=self.padding, truncation=True, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            return self._unit(self.model.get_text_features(**{k: v for k, v in inputs.items() if k != "pixel_values"}))[0]


@RETRIEVAL_POLICIES.register("external")
class ExternalRetrieval:
    """The ``topk`` blocks whose frames best match the question in ``embedder``'s space, in time order.

    Args:
        embedder: the image-text model.
        topk: blocks retrieved (the same in every layer).
    """

    name = "external"
    needs_query = False

    def __init__(self, embedder: FrameTextEmbedder, topk: int = 64) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.embedder, self.topk = embedder, topk
        self._embeddings: dict[int, torch.Tensor] = {}
        self._chosen: torch.Tensor | None = None
        self.last_scores: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config, device: torch.device | str | None = None) -> ExternalRetrieval:
        """``config.external_embedder`` loaded on ``device``, ``config.topk`` blocks."""
        if not config.external_embedder:
            raise MemstreamError("retrieval 'external' needs external_embedder", "Give a CLIP or SigLIP model (--embedder)")
        return cls(HFDualEncoder(config.external_embedder, device=device or "auto"), topk=config.topk)

    def observe(self, block_id: int, images: Sequence[np.ndarray]) -> None:
        """Embed a newly stored block's frames (their mean, re-normalised, stands for the block)."""
        mean = self.embedder.embed_images(images).mean(0)
        self._embeddings[block_id] = mean / mean.norm().clamp_min(1e-12)

    def count(self, n_blocks: int) -> int:
        return min(n_blocks, self.topk)

    def prepare(self, question: str, live_ids: Sequence[int]) -> None:
        self._embeddings = {b: e for b, e in self._embeddings.items() if b in set(live_ids)}  # retention
        text = self.embedder.embed_text(question)
        scores = torch.full((len(live_ids),), float("-inf"))
        for i, block in enumerate(live_ids):
            if block in self._embeddings:
                scores[i] = self._embeddings[block] @ text
        k = self.count(len(live_ids))
        # stable sort from newest to oldest: ties (and blocks without embeddings) go to newer blocks
        order = torch.sort(scores.flip(0), descending=True, stable=True).indices[:k]
        self._chosen = (len(live_ids) - 1 - order).sort().values
        self.last_scores = scores

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        if self._chosen is None:
            raise RuntimeError("external retrieval: prepare() must run before select()")
        return self._chosen
