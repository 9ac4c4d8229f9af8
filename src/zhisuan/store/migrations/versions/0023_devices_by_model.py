"""inventory: devices indexed by (model, node_id), for node pages filtered by model

``GET /nodes?model=…`` keeps the nodes with at least one device of that model (a semi-join on
devices). Without this index PostgreSQL found those devices by scanning all of them (80,000 rows,
~11 ms per page) whenever the model is on few nodes; with it, an index range gives their nodes in
order. The columns are set at registration and hardly change, so health and availability updates
(beats, the monitor) stay HOT updates on PostgreSQL and pay nothing for it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 03:55:00.000000
"""

from alembic import op


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_devices_model_node_id', 'devices', ['model', 'node_id'])


def downgrade() -> None:
    op.drop_index('ix_devices_model_node_id', table_name='devices')
