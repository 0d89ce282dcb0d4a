"""Random-weight depth models of the real architectures, built in code and saved like a checkpoint.

No weights can be downloaded where memstream is tested, so tests build the real transformers
classes from a small config, ``save_pretrained`` them with the model's own image processor and load
the directory through :func:`memstream.embodied.map3d.depth_model.load_depth_model` exactly as a user loads a
hub checkpoint. Their depth is noise around ``max_depth / 2`` (a sigmoid of small activations); what
they test is the machinery: loading, metric vs relative output, sizes, batching, the stage.

Example::

    path = build_tiny_depth_anything("/tmp/tiny-da", metric=True, max_depth_m=5)
    model = load_depth_model(str(path))
"""

from __future__ import annotations

from pathlib import Path

import torch

from memstream.streaming.videomem.tiny import save_model_and_processor

#: ImageNet statistics, as the released Depth Anything processors normalise.
_MEAN, _STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_tiny_depth_anything(
    directory: str | Path,
    *,
    metric: bool = True,
    max_depth_m: int = 5,
    hidden_size: int = 32,
    layers: int = 2,
    image_size: int = 56,
    initializer_range: float = 0.1,
    seed: int = 0,
) -> Path:
    """Save a random-weight ``DepthAnythingForDepthEstimation`` with its ``DPTImageProcessor``.

    The backbone is DINOv2 (14 px patches) at width ``hidden_size`` and depth ``layers``, every layer
    feeding the neck; the neck and head are Depth Anything's, narrowed. The processor is the released
    one's (keep the aspect ratio, a multiple of 14, ImageNet normalisation) at ``image_size`` instead
    of 518, so a 96x72 frame runs at 70x56.

    Args:
        directory: where to save (created).
        metric: a metric head (sigmoid x ``max_depth_m``, as Depth Anything V2's metric checkpoints)
            or the relative one (ReLU disparity, as the default checkpoints).
        max_depth_m: the metric head's range, metres (transformers 5.23 types ``max_depth`` as int).
        hidden_size, layers: the DINOv2 backbone's width and depth.
        image_size: the processor's target size, pixels (a multiple of 14).
        initializer_range: std of the random weights; 0.1 gives depth that varies across the image
            (transformers' 0.02 gives a constant ``max_depth / 2``).
        seed: torch seed for the random weights.

    Returns:
        The directory, loadable with ``from_pretrained``.
    """
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor

    backbone = {
        "model_type": "dinov2",
        "image_size": image_size,
        "patch_size": 14,
        "hidden_size": hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden_size,
        "out_indices": list(range(1, layers + 1)),
        "reshape_hidden_states": False,
        "initializer_range": initializer_range,
    }
    # One reassemble factor per backbone level; the released (4, 2, 1, 0.5) up- and downsample both.
    factors = [4, 2, 1, 0.5][-layers:] if layers <= 4 else [1] * layers
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=hidden_size,
        reassemble_factors=factors,
        neck_hidden_sizes=[16 * (i + 1) for i in range(layers)],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="metric" if metric else "relative",
        max_depth=max_depth_m,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessor(
        size={"height": image_size, "width": image_size}, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, do_pad=False, image_mean=_MEAN, image_std=_STD,  # resample 3: bicubic
    )
    return save_model_and_processor(model, processor, Path(directory))


def build_tiny_glpn(directory: str | Path, *, max_depth_m: int = 5, seed: int = 0) -> Path:
    """Save a random-weight ``GLPNForDepthEstimation`` (a metric model) with its ``GLPNImageProcessor``.

    Four SegFormer encoder blocks of one layer each (widths 8-32), a 16-channel decoder and GLPN's
    sigmoid x ``max_depth_m`` head; the processor rounds sizes down to multiples of 32.

    Args:
        directory: where to save (created).
        max_depth_m: the head's range, metres (an int, as transformers types it).
        seed: torch seed for the random weights.
    """
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    config = GLPNConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 24, 32],
        patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], num_attention_heads=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2],
        decoder_hidden_size=16, max_depth=max_depth_m,
    )
    torch.manual_seed(seed)
    return save_model_and_processor(GLPNForDepthEstimation(config).eval(), GLPNImageProcessor(size_divisor=32), Path(directory))
