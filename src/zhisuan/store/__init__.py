"""Persistence: SQLAlchemy models (one module per domain), the engine, and Alembic migrations."""
