"""faults: node cordons, job restarts and hang timeouts, progress facts

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:30:00
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('cordon_reason', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('cordoned_at', zhisuan.store.base.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('cordon_clean_since', zhisuan.store.base.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('cordon_manual', sa.Boolean(), server_default='0', nullable=False))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('max_restarts', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('hang_timeout_s', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('restarts', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('failures', sa.JSON(), server_default='[]', nullable=False))
        batch.add_column(sa.Column('not_before', zhisuan.store.base.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('progress', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('progress_at', zhisuan.store.base.UTCDateTime(), nullable=True))
    op.create_table('job_progress',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', zhisuan.store.base.UTCDateTime(), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.Column('checkpoint_step', sa.Integer(), nullable=True),
    sa.Column('checkpoint_s', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_job_progress_job', 'job_progress', ['job_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_job_progress_job', table_name='job_progress')
    op.drop_table('job_progress')
    with op.batch_alter_table('jobs') as batch:
        for column in ('progress_at', 'progress', 'not_before', 'failures', 'restarts', 'hang_timeout_s',
                       'max_restarts'):
            batch.drop_column(column)
    with op.batch_alter_table('nodes') as batch:
        for column in ('cordon_manual', 'cordon_clean_since', 'cordoned_at', 'cordon_reason'):
            batch.drop_column(column)
