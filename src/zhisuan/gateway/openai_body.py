"""OpenAI request and response bodies as the gateway reads and writes them: error shapes, model cards,
the ``usage`` object, and the bounds of a request's tokens (for budget reservations)."""

from __future__ import annotations

import json
import math
from typing import Any

from zhisuan.gateway.router import PRIVATE_LABEL, ModelRoute

_decoder = json.JSONDecoder()


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


def model_not_found(model: str) -> bytes:
    return error_body(f"The model '{model}' does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found", "model")


def model_not_running(model: str) -> bytes:
    return error_body(f"The model '{model}' has no running replica right now; try again later.",
                      "service_unavailable", "model_not_running", "model")


def model_card(route: ModelRoute) -> dict[str, Any]:
    owner = "zhisuan" if route.tenant_id is None else f"tenant-{route.tenant_id}"
    return {"id": route.name, "object": "model", "created": route.created, "owned_by": owner}


def metric_label(route: ModelRoute, model: str) -> str:
    """Public models are named in /metrics; private ones are not."""
    return model if route.tenant_id is None else PRIVATE_LABEL


def extract_usage(body: bytes) -> dict[str, Any] | None:
    """The ``usage`` object of an OpenAI response, parsed alone (cheaper than the whole body)."""
    i = body.rfind(b'"usage"')
    if i < 0:
        return None
    j = body.find(b"{", i)
    k = body.find(b"null", i)
    if j < 0 or (0 <= k < j):
        return None
    try:
        obj, _ = _decoder.raw_decode(body[j:].decode())
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of the text in a prompt, message content or embedding input (token ids count 1).
    Walks nested lists with a stack, not recursion: a client controls the nesting."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            n += len(v.encode())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.append(v.get("text"))
        elif isinstance(v, int):
            n += 1
    return n


def prompt_text_bytes(body: dict[str, Any]) -> int:
    """UTF-8 bytes of a request's prompt text: a byte-level BPE or byte-fallback tokenizer never makes
    more tokens of a text than it has bytes (what the chat template adds is the route's overhead)."""
    messages = body.get("messages")
    n = 0
    if isinstance(messages, list):
        n += sum(_text_bytes(m.get("content")) for m in messages if isinstance(m, dict))
    return n + _text_bytes(body.get("prompt")) + _text_bytes(body.get("input"))


def completion_limit(body: dict[str, Any]) -> int | None | bool:
    """The request's ``max_tokens`` (or ``max_completion_tokens``): an int, None when absent, False
    when it is not a positive integer."""
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return False
    return value


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    text = 0
    for m in body.get("messages") or ():
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            text += len(c)
        elif isinstance(c, list):
            text += sum(len(t) for part in c if isinstance(part, dict) and isinstance(t := part.get("text"), str))
    p = body.get("prompt")
    if isinstance(p, str):
        text += len(p)
    return max(1, math.ceil(text / 4))
