"""An upstream connection that closed before the request was written fails fast and retryably.

Regression: the replica closed the connection between connect and send; ``connection_lost`` ran with
no exchange to fail, the write to the closed transport was dropped, and the request hung.
"""

from __future__ import annotations

import asyncio

from zhisuan.gateway.upstream import Exchange, UpstreamConnection, UpstreamPool


class Recorder(Exchange):
    def __init__(self) -> None:
        self.errors: list[tuple[Exception, bool]] = []

    def on_head(self, status: int) -> None:
        raise AssertionError("no response expected")

    def on_body(self, data: bytes) -> None:
        raise AssertionError("no response expected")

    def on_complete(self) -> None:
        raise AssertionError("no response expected")

    def on_error(self, exc: Exception, before_first_byte: bool) -> None:
        self.errors.append((exc, before_first_byte))


def test_send_on_a_connection_closed_by_the_upstream_fails_before_first_byte() -> None:
    async def scenario() -> list[tuple[Exception, bool]]:
        async def drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool("127.0.0.1", port)
        connection: UpstreamConnection = await pool.acquire()
        for _ in range(50):  # let the upstream's close arrive before we send
            if connection.closed:
                break
            await asyncio.sleep(0.01)
        assert connection.closed
        recorder = Recorder()
        connection.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", recorder)
        server.close()
        await server.wait_closed()
        return recorder.errors

    errors = asyncio.run(scenario())
    assert len(errors) == 1 and errors[0][1] is True and isinstance(errors[0][0], ConnectionResetError)
