"""A fast fake OpenAI-compatible engine (upstream) for the gateway benchmark and tests.

    python benchmarks/gateway/fake_upstream.py --port 9001 [--delay-ms 0] [--chunk-delay-ms 0]

Answers /v1/chat/completions, /v1/completions (streaming and not, with ``usage`` — in a final chunk
when ``stream_options.include_usage``), /v1/embeddings, /v1/models and /health with canned text:
``max_tokens`` (default 5) tokens of "tok ", prompt_tokens = 7. raw asyncio + httptools + uvloop,
so it costs the benchmark's shared core as little as possible. ``--close-before-response`` makes it
accept a connection and drop it without a byte (the "fails before the first byte" case);
``--stall`` makes it read completion and embedding requests and never answer them (/health still
answers), the case of the gateway's first-byte timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httptools

PROMPT_TOKENS = 7
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chat_body(model: str, n: int, completion: bool) -> bytes:
    text = "tok " * n
    if completion:
        choice = {"index": 0, "text": text, "finish_reason": "length", "logprobs": None}
        obj = "text_completion"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        obj = "chat.completion"
    return json.dumps({"id": "fake-1", "object": obj, "created": int(time.time()), "model": model,
                       "choices": [choice],
                       "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n,
                                 "total_tokens": PROMPT_TOKENS + n}}).encode()


def stream_events(model: str, n: int, completion: bool, usage: bool) -> list[bytes]:
    created = int(time.time())
    base = {"id": "fake-1", "object": "text_completion" if completion else "chat.completion.chunk",
            "created": created, "model": model}

    def ev(choices: list[dict[str, object]], **extra: object) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    out = []
    if not completion:
        out.append(ev([{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]))
    for _ in range(n):
        if completion:
            out.append(ev([{"index": 0, "text": "tok ", "finish_reason": None}]))
        else:
            out.append(ev([{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]))
    if completion:
        out.append(ev([{"index": 0, "text": "", "finish_reason": "length"}]))
    else:
        out.append(ev([{"index": 0, "delta": {}, "finish_reason": "length"}]))
    if usage:
        out.append(ev([], usage={"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n,
                                 "total_tokens": PROMPT_TOKENS + n}))
    out.append(b"data: [DONE]\n\n")
    return out


class Upstream(asyncio.Protocol):
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.opts.close_before_response:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url
        if path in (b"/health", b"/v1/models"):
            self.respond(b'{"status":"ok"}')
            return
        if self.opts.stall:
            return  # keeps the connection open and says nothing
        req = json.loads(b"".join(self.body) or b"{}")
        model = req.get("model", "fake")
        n = int(req.get("max_tokens") or 5)
        if path == b"/v1/embeddings":
            body = json.dumps({"object": "list", "model": model,
                               "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                               "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}}).encode()
            self.later(self.respond, body)
            return
        completion = path == b"/v1/completions"
        if path not in (b"/v1/chat/completions", b"/v1/completions"):
            self.respond(b'{"error":{"message":"not found","type":"invalid_request_error"}}', 404)
            return
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            events = stream_events(model, n, completion, usage)
            if self.opts.chunk_delay_ms:
                asyncio.ensure_future(self.slow_stream(events))
            else:
                self.later(self.stream, events)
        else:
            self.later(self.respond, chat_body(model, n, completion))

    def later(self, fn: object, *args: object) -> None:
        if self.opts.delay_ms:
            asyncio.get_running_loop().call_later(self.opts.delay_ms / 1000, fn, *args)  # type: ignore[arg-type]
        else:
            fn(*args)  # type: ignore[operator]

    def respond(self, body: bytes, status: int = 200) -> None:
        if self.transport is None or self.closed:
            return
        self.transport.write(b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (status, len(body), body))

    def stream(self, events: list[bytes]) -> None:
        if self.transport is None or self.closed:
            return
        parts = [SSE_HEAD]
        for e in events:
            parts.append(b"%x\r\n%s\r\n" % (len(e), e))
        parts.append(b"0\r\n\r\n")
        self.transport.write(b"".join(parts))

    async def slow_stream(self, events: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.write(SSE_HEAD)
        for e in events:
            if self.closed:
                return
            self.transport.write(b"%x\r\n%s\r\n" % (len(e), e))
            await asyncio.sleep(self.opts.chunk_delay_ms / 1000)
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")


async def main_async(opts: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(opts), opts.host, opts.port, backlog=2048)
    print(f"fake upstream listening on {opts.host}:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--chunk-delay-ms", type=float, default=0.0)
    p.add_argument("--close-before-response", action="store_true")
    p.add_argument("--stall", action="store_true")
    opts = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(opts))


if __name__ == "__main__":
    main()
