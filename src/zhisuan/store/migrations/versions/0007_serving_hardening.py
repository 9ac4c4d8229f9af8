"""serving: replica secrets and sizes

Deployment names unique per owner (tenant, or the public MaaS); each replica's CPU and memory on
its node; measured model weight sizes; per-tenant replica quotas.

On SQLite, changing model_deployments' constraints rebuilds the table, and dropping the old table
deletes (ON DELETE CASCADE) its replicas: they are copied aside and put back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00
"""

from collections.abc import Callable

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def keeping_replicas(rebuild: Callable[[], None]) -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute('CREATE TEMPORARY TABLE keep_replicas AS SELECT * FROM deployment_replicas')
    rebuild()
    if sqlite:
        op.execute('INSERT INTO deployment_replicas SELECT * FROM keep_replicas '
                   'WHERE id NOT IN (SELECT id FROM deployment_replicas)')
        op.execute('DROP TABLE keep_replicas')


def upgrade() -> None:
    op.add_column('served_models', sa.Column('weights_bytes', sa.BigInteger(), nullable=True))

    def rebuild() -> None:
        with op.batch_alter_table('model_deployments', schema=None) as batch_op:
            batch_op.drop_constraint('uq_model_deployments_name', type_='unique')
            batch_op.create_unique_constraint(batch_op.f('uq_model_deployments_tenant_id_name'),
                                              ['tenant_id', 'name'])
            batch_op.create_index('ix_model_deployments_public_name', ['name'], unique=True,
                                  sqlite_where=sa.text('tenant_id IS NULL'),
                                  postgresql_where=sa.text('tenant_id IS NULL'))

    keeping_replicas(rebuild)

    op.add_column('deployment_replicas', sa.Column('cpu_milli', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('deployment_replicas', sa.Column('memory_mib', sa.Integer(), nullable=False, server_default='0'))
    # Existing replicas hold what their deployment asked for.
    op.execute('UPDATE deployment_replicas SET '
               'cpu_milli = (SELECT cpu_milli FROM model_deployments d WHERE d.id = deployment_replicas.deployment_id), '
               'memory_mib = (SELECT memory_mib FROM model_deployments d WHERE d.id = deployment_replicas.deployment_id)')

    op.create_table('serving_quotas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('max_replicas', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_serving_quotas_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_serving_quotas')),
    sa.UniqueConstraint('tenant_id', name=op.f('uq_serving_quotas_tenant_id'))
    )


def downgrade() -> None:
    op.drop_table('serving_quotas')
    # Plain DROP COLUMN (SQLite ≥ 3.35): a rebuild of these tables would trip their foreign keys.
    op.drop_column('deployment_replicas', 'memory_mib')
    op.drop_column('deployment_replicas', 'cpu_milli')

    def rebuild() -> None:
        with op.batch_alter_table('model_deployments', schema=None) as batch_op:
            batch_op.drop_index('ix_model_deployments_public_name')
            batch_op.drop_constraint(batch_op.f('uq_model_deployments_tenant_id_name'), type_='unique')
            batch_op.create_unique_constraint('uq_model_deployments_name', ['name'])

    keeping_replicas(rebuild)
    op.drop_column('served_models', 'weights_bytes')
