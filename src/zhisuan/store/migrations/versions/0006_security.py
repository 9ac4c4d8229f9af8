"""security: login throttling, sessions, node bindings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:30:00
"""

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each console login deletes expired session keys (identity.login.purge_expired_sessions).
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index('ix_api_keys_name_expires_at', ['name', 'expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_api_keys_name_expires_at')
