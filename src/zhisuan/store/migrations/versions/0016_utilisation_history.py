"""utilisation history: minute, hour and day buckets of the fleet's allocated share per site and model

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 09:30:00.000000
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('utilisation_buckets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resolution', sa.String(length=8), nullable=False),
    sa.Column('start', zhisuan.store.base.UTCDateTime(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('devices', sa.BigInteger(), nullable=False),
    sa.Column('allocated', sa.BigInteger(), nullable=False),
    sa.Column('peak', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_utilisation_buckets_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_utilisation_buckets')),
    sa.UniqueConstraint('resolution', 'start', 'site_id', 'model', name=op.f('uq_utilisation_buckets_resolution_start_site_id_model'))
    )
    op.create_index('ix_utilisation_buckets_resolution_start', 'utilisation_buckets', ['resolution', 'start'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_utilisation_buckets_resolution_start', table_name='utilisation_buckets')
    op.drop_table('utilisation_buckets')
