"""catalog: operators' measured relative throughput per model and workload class

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 05:30:00

(0012 is reserved for another branch; the lead rechains this one onto it at merge.)
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('catalog_throughput_measurements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_key', sa.String(length=64), nullable=False),
    sa.Column('workload_class', sa.String(length=32), nullable=False),
    sa.Column('relative', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('reference_key', sa.String(length=64), nullable=False),
    sa.Column('benchmark', sa.String(length=200), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('measured_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalog_throughput_measurements'))
    )
    with op.batch_alter_table('catalog_throughput_measurements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalog_throughput_measurements_model_key'), ['model_key'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('catalog_throughput_measurements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalog_throughput_measurements_model_key'))
    op.drop_table('catalog_throughput_measurements')
