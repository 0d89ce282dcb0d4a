"""Load a Video-LLM from a local directory or a hub id, as ``from_pretrained`` users do."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.paths import check_local_path
from memstream.streaming.videomem.model_paths import EXAMPLE_MODEL, MISSING_MODEL_FIX
from memstream.streaming.videomem.adapters.hf import HFVideoLLM, PromptFormat


class VideoModelError(MemstreamError):
    """A Video-LLM could not be loaded or cannot serve as a video memory."""


SUPPORTED = ("llava_onevision", "qwen2_5_vl")


def _adapter_class(model_type: str) -> type[HFVideoLLM]:
    if model_type == "llava_onevision":
        from memstream.streaming.videomem.adapters.llava_onevision import LlavaOnevisionAdapter

        return LlavaOnevisionAdapter
    if model_type == "qwen2_5_vl":
        from memstream.streaming.videomem.adapters.qwen2_5_vl import Qwen2_5_VLAdapter

        return Qwen2_5_VLAdapter
    raise KeyError(model_type)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on CUDA (ReKV runs fp16; bf16 avoids its overflow casts), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise VideoModelError(f"unknown dtype {dtype!r}", "Use auto, float32, float16 or bfloat16") from None


def fingerprint(name: str, config_json: str) -> str:
    """A short hash of the model's config and its weight files' names and sizes.

    Two checkpoints with the same config but other weights differ in size only rarely, so the bytes
    of a local checkpoint's weight files are hashed too when they are small enough to read quickly.
    """
    digest = hashlib.sha256(config_json.encode())
    path = Path(name)
    if path.is_dir():
        for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
            if weights.stat().st_size <= 64 << 20:
                digest.update(weights.read_bytes())
    else:
        digest.update(name.encode())
    return digest.hexdigest()[:16]


def load_video_llm(
    model: str,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    prompt: PromptFormat | None = None,
) -> HFVideoLLM:
    """Load a Video-LLM and wrap it for the video memory.

    Args:
        model: a local directory (``save_pretrained`` layout) or a hub id.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"``, ``"float32"``, ``"float16"``, ``"bfloat16"`` or a torch dtype.
        prompt: the chat text around the video; the model family's (the adapter's
            ``default_prompt``) by default.

    Raises:
        VideoModelError: ``model`` is a local path that does not exist (checked before the hub is
            asked: ``no such model folder: PATH``), the model cannot be found, is not a supported Video-LLM (for example a text
            model without a vision tower), or its weights do not match its config.
    """
    try:
        model = check_local_path(model, what="model folder", fix=MISSING_MODEL_FIX)
    except ConfigError as exc:
        raise VideoModelError(exc.what, exc.fix) from None
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    fix_missing = f"Give a local directory with config.json and weights, or a hub id such as {EXAMPLE_MODEL} (downloads need network access and HF_HUB_OFFLINE unset)"
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise VideoModelError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}", fix_missing) from exc
    model_type = getattr(config, "model_type", "?")
    if getattr(config, "vision_config", None) is None:
        raise VideoModelError(
            f"model {model!r} ({model_type}) has no vision tower, so it cannot watch video",
            f"Use a Video-LLM checkpoint, for example {EXAMPLE_MODEL}",
        )
    try:
        adapter_class = _adapter_class(model_type)
    except KeyError:
        raise VideoModelError(
            f"model {model!r} is a {model_type}, which the video memory does not support yet",
            f"Use one of: {', '.join(SUPPORTED)}",
        ) from None
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        processor = AutoProcessor.from_pretrained(model)
        network = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise VideoModelError(
            f"cannot load the weights or processor of {model!r}: {str(exc).splitlines()[0]}",
            "Check that the checkpoint's files belong to its config.json (same architecture and sizes)",
        ) from exc
    network = network.to(torch_device).eval()
    config_json = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return adapter_class(
        network,
        processor,
        name=model,
        prompt=prompt or adapter_class.default_prompt,
        fingerprint=fingerprint(model, config_json),
    )
