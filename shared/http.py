"""Reading request bodies on public endpoints without trusting their size."""

from __future__ import annotations

from fastapi import Request


async def bounded_body(request: Request, limit: int) -> tuple[bytes, bool]:
    """The body, read up to `limit` bytes, and whether it was whole. A declared `Content-Length` above the limit
    reads nothing; a stream that runs past it stops there (the rest is never buffered)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", False
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        received += len(chunk)
        if received > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True
