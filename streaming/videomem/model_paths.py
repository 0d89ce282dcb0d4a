"""The video memory's model arguments, checked before anything heavy loads.

``memstream ask`` and ``memstream serve`` call :func:`check_model_paths` on their flags before
torch and transformers are imported, so a mistyped ``--model`` or ``--embedder`` folder is one
``error:`` line in a fraction of a second; the loaders call it again for Python users.
"""

from __future__ import annotations

from memstream.streaming.paths import check_local_path

#: ``model: tiny-random`` builds a random-weight LLaVA-OneVision in code (answers are noise): it
#: runs the whole machinery on a machine with no checkpoint.
TINY_RANDOM = "tiny-random"

#: The Video-LLM that messages name as an example.
EXAMPLE_MODEL = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
#: The fix of a ``--model`` path that does not exist.
MISSING_MODEL_FIX = f"Give an existing folder written by save_pretrained, or a hub id such as {EXAMPLE_MODEL}"
#: The fix of an ``--embedder`` path that does not exist.
MISSING_EMBEDDER_FIX = "Give an existing CLIP / SigLIP folder, or a hub id such as google/siglip-so400m-patch14-384"


def check_model_paths(model: str | None, embedder: str | None = None) -> None:
    """Raise :class:`~memstream.streaming.errors.ConfigError` when the Video-LLM or the retrieval
    embedder is a local path that does not exist (before a loader takes it for a hub id and retries
    the hub for half a minute). ``tiny-random`` and hub ids pass."""
    if model is not None and model != TINY_RANDOM:
        check_local_path(model, what="model folder", fix=MISSING_MODEL_FIX)
    if embedder:
        check_local_path(embedder, what="embedder folder", fix=MISSING_EMBEDDER_FIX)
