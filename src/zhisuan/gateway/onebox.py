"""One-box MaaS: the gateway plus a supervised llama.cpp replica of SmolLM2-135M-Instruct, with the
platform's own API keys — what ``zhisuan up`` starts so that /v1 works out of the box.

    box = await start_onebox(sessions, data_dir, port=8421)   # on the control plane's event loop
    ...                                                      # OpenAI clients use box.base_url
    await box.stop()                                         # drains the replica, ships usage

Until the billing ingestion API exists, usage events go to ``<data_dir>/usage.sqlite`` (idempotent
on event id); ``sink=`` plugs the billing sink in. Keys need the ``inference`` scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhisuan.engines.deployment import Deployment
from zhisuan.engines.models import smollm2_spec
from zhisuan.engines.spec import DeviceAssignment
from zhisuan.engines.supervisor import SupervisorPolicy
from zhisuan.gateway.db_limits import limits_from_db
from zhisuan.gateway.db_prices import DbPrices
from zhisuan.gateway.keys import DbKeyAuthority, LimitsFor
from zhisuan.gateway.limits import PriceFn
from zhisuan.gateway.protocols import UsageSink
from zhisuan.gateway.server import GatewayConfig, GatewayServer


@dataclass
class OneBox:
    server: GatewayServer
    deployments: list[Deployment]

    @property
    def base_url(self) -> str:
        return self.server.base_url

    async def stop(self) -> None:
        for d in self.deployments:
            await d.stop()
        await self.server.stop()
        if isinstance(self.server.keys, DbKeyAuthority):
            self.server.keys.close()


async def start_onebox(sessions: Any, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                       redis_url: str | None = None, sink: UsageSink | None = None,
                       limits_for: LimitsFor | None = None, deploy_smollm2: bool = True,
                       threads: int | None = None, policy: SupervisorPolicy | None = None,
                       price_fn: PriceFn | None = None) -> OneBox:
    data_dir = Path(data_dir)
    config = GatewayConfig(spool_dir=data_dir / "usage-spool", host=host, port=port, redis_url=redis_url,
                           sink=f"sqlite:{data_dir / 'usage.sqlite'}")
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = DbKeyAuthority(sessions, limits_for=limits_for or limits_from_db(sessions))
    if price_fn is None:  # money budgets priced from the default price book (gateway/db_prices.py)
        price_fn = prices = DbPrices(sessions)
        await prices.load()
    server = GatewayServer(config, keys=keys, sink=sink, price=price_fn)
    await server.start()
    deployments = []
    spec = smollm2_spec() if deploy_smollm2 else None
    if spec is not None:
        dep = Deployment(spec, [DeviceAssignment(port=0, threads=threads, parallel=2)], server.router,
                         data_dir / "logs", policy=policy)
        await dep.start()
        deployments.append(dep)
    return OneBox(server, deployments)
