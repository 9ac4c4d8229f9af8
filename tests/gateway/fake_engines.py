"""FAKE engines for fault injection in the gateway's first-byte timeout: what a real engine does only
under a load or a fault this machine cannot make on demand.

``FakeQueueingEngine`` serves one request at a time, slowly, like llama-server with one slot: the
others wait in its queue and get no byte until their turn (llama-server sends a stream's head with
its first token). Each answer streams ``tokens`` chunks ``token_s`` apart (or comes whole after that
time when not streaming). ``hang_after=n``: after n answers it stops answering anything (a wedged
engine whose socket still accepts). ``FakeQueueingEngine(hang_after=0)`` is a hung engine.
``GET /slots`` answers like llama-server's (from its inference loop: nothing once hung; ``slots=False``
an engine without it, 404); ``/health`` always answers (llama-server's HTTP threads do). A request's
``max_tokens`` sets its length.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gateway.recording_upstream import send_json

USAGE = {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}


class FakeQueueingEngine:
    def __init__(self, *, tokens: int = 5, token_s: float = 0.1, hang_after: int | None = None,
                 slots: bool = True) -> None:
        self.tokens = tokens
        self.slots = slots
        self.token_s = token_s
        self.hang_after = hang_after
        self.answered = 0
        self.slot = threading.Lock()  # one request generates at a time; the rest queue
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _hung(self) -> bool:
        return self.hang_after is not None and self.answered >= self.hang_after

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/slots":
                    self._send_json({"status": "ok"})
                elif not engine.slots:
                    self._send_json({"error": {"message": "not found"}}, 404)
                elif engine._hung():
                    engine.stopping.wait()
                else:
                    self._send_json([{"id": 0, "is_processing": engine.slot.locked()}])

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with engine.slot:
                    if engine._hung():
                        engine.stopping.wait()  # holds the slot: everything behind it waits too
                        return
                    try:
                        self._answer(body)
                    except (BrokenPipeError, ConnectionResetError):  # the gateway gave up on it
                        return
                    engine.answered += 1

            def _answer(self, body: dict[str, Any]) -> None:
                tokens = int(body.get("max_tokens") or engine.tokens)
                if body.get("stream"):
                    self._stream(tokens, bool((body.get("stream_options") or {}).get("include_usage")))
                else:
                    time.sleep(tokens * engine.token_s)
                    self._send_json({"id": "fake-q", "object": "chat.completion", "created": 0,
                                     "model": body.get("model"), "usage": self._usage(tokens),
                                     "choices": [{"index": 0, "finish_reason": "length",
                                                  "message": {"role": "assistant",
                                                              "content": "tok " * tokens}}]})

            def _usage(self, tokens: int) -> dict[str, int]:
                return {**USAGE, "completion_tokens": tokens, "total_tokens": 3 + tokens}

            def _stream(self, tokens: int, usage: bool) -> None:
                time.sleep(engine.token_s)  # the prompt, then the first token: only now the head goes out
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i in range(tokens):
                    if i:
                        time.sleep(engine.token_s)
                    self._event({"choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]})
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
                if usage:
                    self._event({"choices": [], "usage": self._usage(tokens)})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, obj: dict[str, Any]) -> None:
                obj = {"id": "fake-q", "object": "chat.completion.chunk", "created": 0, "model": "m", **obj}
                self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _send_json(self, obj: Any, status: int = 200) -> None:
                send_json(self, obj, status)

        return Handler

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
