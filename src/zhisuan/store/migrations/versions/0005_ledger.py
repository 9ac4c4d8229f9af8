"""ledger: device holds that concurrency cannot break

CPU/memory holds (``cpu_milli``, ``memory_mib``) and the reason the platform ended a hold by
itself (``end_reason``). On PostgreSQL, two exclusion constraints make the database refuse what
the ledger's locks already prevent: two contracts' lease rows of one device overlapping in time,
and two whole-device workload holds of one device overlapping in time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# (name, predicate): rows satisfying the predicate may not share a device over overlapping windows.
EXCLUSIONS = (
    ("ex_allocations_exclusive_lease", "purpose = 'contract'"),
    ("ex_allocations_whole_device", "purpose <> 'contract' AND milli = 1000"),
)


def upgrade() -> None:
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cpu_milli', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('memory_mib', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('end_reason', sa.String(length=200), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS btree_gist')  # a trusted extension: no superuser needed
        for name, predicate in EXCLUSIONS:
            op.execute(f'ALTER TABLE allocations ADD CONSTRAINT {name} EXCLUDE USING gist '
                       f'(device_id WITH =, tstzrange(start, "end") WITH &&) '
                       f'WHERE (device_id IS NOT NULL AND {predicate})')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, _ in EXCLUSIONS:
            op.execute(f'ALTER TABLE allocations DROP CONSTRAINT {name}')
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.drop_column('end_reason')
        batch_op.drop_column('memory_mib')
        batch_op.drop_column('cpu_milli')
