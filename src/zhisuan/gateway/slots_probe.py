"""Is a replica busy, or hung? Asked of the engine itself when a request got no byte in a whole
first-byte window and the replica sent this gateway no byte of any other request either.

llama-server answers ``GET /slots`` (with the replica's key) from its inference loop, between two
batches: an answer proves the loop turns, and a slot with ``"is_processing": true`` says it works on
something — requests of another gateway sharing the replica, or a long prompt. A hung engine (loop
wedged, process stopped) answers nothing; an engine without the endpoint (404, ``--no-slots``, other
engines) gives no proof. Only ``busy`` = an answer within the timeout naming a processing slot.

One probe at a time per replica: the requests of a queue time out together, they share its answer,
and the answer holds ``FRESH_S`` for the timers that fire just after.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

FRESH_S = 1.0
PROBE_TIMEOUT_S = 5.0  # at most; a shorter first-byte window bounds it too


def any_slot_processing(slots: Any) -> bool:
    return isinstance(slots, list) and any(isinstance(s, dict) and s.get("is_processing") is True for s in slots)


class SlotsProbe:
    def __init__(self, host: str, port: int, secret: str | None) -> None:
        self.url = f"http://{host}:{port}/slots"
        self.headers = {"authorization": f"Bearer {secret}"} if secret else {}
        self.running: asyncio.Task[bool] | None = None
        self.answered_at = -FRESH_S
        self.answer = False

    async def busy(self, timeout_s: float) -> bool:
        """True when the engine proves it is alive and working (see the module's docstring)."""
        if time.monotonic() - self.answered_at < FRESH_S:
            return self.answer
        if self.running is None or self.running.done():
            self.running = asyncio.ensure_future(self._ask(min(timeout_s, PROBE_TIMEOUT_S)))
        task = self.running
        try:
            return await asyncio.shield(task)  # a cancelled waiter does not cancel the others' probe
        finally:
            if self.running is task and task.done():
                self.running = None

    def close(self) -> None:
        if self.running is not None:
            self.running.cancel()  # its waiters see a cancelled probe: no proof, the request times out
            self.running = None

    async def _ask(self, timeout_s: float) -> bool:
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.get(self.url, headers=self.headers)
            answer = response.status_code == 200 and any_slot_processing(response.json())
        except (httpx.HTTPError, ValueError):  # unreachable, silent, not JSON: no proof of life
            answer = False
        self.answer, self.answered_at = answer, time.monotonic()
        return answer
