"""Chat-completion requests and responses in OpenAI's shape, checked field by field.

A request is parsed into a :class:`ChatRequest` before any model work; each refusal is a 400 (404
for an unknown ``model``) naming the field in ``param``. Fields the service does not use
(``frequency_penalty``, ``user``, ...) are ignored, as OpenAI-compatible servers do; ``n`` other
than 1 and ``stop`` sequences are refused, since ignoring them would change the answer's meaning.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.service.errors import ServiceError
from memstream.streaming.videomem.service.limits import ServiceLimits, check_stream_id, finite_number, json_type
from memstream.streaming.videomem.stage import answer_record
from memstream.streaming.videomem.types import Answer


@dataclass(frozen=True)
class ChatRequest:
    """One checked chat-completion request.

    Attributes:
        stream_id: the stream whose memory answers.
        question: the last user message's text, at most ``max_question_chars`` characters.
        sampling: answer length (``max_tokens``, capped) and decoding settings.
        stream: answer as SSE ``chat.completion.chunk`` events.
        include_usage: with ``stream``, end with a chunk carrying ``usage`` (``stream_options``).
    """

    stream_id: str
    question: str
    sampling: SamplingConfig
    stream: bool = False
    include_usage: bool = False


def parse_chat_request(data: dict[str, Any], model_name: str, limits: ServiceLimits, default_max_tokens: int) -> ChatRequest:
    """Check a decoded JSON request body; raise a :class:`ServiceError` naming the bad field."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", f"model is a JSON {json_type(model)}", "Send the model's id, a string (GET /v1/models)")
    if model is not None and model != model_name:
        raise ServiceError(f"the model {model!r} does not exist", f"This server serves {model_name!r} (GET /v1/models)",
                           404, param="model", code="model_not_found")
    if data.get("stream_id") is None:
        raise _bad("stream_id", "the request names no stream_id", 'Add "stream_id" (from POST /v1/streams) to the request')
    stream_id = check_stream_id(data["stream_id"])
    question = question_of(data.get("messages"), limits.max_question_chars)
    stream = _typed(data, "stream", bool, False)
    options = _typed(data, "stream_options", dict, {})
    include_usage = _typed(options, "include_usage", bool, False, "stream_options.include_usage")
    return ChatRequest(stream_id, question, sampling_of(data, limits, default_max_tokens), stream, include_usage)


def question_of(messages: Any, max_chars: int) -> str:
    """The last user message's text, from string content or OpenAI ``{"type": "text"}`` parts."""
    if not isinstance(messages, list):
        raise _bad("messages", f"messages is a JSON {json_type(messages)}, not an array", 'Send a list: [{"role": "user", "content": "..."}]')
    texts: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _bad(where, f"{where} is not an object with a string role", 'Send {"role": "user", "content": "..."}')
        texts.append((message["role"], _content_text(message.get("content"), f"{where}.content")))
    users = [text for role, text in texts if role == "user"]
    if not users:
        raise _bad("messages", "the request has no user message", 'Send messages: [{"role": "user", "content": "..."}]')
    if len(users[-1]) > max_chars:
        raise _bad("messages", f"the question is {len(users[-1]):,} characters, over the server's limit of {max_chars:,}",
                   "Ask a shorter question", code="question_too_long")
    return users[-1]


def _content_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return _unicode(content or "", where)
    if not isinstance(content, list):
        raise _bad(where, f"{where} is a JSON {json_type(content)}", 'Send a string or a list of {"type": "text", "text": "..."} parts')
    pieces = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise _bad(f"{where}[{j}]", f"{where}[{j}] is not a text part",
                       'Send {"type": "text", "text": "..."}; frames go to POST /v1/streams/{id}/frames')
        if not isinstance(part.get("text"), str):
            raise _bad(f"{where}[{j}].text", f"{where}[{j}].text is not a string", "Send the text as a string")
        pieces.append(_unicode(part["text"], f"{where}[{j}].text"))
    return " ".join(pieces)


def _unicode(text: str, where: str) -> str:
    """``text`` if it is valid Unicode: JSON's ``\\ud800`` escapes decode to a lone surrogate, which no
    tokenizer takes (a TypeError deep in the model) and no UTF-8 response can echo."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _bad(where, f"{where} holds a lone UTF-16 surrogate ({text[exc.start]!r} at character {exc.start})",
                   "Send valid Unicode text (surrogates only in pairs)", code="invalid_text") from None
    return text


def sampling_of(data: dict[str, Any], limits: ServiceLimits, default_max_tokens: int) -> SamplingConfig:
    """Answer length and decoding settings; ``temperature`` 0 or absent is greedy decoding."""
    name = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _typed(data, name, int, min(default_max_tokens, limits.max_tokens_cap))
    if not 1 <= max_tokens <= limits.max_tokens_cap:
        raise _bad(name, f"{name} is {max_tokens}, outside 1..{limits.max_tokens_cap}",
                   f"Ask for at most {limits.max_tokens_cap} tokens (the server's --max-tokens-cap)")
    temperature = _number(data, "temperature", 0.0, 2.0)
    top_p = _number(data, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise _bad("top_p", "top_p is 0", "Send top_p in (0, 1]")
    seed = _typed(data, "seed", int, None)
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:  # torch.Generator.manual_seed's range
        raise _bad("seed", f"seed is {str(seed)[:40]}, outside -2**63..2**64-1", "Send a seed that fits in 64 bits")
    if _typed(data, "n", int, 1) != 1:
        raise _bad("n", "n is not 1", "Ask for one choice per request")
    if data.get("stop") is not None:
        raise _bad("stop", "stop sequences are not supported", "Remove stop; cap the answer with max_tokens")
    return SamplingConfig(max_new_tokens=max_tokens, do_sample=bool(temperature), temperature=temperature or 1.0, top_p=top_p, seed=seed)


_JSON_TYPES = {int: "an integer", bool: "a boolean", dict: "an object"}
#: Seeds ``torch.Generator.manual_seed`` takes; others raise a ValueError once sampling starts.
SEED_RANGE = (-(2**63), 2**64 - 1)


def _typed(data: dict[str, Any], name: str, kind: type, default: Any, param: str | None = None) -> Any:
    value, param = data.get(name), param or name
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(param, f"{param} is {value!r:.40}, not {_JSON_TYPES[kind]}", f"Send {param} as {_JSON_TYPES[kind]}")
    return value


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    number = finite_number(value)  # None also for an integer too large for a float (10**400)
    if number is None or not low <= number <= high:
        raise _bad(name, f"{name} is {value!r:.40}, not a number in [{low:g}, {high:g}]",
                   f"Send {name} as a number in [{low:g}, {high:g}]")
    return number


def _bad(param: str, what: str, fix: str, code: str | None = None) -> ServiceError:
    return ServiceError(what, fix, 400, param=param, code=code)


# ---- responses ---------------------------------------------------------------------------------
def finish_reason(answer: Answer) -> str:
    """``"stop"`` when the model ended the answer, ``"length"`` when ``max_tokens`` cut it."""
    return "stop" if answer.finished_by_eos else "length"


def usage(answer: Answer) -> dict[str, int]:
    """OpenAI's ``usage``: prompt tokens are the memory context plus the prompt the answer read."""
    completion = int(answer.token_ids.numel())
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": completion, "total_tokens": answer.prompt_tokens + completion}


def provenance(answer: Answer) -> dict[str, Any]:
    """The ``memstream`` extension: which stream time and frames the answer covers."""
    record = answer_record(answer)
    return {key: record[key] for key in ("covered_until_s", "frames_seen", "retrieved_frames", "retrieval", "time_to_first_token_s")}


def completion(answer: Answer, model_name: str) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": finish_reason(answer)}],
        "usage": usage(answer),
        "memstream": provenance(answer),
    }


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:16]}"
