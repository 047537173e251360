"""Reading request bodies within the configured limit, gzip included."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from shipscope.errors import InputError, TooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The body, gunzipped when Content-Encoding says gzip; TooLarge (413) past ``limit`` bytes either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise InputError(f"unsupported Content-Encoding {encoding!r}: send identity or gzip")
    inflater = zlib.decompressobj(wbits=31)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InputError(f"invalid gzip body: {error}") from error
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"gunzipped request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise InputError("invalid gzip body: truncated stream")
    return inflated
