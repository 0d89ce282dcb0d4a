"""Random-weight Video-LLMs of the real architectures, built in code and saved like a checkpoint.

No weights can be downloaded on the machines that test and benchmark memstream, so tests and
benchmarks build the real transformers classes from a config with random weights, a tokenizer
trained here on a few sentences and the model's own processors, ``save_pretrained`` them to a
directory and load that directory through :func:`memstream.streaming.videomem.adapters.load_video_llm`
exactly as a user loads a hub checkpoint. The answers of such a model are noise; what they test is
the machinery (exactness against full attention, retrieval, positions, storage, serving).

Example::

    path = build_tiny_llava_onevision("/tmp/tiny-llava")
    llm = load_video_llm(str(path))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

#: Special tokens of the Qwen2 chat format used by LLaVA-OneVision.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

#: Special tokens of Qwen2.5-VL's chat format (its vision markers and image/video placeholders).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

_CORPUS = [
    "system You are a helpful assistant.",
    "user What is the color of the ball? What happened first? Where is the red cube now?",
    "assistant The ball is red. A person opened the door, then the cube moved to the left.",
    "How many objects are in the video frame? Describe the scene and the event at the start.",
]

#: LLaVA-OneVision's chat template, reduced to what the tokenizer above can express.
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'video' %}<video>{% elif c['type'] == 'image' %}<image>{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Qwen2.5-VL's chat template, reduced likewise (a video is ``<|vision_start|><|video_pad|><|vision_end|>``).
_QWEN_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(
    vocab_size: int = 320,
    *,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    named_tokens: dict[str, str] | None = None,
):
    """A byte-level BPE tokenizer with chat special tokens, trained on a fixed corpus.

    Args:
        vocab_size: target vocabulary size (special tokens included).
        special_tokens: the special tokens, which get the first ids in this order. The defaults are
            LLaVA-OneVision's; ``<|im_end|>`` (end of sequence) and ``<|endoftext|>`` (padding) must be
            among them.
        named_tokens: attribute name -> special token the processor looks up on the tokenizer
            (``image_token``, ``video_token``); LLaVA-OneVision's ``<image>`` / ``<video>`` by default.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 8, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=named_tokens or {"image_token": "<image>", "video_token": "<video>"},
    )


def build_tiny_llava_onevision(
    directory: str | Path,
    *,
    layers: int = 2,
    hidden_size: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 64,
    image_size: int = 32,
    patch_size: int = 8,
    max_positions: int = 32768,
    rope_theta: float = 10000.0,
    initializer_range: float = 0.02,
    seed: int = 0,
) -> Path:
    """Save a random-weight ``LlavaOnevisionForConditionalGeneration`` with its processor.

    Frames become ``(image_size / patch_size / 2)^2`` tokens (4 with the defaults). The defaults
    build a 2-layer model with grouped-query attention (4 query heads, 2 KV heads) in about a second.

    Args:
        directory: where to save (created).
        layers, hidden_size, heads, kv_heads, intermediate_size: the Qwen2 decoder's shape.
        image_size, patch_size: the SigLIP vision tower's input size and patch size, pixels.
        max_positions: the decoder's ``max_position_embeddings``.
        rope_theta: RoPE base.
        initializer_range: std of the random weights (transformers' default 0.02 makes attention
            nearly uniform; larger values give the peaked attention of trained models).
        seed: torch seed for the random weights.

    Returns:
        The directory, loadable with ``from_pretrained``.
    """
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    directory = Path(directory)
    tokenizer = build_tokenizer()
    config = LlavaOnevisionConfig(
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
            "initializer_range": initializer_range,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "image_size": image_size,
            "patch_size": patch_size,
            "num_channels": 3,
            "hidden_size": hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "intermediate_size": intermediate_size,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[image_size, image_size]],
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[image_size, image_size]]),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=_CHAT_TEMPLATE,
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    save_model_and_processor(model, processor, directory)
    return directory


def save_model_and_processor(model, processor, directory: Path) -> Path:
    """``save_pretrained`` a model and its processor into ``directory``, without progress bars."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a tiny model saves in milliseconds
    try:
        model.save_pretrained(directory)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(directory)
    return directory


def build_tiny_qwen2_5_vl(
    directory: str | Path,
    *,
    layers: int = 2,
    hidden_size: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 64,
    mrope_section: Sequence[int] = (2, 1, 1),
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
    tokens_per_second: int = 2,
    max_positions: int = 32768,
    rope_theta: float = 10000.0,
    seed: int = 0,
) -> Path:
    """Save a random-weight ``Qwen2_5_VLForConditionalGeneration`` with its processor.

    The vision tower is Qwen2.5-VL's (14 px patches, 2 frames per temporal patch, 2x2 spatial merge,
    windowed and full attention blocks) at depth 2 and width 32. The processors resize a frame to
    between ``min_pixels`` and ``max_pixels`` pixels on a 28 px grid, so a 56x56 frame gives a 4x4
    patch grid and one temporal patch (2 frames) gives 2x2 = 4 decoder tokens.

    Args:
        directory: where to save (created).
        layers, hidden_size, heads, kv_heads, intermediate_size: the decoder's shape.
        mrope_section: M-RoPE's (temporal, height, width) frequency counts; they sum to
            ``hidden_size / heads / 2``.
        min_pixels, max_pixels: the image and video processors' frame area bounds, pixels.
        tokens_per_second: temporal position ids per second of video (2 in the released checkpoints).
        max_positions: the decoder's ``max_position_embeddings``.
        rope_theta: RoPE base.
        seed: torch seed for the random weights.

    Returns:
        The directory, loadable with ``from_pretrained``.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    directory = Path(directory)
    head_dim = hidden_size // heads
    if sum(mrope_section) * 2 != head_dim:
        raise ValueError(f"mrope_section {list(mrope_section)} must sum to head_dim / 2 = {head_dim // 2}")
    tokenizer = build_tokenizer(
        special_tokens=QWEN_SPECIAL_TOKENS,
        named_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    token = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": max_positions,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": rope_theta,
                "mrope_section": list(mrope_section),
            },
            "bos_token_id": tokenizer.pad_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config=_tiny_qwen_vision_config(out_hidden_size=hidden_size, tokens_per_second=tokens_per_second),
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        # A stream has no total length, so the per-video pixel budget (cap_pixels_per_frame) is off.
        video_processor=Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=_QWEN_CHAT_TEMPLATE,
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    save_model_and_processor(model, processor, directory)
    return directory


def _tiny_qwen_vision_config(*, out_hidden_size: int, tokens_per_second: int) -> dict:
    """Qwen2.5-VL's vision tower at depth 2 and width 32, with the released patch and merge sizes."""
    return {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 4,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": tokens_per_second,
        "window_size": 112,
        "fullatt_block_indexes": [1],  # block 0 windowed, block 1 full, as the released towers mix them
        "out_hidden_size": out_hidden_size,
    }


def build_tiny_clip(directory: str | Path, *, embed_dim: int = 16, image_size: int = 32, seed: int = 0) -> Path:
    """Save a random-weight ``CLIPModel`` with a locally trained tokenizer and CLIP's image processor,
    for external retrieval (:class:`memstream.streaming.videomem.rekv.external.HFDualEncoder`).

    Args:
        directory: where to save (created).
        embed_dim: width of the shared image-text embedding.
        image_size: the vision tower's input size, pixels (8 px patches).
        seed: torch seed for the random weights.
    """
    from tokenizers import processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    directory = Path(directory)
    tokenizer = build_tokenizer(special_tokens=["<|endoftext|>", "<|startoftext|>", "<|im_end|>"], named_tokens={})
    bos, eos = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)]
    )
    tokenizer.bos_token, tokenizer.eos_token = "<|startoftext|>", "<|endoftext|>"
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 64, "eos_token_id": eos,
                     "bos_token_id": bos, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": image_size, "patch_size": 8},
        projection_dim=embed_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    size = {"shortest_edge": image_size}
    image_processor = CLIPImageProcessor(size=size, crop_size={"height": image_size, "width": image_size})
    save_model_and_processor(model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer), directory)
    return directory
