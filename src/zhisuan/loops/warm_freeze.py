"""After the start-up grace, what the process's first minute built is moved out of the collector's reach.

``zhisuan up`` freezes everything built before serving (``api.app.freeze_startup_objects``). What
the first requests build lives as long: modules and models imported on first use, SQLAlchemy's
compiled statements, the known beats and key grants of the whole fleet. Every full collection walked
them again: on a loaded machine one every 20–70 s, 30–265 ms each, in the middle of the beats
(BENCHMARKS.md, "Heartbeats: the 30 s windows and two workers"). Once the start-up grace is over
(every beating node has been heard), one collection — at a moment chosen here, not in a burst of
first beats — and a second freeze leave later full collections only what is younger.

Only in a process that froze at start-up (``gc.get_freeze_count() > 0``: ``zhisuan up``); a process
that builds many apps (the tests) would keep every frozen one alive. What is frozen and later
dropped (a forgotten known beat) is never collected: bounded by the fleet, once.
"""

from __future__ import annotations

import asyncio
import gc
import logging

log = logging.getLogger("zhisuan")


def freeze_warm_objects() -> int:
    """Collect, then freeze what survived; the number of objects now frozen (0: not a frozen process)."""
    if gc.get_freeze_count() == 0:
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def freeze_after(delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    frozen = await asyncio.to_thread(freeze_warm_objects)
    if frozen:
        log.info("start-up grace over: %d objects frozen", frozen)
