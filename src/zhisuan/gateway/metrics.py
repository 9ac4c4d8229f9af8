"""Gateway metrics per model and replica, kept in plain counters (a few ns per update on the hot
path) and rendered in the Prometheus text format at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(BUCKETS, v)] += 1
        self.total += v
        self.n += 1


@dataclass
class ReplicaStats:
    requests: dict[str, int] = field(default_factory=dict)  # by HTTP status
    errors: dict[str, int] = field(default_factory=dict)  # by kind
    # First-byte windows given again to requests queued at a busy replica (not errors: proxy.py)
    queued_windows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: Histogram = field(default_factory=Histogram)
    latency: Histogram = field(default_factory=Histogram)


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


def _histogram_lines(name: str, h: Histogram, **labels: str) -> list[str]:
    """Prometheus text lines of one histogram series: cumulative buckets, sum and count."""
    lines, cum = [], 0
    for bound, c in zip((*BUCKETS, float("inf")), h.counts, strict=True):
        cum += c
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f"{name}_bucket{_labels(**labels, le=le)} {cum}")
    lines.append(f"{name}_sum{_labels(**labels)} {h.total}")
    lines.append(f"{name}_count{_labels(**labels)} {h.n}")
    return lines


class GatewayMetrics:
    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], ReplicaStats] = {}
        self.rejected: dict[tuple[str, str], int] = {}  # (model, reason) → count
        # (model, replica) → in-flight requests; filled by the router at scrape time.
        self.outstanding: Callable[[], Iterable[tuple[str, str, int, bool]]] = lambda: ()
        # model label → requests waiting in the gateway's own queue (router.queue_lengths), at scrape time;
        # and how long those that got a slot through it waited (arrival → slot), by model label.
        self.queue_lengths: Callable[[], dict[str, int]] = dict
        self.queue_wait: dict[str, Histogram] = {}

    def of(self, model: str, replica: str) -> ReplicaStats:
        s = self.stats.get((model, replica))
        if s is None:
            s = self.stats[(model, replica)] = ReplicaStats()
        return s

    def queue_waited(self, model: str, seconds: float) -> None:
        h = self.queue_wait.get(model)
        if h is None:
            h = self.queue_wait[model] = Histogram()
        h.observe(seconds)

    def reject(self, model: str, reason: str) -> None:
        k = (model, reason)
        self.rejected[k] = self.rejected.get(k, 0) + 1

    def render(self) -> bytes:
        out: list[str] = []
        add = out.append
        add("# TYPE zhisuan_gateway_requests_total counter")
        for (m, r), s in self.stats.items():
            for status, n in s.requests.items():
                add(f"zhisuan_gateway_requests_total{_labels(model=m, replica=r, status=status)} {n}")
        add("# TYPE zhisuan_gateway_errors_total counter")
        for (m, r), s in self.stats.items():
            for kind, n in s.errors.items():
                add(f"zhisuan_gateway_errors_total{_labels(model=m, replica=r, kind=kind)} {n}")
        add("# TYPE zhisuan_gateway_queued_windows_total counter")
        for (m, r), s in self.stats.items():
            if s.queued_windows:
                add(f"zhisuan_gateway_queued_windows_total{_labels(model=m, replica=r)} {s.queued_windows}")
        add("# TYPE zhisuan_gateway_tokens_total counter")
        for (m, r), s in self.stats.items():
            add(f"zhisuan_gateway_tokens_total{_labels(model=m, replica=r, type='prompt')} {s.prompt_tokens}")
            add(f"zhisuan_gateway_tokens_total{_labels(model=m, replica=r, type='completion')} {s.completion_tokens}")
        for name, attr in (("zhisuan_gateway_ttft_seconds", "ttft"), ("zhisuan_gateway_latency_seconds", "latency")):
            add(f"# TYPE {name} histogram")
            for (m, r), s in self.stats.items():
                out += _histogram_lines(name, getattr(s, attr), model=m, replica=r)
        add("# TYPE zhisuan_gateway_queue_depth gauge")
        add("# TYPE zhisuan_gateway_replica_healthy gauge")
        for m, r, n, healthy in self.outstanding():
            add(f"zhisuan_gateway_queue_depth{_labels(model=m, replica=r)} {n}")
            add(f"zhisuan_gateway_replica_healthy{_labels(model=m, replica=r)} {int(healthy)}")
        add("# TYPE zhisuan_gateway_queue_length gauge")
        for m, n in self.queue_lengths().items():
            add(f"zhisuan_gateway_queue_length{_labels(model=m)} {n}")
        add("# TYPE zhisuan_gateway_queue_wait_seconds histogram")
        for m, h in self.queue_wait.items():
            out += _histogram_lines("zhisuan_gateway_queue_wait_seconds", h, model=m)
        add("# TYPE zhisuan_gateway_rejected_total counter")
        for (m, reason), n in self.rejected.items():
            add(f"zhisuan_gateway_rejected_total{_labels(model=m, reason=reason)} {n}")
        return ("\n".join(out) + "\n").encode()
