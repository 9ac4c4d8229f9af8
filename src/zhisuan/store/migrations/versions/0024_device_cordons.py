"""inventory: per-device cordons (a device-scoped fault takes out that device, not its node)

Three nullable columns on ``devices``, added with plain ``ALTER TABLE … ADD COLUMN`` (not a batch
table copy): on SQLite a copy would drop the fleet-count triggers of migration 0022.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 07:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

COLUMNS = ('cordon_reason', 'cordoned_at', 'cordon_clean_since')


def upgrade() -> None:
    op.add_column('devices', sa.Column('cordon_reason', sa.String(length=500), nullable=True))
    op.add_column('devices', sa.Column('cordoned_at', zhisuan.store.base.UTCDateTime(), nullable=True))
    op.add_column('devices', sa.Column('cordon_clean_since', zhisuan.store.base.UTCDateTime(), nullable=True))


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column('devices', column)
