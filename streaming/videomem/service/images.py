"""Frames as the service takes them: JPEG or PNG, sized from the header before anything is decoded.

A 1 MB PNG can declare 20000 x 20000 pixels (1.2 GB once decoded), so the pixel count is read from
the PNG ``IHDR`` chunk or the JPEG ``SOFn`` segment and checked first; only then does OpenCV decode.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from memstream.streaming.videomem.service.errors import ServiceError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
#: Image formats recognised (and refused with 415) so a client learns it sent the wrong kind.
OTHER_SIGNATURES: dict[bytes, str] = {
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF8": "GIF",
    b"RIFF": "WebP/RIFF",
    b"\x00\x00\x00\x0cjP": "JPEG 2000",
}
#: JPEG start-of-frame markers (SOF0-SOF15 less DHT, JPG and DAC), which carry the image size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: markers without a segment


def image_size(data: bytes) -> tuple[str, int, int]:
    """``(format, width_px, height_px)`` read from the header of JPEG or PNG ``data``, decoding nothing.

    Raises:
        ServiceError: 415 for another image format, 400 for bytes that are no image or whose header
            gives no size.
    """
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise _not_an_image("a PNG without its IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(JPEG_SIGNATURE):
        return ("jpeg", *_jpeg_size(data))
    for signature, name in OTHER_SIGNATURES.items():
        if data.startswith(signature):
            raise ServiceError(f"the frame is a {name} image", "Send JPEG or PNG bytes", 415, code="unsupported_media_type")
    raise _not_an_image("no JPEG or PNG header")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise _not_an_image("a JPEG whose segments are broken")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    raise _not_an_image("a JPEG without a frame header (SOF)")


def _not_an_image(why: str) -> ServiceError:
    return ServiceError(f"the frame is not a decodable image ({why})", "Send JPEG or PNG bytes", 400, code="invalid_image")


def decode_frame(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of JPEG or PNG ``data`` of at most ``max_pixels`` pixels.

    Raises:
        ServiceError: 415 (not JPEG/PNG), 413 (over ``max_pixels``, refused before decoding), 400
            (empty size, or bytes the decoder rejects).
    """
    kind, width, height = image_size(data)
    if width == 0 or height == 0:
        raise _not_an_image(f"a {kind.upper()} of {width}x{height} pixels")
    if width * height > max_pixels:
        raise ServiceError(
            f"the frame is {width}x{height} pixels, over the server's limit of {max_pixels:,}",
            "Send smaller frames or start the server with a larger --max-frame-pixels",
            413,
            code="image_too_large",
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[0] * image.shape[1] > max_pixels:
        raise _not_an_image(f"a {kind.upper()} the decoder rejects")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
