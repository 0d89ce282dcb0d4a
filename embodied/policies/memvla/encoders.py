"""Where the bank's tokens come from: perceptual tokens from a vision encoder, the cognitive token
from a language-conditioned encoder.

MemoryVLA takes its perceptual tokens from DINOv2 + SigLIP patch features squeezed by a
``BottleneckSE`` (1x1 reduce, squeeze-excite, 1x1 expand) to 256 channels, and its cognitive token
from the 7B LLM's last hidden state at the prompt's end. Both are seams here:

* :class:`PerceptualEncoder`: ``images float (B, 3, H, W) in [0, 1] -> (B, N, Cp)``. Implementations:
  :class:`SmallCNNEncoder` (trained from scratch, CPU-sized) and :class:`HFVisionEncoder` (a
  transformers SigLIP / DINOv2 backbone from a local path or hub id, then the bottleneck).
* :class:`CognitiveEncoder`: ``(images, perceptual (B, N, Cp), state (B, S), tasks list[str]) ->
  (B, 1, Dc)``. :class:`TaskStateEncoder` embeds the instruction's hashed words with the pooled
  perceptual tokens and the state; :class:`VideoLLMCognitiveEncoder` is MemoryVLA's: the last
  hidden state of a Video-LLM (loaded by ``memstream.streaming.videomem``) at the end of the prompt
  "What action should the robot take to {task}?" with the frame, projected to Dc.
"""

from __future__ import annotations

import zlib
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from memstream.embodied.policies.memvla.configuration_memvla import PERCEPTUAL_POOLS
from memstream.streaming.errors import MemstreamError


@runtime_checkable
class PerceptualEncoder(Protocol):
    num_tokens: int
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class CognitiveEncoder(Protocol):
    dim: int

    def __call__(self, images: torch.Tensor, perceptual: torch.Tensor, state: torch.Tensor | None,
                 tasks: list[str]) -> torch.Tensor: ...


class BottleneckSE(nn.Module):
    """MemoryVLA's token squeezer over a patch grid: 1x1 reduce, squeeze-excite, 1x1 expand.

    Args:
        in_dim: channels in. mid_dim: bottleneck channels. out_dim: Cp.
    """

    def __init__(self, in_dim: int, mid_dim: int, out_dim: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_dim, mid_dim, 1), nn.GELU())
        self.excite = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid_dim, max(mid_dim // 4, 1), 1), nn.GELU(),
                                    nn.Conv2d(max(mid_dim // 4, 1), mid_dim, 1), nn.Sigmoid())
        self.expand = nn.Conv2d(mid_dim, out_dim, 1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w) -> (B, h*w, out_dim)``."""
        reduced = self.reduce(grid)
        return self.expand(reduced * self.excite(reduced)).flatten(2).transpose(1, 2)


def _check_pool(pool: str, subgrid: int) -> None:
    if pool not in PERCEPTUAL_POOLS:
        raise MemstreamError(f"perceptual pool must be one of {PERCEPTUAL_POOLS}, got {pool!r}", "Pass pool='avg' or 'max'")
    if subgrid < 1:
        raise MemstreamError(f"perceptual subgrid must be >= 1, got {subgrid}", "Pass subgrid=4")


class SmallCNNEncoder(nn.Module):
    """Three stride-2 convolutions, pooled to a ``grid x grid`` map, then :class:`BottleneckSE`, plus a
    learned position embedding per token.

    Args:
        image_size: H = W of the input. dim: Cp. grid: tokens per side (N = grid^2).
        pool: how each token summarises its region of the stride-8 feature map: ``"avg"`` (the mean,
            the original behaviour) or ``"max"`` (the channel-wise maximum). On 128 px images with
            grid 4 a token covers a 32 x 32 px region; a 3 px cue (MIKASA RememberColor3's cube)
            is ~1 % of it and the mean dilutes its colour ~100-fold, the maximum keeps it whole.
        subgrid: unused by this encoder (its map is image_size / 8 per side); accepted so every
            encoder takes the same arguments.
    """

    def __init__(self, image_size: int = 64, dim: int = 64, grid: int = 4, pool: str = "avg", subgrid: int = 4) -> None:
        super().__init__()
        _check_pool(pool, subgrid)
        layers, channels = [], 3
        for width in (32, 64, 64):
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU()]
            channels = width
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(grid) if pool == "avg" else nn.AdaptiveMaxPool2d(grid))
        self.squeeze = BottleneckSE(channels, 2 * dim, dim)
        self.position = nn.Parameter(torch.randn(grid * grid, dim) * 0.02)
        self.num_tokens, self.dim = grid * grid, dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.squeeze(self.trunk(images * 2.0 - 1.0)) + self.position


class PatchEncoder(nn.Module):
    """ViT-style patch embedding: each square patch is projected linearly, then a token-wise MLP, plus a
    learned position embedding. No normalisation, so a small coloured detail stays as large in its
    token as it is in the pixels.

    Args:
        image_size: H = W of the input. dim: Cp. grid: tokens per side (N = grid^2).
        pool: ``"avg"`` (the original behaviour): one ``H/grid`` patch per token, embedded by one
            linear map, i.e. every pixel of the patch weighs the same whatever it shows; ``"max"``:
            the image is cut into ``grid * subgrid`` patches per side (``H / (grid * subgrid)`` px:
            8 px at 128 px, grid 4, subgrid 4, close to MemoryVLA's 14 px DINOv2 patches at 224 px),
            each embedded and passed through the MLP on its own, and a token is the channel-wise
            maximum over its ``subgrid x subgrid`` patches. A small salient object (MIKASA
            RememberColor3's 3 x 5 px cue cube, 1.5 % of a 32 px patch) then decides a whole
            sub-patch's features and survives the pooling at full strength.

            MemoryVLA keeps all 256 DINOv2 + SigLIP patch tokens; here the bank's cost grows with
            the square of the token count (every current token reads every stored one), so the
            fine patches are pooled to ``grid^2`` tokens instead, and the maximum (not the mean) so
            pooling does not dilute what one fine patch saw.
        subgrid: fine patches per token side with ``pool="max"``.
        fine_position: with ``pool="max"``, a learned embedding per fine patch added before the
            nonlinearity (zero at initialisation, so the encoder starts as without it). The maximum
            alone forgets where in its token a feature was: two small objects sharing one token
            (MIKASA RememberColor3's middle and right cubes do in 42 of 60 demonstrations at 32 px
            tokens) give the same token whichever stands where, so the place of the cube with the
            remembered colour is lost. With the embedding the MLP can form colour-and-place
            features, which the maximum keeps (tested: swapping two patches within a token changes
            the token only with it).
    """

    def __init__(self, image_size: int = 64, dim: int = 64, grid: int = 4, pool: str = "avg", subgrid: int = 4,
                 fine_position: bool = False) -> None:
        super().__init__()
        _check_pool(pool, subgrid)
        if fine_position and pool != "max":
            raise MemstreamError("a fine position embedding needs pool='max' (with 'avg' a token is one patch)",
                                 "Pass pool='max' or fine_position=False")
        cells = grid * (subgrid if pool == "max" else 1)
        if image_size % cells:
            raise MemstreamError(f"image size {image_size} is not a multiple of {cells} patches per side "
                                 f"(perceptual_grid {grid}{f' x perceptual_subgrid {subgrid}' if pool == 'max' else ''})",
                                 "Pick perceptual_grid (and perceptual_subgrid) dividing the image size")
        patch = image_size // cells
        self.embed = nn.Conv2d(3, 2 * dim, patch, stride=patch)
        self.mlp = nn.Sequential(nn.GELU(), nn.Conv2d(2 * dim, dim, 1))
        self.pool = nn.MaxPool2d(subgrid) if pool == "max" else None
        self.position = nn.Parameter(torch.randn(grid * grid, dim) * 0.02)
        # zeros draw nothing from the RNG: the other initial weights stay those of the same seed without it
        self.fine_position = nn.Parameter(torch.zeros(1, 2 * dim, cells, cells)) if fine_position else None
        self.num_tokens, self.dim = grid * grid, dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(images * 2.0 - 1.0)
        if self.fine_position is not None:
            embedded = embedded + self.fine_position
        features = self.mlp(embedded)
        if self.pool is not None:
            features = self.pool(features)
        return features.flatten(2).transpose(1, 2) + self.position


class HFVisionEncoder(nn.Module):
    """A transformers vision backbone (SigLIP, DINOv2, CLIP vision) as the perceptual encoder.

    The patch tokens of the last layer (the CLS token dropped when the model has one) are laid on
    their grid, pooled to ``grid x grid`` and squeezed to Cp by :class:`BottleneckSE`. Images are
    normalized with the checkpoint's own image-processor mean and std.

    Args:
        model: local path or hub id. dim: Cp. grid: tokens per side. freeze: keep the backbone fixed.

    Raises:
        MemstreamError: the checkpoint cannot be loaded or has no vision tower.
    """

    def __init__(self, model: str, dim: int = 64, grid: int = 4, freeze: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        try:
            config = AutoConfig.from_pretrained(model)
            backbone = AutoModel.from_pretrained(model)
            processor = AutoImageProcessor.from_pretrained(model)
        except (OSError, ValueError, KeyError) as exc:
            raise MemstreamError(f"cannot load the vision model {model!r}: {exc}",
                                 "Give a local folder or hub id of a SigLIP, DINOv2 or CLIP vision checkpoint") from exc
        self.backbone = getattr(backbone, "vision_model", backbone)  # SigLIP / CLIP: the vision tower
        vision = getattr(config, "vision_config", config)
        self.patch = int(vision.patch_size)
        self.image_size = int(vision.image_size) if isinstance(vision.image_size, int) else int(vision.image_size[0])
        self.has_cls = config.model_type not in ("siglip", "siglip2")
        self.register_buffer("mean", torch.tensor(processor.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(processor.image_std).view(1, 3, 1, 1), persistent=False)
        if freeze:
            self.backbone.requires_grad_(False)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.squeeze = BottleneckSE(int(vision.hidden_size), 2 * dim, dim)
        self.num_tokens, self.dim, self.name = grid * grid, dim, model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = nn.functional.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        hidden = self.backbone(pixel_values=(pixels - self.mean) / self.std).last_hidden_state
        side = self.image_size // self.patch
        patches = hidden[:, -side * side:] if self.has_cls else hidden[:, : side * side]
        grid = patches.transpose(1, 2).reshape(hidden.shape[0], -1, side, side)
        return self.squeeze(self.pool(grid))


def hash_words(tasks: list[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Instruction words -> bucket ids and offsets for ``nn.EmbeddingBag`` (stable across runs:
    crc32, not Python's salted ``hash``)."""
    ids, offsets = [], []
    for task in tasks:
        offsets.append(len(ids))
        words = task.lower().replace("?", " ").replace(".", " ").replace(",", " ").split() or [""]
        ids += [zlib.crc32(word.encode()) % buckets for word in words]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class TaskStateEncoder(nn.Module):
    """The cognitive token from the instruction, the scene and the state: ``MLP([mean of the
    instruction's word embeddings; all perceptual tokens, flattened; state]) -> (B, 1, Dc)``.

    The perceptual tokens are flattened, not averaged: a detail that matters later (a lamp in one
    corner of the frame) keeps its own inputs instead of being diluted N-fold into a mean, so it
    survives in the token the bank stores (stored tokens get no gradient to keep it).

    Args:
        perceptual_dim: Cp. num_tokens: N. state_dim: S (0: none). dim: Dc. buckets: hashed
        vocabulary size.
    """

    def __init__(self, perceptual_dim: int, num_tokens: int, state_dim: int, dim: int = 128, buckets: int = 1024) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim + perceptual_dim * num_tokens + state_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.dim, self.buckets, self.state_dim = dim, buckets, state_dim

    def forward(self, images: torch.Tensor, perceptual: torch.Tensor, state: torch.Tensor | None,
                tasks: list[str]) -> torch.Tensor:
        ids, offsets = hash_words(tasks, self.buckets)
        parts = [self.words(ids.to(perceptual.device), offsets.to(perceptual.device)), perceptual.flatten(1)]
        if self.state_dim:
            parts.append(state)
        return self.mlp(torch.cat(parts, dim=-1)).unsqueeze(1)


PROMPT = "What action should the robot take to {task}?"  # MemoryVLA's (and OpenVLA's) prompt


class VideoLLMCognitiveEncoder(nn.Module):
    """MemoryVLA's cognitive token: a Video-LLM's last hidden state at the prompt's final token.

    The frame and ``PROMPT`` go through the model's own chat template and processor; the last
    layer's hidden state at each sample's last non-padding position is projected to Dc by a
    trained linear layer. The Video-LLM stays frozen (MemoryVLA fine-tunes its 7B LLM; on a CPU
    only the projection trains) and is not part of the policy's ``state_dict``: the policy's config
    names it (``language_model``) and loading the policy loads it again.

    Args:
        model: a local path or hub id (loaded with ``memstream.streaming.videomem``'s ``load_video_llm``:
            LLaVA-OneVision, Qwen2.5-VL), or an already loaded adapter.
        dim: Dc.
    """

    def __init__(self, model, dim: int = 128, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__()
        from memstream.streaming.videomem.adapters.loading import load_video_llm

        self.llm = load_video_llm(model, device=device, dtype=dtype) if isinstance(model, str) else model
        config = self.llm.model.config
        hidden = getattr(config, "text_config", config).hidden_size
        self.project = nn.Linear(hidden, dim)
        self.dim = dim

    @torch.no_grad()
    def hidden_states(self, images: torch.Tensor, tasks: list[str]) -> torch.Tensor:
        """``(B, hidden)`` last-layer states at each prompt's last token."""
        processor = self.llm.processor
        frames = [(img.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy() for img in images]
        texts = [processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT.format(task=t)}]}],
            add_generation_prompt=True) for t in tasks]
        inputs = processor(images=frames, text=texts, return_tensors="pt", padding=True).to(self.llm.device)
        out = self.llm.model(**inputs, output_hidden_states=True)
        mask = inputs["attention_mask"]
        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1)  # right or left padding
        return out.hidden_states[-1][torch.arange(len(tasks), device=mask.device), last].float()

    def forward(self, images: torch.Tensor, perceptual: torch.Tensor, state: torch.Tensor | None,
                tasks: list[str]) -> torch.Tensor:
        return self.project(self.hidden_states(images, tasks).to(perceptual.device)).unsqueeze(1)
