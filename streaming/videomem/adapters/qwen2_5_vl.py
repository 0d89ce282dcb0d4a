"""Qwen2.5-VL: frames in pairs (one temporal patch) through a windowed ViT, a decoder with M-RoPE.

One KV block is one temporal grid step of the vision tower: ``temporal_patch_size`` (2) frames
become ``(grid_h / merge) * (grid_w / merge)`` decoder tokens. Positions have three rows (temporal,
height, width) and follow ``Qwen2_5_VLModel.get_rope_index`` of transformers 5.23 for a video placed
at text position ``start``:

* block ``i``'s tokens have temporal id ``start + long(i * tokens_per_second * second_per_grid)``
  with ``second_per_grid = temporal_patch_size / fps`` as the processor computes it (float32), and
  height / width ids ``start + row`` / ``start + column`` of the merged grid (as transformers 5.23);
* the text after the video starts at the largest video id + 1, as in Qwen's own implementation
  (transformers PR #35569 by the Qwen team, and every 4.x release), the rule the checkpoints were
  trained with. transformers 5.3-5.23 start it at ``start + max(grid_h, grid_w) / merge`` instead
  (the spatial extent only; see transformers#45381 for the 5.3 regression of these ids), which
  puts the question inside the video's temporal ids once a video is longer than its frames are
  wide. ``tests/streaming/videomem/test_qwen2_5_vl.py`` pins both facts.

Text tokens have all three rows equal. The decoder takes ``(3, B, n)`` position ids; the
``(4, B, n)`` form, with a leading text row, is only for packed sequences (it makes transformers
build the attention mask from that row), so it is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import rotate_half

from memstream.streaming.errors import MemstreamError
from memstream.streaming.videomem.adapters.hf import HFVideoLLM, PromptFormat

#: Qwen2.5-VL's chat format with the video between ``<|vision_start|>`` and ``<|vision_end|>``.
QWEN2_5_VL_PROMPT = PromptFormat(
    sink="<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>",
    answer="<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n",
)

#: Frames per second of the stream when the video processor names none: qwen-vl-utils' sampling
#: rate (``FPS = 2.0``), the rate the released checkpoints were trained with.
DEFAULT_FPS = 2.0


class Qwen2_5_VLAdapter(HFVideoLLM):
    """:class:`HFVideoLLM` for ``Qwen2_5_VLForConditionalGeneration``.

    The token grid of a block is that of the last frames embedded (see :meth:`frame_grid`): one
    adapter serves streams of one frame size at a time.

    Attributes:
        frames_per_block: frames of one KV block, the vision tower's ``temporal_patch_size``.
        frames_per_second: the rate the stream's frames are sampled at, which spaces the temporal
            position ids (the video processor's ``fps`` when set, else :data:`DEFAULT_FPS`). Set it
            before the first frame; all blocks of a memory must share it.
        tokens_per_second: temporal position ids per second of video (the vision config's).
    """

    model_type = "qwen2_5_vl"
    position_rows = 3
    default_prompt = QWEN2_5_VL_PROMPT

    def __init__(self, model, processor, *, name: str, prompt: PromptFormat, fingerprint: str) -> None:
        super().__init__(model, processor, name=name, prompt=prompt, fingerprint=fingerprint)
        vision = model.config.vision_config
        self.frames_per_block = int(vision.temporal_patch_size)
        self.merge_size = int(vision.spatial_merge_size)
        self.tokens_per_second = vision.tokens_per_second
        video_processor = processor.video_processor
        if int(video_processor.temporal_patch_size) != self.frames_per_block:
            raise ValueError(
                f"{name}: the video processor groups {video_processor.temporal_patch_size} frames per "
                f"temporal patch, the vision tower {self.frames_per_block}"
            )
        self.frames_per_second = float(getattr(video_processor, "fps", None) or DEFAULT_FPS)
        self._grid: tuple[int, int] | None = None  # (rows, columns) of merged tokens, last frames

    # ---- frames ------------------------------------------------------------------------------
    def _frame_features(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Features of frames taken ``frames_per_block`` at a time.

        Args:
            frames: ``n`` uint8 ``(H, W, 3)`` images of one size; the processor repeats the last
                one up to a whole number of blocks.

        Returns:
            ``(ceil(n / frames_per_block), T, hidden_size)``, ``T = (grid_h / merge) * (grid_w / merge)``;
            each block is encoded on its own by the vision tower (its attention never crosses
            temporal patches), so chunking a stream does not change its features.
        """
        sizes = {tuple(frame.shape[:2]) for frame in frames}
        if len(sizes) > 1:
            raise MemstreamError(
                f"frames of one stream have different sizes {sorted(sizes)}",
                "Resize the frames of a stream to one size before adding them",
            )
        video_processor = self.processor.video_processor
        # A stream has no total length: never shrink frames to share a whole-video pixel budget.
        options = {"cap_pixels_per_frame": False} if hasattr(video_processor, "cap_pixels_per_frame") else {}
        batch = video_processor(videos=[list(frames)], return_tensors="pt", **options)
        grid = batch.video_grid_thw  # (1, 3): temporal, height, width in patches
        pixels = batch.pixel_values_videos.to(self.device, self.model.dtype)
        features = self.model.model.get_video_features(pixels, grid.to(self.device)).pooler_output[0]
        n_blocks, rows, columns = grid[0].tolist()
        self._grid = (rows // self.merge_size, columns // self.merge_size)
        return features.reshape(n_blocks, -1, features.shape[-1])  # (t * T, hidden) -> (t, T, hidden)

    def frame_grid(self, tokens_per_frame: int) -> tuple[int, int]:
        """``(rows, columns)`` of a block's ``T`` merged tokens: the grid of the last frames embedded.

        Raises:
            RuntimeError: no frame was embedded yet, or ``tokens_per_frame`` is not that grid's size
                (frames of another size were embedded since).
        """
        if self._grid is None:
            raise RuntimeError("a block's token grid is known once a frame was embedded: embed a frame first")
        rows, columns = self._grid
        if tokens_per_frame != rows * columns:
            raise RuntimeError(
                f"blocks of {tokens_per_frame} tokens do not fit the last frames' {rows}x{columns} "
                "token grid; all frames of a stream must have one size"
            )
        return rows, columns

    # ---- positions and RoPE ------------------------------------------------------------------
    @property
    def temporal_step(self) -> torch.Tensor:
        """float32 scalar: temporal position ids per block, ``tokens_per_second * second_per_grid``,
        computed in float32 as ``get_rope_index`` does with the processor's ``second_per_grid_ts``."""
        second_per_grid = torch.tensor(self.frames_per_block / self.frames_per_second, dtype=torch.float32)
        return self.tokens_per_second * second_per_grid

    def frame_positions(self, start: int, n_blocks: int, grid: tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Positions of a video segment of ``n_blocks`` blocks placed at text position ``start``.

        Args:
            start: the position the segment starts at (the next start of the text before it).
            n_blocks: blocks (temporal grid steps) of the segment.
            grid: ``(rows, columns)`` of one block's merged tokens (the stream's :meth:`frame_grid`).

        Returns:
            int64 ``(3, n_blocks * T)`` temporal/height/width ids, blocks in time order and each
            block's tokens row-major over the merged grid; and the start of the text after the
            segment, its largest id + 1 (Qwen's rule, see the module).

        """
        return self.grid_positions(start, torch.arange(n_blocks), grid)

    def grid_positions(self, start: int, temporal_ids: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Positions of grids at given moments: grid ``g`` gets temporal id
        ``start + long(temporal_ids[g] * temporal_step)`` and the merged-grid row / column ids, as a
        video's temporal grid steps do (:meth:`frame_positions` is ``temporal_ids = 0, 1, 2...``).
        The text after starts at the largest id + 1."""
        if len(temporal_ids) == 0:
            return torch.zeros(3, 0, dtype=torch.int64, device=self.device), start
        rows, columns = grid
        temporal = (torch.as_tensor(temporal_ids, dtype=torch.int64).cpu() * self.temporal_step).long() + start
        height = torch.arange(rows) + start
        width = torch.arange(columns) + start
        grids = torch.meshgrid(temporal, height, width, indexing="ij")
        positions = torch.stack(grids).reshape(3, -1).to(self.device)
        return positions, int(positions.max()) + 1

    def rotate(self, keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Apply the model's M-RoPE to un-rotated keys.

        Args:
            keys: ``(Hkv, n, D)``, or ``(B, Hkv, n, D)`` (the memory passes layers as ``B``).
            positions: int64 ``(3, n)``.

        Returns:
            Rotated keys of the same shape and dtype: the decoder's rotary embedding (which picks
            each frequency's row by ``mrope_section``) applied as ``apply_rotary_pos_emb`` does.
        """
        batched = keys if keys.dim() == 4 else keys[None]
        cos, sin = self.decoder.rotary_emb(batched, positions[:, None].to(keys.device))  # (1, n, D) each
        cos, sin = cos[:, None], sin[:, None]
        rotated = (batched * cos) + (rotate_half(batched) * sin)
        return rotated if keys.dim() == 4 else rotated[0]

    def _position_ids(self, positions: torch.Tensor) -> torch.Tensor:
        """``(3, 1, n)``: M-RoPE ids as the decoder takes them when the sequence is not packed."""
        return positions[:, None]
