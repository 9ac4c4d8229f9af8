"""WorkerLaunch validation: every bad field is refused with a ValueError naming it; good launches pass."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.agent.jobs.conftest import launch

from zhisuan.agent.jobs.launch import MAX_ENV_BYTES, MAX_SCRIPT_BYTES, validate_launch

BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("key", {"key": ""}),
    ("key", {"key": "../etc"}),
    ("key", {"key": "a/b"}),
    ("key", {"key": "x" * 129}),
    ("tenant", {"tenant": "Acme"}),
    ("tenant", {"tenant": "a" * 64}),
    ("tenant", {"tenant": "a_b"}),
    ("command", {"command": ()}),
    ("command", {"command": ("",)}),
    ("command", {"command": ("echo", "a\0b")}),
    ("command", {"command": ("x" * 70_000,)}),
    ("script", {"script": "   "}),
    ("script", {"script": "echo\0"}),
    ("script", {"script": "#" * (MAX_SCRIPT_BYTES + 1)}),
    ("env", {"env": {"1BAD": "x"}}),
    ("env", {"env": {"A=B": "x"}}),
    ("env", {"env": {"A": "a\0b"}}),
    ("env", {"env": {"BIG": "x" * MAX_ENV_BYTES}}),
    ("env", {"env": {f"V{i}": "" for i in range(1025)}}),
    ("env", {"env": {"ZHISUAN_AGENT_TOKEN": "secret"}}),
    ("env", {"env": {"ZHISUAN_DATABASE_URL": "postgresql://"}}),
    ("workdir", {"workdir": "../x"}),
    ("workdir", {"workdir": "a/../../x"}),
    ("workdir", {"workdir": "/etc"}),
    ("workdir", {"workdir": "a\0"}),
    ("cpu_milli", {"cpu_milli": 0}),
    ("cpu_milli", {"cpu_milli": True}),
    ("memory_mib", {"memory_mib": -1}),
    ("memory_mib", {"memory_mib": 1.5}),
    ("max_run_s", {"max_run_s": 0}),
    ("max_run_s", {"max_run_s": 10**9}),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_FIELDS)
def test_bad_field_is_refused_by_name(field: str, overrides: dict[str, Any]) -> None:
    base: dict[str, Any] = {"key": "zs-1-1-r0"}
    base.update(overrides)
    key = base.pop("key")
    with pytest.raises(ValueError, match=rf"^{field}:"):
        validate_launch(launch(key, "true", **base))


def test_job_facing_zhisuan_variables_are_accepted() -> None:
    env = {"ZHISUAN_JOB_ID": "12", "ZHISUAN_JOB_ATTEMPT": "1", "ZHISUAN_CHECKPOINT_DIR": "ckpt"}
    validate_launch(launch("zs-12-1-r0", "true", env=env))


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)


@given(
    key=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True),
    tenant=st.from_regex(r"[a-z0-9-]{1,63}", fullmatch=True),
    env=st.dictionaries(names.filter(lambda n: not n.startswith("ZHISUAN_")), st.text(max_size=50).filter(
        lambda v: "\0" not in v), max_size=20),
    workdir=st.none() | st.from_regex(r"[a-z0-9_]{1,8}(/[a-z0-9_]{1,8}){0,3}", fullmatch=True),
)
def test_well_formed_launches_pass(key: str, tenant: str, env: dict[str, str], workdir: str | None) -> None:
    validate_launch(launch(key, "true", tenant=tenant, env=env, workdir=workdir))
