"""key and tenant limits

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 14:44:23.959939
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('models', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('rpm', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tpm', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('token_budget', sa.BigInteger(), nullable=True))

    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rpm', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tpm', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('token_budget', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('token_budget')
        batch_op.drop_column('tpm')
        batch_op.drop_column('rpm')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('token_budget')
        batch_op.drop_column('tpm')
        batch_op.drop_column('rpm')
        batch_op.drop_column('models')
