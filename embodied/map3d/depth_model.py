"""Monocular depth through transformers, so the 3D memory can map RGB video without a depth sensor.

The 3D memory fuses metres, so only a model whose output *is* metres goes in unasked:

* **metric** models: Depth Anything V2's metric checkpoints (``depth_estimation_type: metric`` in
  their config; a sigmoid head scaled by ``max_depth``: 20 m indoor, 80 m outdoor) and GLPN (a
  sigmoid head scaled by ``max_depth``, trained on NYU / KITTI metres). Their prediction is used as
  it is, clipped to ``[0, max_depth]`` (the library's bicubic resize can overshoot at edges).
* **relative** models: Depth Anything V1/V2's default checkpoints and DPT (MiDaS) predict
  *disparity up to an unknown scale and shift per image*; fusing it as metres would build a map of
  the wrong size and shape. Such a model is refused unless the user gives the map to metres,
  :class:`RelativeDepthScale`: ``1 / depth_m = scale * prediction + shift`` (the map DPT's own NYU
  and KITTI models apply, ``invert=True``, e.g. scale 0.000305, shift 0.1378 for NYU). Because the
  ambiguity is per image, one fixed pair is an approximation: expect the scale to drift.

Other depth families transformers 5.23 has (ZoeDepth, Depth Pro, Prompt Depth Anything, CHMv2,
TIPSv2-DPT) are refused as not read yet: their outputs need other post-processing (padding
removal, a predicted field of view, a prompt depth map, canopy height).

Example::

    model = load_depth_model("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf")
    depth_m = model.predict(frame.rgb)                      # float32 (H, W), metres
    k = pinhole_intrinsics(frame.width, frame.height)       # 60 degrees horizontal, a guess
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from memstream.streaming.errors import MemstreamError

#: The checkpoints to name when a user needs a metric model.
METRIC_INDOOR = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
METRIC_OUTDOOR = "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf"

#: Horizontal field of view assumed for frames that come without intrinsics (webcams and phones
#: film at about 60-70 degrees). A wrong value stretches the map sideways against its depth.
DEFAULT_FOV_DEG = 60.0

#: A relative model's disparity this close to zero (sky, far walls) is no measurement: past 80 m,
#: Depth Anything V2's outdoor range.
RELATIVE_FAR_LIMIT_M = 80.0

DTYPES = ("float32", "float16", "bfloat16")


class DepthModelError(MemstreamError):
    """A depth model could not be loaded, or its output cannot be fused as metres."""


@dataclass(frozen=True)
class RelativeDepthScale:
    """The user's map from a relative model's output to metres: ``1 / depth_m = scale * prediction + shift``.

    Fit it once for the camera and scene, e.g. by least squares of ``1 / measured_m`` against the
    prediction at a few points of known distance. Pixels whose ``scale * prediction + shift`` is
    below ``1 / 80 m`` get depth 0 (no measurement).

    Attributes:
        scale: metres^-1 per unit of prediction, > 0.
        shift: metres^-1.
    """

    scale: float
    shift: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0) or not math.isfinite(self.shift):
            raise ValueError(f"scale must be finite and > 0, shift finite; got {self.scale}, {self.shift}")


def output_kind(config: Any) -> tuple[Literal["metric", "relative"], float | None]:
    """What a depth model's config says its output is: ``("metric", max_depth_m)`` or ``("relative", None)``.

    Raises:
        KeyError: the model type is not one this module reads.
    """
    model_type = getattr(config, "model_type", "?")
    if model_type == "depth_anything":
        if config.depth_estimation_type == "metric":
            return "metric", float(config.max_depth)
        return "relative", None
    if model_type == "glpn":
        return "metric", float(config.max_depth)
    if model_type == "dpt":  # DPTConfig has no metric head: DPT / MiDaS checkpoints predict disparity
        return "relative", None
    raise KeyError(model_type)


class MonocularDepth:
    """A loaded depth model: RGB in, metres out (see the module docstring for what is metric).

    Build it with :func:`load_depth_model`. Stateless between calls.

    Attributes:
        name: the local path or hub id it was loaded from.
        model_type: transformers' ``model_type`` (``depth_anything``, ``glpn``, ``dpt``).
        kind: ``metric`` or ``relative`` (then ``relative_scale`` maps it to metres).
        max_depth_m: the largest depth a metric model predicts, None for relative models.
    """

    def __init__(self, network: Any, processor: Any, *, name: str, kind: Literal["metric", "relative"],
                 max_depth_m: float | None, relative_scale: RelativeDepthScale | None = None) -> None:
        if kind == "relative" and relative_scale is None:
            raise ValueError("a relative model needs a RelativeDepthScale")
        self.network = network
        self.processor = processor
        self.name = name
        self.model_type = network.config.model_type
        self.kind = kind
        self.max_depth_m = max_depth_m
        self.relative_scale = relative_scale

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Depth of one image.

        Args:
            rgb: uint8 ``(H, W, 3)``.

        Returns:
            float32 ``(H, W)`` z-depth, metres; 0 where the model gives no usable depth.
        """
        return self.predict_batch([rgb])[0]

    def predict_batch(self, rgbs: Sequence[np.ndarray]) -> np.ndarray:
        """Depth of images of one size in one forward pass (same values as :meth:`predict` per image).

        Args:
            rgbs: uint8 ``(H, W, 3)`` images, all the same size.

        Returns:
            float32 ``(N, H, W)``, metres; ``(0, 0, 0)`` for no images.
        """
        import torch

        if len(rgbs) == 0:
            return np.zeros((0, 0, 0), np.float32)
        for rgb in rgbs:
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(f"images must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        sizes = {rgb.shape[:2] for rgb in rgbs}
        if len(sizes) > 1:
            raise ValueError(f"images of one batch must have one size, got {sorted(sizes)}")
        height, width = rgbs[0].shape[:2]
        parameter = next(self.network.parameters())
        # Copies: frames are read-only and torch warns on tensors over read-only memory.
        inputs = self.processor(images=[np.array(rgb) for rgb in rgbs], return_tensors="pt")
        with torch.inference_mode():
            outputs = self.network(pixel_values=inputs["pixel_values"].to(parameter.device, parameter.dtype))
            outputs.predicted_depth = outputs.predicted_depth.float()  # resize and convert in float32
            sizes = [(height, width)] * len(rgbs)
            results = self.processor.post_process_depth_estimation(outputs, target_sizes=sizes)
        prediction = torch.stack([r["predicted_depth"].reshape(height, width) for r in results]).cpu().numpy()
        return self._to_metres(np.nan_to_num(prediction, nan=0.0, posinf=0.0, neginf=0.0))

    def _to_metres(self, prediction: np.ndarray) -> np.ndarray:
        if self.kind == "metric":
            return np.clip(prediction, 0.0, self.max_depth_m).astype(np.float32)
        scale = self.relative_scale
        inverse = scale.scale * prediction.astype(np.float64) + scale.shift
        near = inverse > 1.0 / RELATIVE_FAR_LIMIT_M
        depth = np.zeros(prediction.shape, np.float32)
        depth[near] = 1.0 / inverse[near]
        return depth

    def describe(self) -> dict[str, Any]:
        """Plain values for ``summary.json``."""
        out: dict[str, Any] = {"model": self.name, "model_type": self.model_type, "output": self.kind}
        if self.kind == "metric":
            out["max_depth_m"] = self.max_depth_m
        else:
            out["relative_scale"] = {"scale": self.relative_scale.scale, "shift": self.relative_scale.shift}
        return out


def pinhole_intrinsics(width_px: int, height_px: int, *, fov_deg: float | None = None,
                       fx_px: float | None = None, fy_px: float | None = None) -> np.ndarray:
    """A pinhole matrix for a camera without calibration.

    The principal point is the image centre, ``((W - 1) / 2, (H - 1) / 2)`` (pixel centres at
    integer coordinates, as everywhere in memstream). ``fx = fx_px``, or from the horizontal field
    of view: ``fx = (W / 2) / tan(fov / 2)`` (:data:`DEFAULT_FOV_DEG` when neither is given);
    ``fy = fy_px``, else ``fx`` (square pixels).

    Returns:
        float64 ``(3, 3)``, pixels.
    """
    if fov_deg is not None and fx_px is not None:
        raise ValueError("give a field of view or a focal length, not both")
    if fx_px is None:
        fov = DEFAULT_FOV_DEG if fov_deg is None else fov_deg
        if not 0 < fov < 180:
            raise ValueError(f"the field of view must be in (0, 180) degrees, got {fov}")
        fx_px = 0.5 * width_px / math.tan(math.radians(fov) / 2)
    fy_px = fx_px if fy_px is None else fy_px
    return np.array([[fx_px, 0, (width_px - 1) / 2], [0, fy_px, (height_px - 1) / 2], [0, 0, 1]], np.float64)


def load_depth_model(model: str, *, device: str = "auto", dtype: str = "float32",
                     relative_scale: RelativeDepthScale | None = None) -> MonocularDepth:
    """Load a depth model from a local directory or a hub id, as ``from_pretrained`` users do.

    Args:
        model: a ``save_pretrained`` directory (config.json, weights, preprocessor_config.json) or a
            hub id; downloads follow the hub's rules (``HF_HUB_OFFLINE=1``: the local cache only).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``...
        dtype: ``float32`` (default), ``float16`` (about twice as fast on GPUs), ``bfloat16``
            (quantises depth to 0.4 % steps, 2 cm at 5 m).
        relative_scale: required for relative models, refused for metric ones.

    Raises:
        DepthModelError: transformers is missing; the model cannot be found or is not a depth model
            this module reads; it is relative and no scale is given (or metric and one is); its
            weights do not match its config.
    """
    try:
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation
    except ImportError as exc:
        raise DepthModelError(f"the depth model needs transformers ({exc})",
                              "Install it: pip install 'memstream[vqa]'") from exc
    source = _resolve_local(model)
    try:
        config = AutoConfig.from_pretrained(source)
    except _load_errors() as exc:
        raise DepthModelError(
            f"cannot load depth model {model!r}: {_first_line(exc)}",
            f"Give a local directory with config.json, weights and preprocessor_config.json, or a hub id such as "
            f"{METRIC_INDOOR} (downloads need network access and HF_HUB_OFFLINE unset)",
        ) from exc
    try:
        kind, max_depth_m = output_kind(config)
    except KeyError:
        raise DepthModelError(
            f"model {model!r} is a {getattr(config, 'model_type', '?')}, which the 3D memory does not read as depth",
            f"Use a Depth Anything V2 metric checkpoint such as {METRIC_INDOOR}, or a GLPN or DPT depth model",
        ) from None
    _check_scale(model, kind, relative_scale)
    torch_device = _torch_device(device)
    if dtype not in DTYPES:
        raise DepthModelError(f"unknown depth model dtype {dtype!r}", f"Use one of {', '.join(DTYPES)}")
    with _quiet_transformers():  # its load report is replaced by the one error below
        try:
            processor = AutoImageProcessor.from_pretrained(source)
            network, info = AutoModelForDepthEstimation.from_pretrained(
                source, dtype=getattr(torch, dtype), output_loading_info=True, ignore_mismatched_sizes=True)
        except _load_errors() as exc:
            raise DepthModelError(
                f"cannot load the weights or image processor of depth model {model!r}: {_first_line(exc)}",
                "Check that the checkpoint's files are complete and belong to its config.json",
            ) from exc
    _check_loading_info(model, info)
    return MonocularDepth(network.to(torch_device).eval(), processor, name=model, kind=kind,
                          max_depth_m=max_depth_m, relative_scale=relative_scale)


def _torch_device(device: str):
    """``auto``: CUDA when available, else CPU; an unknown or absent device is one clear error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise DepthModelError(f"unknown depth model device {device!r}", "Use auto, cpu, cuda or cuda:N") from exc
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise DepthModelError(f"depth model device {device!r} is not available here", "Use auto or cpu")
    return torch_device


def _check_scale(model: str, kind: str, relative_scale: RelativeDepthScale | None) -> None:
    if kind == "relative" and relative_scale is None:
        raise DepthModelError(
            f"depth model {model!r} predicts relative depth (disparity up to an unknown scale and shift), "
            "which cannot be fused as metres",
            f"Use a metric checkpoint such as {METRIC_INDOOR} (to 20 m) or {METRIC_OUTDOOR} (to 80 m), or give "
            "the map to metres you measured: --relative-depth-scale S [--relative-depth-shift T] "
            "(1/depth_m = S * prediction + T)",
        )
    if kind == "metric" and relative_scale is not None:
        raise DepthModelError(
            f"depth model {model!r} predicts metres; a relative depth scale applies only to relative models",
            "Remove --relative-depth-scale / --relative-depth-shift",
        )


def _check_loading_info(model: str, info: dict[str, Any]) -> None:
    """Refuse weights that leave parameters random (missing or of another shape)."""
    if info["mismatched_keys"]:
        mismatched = sorted(info["mismatched_keys"])  # (key, saved shape, expected shape)
        key, saved, expected = mismatched[0]
        what = (f"{len(mismatched)} weights have other shapes than its config.json builds, "
                f"e.g. {key}: {tuple(saved)} saved, {tuple(expected)} expected")
    elif info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        what = f"{len(missing)} weights its config.json needs are not in the checkpoint, e.g. {missing[0]}"
    else:
        return
    raise DepthModelError(f"the weights of depth model {model!r} do not match its config: {what}",
                          "Use the config.json saved with these weights (same architecture and sizes)")


def _resolve_local(model: str) -> str:
    """A local directory as an absolute path, a hub id as it is; a missing path is one clear error."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if looks_local or path.exists():
        raise DepthModelError(
            f"no depth model directory {model}",
            "Check the path: a local model is a folder with config.json, weights and preprocessor_config.json")
    return model


def _load_errors() -> tuple[type[BaseException], ...]:
    """What transformers, the hub client and safetensors raise on files they cannot use."""
    errors: list[type[BaseException]] = [OSError, ValueError, RuntimeError]
    with contextlib.suppress(ImportError):
        from huggingface_hub.errors import StrictDataclassError

        errors.append(StrictDataclassError)
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
