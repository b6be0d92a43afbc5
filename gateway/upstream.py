"""The gateway's HTTP/1.1 client for its upstreams, and nothing a proxy does not need (no cookies, redirects,
decompression or default headers): kept-alive connections pooled per upstream, each request written in one piece,
answers parsed by httptools (llhttp, as uvicorn parses requests).

At most `pool_size` requests are in flight at once; the others wait for a slot. A connection idle for
`keepalive_seconds` is closed rather than reused, before the upstream's own keep-alive timeout can close it just as
it is reused. An idempotent request whose kept-alive connection closes before any answer is sent once more on a
fresh connection (RFC 9112 §9.3.1); anything else that closes early is a 503. An upstream silent for
`timeout_seconds` (for the answer's head, or between two reads of its body) is a 504, as is one that does not accept
a connection within `connect_timeout_seconds`.

A streamed answer is read as it is consumed: past `_HIGH_WATER` bytes waiting, reading pauses.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

from shared.errors import ServiceError, UpstreamTimeout, UpstreamUnavailable

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_HIGH_WATER = 512 * 1024
_LOW_WATER = 64 * 1024

Headers = list[tuple[bytes, bytes]]


class _ClosedEarly(Exception):
    """The connection closed before the answer's head arrived."""


class _Connection(asyncio.Protocol):
    """One connection to an upstream and the exchange under way on it (one at a time)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        # The exchange under way.
        self.head: asyncio.Future[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: Headers = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.streamed = False  # read as consumed (may pause), rather than whole
        self.informational = False
        self.complete = False
        self.reusable = False
        self.head_only = False
        self.error: ServiceError | None = None
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is a Transport without subclassing it

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamUnavailable("The service's answer is not valid HTTP"))
            self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head is not None and not self.head.done():
            self.head.set_exception(_ClosedEarly())
        elif not self.complete and self.error is None:
            if self.head is not None and self._until_close():
                self.complete = True  # an answer delimited by the end of its connection
            else:
                self.error = UpstreamUnavailable("The service closed the connection mid-answer")
            self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.informational = True  # 1xx: the final answer follows
            return
        self.status = status
        if self.head_only:  # the answer to HEAD has no body whatever its headers say; llhttp would wait for one
            self.complete = True
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.informational or self.head_only:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.streamed and self.buffered > _HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            self.headers = []
            return
        self.complete = True
        self.reusable = self.parser.should_keep_alive() and not self.head_only
        self._wake()

    # The exchange

    async def exchange(self, request: bytes, head_only: bool) -> None:
        """Sends the request and waits for the answer's head."""
        if self.closed:
            raise _ClosedEarly()
        self.head = self.loop.create_future()
        self.head_only = head_only
        self.status, self.headers, self.chunks, self.buffered = 0, [], deque(), 0
        self.complete = self.reusable = self.streamed = False
        self.error = None
        self.last_read = self.loop.time()
        self.transport.write(request)  # type: ignore[union-attr]
        self.timer = self.loop.call_later(self.timeout, self._check_silence)
        await self.head

    def take(self) -> bytes | None:
        """The next piece of the body read so far, if any."""
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < _LOW_WATER:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return chunk

    async def more(self) -> None:
        """Waits until more of the body is read, the answer is complete or the exchange failed."""
        if self.chunks or self.complete or self.error is not None:
            return
        self.waiter = self.loop.create_future()
        await self.waiter

    def finish(self) -> bool:
        """Ends the exchange; whether the connection can carry another."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.head = self.waiter = None
        return self.complete and self.reusable and not self.closed

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: ServiceError) -> None:
        self.error = error
        if self.head is not None and not self.head.done():
            self.head.set_exception(error)
        self._wake()

    def _check_silence(self) -> None:
        if self.complete or self.error is not None or self.head is None:
            return
        silent = self.loop.time() - self.last_read
        if silent >= self.timeout and not self.paused:
            self._fail(UpstreamTimeout())
            self.transport.abort()  # type: ignore[union-attr]
        else:
            self.timer = self.loop.call_later(max(self.timeout - silent, 0.05), self._check_silence)


class UpstreamAnswer:
    """The head of an upstream's answer; its body is read whole or streamed, then the answer is released."""

    def __init__(self, client: UpstreamClient, key: tuple[str, int, bool], connection: _Connection) -> None:
        self.client = client
        self.key = key
        self.connection = connection
        self.status = connection.status
        self.headers = connection.headers
        self.released = False

    @property
    def content_length(self) -> int | None:
        """The declared length of the body; None when it is chunked or delimited by the connection's end."""
        length = None
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                return None
            if lowered == b"content-length" and value.isdigit():
                length = int(value)
        return length

    async def read(self) -> bytes:
        connection = self.connection
        while not connection.complete and connection.error is None:
            await connection.more()
        if connection.error is not None:
            raise connection.error
        body = b"".join(connection.chunks)
        connection.chunks.clear()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self.connection
        connection.streamed = True
        try:
            while True:
                chunk = connection.take()
                if chunk is not None:
                    yield chunk
                elif connection.error is not None:
                    raise connection.error
                elif connection.complete:
                    return
                else:
                    await connection.more()
        finally:
            self.release()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.client.give_back(self.key, self.connection)


class UpstreamClient:
    def __init__(
        self, *, pool_size: int, timeout_seconds: float, connect_timeout_seconds: float, keepalive_seconds: float
    ) -> None:
        self.timeout = timeout_seconds
        self.connect_timeout = connect_timeout_seconds
        self.keepalive = keepalive_seconds
        self.slots = asyncio.Semaphore(pool_size)
        self.pool_size = pool_size
        self.idle: dict[tuple[str, int, bool], deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self.addresses: dict[str, tuple[tuple[str, int, bool], bytes]] = {}

    async def request(
        self, method: str, base_url: str, target: bytes, headers: Headers, body: bytes | None
    ) -> UpstreamAnswer:
        """Sends a request to the upstream at `base_url` (`target`: the raw path and query); 503 or 504 on failure.
        The answer must be released (reading its stream to the end releases it)."""
        key, host = self._address(base_url)
        lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        request = b"".join(lines)
        await self.slots.acquire()
        try:
            return await self._send(key, method, request)
        except BaseException:
            self.slots.release()
            raise

    def _address(self, base_url: str) -> tuple[tuple[str, int, bool], bytes]:
        """Where to connect for an upstream (host, port, TLS), and its Host header."""
        address = self.addresses.get(base_url)
        if address is None:
            parts = urlsplit(base_url)
            tls = parts.scheme == "https"
            key = (parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80), tls)
            address = self.addresses[base_url] = (key, parts.netloc.encode("ascii"))
        return address

    async def _send(self, key: tuple[str, int, bool], method: str, request: bytes) -> UpstreamAnswer:
        while True:
            connection = self._idle_connection(key)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(key)
            try:
                await connection.exchange(request, head_only=method == "HEAD")
            except _ClosedEarly:
                connection.finish()
                if reused and method in IDEMPOTENT:
                    continue  # the kept-alive connection was closed under us: once more on a fresh one
                raise UpstreamUnavailable("The service closed the connection before answering") from None
            except BaseException:
                connection.finish()
                connection.transport.close()  # type: ignore[union-attr]
                raise
            return UpstreamAnswer(self, key, connection)

    def _idle_connection(self, key: tuple[str, int, bool]) -> _Connection | None:
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()  # the most recently used: the others can age out
            if not connection.closed and connection.loop.time() - connection.idle_since < self.keepalive:
                return connection
            connection.transport.close()  # type: ignore[union-attr]
        return None

    async def _connect(self, key: tuple[str, int, bool]) -> _Connection:
        host, port, tls = key
        loop = asyncio.get_running_loop()
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, connection = await loop.create_connection(
                    lambda: _Connection(self.timeout), host, port, ssl=self._tls if tls else None
                )
        except TimeoutError as exc:
            raise UpstreamTimeout() from exc
        except OSError as exc:
            raise UpstreamUnavailable() from exc
        connection.transport = transport  # uvloop calls connection_made only later
        return connection

    def give_back(self, key: tuple[str, int, bool], connection: _Connection) -> None:
        """Ends an answer: its connection goes back to the pool if it can carry another request."""
        self.slots.release()
        if not connection.finish():
            connection.transport.close()  # type: ignore[union-attr]
            return
        now = connection.loop.time()
        connection.idle_since = now
        idle = self.idle.setdefault(key, deque())
        idle.append(connection)
        while idle and (len(idle) > self.pool_size or now - idle[0].idle_since >= self.keepalive):
            idle.popleft().transport.close()  # type: ignore[union-attr]

    async def close(self) -> None:
        for idle in self.idle.values():
            while idle:
                idle.pop().transport.close()  # type: ignore[union-attr]
