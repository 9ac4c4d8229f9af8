"""deployment autoscaling: bounds, target and cool-downs on a deployment, and its events

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 09:20:00.000000
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('model_deployments') as batch:
        batch.add_column(sa.Column('autoscale_min', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('autoscale_max', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('autoscale_target', sa.Float(), nullable=True))
        batch.add_column(sa.Column('scale_out_cooldown_s', sa.Integer(), nullable=False, server_default='30'))
        batch.add_column(sa.Column('scale_in_cooldown_s', sa.Integer(), nullable=False, server_default='300'))
        batch.add_column(sa.Column('last_scale_out_at', zhisuan.store.base.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('last_scale_in_at', zhisuan.store.base.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('demand', sa.Integer(), nullable=False, server_default='0'))
    op.create_table(
        'deployment_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('deployment_id', sa.Integer(), nullable=False),
        sa.Column('at', zhisuan.store.base.UTCDateTime(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('replicas_from', sa.Integer(), nullable=False),
        sa.Column('replicas_to', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(['deployment_id'], ['model_deployments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_deployment_events_deployment_id'), 'deployment_events', ['deployment_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deployment_events_deployment_id'), table_name='deployment_events')
    op.drop_table('deployment_events')
    with op.batch_alter_table('model_deployments') as batch:
        for column in ('demand', 'last_scale_in_at', 'last_scale_out_at', 'scale_in_cooldown_s',
                       'scale_out_cooldown_s', 'autoscale_target', 'autoscale_max', 'autoscale_min'):
            batch.drop_column(column)
