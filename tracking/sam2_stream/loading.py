"""Build a SAM 2 model from the ``sam2`` package: its config, a checkpoint from a local path or a hub
id, checked against each other with an error that says which size the checkpoint is.

The model is built by ``sam2.build_sam.build_sam2_video_predictor`` exactly as SAM 2's own video
predictor is (same post-processing overrides), then the checkpoint is loaded here so a mismatch
names both files instead of sam2's bare ``RuntimeError()``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from memstream.streaming.errors import ConfigError, MemstreamError

SAM2_INSTALL = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'memstream[sam2]'"

# SAM 2.1 sizes by the number of Hiera blocks (stages T [1,2,7,2], S [1,2,11,2], B+ [2,3,16,3], L [2,6,36,4]).
SIZES_BY_BLOCKS = {12: "t", 16: "s", 24: "b+", 48: "l"}
MODEL_CONFIGS = {size: f"configs/sam2.1/sam2.1_hiera_{size}.yaml" for size in SIZES_BY_BLOCKS.values()}
HUB_IDS = {
    "facebook/sam2.1-hiera-tiny": "t", "facebook/sam2.1-hiera-small": "s",
    "facebook/sam2.1-hiera-base-plus": "b+", "facebook/sam2.1-hiera-large": "l",
}


class CheckpointError(MemstreamError):
    """A checkpoint that is missing, unreadable, or does not fit the model config."""


def require_sam2() -> None:
    """Raise a one-line error with the install command when the ``sam2`` package is missing."""
    try:
        import sam2  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the SAM 2 backend needs the sam2 package ({exc})", f"Install it: {SAM2_INSTALL}") from exc


def resolve_checkpoint(checkpoint: str) -> Path:
    """A local file, or a hub id (``facebook/sam2.1-hiera-tiny``) fetched into the hub cache.

    Downloading happens only here, only for a hub id the user named, and not at all when
    ``HF_HUB_OFFLINE=1`` and the file is not cached.
    """
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    if checkpoint in HUB_IDS:
        from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

        filename = HF_MODEL_ID_TO_FILENAMES[checkpoint][1]
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id=checkpoint, filename=filename))
        except Exception as exc:  # the hub client raises many types; re-raised with context
            raise CheckpointError(
                f"cannot get {filename} of {checkpoint} from the hub ({type(exc).__name__}: {exc})".replace("\n", " "),
                "Download it once with network access, or pass the local .pt path with --checkpoint",
            ) from exc
    raise CheckpointError(
        f"checkpoint {checkpoint} does not exist",
        f"Pass a local .pt file or one of the hub ids {', '.join(HUB_IDS)}",
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``model`` weights of a SAM 2 checkpoint file (``torch.load`` with ``weights_only``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike mean an unreadable file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}", "Check the file") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path} is not a SAM 2 checkpoint (no 'model' state dict)", "Use a sam2.1_hiera_*.pt file")
    return data["model"]


def checkpoint_size(state_dict: dict[str, Any]) -> str | None:
    """``t``, ``s``, ``b+`` or ``l`` from the number of Hiera blocks, or None when unrecognised."""
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))}
    return SIZES_BY_BLOCKS.get(len(blocks))


def config_size(model_config: str) -> str | None:
    """The SAM 2.1 size a config name refers to (``configs/sam2.1/sam2.1_hiera_t.yaml`` -> ``t``)."""
    match = re.search(r"hiera_(t|s|b\+|l)\.yaml$", model_config)
    return match.group(1) if match else None


def build_model(
    model_config: str, checkpoint: str | None, device: str = "cpu", image_size: int | None = None
) -> torch.nn.Module:
    """Build SAM 2 as ``sam2``'s video predictor does and load ``checkpoint`` (None: random weights,
    for tests and benchmarks).

    Args:
        model_config: a config inside the sam2 package, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``.
        checkpoint: local ``.pt`` path or hub id, or None.
        device: ``cpu``, ``cuda``, ``cuda:1``...
        image_size: override the model's input size (1024); RoPE and feature sizes follow.

    Raises:
        CheckpointError: the file is missing or unreadable, or its size or keys do not match the config.
    """
    require_sam2()
    from sam2.build_sam import build_sam2_video_predictor

    state_dict = None
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
        state_dict = read_state_dict(path)
        found, expected = checkpoint_size(state_dict), config_size(model_config)
        if found and expected and found != expected:
            raise CheckpointError(
                f"checkpoint {path.name} is SAM 2.1 hiera-{found} but the config is hiera-{expected} ({model_config})",
                f"Use --config samurai_{found.replace('+', 'p')} or model_config {MODEL_CONFIGS[found]}",
            )
    overrides = [f"++model.image_size={image_size}"] if image_size else []
    try:
        model = build_sam2_video_predictor(model_config, None, device="cpu", hydra_overrides_extra=overrides)
    except Exception as exc:  # hydra raises MissingConfigException and friends
        raise ConfigError(
            f"sam2 cannot build model config {model_config!r}: {type(exc).__name__}: {exc}".replace("\n", " "),
            f"Use one of {', '.join(MODEL_CONFIGS.values())}",
        ) from exc
    if state_dict is not None:
        _load_weights(model, state_dict, checkpoint or "", model_config)
    return model.to(_device(device)).eval()


def _load_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], name: str, model_config: str) -> None:
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # size mismatches
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        raise CheckpointError(
            f"checkpoint {name} does not match config {model_config}: {first}",
            "Use the config of the checkpoint's size (and the default image_size)",
        ) from exc
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {name} does not match config {model_config}: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            "Use a SAM 2.1 checkpoint with its sam2.1 config",
        )


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available", "Use --set device=cpu")
    return torch.device(device)
