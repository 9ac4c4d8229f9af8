"""A tiny OpenAI-shaped engine for tests that must see what the gateway sends upstream: it records
each request's ``Authorization`` header and answers with its own name as the completion, so a test
can tell which replica served a request. Optionally it refuses requests without its ``secret``, like
an engine started with an API key."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def send_json(handler: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
    """Answer ``obj`` as a JSON body with its length (the FAKE upstreams' plain answers)."""
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)

class RecordingUpstream:
    def __init__(self, name: str, secret: str | None = None) -> None:
        self.name = name
        self.secret = secret
        self.auth_headers: list[str | None] = []
        self.bodies: list[dict[str, Any]] = []
        self.delay_s = 0.0  # seconds before each answer's head: a slow (queueing) engine
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                auth = self.headers.get("authorization")
                upstream.auth_headers.append(auth)
                upstream.bodies.append(body)
                if upstream.delay_s:
                    time.sleep(upstream.delay_s)
                if upstream.secret is not None and auth != f"Bearer {upstream.secret}":
                    self._send(401, {"error": {"message": "Invalid API Key", "type": "authentication_error"}})
                    return
                usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                if self.path.endswith("/embeddings"):
                    self._send(200, {"object": "list", "data": [{"object": "embedding", "index": 0,
                                                                 "embedding": [0.5]}], "model": upstream.name,
                                     "usage": usage})
                    return
                self._send(200, {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": upstream.name,
                                 "choices": [{"index": 0, "finish_reason": "stop", "text": upstream.name,
                                              "message": {"role": "assistant", "content": upstream.name}}],
                                 "usage": usage})

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                send_json(self, obj, status)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
