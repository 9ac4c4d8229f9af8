"""workloads: jobs, events, workers, logs; site engine config

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:14:28.650847
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('command', sa.JSON(), nullable=False),
    sa.Column('script', sa.Text(), nullable=True),
    sa.Column('image', sa.String(length=512), nullable=True),
    sa.Column('env', sa.JSON(), nullable=False),
    sa.Column('workdir', sa.String(length=512), nullable=True),
    sa.Column('checkpoint_dir', sa.String(length=512), nullable=True),
    sa.Column('workers', sa.Integer(), nullable=False),
    sa.Column('devices_per_worker', sa.Integer(), nullable=False),
    sa.Column('milli_per_device', sa.Integer(), nullable=False),
    sa.Column('models', sa.JSON(), nullable=True),
    sa.Column('min_device_memory_mib', sa.Integer(), nullable=False),
    sa.Column('min_device_tflops', sa.Double(), nullable=False),
    sa.Column('cpu_milli', sa.Integer(), nullable=False),
    sa.Column('memory_mib', sa.Integer(), nullable=False),
    sa.Column('max_run_s', sa.Integer(), nullable=False),
    sa.Column('priority_class', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('sites', sa.JSON(), nullable=True),
    sa.Column('regions', sa.JSON(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('preemptions', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('model', sa.String(length=64), nullable=True),
    sa.Column('placement', sa.JSON(), nullable=False),
    sa.Column('within_guarantee', sa.Boolean(), nullable=False),
    sa.Column('borrowing', sa.Boolean(), nullable=False),
    sa.Column('engine_handle', sa.String(length=128), nullable=True),
    sa.Column('stop_requested', sa.String(length=16), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('platform_fault', sa.Boolean(), nullable=False),
    sa.Column('submitted_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('admitted_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_jobs_site_id_sites'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_jobs_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_state', ['state'], unique=False)
        batch_op.create_index('ix_jobs_tenant_submitted', ['tenant_id', 'submitted_at'], unique=False)

    op.create_table('job_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_events_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events'))
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_events_job_id'), ['job_id'], unique=False)

    op.create_table('job_workers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('handle', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=140), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=True),
    sa.Column('launch', sa.JSON(), nullable=False),
    sa.Column('desired', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=1000), nullable=False),
    sa.Column('notes', sa.JSON(), nullable=False),
    sa.Column('started_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stdout_bytes', sa.Integer(), nullable=False),
    sa.Column('stderr_bytes', sa.Integer(), nullable=False),
    sa.Column('created_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_workers_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['node_id'], ['nodes.id'], name=op.f('fk_job_workers_node_id_nodes'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_workers')),
    sa.UniqueConstraint('key', name=op.f('uq_job_workers_key'))
    )
    with op.batch_alter_table('job_workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_workers_handle'), ['handle'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_workers_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_job_workers_node', ['node_id', 'desired'], unique=False)

    op.create_table('job_log_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=False),
    sa.Column('stream', sa.String(length=8), nullable=False),
    sa.Column('offset', sa.Integer(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['job_workers.id'], name=op.f('fk_job_log_chunks_worker_id_job_workers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_log_chunks')),
    sa.UniqueConstraint('worker_id', 'stream', 'offset', name=op.f('uq_job_log_chunks_worker_id_stream_offset'))
    )
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('engine_config', sa.JSON(), server_default='{}', nullable=False))




def downgrade() -> None:

    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('engine_config')

    op.drop_table('job_log_chunks')
    with op.batch_alter_table('job_workers', schema=None) as batch_op:
        batch_op.drop_index('ix_job_workers_node')
        batch_op.drop_index(batch_op.f('ix_job_workers_job_id'))
        batch_op.drop_index(batch_op.f('ix_job_workers_handle'))

    op.drop_table('job_workers')
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_events_job_id'))

    op.drop_table('job_events')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_submitted')
        batch_op.drop_index('ix_jobs_state')

    op.drop_table('jobs')

