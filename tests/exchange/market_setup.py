"""Hardware, counterparties and orders for the exchange tests (plain helpers over the ``world`` fixture).

The world's clock reads 2026-11-01 08:00 UTC. Providers p1 (site s1) and p2 (site s2), both in
cn-east-1; tenants acme and beta (and gamma, added here).
"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, issue

WINDOW = {"start": "2026-11-02T00:00:00Z", "end": "2027-02-01T00:00:00Z"}
STARTS = {"earliest_start": "2026-11-02T00:00:00Z", "latest_start": "2026-11-10T00:00:00Z"}


def declare_nodes(api: Api, site: str, prefix: str, model: str, count: int, per_node: int = 8) -> list[str]:
    names = []
    for n in range(1, count + 1):
        body = {"site": site, "name": f"{prefix}-{n}", "cpu_cores": 128, "memory_mib": 1_024_000,
                "accelerators": [{"model": model, "count": per_node}]}
        api.ok("POST", "/nodes", "operator", body)
        names.append(f"{site}/{prefix}-{n}")
    return names


def add_tenant(api: Api, name: str) -> None:
    api.ok("POST", "/tenants", "operator", {"name": name})
    api.keys[name] = issue(api, f"{name}-user", "tenant", tenant=name)


def fleet(api: Api) -> dict[str, list[str]]:
    """s1 (p1): 8 servers of 8 H100 SXM and 2 of 8 H800; s2 (p2): 4 servers of 8 Ascend 910B2."""
    return {"h100": declare_nodes(api, "s1", "h100", "h100-sxm", 8),
            "h800": declare_nodes(api, "s1", "h800", "h800", 2),
            "910b": declare_nodes(api, "s2", "b", "ascend-910b2", 4)}


def offer(api: Api, who: str, **body: Any) -> dict[str, Any]:
    return api.ok("POST", "/exchange/offers", who, {**WINDOW, "min_term_h": 24, **body})  # type: ignore[no-any-return]


def request(api: Api, who: str, **body: Any) -> dict[str, Any]:
    return api.ok("POST", "/exchange/requests", who, {**STARTS, "duration_h": 720, **body})  # type: ignore[no-any-return]


def publish_scenario(api: Api) -> dict[str, dict[str, Any]]:
    """The issue's scenario: two providers publish offers, three tenants publish requests."""
    nodes = fleet(api)
    add_tenant(api, "gamma")
    return {
        "h100": offer(api, "p1", site="s1", nodes=nodes["h100"], pricing_model="server_month",
                      floor_price="100000"),
        "h800": offer(api, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="12"),
        "910b": offer(api, "p2", site="s2", model="ascend-910b2", devices=32, pricing_model="pflops_year",
                      floor_price="150000"),
        "gang": request(api, "acme", amount=8, unit="servers", models=["h100-sxm"], gang=True, max_price="25"),
        "flex": request(api, "beta", amount=8, unit="h100_eq", models=["h800", "ascend-910b2"], max_price="20"),
        "small": request(api, "gamma", amount=4, models=["h800"], max_price="20", regions=["cn-east-1"]),
        "cheap": request(api, "gamma", amount=8, models=["h100-sxm"], max_price="5"),
    }
