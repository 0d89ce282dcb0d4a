"""LLaVA-OneVision (ReKV's reference model): SigLIP frames pooled 2x2, a Qwen2 decoder with 1-D RoPE.

One frame is ``(image_size / patch_size / 2)^2`` tokens after the bilinear 2x2 pooling of
``LlavaOnevisionModel.get_video_features`` (196 for the released checkpoints). The video's single
trailing ``image_newline`` token that transformers (5.25; not 5.17) appends after the *last* frame is not used:
ReKV's ``_get_video_features`` drops it too, and a stream has no last frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers.models.qwen2.modeling_qwen2 import rotate_half

from memstream.streaming.videomem.adapters.hf import HFVideoLLM, PromptFormat

#: ReKV's prompts for LLaVA-OneVision (``model/llava_onevision_rekv.py``: ``init_prompt`` and
#: ``get_prompt``).
REKV_PROMPT = PromptFormat(
    sink="<|im_start|>system \nYou are a helpful assistant.<|im_end|><|im_start|>user ",
    answer="\n{question}<|im_end|><|im_start|>assistant\n",
)


class LlavaOnevisionAdapter(HFVideoLLM):
    """:class:`HFVideoLLM` for ``LlavaOnevisionForConditionalGeneration``."""

    model_type = "llava_onevision"
    position_rows = 1
    default_prompt = REKV_PROMPT

    def _frame_features(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        pixels = self.processor.video_processor(videos=[list(frames)], return_tensors="pt").pixel_values_videos
        pixels = pixels.to(self.device, self.model.dtype)
        features = self.model.model.get_video_features(pixels).pooler_output[0]  # (n*T [+ 1], hidden)
        # transformers 5.25 appends the video's image_newline token to get_video_features' output,
        # 5.17 (which pyproject's transformers>=5.5 admits too) does not: drop it only when it is there.
        newline = getattr(self.model.model, "image_newline", None)
        if newline is not None and torch.equal(features[-1], newline.to(features.device, features.dtype)):
            features = features[:-1]
        return features.reshape(len(frames), -1, features.shape[-1])

    def rotate(self, keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        batched = keys if keys.dim() == 4 else keys[None]
        cos, sin = self.decoder.rotary_emb(batched, positions[0][None].to(keys.device))
        cos, sin = cos[:, None], sin[:, None]
        rotated = (batched * cos) + (rotate_half(batched) * sin)  # as Qwen2's apply_rotary_pos_emb, keys only
        return rotated if keys.dim() == 4 else rotated[0]
