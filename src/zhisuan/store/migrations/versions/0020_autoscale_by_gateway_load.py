"""autoscaling by the gateways' load: target kind (in-flight per slot or queue time), gateway load rows

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 13:30:00.000000
"""

from alembic import op
import sqlalchemy as sa

from zhisuan.store.base import UTCDateTime


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_deployments') as batch:
        batch.add_column(sa.Column('autoscale_target_kind', sa.String(length=24), nullable=False,
                                   server_default='in_flight_per_slot'))
    op.create_table(
        'gateway_replica_loads',
        sa.Column('gateway', sa.String(length=64), nullable=False),
        sa.Column('deployment_id', sa.Integer(), nullable=False),
        sa.Column('index', sa.Integer(), nullable=False),
        sa.Column('in_flight', sa.Integer(), nullable=False),
        sa.Column('queued', sa.Integer(), nullable=False),
        sa.Column('queue_wait_s', sa.Float(), nullable=False),
        sa.Column('waits', sa.Integer(), nullable=False),
        sa.Column('reported_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['deployment_id'], ['model_deployments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('gateway', 'deployment_id', 'index'),
    )
    op.create_index('ix_gateway_replica_loads_deployment_id', 'gateway_replica_loads', ['deployment_id'])


def downgrade() -> None:
    op.drop_index('ix_gateway_replica_loads_deployment_id', table_name='gateway_replica_loads')
    op.drop_table('gateway_replica_loads')
    with op.batch_alter_table('model_deployments') as batch:
        batch.drop_column('autoscale_target_kind')
