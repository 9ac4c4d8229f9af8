"""Metering check: N requests through a running zhisuan gateway — non-streaming, streamed, and
streams the client aborts part-way — then the usage records in the gateway's SQLite sink must match
them exactly: one record per request (by ``x-request-id``), none extra, none twice, with the
engine's token counts for completed requests and the gateway's count for aborted ones.

Used by bench_gateway.py (``--meter N``); needs a model whose upstream streams slowly enough for an
abort to land mid-stream (``fake_upstream.py --chunk-delay-ms``).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

PROMPT = "Count the requests, please."  # 27 characters → an estimate of 7 prompt tokens
MAX_TOKENS = 6
ABORT_AFTER = 2  # content chunks the client reads before it hangs up


def send(client: httpx.Client, url: str, model: str, kind: str) -> tuple[str, dict[str, Any]]:
    """One request of ``kind`` (plain | stream | abort); returns its request id and the usage record it
    must leave: the usage the client was shown, or for an abort what it read before hanging up."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
                            "max_tokens": MAX_TOKENS, "stream": kind != "plain"}
    if kind == "plain":
        r = client.post(url, json=body)
        r.raise_for_status()
        u = r.json()["usage"]
        return r.headers["x-request-id"], {"status": "ok", "prompt": u["prompt_tokens"],
                                           "completion": u["completion_tokens"], "stream": 0}
    if kind == "stream":
        body["stream_options"] = {"include_usage": True}
    seen, usage = 0, None
    with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        rid = r.headers["x-request-id"]
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                seen += 1
                if kind == "abort" and seen == ABORT_AFTER:
                    break  # leaving the block closes the connection mid-stream
    if kind == "stream":
        assert usage is not None, "the client asked for a usage chunk"
        return rid, {"status": "ok", "prompt": usage["prompt_tokens"], "completion": usage["completion_tokens"],
                     "stream": 1}
    return rid, {"status": "client_disconnected", "prompt": math.ceil(len(PROMPT) / 4), "completion": seen,
                 "stream": 1}


def records(sink: Path, key_id: str) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(sink) as db:
        rows = db.execute("SELECT event_id, status, prompt_tokens, completion_tokens, stream FROM usage_events"
                          " WHERE key_id = ?", (key_id,)).fetchall()
    return {r[0]: r[1:] for r in rows}


def mismatch(rid: str, want: dict[str, Any], got: tuple[Any, ...] | None) -> str | None:
    if got is None:
        return f"{rid}: no usage record"
    status, prompt, completion, stream = got
    if status != want["status"] or stream != want["stream"]:
        return f"{rid}: {got} vs {want}"
    if want["prompt"] is not None and prompt != want["prompt"]:
        return f"{rid}: prompt {prompt} vs {want['prompt']}"
    if want["status"] == "ok" and completion != want["completion"]:
        return f"{rid}: completion {completion} vs {want['completion']}"
    # Aborted: billed for what the engine had sent when the client left — at least what it read.
    if want["status"] != "ok" and not want["completion"] <= completion <= MAX_TOKENS:
        return f"{rid}: aborted completion {completion} outside [{want['completion']}, {MAX_TOKENS}]"
    return None


def run_check(base_url: str, token: str, key_id: str, model: str, sink: Path, n: int) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/chat/completions"
    kinds = ["plain", "stream", "abort"]
    expected: dict[str, dict[str, Any]] = {}
    with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
        for i in range(n):
            rid, want = send(client, url, model, kinds[i % 3])
            expected[rid] = want
    deadline = time.monotonic() + 30
    while len(got := records(sink, key_id)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    problems = [p for rid, want in expected.items() if (p := mismatch(rid, want, got.get(rid)))]
    extra = sorted(set(got) - set(expected))
    return {"requests": n, "records": len(got), "plain": sum(1 for k in range(n) if k % 3 == 0),
            "streamed": sum(1 for k in range(n) if k % 3 == 1), "aborted": sum(1 for k in range(n) if k % 3 == 2),
            "prompt_tokens": sum(r[1] for r in got.values()), "completion_tokens": sum(r[2] for r in got.values()),
            "mismatches": problems[:10], "extra_records": extra[:10],
            "exact": not problems and not extra and len(got) == n}
