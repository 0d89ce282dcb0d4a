"""Random-weight Video-LLMs of the real architectures, built in code and saved like a checkpoint.

No weights can be downloaded on the machines that test and benchmark memstream, so tests and
benchmarks build the real transformers classes from a config with random weights, a tokenizer
trained here on a few sentences and the model's own processors, ``save_pretrained`` them to a
directory and load that directory through :func:`streaming.videomem.adapters.load_video_llm`
exactly as a user loads a hub checkpoint. The answers of such a model are noise; what they test is
the machinery (exactness against full attention, retrieval, positions, storage, serving).

Example::

    path = build_tiny_llava_onevision("/tmp/tiny-llava")
    llm = load_video_llm(str(path))
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Special tokens of the Qwen2 chat format used by LLaVA-OneVision.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

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
    "{% elif c['type'] == 'video' %}<video>{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer with the Qwen2 chat special tokens, trained on a fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 8, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
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
