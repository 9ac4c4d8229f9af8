"""Console login and API keys against abuse: throttled, audited, expiring, and equal in timing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from tests.api.conftest import Api, Clock
from zhisuan.identity import hashing
from zhisuan.identity.models import ApiKey

PASSWORD = "correct horse battery"


def add_user(api: Api, username: str) -> None:
    api.ok("POST", "/users", "operator", {"username": username, "role": "tenant", "tenant": "acme",
                                          "password": PASSWORD})


def login(api: Api, username: str, password: str) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    response = api.client.post("/api/v1/auth/login", json={"username": username, "password": password})
    return response.status_code, dict(response.headers), response.json()


def test_failed_logins_back_off_exponentially_with_retry_after(world: Api, clock: Clock) -> None:
    add_user(world, "alice")
    for _ in range(5):
        assert login(world, "alice", "wrong password")[0] == 401
    status, headers, body = login(world, "alice", PASSWORD)  # even the right password waits now
    assert status == 429 and body["error"]["type"] == "TooManyRequests"
    assert headers["retry-after"] == "1"
    clock.advance(seconds=1)
    assert login(world, "alice", "wrong again")[0] == 401
    status, headers, _ = login(world, "alice", PASSWORD)
    assert status == 429 and headers["retry-after"] == "2"  # doubled
    clock.advance(seconds=2)
    assert login(world, "alice", PASSWORD)[0] == 200  # success resets the account's count
    assert login(world, "alice", "wrong")[0] == 401


def test_one_address_cannot_spray_many_accounts(world: Api) -> None:
    for number in range(5):
        assert login(world, f"nobody-{number}", "guess")[0] == 401
    add_user(world, "bob")
    status, headers, _ = login(world, "bob", PASSWORD)
    assert status == 429 and int(headers["retry-after"]) >= 1


def test_logins_are_audited_success_and_failure(world: Api) -> None:
    add_user(world, "carol")
    assert login(world, "carol", "not her password")[0] == 401
    assert login(world, "ghost", "whatever")[0] == 401
    assert login(world, "carol", PASSWORD)[0] == 200
    events = world.ok("GET", "/audit", "operator", limit=10)
    actions = [(e["action"], e["object_ref"]) for e in events[:3]]
    assert actions == [("auth.login", "carol"), ("auth.login_failed", "ghost"), ("auth.login_failed", "carol")]
    assert events[0]["detail"]["client"] == "testclient"
    # The tenant sees the attempts on its own users, not on unknown names.
    tenant_view = [(e["action"], e["object_ref"]) for e in world.ok("GET", "/audit", "acme", limit=10)]
    assert ("auth.login_failed", "carol") in tenant_view and ("auth.login_failed", "ghost") not in tenant_view


def test_expired_console_sessions_are_purged(world: Api, clock: Clock) -> None:
    add_user(world, "dave")
    first = login(world, "dave", PASSWORD)[2]
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]

    def stored(key_id: str) -> int:
        with sessions() as session:
            return int(session.execute(select(func.count()).where(ApiKey.key_id == key_id)).scalar_one())

    clock.advance(hours=11)
    login(world, "dave", PASSWORD)
    assert stored(first["key_id"]) == 1  # still valid: kept
    clock.advance(hours=2)
    login(world, "dave", PASSWORD)
    assert stored(first["key_id"]) == 0


def hash_work(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[tuple[str | int, ...]]:
    """Every hash ``action`` computes: scrypt with its cost parameters (n, r, p), or a SHA-256 key
    digest. Equal work, not equal seconds, is what this file asserts (times are measured in
    benchmarks/security/secret_checks.py)."""
    calls: list[tuple[str | int, ...]] = []
    real, real_digest = hashlib.scrypt, hashing.digest_key_secret

    def counting(password: bytes, *, salt: bytes, n: int, r: int, p: int, **kw: int) -> bytes:
        calls.append(("scrypt", n, r, p))
        return real(password, salt=salt, n=n, r=r, p=p, **kw)

    def counting_digest(secret: str) -> str:
        calls.append(("sha256",))
        return real_digest(secret)

    with monkeypatch.context() as patch:
        patch.setattr(hashlib, "scrypt", counting)
        patch.setattr(hashing, "digest_key_secret", counting_digest)
        action()
    return calls


def test_unknown_user_costs_as_much_as_a_wrong_password(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    add_user(world, "erin")
    world.client.app.state.ctx.login_throttle.free = 10**6  # type: ignore[attr-defined]  # measure, not throttle
    login(world, "no-such-user", "wrong password")  # the dummy hash is made once per process
    wrong_password = hash_work(monkeypatch, lambda: login(world, "erin", "wrong password"))
    unknown_user = hash_work(monkeypatch, lambda: login(world, "no-such-user", "wrong password"))
    assert wrong_password == unknown_user and len(wrong_password) == 1, (wrong_password, unknown_user)


def test_unknown_key_id_costs_as_much_as_a_wrong_secret(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    real = world.keys["acme"]
    key_id = real.split("_")[1]
    world.keys["wrong-secret"] = f"zs_{key_id}_{'x' * 43}"
    world.keys["unknown-id"] = f"zs_{'f' * 12}_{'x' * 43}"
    world.client.app.state.ctx.verifier.throttle.free = 10**6  # type: ignore[attr-defined]
    world.call("GET", "/auth/whoami", "unknown-id")  # the dummy hash is made once per process
    wrong_secret = hash_work(monkeypatch, lambda: world.call("GET", "/auth/whoami", "wrong-secret"))
    unknown_id = hash_work(monkeypatch, lambda: world.call("GET", "/auth/whoami", "unknown-id"))
    # Keys are issued as SHA-256 digests: an unknown id is checked against a dummy digest of that scheme.
    assert wrong_secret == unknown_id == [("sha256",)], (wrong_secret, unknown_id)


def test_failing_key_checks_are_throttled_per_address(world: Api, clock: Clock) -> None:
    world.keys["bad"] = f"zs_{'a' * 12}_{'x' * 43}"
    for _ in range(20):
        assert world.call("GET", "/auth/whoami", "bad").status_code == 401
    response = world.call("GET", "/auth/whoami", "acme")  # refused before any hashing, even a good key
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    clock.advance(seconds=1)
    assert world.call("GET", "/auth/whoami", "acme").status_code == 200
