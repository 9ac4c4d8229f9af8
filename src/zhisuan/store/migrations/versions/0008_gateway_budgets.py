"""gateway: budget periods and revocation version

Budgets of keys and tenants count per period ("monthly": reset at each UTC calendar month; "none": never
reset). Revocations reach the gateways without a schema change (gateway/revocation.py), so this revision
only adds the period.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TABLES = ("tenants", "api_keys")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("budget_period", sa.String(length=16), nullable=False,
                                          server_default="monthly"))
            batch_op.create_check_constraint(op.f(f"ck_{table}_budget_period"),
                                             "budget_period IN ('monthly', 'none')")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_budget_period"), type_="check")
            batch_op.drop_column("budget_period")
