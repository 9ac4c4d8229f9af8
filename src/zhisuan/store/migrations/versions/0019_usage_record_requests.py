"""usage records count requests: a gateway may send one event for many requests (a roll-up)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 09:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('usage_records') as batch:
        batch.add_column(sa.Column('requests', sa.BigInteger(), nullable=False, server_default='0'))
    # One request per token event, held by one of its records: the ':in' one, else the ':out' one.
    records = sa.table('usage_records', sa.column('requests', sa.BigInteger()), sa.column('source_kind', sa.String()),
                       sa.column('key', sa.String()), sa.column('source_id', sa.String()))
    inputs = sa.select(records.c.source_id).where(records.c.source_kind == 'tokens',
                                                  records.c.key.like("tok:%:in"))
    op.execute(records.update().where(records.c.source_kind == 'tokens', records.c.key.like('tok:%:in'))
               .values(requests=1))
    op.execute(records.update().where(records.c.source_kind == 'tokens', records.c.key.like('tok:%:out'),
                                      records.c.source_id.not_in(inputs)).values(requests=1))


def downgrade() -> None:
    with op.batch_alter_table('usage_records') as batch:
        batch.drop_column('requests')
