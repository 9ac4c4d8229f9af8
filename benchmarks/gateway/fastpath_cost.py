"""CPU cost of a request's slot on the fast path (nobody waiting, a free slot), before/after, in one run.

What each forwarded request does with the router around its exchange: ``pick`` a replica (3 replicas,
``slots`` 64, in-flight counts spread), take it, give it back — before the gateway's queue
``outstanding += 1 … -= 1``, after it ``outstanding += 1``, the party's turn stamped
(``FairQueue.admitted``) ``… route.release()``, plus the queue-length check (``ModelRoute.take_free``
where the code has it, else those steps inline as the first version of the queue had them).
Each version runs in its own process (``--before-src``: a source tree of the code before, e.g. a
``git archive <commit> src`` unpacked), alternately, ``--rounds`` times; the median ns per request is printed.

    uv run --no-sync python benchmarks/gateway/fastpath_cost.py --before-src /tmp/before/src --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import time
from zhisuan.gateway.router import Router
router = Router()
for i in range(3):
    router.add_replica("m", f"r{i}", "127.0.0.1", 9000 + i)
    r = router.by_id[f"r{i}"]
    if hasattr(r, "slots"):
        r.slots = 64
    r.outstanding = 10 + i
route = router.get("m")
queued = hasattr(route, "queue")
take_free = getattr(route, "take_free", None)  # the gateway's fast path since it became one method
n = __N__
tried = set()
begin = time.process_time_ns()
for _ in range(n):
    if take_free is not None:
        route.release(take_free("tenant-1", tried))
    elif queued:
        replica = route.pick(tried) if not route.queue.length else None
        replica.outstanding += 1
        route.queue.admitted("tenant-1")
        route.release(replica)
    else:
        replica = route.pick(tried)
        replica.outstanding += 1
        replica.outstanding -= 1
print((time.process_time_ns() - begin) / n)
"""


def measure(src: Path | None, n: int) -> float:
    env = os.environ | ({"PYTHONPATH": str(src.resolve())} if src is not None else {})
    out = subprocess.run([sys.executable, "-c", CHILD.replace("__N__", str(n))], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--before-src", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=300_000)
    a = p.parse_args()
    runs: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(a.rounds):
        for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
            runs[name].append(measure(a.before_src if name == "before" else None, a.n))
    print(json.dumps({"ns_per_request": {k: round(statistics.median(v), 1) for k, v in runs.items()},
                      "rounds": {k: [round(x, 1) for x in v] for k, v in runs.items()},
                      "load_avg": os.getloadavg()}))


if __name__ == "__main__":
    main()
