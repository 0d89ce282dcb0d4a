"""Questions as both video memories take them: validated, tokenized in the model's chat format."""

from __future__ import annotations

import torch

from memstream.streaming.errors import MemstreamError
from memstream.streaming.videomem.adapters.hf import HFVideoLLM


class QuestionError(MemstreamError):
    """A question the memory cannot take (empty, too long, asked before any frame)."""


def question_ids(llm: HFVideoLLM, question: str, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the retrieval text and of the answer prompt of ``question``.

    Raises:
        QuestionError: the question is empty or its answer prompt is over ``max_tokens`` tokens.
    """
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty", "Ask a question in words, for example: What happened first?")
    text = question.strip()
    retrieval_ids = llm.tokenize(llm.prompt.retrieval.format(question=text))
    answer_ids = llm.tokenize(llm.prompt.answer.format(question=text))
    if len(answer_ids) > max_tokens:
        raise QuestionError(
            f"the question is {len(answer_ids)} tokens long, over the limit of {max_tokens}",
            "Shorten it or raise max_question_tokens",
        )
    return retrieval_ids, answer_ids


def no_frames_error() -> QuestionError:
    return QuestionError("no frame has been seen yet", "Ask after the stream has delivered at least one frame")
