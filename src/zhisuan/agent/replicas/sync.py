"""The node agent's half of model services: report the replicas it runs, run the ones assigned to it.

One ``step`` (every few seconds, from the agent's main loop): sample each engine's load, send
``POST /api/v1/agent/replicas`` with every replica's state, port, restarts, load and secret and the
address gateways reach this node at, and apply the answer — the replicas placement put on this node
(``ReplicaHost.apply``). An unreachable control plane changes nothing here: the engines keep
serving (gateways keep their last known replica set) and the next step reports again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from zhisuan.agent.replicas.host import ReplicaHost

log = logging.getLogger("zhisuan.agent.replicas")

# (report body) -> the answer: {"replicas": [assignment…], "refused": […]}
Exchange = Callable[[dict[str, Any]], dict[str, Any]]


class ReplicaSync:
    def __init__(self, host: ReplicaHost, node: str, exchange: Exchange) -> None:
        self.host, self.node, self.exchange = host, node, exchange

    def step(self) -> None:
        self.host.sample()
        body = {"node": self.node, "address": self.host.address, "replicas": self.host.reports()}
        try:
            answer = self.exchange(body)
        except (httpx.TransportError, RuntimeError) as error:  # AgentError is a RuntimeError
            log.warning("replicas not synced (%s); retrying", error)
            return
        if answer.get("refused"):
            log.warning("the control plane refused reports about replicas %s (not placed on this node)",
                        answer["refused"])
        try:
            self.host.apply(list(answer.get("replicas") or []))
        except Exception:
            log.exception("could not apply the replicas assigned to this node; retrying")


def http_exchange(client: httpx.Client) -> Exchange:
    from zhisuan.agent.runner import _post

    def exchange(body: dict[str, Any]) -> dict[str, Any]:
        return _post(client, "/agent/replicas", body)

    return exchange


@contextlib.contextmanager
def replica_sync(client: httpx.Client, node: str | None, replicas_dir: Path | None,
                 address: str = "127.0.0.1") -> Iterator[ReplicaSync | None]:
    """The agent's replica sync for its life (None when ``replicas_dir`` is None: replicas off); its
    engines are stopped when it ends."""
    if replicas_dir is None or node is None:
        yield None
        return
    host = ReplicaHost(replicas_dir, address)
    try:
        yield ReplicaSync(host, node, http_exchange(client))
    finally:
        host.close()
