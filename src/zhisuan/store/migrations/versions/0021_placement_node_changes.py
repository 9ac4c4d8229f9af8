"""placement: per-node change stamps of the ledger, written by triggers on allocations

The live fleet cache (``placement/fleet_cache.py``) reads only the holds of nodes whose stamp is at
or above the low mark of its last read, instead of every live hold. Triggers (not session hooks)
write the stamps, so changes made with raw SQL or by any process are seen too.

stamp: on PostgreSQL the writing transaction's 64-bit id (``pg_current_xact_id``; a transaction a
reader could not see has an id ≥ its snapshot's xmax or in its in-progress list); on
SQLite a counter bumped per write (writers are serialised, so stamps follow commit order).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 13:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

# Columns whose change alters a hold as placement sees it (metering watermarks, reasons do not).
WATCHED = 'node_id, device_id, milli, cpu_milli, memory_mib, purpose, start, "end", tenant_id'
# A row's hold is on its node (CPU/memory, leases) and on its device's node (shares): stamp both.
NODES_OF = ("{row}.node_id", "(SELECT node_id FROM devices WHERE id = {row}.device_id)")


def _sqlite_trigger(name: str, event: str, row: str) -> str:
    stamps = "".join(f"""
  INSERT INTO placement_node_changes (node_id, stamp)
    SELECT {node}, (SELECT value FROM placement_change_counter WHERE id = 1) WHERE {node} IS NOT NULL
    ON CONFLICT (node_id) DO UPDATE SET stamp = excluded.stamp;""" for node in (n.format(row=row) for n in NODES_OF))
    return f"""
CREATE TRIGGER {name} AFTER {event} ON allocations
BEGIN
  UPDATE placement_change_counter SET value = value + 1 WHERE id = 1;{stamps}
END"""


def _pg_touch(row: str) -> str:
    return " ".join(f"PERFORM placement_touch_node({n.format(row=row)});" for n in NODES_OF)


def upgrade() -> None:
    op.create_table('placement_node_changes',
                    sa.Column('node_id', sa.Integer(), primary_key=True, autoincrement=False),
                    sa.Column('stamp', sa.BigInteger(), nullable=False))
    op.create_index('ix_placement_node_changes_stamp', 'placement_node_changes', ['stamp'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"""
CREATE FUNCTION placement_touch_node(node integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF node IS NOT NULL THEN
    INSERT INTO placement_node_changes (node_id, stamp) VALUES (node, pg_current_xact_id()::text::bigint)
      ON CONFLICT (node_id) DO UPDATE SET stamp = EXCLUDED.stamp;
  END IF;
END $$;
CREATE FUNCTION placement_allocation_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN {_pg_touch('OLD')} END IF;
  IF TG_OP <> 'DELETE' THEN {_pg_touch('NEW')} END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER placement_allocation_changed AFTER INSERT OR DELETE OR UPDATE OF {WATCHED} ON allocations
  FOR EACH ROW EXECUTE FUNCTION placement_allocation_changed();
""")
        return
    op.create_table('placement_change_counter', sa.Column('id', sa.Integer(), primary_key=True),
                    sa.Column('value', sa.BigInteger(), nullable=False))
    op.execute("INSERT INTO placement_change_counter (id, value) VALUES (1, 0)")
    op.execute(_sqlite_trigger('placement_allocation_inserted', 'INSERT', 'NEW'))
    op.execute(_sqlite_trigger('placement_allocation_deleted', 'DELETE', 'OLD'))
    op.execute(_sqlite_trigger('placement_allocation_updated_old', f'UPDATE OF {WATCHED}', 'OLD'))
    op.execute(_sqlite_trigger('placement_allocation_updated_new', f'UPDATE OF {WATCHED}', 'NEW'))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER placement_allocation_changed ON allocations")
        op.execute("DROP FUNCTION placement_allocation_changed()")
        op.execute("DROP FUNCTION placement_touch_node(integer)")
    else:
        for name in ('inserted', 'deleted', 'updated_old', 'updated_new'):
            op.execute(f"DROP TRIGGER placement_allocation_{name}")
        op.drop_table('placement_change_counter')
    op.drop_index('ix_placement_node_changes_stamp', 'placement_node_changes')
    op.drop_table('placement_node_changes')
