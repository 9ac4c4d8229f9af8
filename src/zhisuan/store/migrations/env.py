"""Alembic environment: migrations run online against the URL the caller configured."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from zhisuan.store.base import make_engine
from zhisuan.store.registry import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"
connectable = make_engine(url) if url.startswith("sqlite") else None
if connectable is None:
    from sqlalchemy import create_engine

    connectable = create_engine(url, poolclass=pool.NullPool)

with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
