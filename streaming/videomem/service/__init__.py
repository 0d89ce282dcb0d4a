"""The video QA service's parts, apart from the web framework's wiring in
:mod:`memstream.streaming.videomem.serve`:

* :mod:`.errors`: :class:`ServiceError`, the one error currency, and OpenAI's error shape;
* :mod:`.access`: API keys and the Host/Origin allow-lists (:class:`AccessPolicy`);
* :mod:`.limits`: input bounds (:class:`ServiceLimits`), stream ids, timestamps, body size;
* :mod:`.images`: JPEG/PNG frames sized from their header before decoding;
* :mod:`.chat`: chat-completion requests checked field by field, responses in OpenAI's shape;
* :mod:`.streams`: streams, their memories and answers (:class:`VideoQAService`).
"""

from memstream.streaming.videomem.service.access import AccessPolicy, check_bind, load_api_keys
from memstream.streaming.videomem.service.chat import ChatRequest, parse_chat_request
from memstream.streaming.videomem.service.errors import ServiceError
from memstream.streaming.videomem.service.limits import ServiceLimits
from memstream.streaming.videomem.service.streams import StreamSession, VideoQAService

__all__ = [
    "AccessPolicy",
    "ChatRequest",
    "ServiceError",
    "ServiceLimits",
    "StreamSession",
    "VideoQAService",
    "check_bind",
    "load_api_keys",
    "parse_chat_request",
]
