"""inventory: the fleet's counts kept current by triggers (nodes per site and status, devices per
site, model, health and availability)

The fleet summary and ``GET /sites`` read these instead of grouping every node and device row per
request (80,000 devices: hundreds of ms). Triggers (not session hooks) keep them, so every writer is
counted — the ORM, the beat flush's bulk updates, the monitor, raw SQL, other processes.

Writers only append signed rows (+1 / −n per key), never update a shared counter row: a counter row
per key would be locked by every transaction that changes a device's health or a node's status in
that site until it commits, serialising them and deadlocking two that take keys in opposite orders.
A count is the sum of its key's rows (``inventory.fleet_counts``); readers fold the rows into one per
key from time to time (delete what they saw, insert the sums, in one transaction: rows appended
meanwhile are kept, so the sums stay exact).

A node's delete subtracts its devices before the node goes (a BEFORE trigger): a cascade removes the
devices after the node, when their site can no longer be looked up, and their own delete trigger
counts only devices whose node still exists — so each device is subtracted exactly once, whether the
ORM deletes the devices first or the database cascades.

PostgreSQL counts inserts and deletes of devices per statement (a registration batch is one row per
key, not one per device); SQLite has row triggers only.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 21:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

DEVICE_KEY = "model, health, available"
DEVICE_CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ("node_id", "model", "health", "available"))
NODE_CHANGED = "OLD.status IS DISTINCT FROM NEW.status OR OLD.site_id IS DISTINCT FROM NEW.site_id"


def _device(sign: str, row: str) -> str:
    """One device row's signed count, at its node's site (nothing when the node is gone)."""
    return f"""
  INSERT INTO fleet_device_counts (site_id, {DEVICE_KEY}, devices)
    SELECT site_id, {row}.model, {row}.health, {row}.available, {sign}1 FROM nodes WHERE id = {row}.node_id;"""


def _node(sign: str, row: str) -> str:
    return f"""
  INSERT INTO fleet_node_counts (site_id, status, nodes) VALUES ({row}.site_id, {row}.status, {sign}1);"""


def _devices_of_node(sign: str, row: str, site: str) -> str:
    """All of a node's devices, signed, counted at ``site``."""
    return f"""
  INSERT INTO fleet_device_counts (site_id, {DEVICE_KEY}, devices)
    SELECT {site}, {DEVICE_KEY}, {sign}count(*) FROM devices WHERE node_id = {row}.id GROUP BY {DEVICE_KEY};"""


def _pg_statement_devices(sign: str, rows: str) -> str:
    return f"""
  INSERT INTO fleet_device_counts (site_id, {DEVICE_KEY}, devices)
    SELECT n.site_id, r.model, r.health, r.available, {sign}count(*) FROM {rows} r JOIN nodes n ON n.id = r.node_id
    GROUP BY n.site_id, r.model, r.health, r.available;"""


def _create_tables() -> None:
    op.create_table('fleet_node_counts',
                    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True),
                    sa.Column('site_id', sa.Integer(), nullable=False),
                    sa.Column('status', sa.String(16), nullable=False),
                    sa.Column('nodes', sa.Integer(), nullable=False))
    op.create_table('fleet_device_counts',
                    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True),
                    sa.Column('site_id', sa.Integer(), nullable=False),
                    sa.Column('model', sa.String(64), nullable=False),
                    sa.Column('health', sa.String(16), nullable=False),
                    sa.Column('available', sa.Boolean(), nullable=False),
                    sa.Column('devices', sa.Integer(), nullable=False))
    # What is there already: one row per key.
    op.execute("INSERT INTO fleet_node_counts (site_id, status, nodes) "
               "SELECT site_id, status, count(*) FROM nodes GROUP BY site_id, status")
    op.execute(f"INSERT INTO fleet_device_counts (site_id, {DEVICE_KEY}, devices) "
               f"SELECT n.site_id, d.model, d.health, d.available, count(*) FROM devices d JOIN nodes n "
               f"ON n.id = d.node_id GROUP BY n.site_id, d.model, d.health, d.available")


def _postgresql() -> None:
    op.execute(f"""
CREATE FUNCTION fleet_nodes_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO fleet_node_counts (site_id, status, nodes) SELECT site_id, status, count(*) FROM added GROUP BY 1, 2;
  RETURN NULL;
END $$;
CREATE TRIGGER fleet_nodes_inserted AFTER INSERT ON nodes REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION fleet_nodes_inserted();
CREATE FUNCTION fleet_node_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_node('-', 'OLD')}{_node('', 'NEW')}
  IF OLD.site_id <> NEW.site_id THEN{_devices_of_node('-', 'NEW', 'OLD.site_id')}{_devices_of_node('', 'NEW', 'NEW.site_id')}
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER fleet_node_updated AFTER UPDATE OF status, site_id ON nodes
  FOR EACH ROW WHEN ({NODE_CHANGED}) EXECUTE FUNCTION fleet_node_updated();
CREATE FUNCTION fleet_node_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_node('-', 'OLD')}{_devices_of_node('-', 'OLD', 'OLD.site_id')}
  RETURN OLD;
END $$;
CREATE TRIGGER fleet_node_deleting BEFORE DELETE ON nodes FOR EACH ROW EXECUTE FUNCTION fleet_node_deleting();
CREATE FUNCTION fleet_devices_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_pg_statement_devices('', 'added')}
  RETURN NULL;
END $$;
CREATE TRIGGER fleet_devices_inserted AFTER INSERT ON devices REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION fleet_devices_inserted();
CREATE FUNCTION fleet_devices_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_pg_statement_devices('-', 'removed')}
  RETURN NULL;
END $$;
CREATE TRIGGER fleet_devices_deleted AFTER DELETE ON devices REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION fleet_devices_deleted();
CREATE FUNCTION fleet_device_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{_device('-', 'OLD')}{_device('', 'NEW')}
  RETURN NULL;
END $$;
CREATE TRIGGER fleet_device_updated AFTER UPDATE OF node_id, model, health, available ON devices
  FOR EACH ROW WHEN ({DEVICE_CHANGED}) EXECUTE FUNCTION fleet_device_updated();
""")


SQLITE_TRIGGERS = {
    'fleet_node_inserted': ("AFTER INSERT ON nodes", _node('', 'NEW')),
    'fleet_node_updated': (f"AFTER UPDATE OF status, site_id ON nodes WHEN {NODE_CHANGED}",
                           _node('-', 'OLD') + _node('', 'NEW')),
    'fleet_node_moved': ("AFTER UPDATE OF site_id ON nodes WHEN OLD.site_id IS NOT NEW.site_id",
                         _devices_of_node('-', 'NEW', 'OLD.site_id') + _devices_of_node('', 'NEW', 'NEW.site_id')),
    'fleet_node_deleting': ("BEFORE DELETE ON nodes", _node('-', 'OLD') + _devices_of_node('-', 'OLD', 'OLD.site_id')),
    'fleet_device_inserted': ("AFTER INSERT ON devices", _device('', 'NEW')),
    'fleet_device_deleted': ("AFTER DELETE ON devices", _device('-', 'OLD')),
    'fleet_device_updated': (f"AFTER UPDATE OF node_id, model, health, available ON devices WHEN {DEVICE_CHANGED}",
                             _device('-', 'OLD') + _device('', 'NEW')),
}


def upgrade() -> None:
    _create_tables()
    if op.get_bind().dialect.name == 'postgresql':
        _postgresql()
        return
    for name, (when, body) in SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when}\nBEGIN{body}\nEND")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, table in (('fleet_nodes_inserted', 'nodes'), ('fleet_node_updated', 'nodes'),
                            ('fleet_node_deleting', 'nodes'), ('fleet_devices_inserted', 'devices'),
                            ('fleet_devices_deleted', 'devices'), ('fleet_device_updated', 'devices')):
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table('fleet_device_counts')
    op.drop_table('fleet_node_counts')
