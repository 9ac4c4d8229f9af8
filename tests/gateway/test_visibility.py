"""Private model services: a tenant's own deployments are visible and callable only with that tenant's
keys; to every other key such a name answers exactly like one that never existed. Routes are kept apart
per owner, the caller's own private service wins over a public one of the same name, the gateway presents
the replica's engine key upstream, and /metrics never names a private model or replica."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.recording_upstream import RecordingUpstream
from zhisuan.gateway.server import GatewayServer

ALICE, BOB, CAROL = "sk-test-alice", "sk-test-bob", "sk-test-carol"  # tenants 1, 2, 3
KEYS = [{"token": ALICE, "key_id": "alice", "tenant_id": "tenant-1", "owner": 1},
        {"token": BOB, "key_id": "bob", "tenant_id": "tenant-2", "owner": 2},
        {"token": CAROL, "key_id": "carol", "tenant_id": "tenant-3", "owner": 3}]
ENDPOINTS = [("/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
             ("/completions", {"prompt": "hi"}), ("/embeddings", {"input": "hi"})]


@pytest.fixture
def upstreams() -> Iterator[Callable[..., RecordingUpstream]]:
    made: list[RecordingUpstream] = []

    def make(name: str, secret: str | None = None) -> RecordingUpstream:
        made.append(RecordingUpstream(name, secret))
        return made[-1]

    yield make
    for u in made:
        u.close()


def replica(rid: str, up: RecordingUpstream, tenant_id: int | None = None, secret: str | None = None) -> dict[str, Any]:
    return {"id": rid, "host": "127.0.0.1", "port": up.port, "tenant_id": tenant_id, "secret": secret}


def post(server: GatewayServer, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def get(server: GatewayServer, token: str, path: str) -> httpx.Response:
    return httpx.get(server.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_private_model_answers_other_tenants_like_a_missing_one(gateway: Any, upstreams: Any) -> None:
    public, private = upstreams("public"), upstreams("bobs", secret="engine-key")
    server = gateway({"shared": [replica("shared-0", public)],
                      "bobs-model": [replica("dep-7-r0", private, tenant_id=2, secret="engine-key")]}, KEYS)
    for path, extra in ENDPOINTS:
        hidden = post(server, ALICE, path, {"model": "bobs-model", **extra})
        missing = post(server, ALICE, path, {"model": "never-was", **extra})
        assert hidden.status_code == missing.status_code == 404
        assert hidden.content == missing.content.replace(b"never-was", b"bobs-model")
        assert post(server, BOB, path, {"model": "bobs-model", **extra}).status_code == 200, path
        assert post(server, ALICE, path, {"model": "shared", **extra}).status_code == 200, path
    assert [m["id"] for m in get(server, ALICE, "/models").json()["data"]] == ["shared"]
    assert [m["id"] for m in get(server, BOB, "/models").json()["data"]] == ["bobs-model", "shared"]
    hidden, missing = get(server, ALICE, "/models/bobs-model"), get(server, ALICE, "/models/never-was")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content.replace(b"never-was", b"bobs-model")
    assert get(server, BOB, "/models/bobs-model").status_code == 200
    # Only Bob's calls reached his engine, each with the engine's key; the public engine got none.
    assert private.auth_headers == ["Bearer engine-key"] * len(ENDPOINTS)
    assert public.auth_headers == [None] * len(ENDPOINTS)


def test_same_name_private_services_stay_apart_and_win_over_the_public_one(gateway: Any, upstreams: Any) -> None:
    pub, a, b = upstreams("public-m"), upstreams("alices-m"), upstreams("bobs-m")
    server = gateway({"m": [replica("pub-0", pub), replica("a-0", a, tenant_id=1), replica("b-0", b, tenant_id=2)]},
                     KEYS)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    served = {token: post(server, token, "/chat/completions", body).json()["choices"][0]["message"]["content"]
              for token in (ALICE, BOB, CAROL)}
    assert served == {ALICE: "alices-m", BOB: "bobs-m", CAROL: "public-m"}
    assert [m["id"] for m in get(server, ALICE, "/models").json()["data"]] == ["m"]
    # Alice's service gone: she falls back to the public one, never to Bob's.
    server.loop_thread.run(_remove(server, "a-0"))
    assert post(server, ALICE, "/chat/completions", body).json()["choices"][0]["message"]["content"] == "public-m"


async def _remove(server: GatewayServer, replica_id: str) -> None:
    server.router.remove_replica(replica_id)


def test_metrics_do_not_name_private_models_or_replicas(gateway: Any, upstreams: Any) -> None:
    pub, priv = upstreams("public"), upstreams("private")
    server = gateway({"shared": [replica("shared-0", pub)],
                      "secret-project-x": [replica("deployment-42-r0", priv, tenant_id=2)]}, KEYS)
    for model in ("shared", "secret-project-x"):
        assert post(server, BOB, "/chat/completions",
                    {"model": model, "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    metrics = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    assert 'model="shared"' in metrics and 'replica="shared-0"' in metrics
    assert "secret-project-x" not in metrics and "deployment-42" not in metrics
    assert 'model="private"' in metrics


def test_standalone_upstreams_name_their_owner_and_engine_key() -> None:
    from zhisuan.gateway.standalone import StandaloneError, parse_upstreams, replica_entries

    specs = parse_upstreams(["shared=http://127.0.0.1:9001", "mine@acme=http://k3y@127.0.0.1:9002",
                             "mine@beta=http://127.0.0.1:9003"])
    models = replica_entries(specs, {"acme": 5, "beta": 6})
    assert [(r["port"], r["tenant_id"], r["secret"]) for r in models["shared"]] == [(9001, None, None)]
    assert [(r["port"], r["tenant_id"], r["secret"]) for r in models["mine"]] == [(9002, 5, "k3y"), (9003, 6, None)]
    for bad in ("m@=http://127.0.0.1:1", "m@a@b=http://127.0.0.1:1", "m=http://u:p@127.0.0.1:1"):
        with pytest.raises(StandaloneError):
            parse_upstreams([bad])
