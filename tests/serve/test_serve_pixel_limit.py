"""A pixel-limit refusal is 413 ``too_many_pixels`` in the service, whichever check catches it (never 422)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from fixtures_bad import png_bomb

from sgjnd.errors import ImageError, PixelLimitError

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'sgjnd[serve]'")

from sgjnd.serve.errors import api_error_from

JPEG_APP0 = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def stray_byte_jpeg_bomb(width: int, height: int) -> bytes:
    """A 12000×12000 SOF0 hidden behind bytes libjpeg skips (stray bytes, fill bytes, a stuffed FF 00)."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return JPEG_APP0 + b"\x00junk\xff\x00\xff\xff" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def bigtiff_bomb(width: int, height: int) -> bytes:
    """A BigTIFF whose IFD0 declares ``width`` × ``height``."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (262, 3, 1), (273, 4, 0), (277, 3, 1), (279, 4, 1)]
    ifd = struct.pack("<Q", len(tags))
    for tag, kind, value in tags:
        ifd += struct.pack("<HHQ" + ("H6x" if kind == 3 else "I4x"), tag, kind, 1, value)
    return b"II" + struct.pack("<HHHQ", 43, 8, 0, 16) + ifd + struct.pack("<Q", 0) + b"\x00"


def test_pixel_limit_errors_map_to_413() -> None:
    assert api_error_from(PixelLimitError("big")).status == 413
    assert api_error_from(PixelLimitError("big")).code == "too_many_pixels"
    assert api_error_from(ImageError("broken")).status == 422


def test_bombs_the_old_header_parser_missed_are_413(client: Any) -> None:
    for bomb in (stray_byte_jpeg_bomb(12_000, 12_000), bigtiff_bomb(12_000, 12_000)):
        response = client.post("/v1/jnd", content=bomb)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "too_many_pixels"


def test_a_bomb_past_the_services_header_check_is_still_413(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sgjnd.serve import limits

    monkeypatch.setattr(limits, "read_image_size", lambda data: None)  # the decoder's own check refuses it
    response = client.post("/v1/jnd", content=png_bomb(50_000, 50_000))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_many_pixels"
