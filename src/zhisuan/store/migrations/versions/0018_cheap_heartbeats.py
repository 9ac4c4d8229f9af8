"""cheap heartbeats: the digest of a node's last applied health report; per-process flush marks

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 09:15:00.000000
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('health_digest', sa.String(length=64), nullable=True))
    op.create_table(
        'beat_flushes',
        sa.Column('holder', sa.String(length=100), nullable=False),
        sa.Column('flushed_through', zhisuan.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('holder'),
    )


def downgrade() -> None:
    op.drop_table('beat_flushes')
    with op.batch_alter_table('nodes') as batch:
        batch.drop_column('health_digest')
