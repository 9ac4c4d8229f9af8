"""Property-based test over the whole OpenAPI document: no input may make the API answer 5xx.

Schemathesis generates requests (valid and invalid) for every operation; each runs as the operator
and as a tenant, on SQLite and PostgreSQL. Bounded (examples per operation, no deadline) and
derandomized, so it is fast enough for CI and does not flake.
"""

from __future__ import annotations

import faulthandler
import re
import sys
import warnings
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python import asgi

from tests.api.conftest import Api

# About 60 operations × 5 examples × 3 runs per database: well under two minutes on two cores.
EXAMPLES_PER_OPERATION = 5
STALL_DUMP_AFTER_S = 8.0


def call(case: schemathesis.Case, client: Any, headers: dict[str, str]) -> int | str:
    # Thread stacks go to stderr if a call takes long, so a stall in CI says where it waited.
    faulthandler.dump_traceback_later(STALL_DUMP_AFTER_S, file=sys.stderr)
    try:
        return case.call(session=client, headers=headers).status_code  # type: ignore[no-any-return]
    except Exception as error:  # the test client re-raises what the app did not handle
        return f"{type(error).__name__}: {error}"[:200]
    finally:
        faulthandler.cancel_dump_traceback_later()


def call_once_more_if_slow(case: schemathesis.Case, client: Any, headers: dict[str, str]) -> int | str:
    """The call's status, or what the app raised. A call past the client's 10 s read timeout is made
    once more: on a loaded CI machine one stall is not an answer to the input (its thread stacks are
    printed); a second timeout is."""
    status = call(case, client, headers)
    if isinstance(status, str) and status.startswith("ReadTimeout"):
        warnings.warn(f"slow once: {case.method} {case.formatted_path} ({status})", stacklevel=1)
        status = call(case, client, headers)
    return status


def server_errors(world: Api, who: str, mode: GenerationMode) -> list[str]:
    app = world.client.app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {world.keys[who]}"}
    failures: list[str] = []
    with asgi.get_client(app) as client:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()

            @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def probe(case: schemathesis.Case) -> None:
                status = call_once_more_if_slow(case, client, headers)
                if not isinstance(status, int) or status >= 500:
                    failures.append(f"{case.method} {case.formatted_path} query={case.query} "
                                    f"body={case.body!r:.200} -> {status}")

            try:
                probe()
            except Unsatisfiable:  # an operation without parameters has no invalid form
                assert mode is GenerationMode.NEGATIVE
    return failures


# Invalid input is refused by validation before roles matter, so it runs as the operator only.
@pytest.mark.parametrize(("who", "mode"), [("operator", GenerationMode.POSITIVE), ("operator", GenerationMode.NEGATIVE),
                                           ("acme", GenerationMode.POSITIVE)],
                         ids=["operator-valid", "operator-invalid", "tenant-valid"])
def test_no_input_makes_the_api_fail(world: Api, who: str, mode: GenerationMode) -> None:
    failures = server_errors(world, who, mode)
    assert not failures, "\n".join(failures)


# Path values that once made the API fail: beyond 64 bits, beyond int4 (PostgreSQL), a non-ASCII
# digit, a NUL byte, a negative number.
HOSTILE_PATH_VALUES = ["99999999999999999999", "2147483648", "%C2%B2", "a%00b", "-1", "0"]


def path_templates(world: Api) -> list[tuple[str, str]]:
    document = world.client.get("/openapi.json").json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item
            if "{" in path]


@pytest.mark.parametrize("who", ["operator", "acme"])
def test_hostile_path_values_are_client_errors(world: Api, who: str) -> None:
    headers = {"Authorization": f"Bearer {world.keys[who]}"}
    failures = []
    for method, template in path_templates(world):
        for value in HOSTILE_PATH_VALUES:
            path = re.sub(r"\{[^}]+\}", value, template)
            try:
                response = world.client.request(method, path, headers=headers, json={})
                status: object = response.status_code
                body = response.json() if status != 204 else {}
                if isinstance(status, int) and status < 500 and status != 204:
                    assert set(body["error"]) == {"type", "message", "field"}, body
            except Exception as error:
                status = f"{type(error).__name__}: {error}"[:200]
            if not isinstance(status, int) or status >= 500:
                failures.append(f"{method} {path} -> {status}")
    assert not failures, "\n".join(failures)
