"""API keys: shown once, stored as a digest, revocable, expiring, scoped; passwords stay scrypt."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from tests.api.conftest import Api, Clock, h100_node
from zhisuan.identity.hashing import digest_key_secret, hash_secret, verify_secret
from zhisuan.identity.models import ApiKey, User


def stored_key(world: Api, key_id: str) -> ApiKey:
    with world.client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        return session.execute(select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one()


def test_new_key_is_stored_only_as_a_sha256_digest_and_verifies(world: Api) -> None:
    issued = world.ok("POST", "/keys", "acme", {"name": "ci"})
    secret = issued["key"].split("_", 2)[2]
    row = stored_key(world, issued["key_id"])
    assert issued["key"] not in row.secret_hash and secret not in row.secret_hash
    assert row.secret_hash == "sha256$" + hashlib.sha256(secret.encode()).hexdigest()
    assert all("key" not in k for k in world.ok("GET", "/keys", "acme"))  # never shown again
    world.keys["ci"] = issued["key"]
    assert world.ok("GET", "/auth/whoami", "ci")["username"] == "acme-user"


def rehash_as_scrypt(world: Api, plaintext: str) -> None:
    """Store ``plaintext``'s key as keys issued before SHA-256 digests were stored."""
    key_id, secret = plaintext.split("_", 2)[1:]
    with world.client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        row = session.execute(select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one()
        row.secret_hash = hash_secret(secret, n=2**4)
        session.commit()


def test_a_key_stored_as_scrypt_before_still_verifies_and_a_wrong_secret_fails(world: Api) -> None:
    issued = world.ok("POST", "/keys", "acme", {"name": "old"})
    rehash_as_scrypt(world, issued["key"])
    assert stored_key(world, issued["key_id"]).secret_hash.startswith("scrypt$16$")
    world.keys["old"] = issued["key"]
    assert world.ok("GET", "/auth/whoami", "old")["username"] == "acme-user"
    world.keys["forged"] = f"zs_{issued['key_id']}_{'A' * 43}"
    assert world.call("GET", "/auth/whoami", "forged").status_code == 401
    world.ok("DELETE", f"/keys/{issued['key_id']}", "acme")
    assert "revoked" in world.call("GET", "/auth/whoami", "old").json()["error"]["message"]


def test_an_old_scrypt_agent_key_still_registers_a_node(world: Api) -> None:
    rehash_as_scrypt(world, world.keys["agent1"])
    registered = world.ok("POST", "/agent/register", "agent1", h100_node("gpu-old", 1))
    assert registered["node_id"] in {n["id"] for n in world.ok("GET", "/nodes", "operator")}


@pytest.mark.parametrize(("stored", "secret", "matches"), [
    (digest_key_secret("s3cret"), "s3cret", True),
    (digest_key_secret("s3cret"), "s3creT", False),
    (hash_secret("s3cret", n=2**4), "s3cret", True),
    (hash_secret("s3cret", n=2**4), "s3creT", False),
    ("sha256$" + "0" * 64, "s3cret", False),
    ("md5$" + hashlib.md5(b"s3cret").hexdigest(), "s3cret", False),  # unknown scheme: never matches
    ("scrypt$garbage", "s3cret", False),
    ("", "", False),
], ids=["sha256-right", "sha256-wrong", "scrypt-right", "scrypt-wrong", "sha256-zeros", "unknown-scheme",
        "scrypt-garbage", "empty"])  # fixed ids: scrypt's random salt must not name the test (pytest-xdist)
def test_the_stored_form_says_which_check_applies(stored: str, secret: str, matches: bool) -> None:
    assert verify_secret(secret, stored) is matches


def test_default_password_hash_cost_is_slow() -> None:
    stored = hash_secret("s3cret")
    assert stored.split("$")[1] == str(2**14)
    assert verify_secret("s3cret", stored) and not verify_secret("s3creT", stored)


def test_passwords_are_still_stored_as_scrypt(world: Api) -> None:
    world.ok("POST", "/users", "operator", {"username": "pat", "role": "tenant", "tenant": "acme",
                                            "password": "correct horse battery"})
    with world.client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        stored = session.execute(select(User.password_hash).where(User.username == "pat")).scalar_one()
    assert stored is not None and stored.startswith("scrypt$4096$")  # the test settings' cost


def test_revoked_key_is_refused_at_once(world: Api) -> None:
    issued = world.ok("POST", "/keys", "acme", {"name": "short-lived"})
    world.keys["tmp"] = issued["key"]
    assert world.call("GET", "/auth/whoami", "tmp").status_code == 200  # now cached as verified
    world.ok("DELETE", f"/keys/{issued['key_id']}", "acme")
    response = world.call("GET", "/auth/whoami", "tmp")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_expired_key_is_refused(world: Api, clock: Clock) -> None:
    world.keys["tmp"] = world.ok("POST", "/keys", "acme", {"expires_in_days": 1})["key"]
    assert world.call("GET", "/auth/whoami", "tmp").status_code == 200
    clock.advance(days=1, seconds=1)
    response = world.call("GET", "/auth/whoami", "tmp")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_wrong_secret_with_a_real_key_id_is_refused(world: Api) -> None:
    issued = world.ok("POST", "/keys", "acme", {})
    world.keys["forged"] = f"zs_{issued['key_id']}_{'A' * 43}"
    assert world.call("GET", "/auth/whoami", "forged").status_code == 401
    world.keys["garbage"] = "not-a-key"
    assert world.call("GET", "/auth/whoami", "garbage").status_code == 401


def test_read_only_key_cannot_write(world: Api) -> None:
    world.keys["ro"] = world.ok("POST", "/keys", "operator", {"scopes": ["read"]})["key"]
    assert world.call("GET", "/tenants", "ro").status_code == 200
    response = world.call("POST", "/tenants", "ro", {"name": "gamma"})
    assert response.status_code == 403
    assert "write" in response.json()["error"]["message"]


def test_key_cannot_exceed_its_creators_scopes(world: Api) -> None:
    world.keys["ro"] = world.ok("POST", "/keys", "acme", {"scopes": ["read"]})["key"]
    assert world.call("POST", "/keys", "ro", {"scopes": ["read"]}).status_code == 403  # needs write to create


def test_console_login(world: Api) -> None:
    world.ok("POST", "/users", "operator", {"username": "alice", "role": "tenant", "tenant": "acme",
                                            "password": "correct horse battery"})
    wrong = {"username": "alice", "password": "wrong password!"}
    assert world.call("POST", "/auth/login", None, wrong).status_code == 401
    session = world.ok("POST", "/auth/login", None, {"username": "alice", "password": "correct horse battery"})
    world.keys["alice"] = session["key"]
    assert world.ok("GET", "/auth/whoami", "alice")["role"] == "tenant"
    assert session["expires_at"] is not None


def test_a_signed_in_tenant_issues_an_inference_key_but_no_metrics_or_agent_key(world: Api) -> None:
    """The console's key form: a password sign-in may issue the keys programs call /v1 with."""
    world.ok("POST", "/users", "operator", {"username": "bob", "role": "tenant", "tenant": "acme",
                                            "password": "correct horse battery"})
    world.keys["bob"] = world.ok("POST", "/auth/login", None,
                                 {"username": "bob", "password": "correct horse battery"})["key"]
    issued = world.ok("POST", "/keys", "bob", {"name": "app", "scopes": ["inference"]})
    assert issued["scopes"] == ["inference"]
    assert world.call("POST", "/keys", "bob", {"scopes": ["metrics"]}).status_code == 403
    assert world.call("POST", "/keys", "bob", {"scopes": ["agent"]}).status_code == 422


def test_mutations_are_audited(world: Api) -> None:
    world.ok("POST", "/tenants", "operator", {"name": "gamma"})
    issued = world.ok("POST", "/keys", "acme", {})
    world.ok("DELETE", f"/keys/{issued['key_id']}", "acme")
    actions = [e["action"] for e in world.ok("GET", "/audit", "operator")]
    assert {"tenant.create", "key.create", "key.revoke", "site.create", "provider.create"} <= set(actions)


def test_a_provider_lists_and_revokes_the_agent_keys_of_its_sites_only(world: Api) -> None:
    """The operator issued s1's agent key (build_world): p1 owns s1, so it sees and may revoke it;
    p2 sees neither it nor p1's own new one, and cannot revoke them."""
    mine = world.ok("POST", "/sites/s1/agent-keys", "p1", {"expires_in_days": 30})
    agents = {k["key_id"]: k for k in world.ok("GET", "/keys", "p1") if "agent" in k["scopes"]}
    operator_issued = world.keys["agent1"].split("_")[1]
    assert set(agents) == {operator_issued, mine["key_id"]}
    assert {k["site_id"] for k in agents.values()} == {mine["site_id"]}
    others = {k["key_id"] for k in world.ok("GET", "/keys", "p2")}
    assert operator_issued not in others and mine["key_id"] not in others
    assert world.call("DELETE", f"/keys/{operator_issued}", "p2").status_code == 404
    assert world.call("POST", "/sites/s1/agent-keys", "p2", {}).status_code in (403, 404)
    assert world.ok("DELETE", f"/keys/{operator_issued}", "p1")["revoked_at"] is not None
    assert world.call("POST", "/agent/register", "agent1", h100_node("gpu-x", 1)).status_code == 401
