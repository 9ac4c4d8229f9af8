"""fleet replicas: the address a replica is reached at and when its runtime last reported it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 05:20:00.000000
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployment_replicas') as batch:
        batch.add_column(sa.Column('host', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('reported_at', zhisuan.store.base.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployment_replicas') as batch:
        batch.drop_column('reported_at')
        batch.drop_column('host')
