"""ETTR service levels on contracts (and their amendments) and a description on invoice lines (credits)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 09:40:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contracts') as batch:
        batch.add_column(sa.Column('ettr_sla', sa.JSON(), nullable=True))
    with op.batch_alter_table('contract_amendments') as batch:
        batch.add_column(sa.Column('ettr_sla', sa.JSON(), nullable=True))
    with op.batch_alter_table('invoice_lines') as batch:
        batch.add_column(sa.Column('description', sa.String(length=500), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('invoice_lines') as batch:
        batch.drop_column('description')
    with op.batch_alter_table('contract_amendments') as batch:
        batch.drop_column('ettr_sla')
    with op.batch_alter_table('contracts') as batch:
        batch.drop_column('ettr_sla')
