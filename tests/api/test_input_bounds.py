"""Hostile input is a 4xx naming the field, never a 500: ids, digits, NUL, nesting, types, sizes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.api.conftest import Api, h100_node, make_settings
from zhisuan.api.app import create_app
from zhisuan.api.limits import uvicorn_options
from zhisuan.catalog.loader import default_catalog


def error_of(api: Api, method: str, path: str, who: str, body: Any = None, status: int = 422) -> dict[str, Any]:
    response = api.call(method, path, who, body)
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize(("path", "status", "field"), [
    ("/tenants/99999999999999999999", 422, "tenant"),   # beyond 64 bits
    ("/tenants/2147483648", 422, "tenant"),             # beyond the int4 id column
    ("/tenants/%C2%B2", 404, "tenant"),                 # "²" is a digit to str.isdigit, not to int()
    ("/sites/99999999999999999999", 422, "site"),
    ("/nodes/%C2%B2", 404, "node"),
    ("/contracts/C-99999999999999999999", 422, "contract"),
    ("/invoices/2147483648", 422, "invoice"),
    ("/pricebooks/99999999999999999999", 422, "pricebook"),
    ("/deployments/99999999999999999999", 422, "deployment"),
    ("/allocations/2147483648", 422, "allocation_id"),
    ("/allocations/99999999999999999999", 422, "allocation_id"),
])
def test_out_of_range_and_unicode_ids(world: Api, path: str, status: int, field: str) -> None:
    assert error_of(world, "GET", path, "operator", status=status)["field"] == field


def test_out_of_range_ids_in_bodies_and_queries(world: Api) -> None:
    assert error_of(world, "POST", "/users", "operator",
                    {"username": "x1", "role": "tenant", "tenant": "99999999999999999999"})["field"] == "tenant"
    response = world.client.get("/api/v1/allocations", params={"contract": 2**31},
                                headers={"Authorization": f"Bearer {world.keys['operator']}"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "contract"


def test_nul_in_body_strings_is_refused(world: Api) -> None:
    error = error_of(world, "POST", "/tenants", "operator", {"name": "ok", "display_name": "a\x00b"})
    assert error["field"] == "display_name" and "NUL" in error["message"]
    error = error_of(world, "POST", "/models", "operator",
                     {"name": "m1", "source": "/models/\x00x", "engine": "vllm"})
    assert error["field"] == "source"


def test_nul_in_url_is_refused(world: Api) -> None:
    assert error_of(world, "GET", "/tenants/a%00b", "operator")["field"] == "path"
    assert error_of(world, "GET", "/nodes/a%00b", "operator")["field"] == "path"
    response = world.client.get("/api/v1/allocations?tenant=a%00b",
                                headers={"Authorization": f"Bearer {world.keys['operator']}"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "tenant"


def test_deeply_nested_json_is_refused(world: Api) -> None:
    body = '{"name": "ok", "display_name": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = world.client.post("/api/v1/tenants", content=body, headers={
        "Authorization": f"Bearer {world.keys['operator']}", "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "nested" in response.json()["error"]["message"]
    # Brackets inside strings are text, not nesting.
    world.ok("POST", "/tenants", "operator", {"name": "brackets", "display_name": "[" * 150})


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/tenants/acme/limits", {"rpm": True}, "rpm"),
    ("/tenants/acme/limits", {"tpm": "100"}, "tpm"),
    ("/tenants/acme/limits", {"token_budget": 5.0}, "token_budget"),
    ("/keys", {"rpm": False}, "rpm"),
])
def test_integers_are_strict(world: Api, path: str, body: dict[str, Any], field: str) -> None:
    method = "PATCH" if path.endswith("limits") else "POST"
    assert error_of(world, method, path, "operator", body)["field"] == field


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/tenants/acme/limits", {"token_budget": 2**64}, "token_budget"),
    ("/keys", {"token_budget": -(2**70)}, "token_budget"),
    ("/models", {"name": "big", "source": "/m/big.gguf", "engine": "llama.cpp", "weights_bytes": 2**63},
     "weights_bytes"),
])
def test_integers_beyond_what_a_column_holds_are_refused(world: Api, path: str, body: dict[str, Any],
                                                         field: str) -> None:
    """Found by a deeper run of the OpenAPI fuzz test: such numbers overflowed at the flush (500)."""
    method = "PATCH" if path.endswith("limits") else "POST"
    assert error_of(world, method, path, "operator", body)["field"] == field


def test_booleans_are_strict_and_decimals_and_times_still_parse(world: Api) -> None:
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "n1", "cpu_cores": 8, "memory_mib": 1024,
                                            "accelerators": [{"model": "h100-sxm", "count": 1}]})
    assert error_of(world, "PATCH", "/nodes/s1/n1", "operator", {"drained": "yes"})["field"] == "drained"
    assert error_of(world, "PATCH", "/nodes/s1/n1", "operator", {"drained": 1})["field"] == "drained"
    assert world.ok("PATCH", "/nodes/s1/n1", "operator", {"drained": True})["drained"] is True
    limits = world.ok("PATCH", "/tenants/acme/limits", "operator", {"rpm": 60, "money_budget": "12.5"})
    assert limits["rpm"] == 60 and limits["money_budget"] == "12.50"
    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/n1", "devices": [0],
                                                  "start": "2026-11-01T00:00:00Z"})
    assert error_of(world, "POST", "/allocations", "operator",
                    {"tenant": "acme", "node": "s1/n1", "devices": [True]})["field"] == "devices"


@pytest.mark.parametrize(("labels", "field"), [
    ({"note": "x" * 900_000}, "labels"),
    ({"k" * 64: "v"}, "labels"),
    ({f"k{i}": "v" for i in range(65)}, "labels"),
    ({"": "v"}, "labels"),
])
def test_labels_are_bounded(world: Api, labels: dict[str, str], field: str) -> None:
    error = error_of(world, "POST", "/agent/register", "agent1", {**h100_node("n1", 1), "labels": labels})
    assert error["field"].split(".")[0] == field


def test_hand_declared_node_has_at_most_1024_devices(world: Api) -> None:
    body = {"site": "s1", "name": "huge", "cpu_cores": 8, "memory_mib": 1024,
            "accelerators": [{"model": "h100-sxm", "count": 1024}, {"model": "h100-sxm", "count": 1}]}
    error = error_of(world, "POST", "/nodes", "operator", body)
    assert error["field"] == "accelerators" and "1024" in error["message"]
    body["accelerators"] = [{"model": "h100-sxm", "count": 1024}]
    assert len(world.ok("POST", "/nodes", "operator", body)["devices"]) == 1024


@pytest.mark.parametrize("period", ["0000-01", "9999-12", "²０２６-01"])
def test_period_out_of_calendar_range(world: Api, period: str) -> None:
    assert error_of(world, "POST", "/invoices/run", "operator", {"period": period})["field"] == "period"


def test_streamed_body_over_the_limit_is_413(world: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "big", "display_name": "'
        for _ in range(10 * 1024):
            yield b"x" * 1024
        yield b'"}'

    response = world.client.post("/api/v1/tenants", content=chunks(), headers={
        "Authorization": f"Bearer {world.keys['operator']}", "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["type"] == "PayloadTooLarge"


def test_oversized_headers_are_431(world: Api) -> None:
    response = world.client.get("/api/v1/auth/whoami", headers={
        "Authorization": f"Bearer {world.keys['operator']}", "X-Padding": "x" * 20_000})
    assert response.status_code == 431
    many = {f"X-H{i}": "1" for i in range(150)}
    assert world.client.get("/health", headers=many).status_code == 431


def test_error_bodies_keep_their_shape(world: Api) -> None:
    response = world.client.get("/api/v1/tenants/%C2%B2", headers={"Authorization": f"Bearer {world.keys['acme']}"})
    assert set(json.loads(response.text)["error"]) == {"type", "message", "field"}


def test_server_caps_the_request_head(database_url: str, tmp_path: Path) -> None:
    """``zhisuan up``'s uvicorn refuses a header block beyond the cap before the app sees it."""
    settings = make_settings(database_url, tmp_path)
    options = uvicorn_options(settings.max_header_bytes)
    assert options["http"] == "h11"  # uvicorn's default when installed, httptools, buffers any head
    config = uvicorn.Config(create_app(settings, catalog=default_catalog()), host="127.0.0.1", port=0,
                            log_level="error", lifespan="off", **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            # A head that never ends: a capped server answers once the cap is passed; an uncapped
            # one keeps buffering and says nothing (recv times out).
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            interrupted = False
            try:
                for _ in range(2000):
                    connection.sendall(b"X-Padding: " + b"x" * 1000 + b"\r\n")
            except OSError:
                interrupted = True  # the server closed the connection while we still sent
            answer = connection.recv(1024)
        assert answer.startswith(b"HTTP/1.1 400") or (interrupted and answer == b""), answer
    finally:
        server.should_exit = True
        thread.join(timeout=10)
