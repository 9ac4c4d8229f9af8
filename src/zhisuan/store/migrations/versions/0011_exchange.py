"""exchange: offers, requests, clearing rounds, matches (the cleared prices)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 02:51:13.298791
"""

from alembic import op
import sqlalchemy as sa
import zhisuan.store.base


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('exchange_clearings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('objective', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('value', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('bound', zhisuan.store.base.DecimalText(length=64), nullable=True),
    sa.Column('solve_s', sa.Double(), nullable=False),
    sa.Column('offers', sa.Integer(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_clearings'))
    )
    op.create_table('exchange_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('unit', sa.String(length=8), nullable=False),
    sa.Column('devices', sa.Integer(), nullable=False),
    sa.Column('normalised', sa.Boolean(), nullable=False),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('constraints', sa.JSON(), nullable=False),
    sa.Column('earliest_start', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('latest_start', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('duration_h', sa.Integer(), nullable=False),
    sa.Column('max_price', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('regions', sa.JSON(), nullable=False),
    sa.Column('gang', sa.Boolean(), nullable=False),
    sa.Column('allow_partial', sa.Boolean(), nullable=False),
    sa.Column('min_fill', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('unmatched_reason', sa.String(length=500), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_exchange_requests_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_requests'))
    )
    with op.batch_alter_table('exchange_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_requests_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('exchange_offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('capacity_kind', sa.String(length=8), nullable=False),
    sa.Column('node_ids', sa.JSON(), nullable=False),
    sa.Column('devices', sa.Integer(), nullable=False),
    sa.Column('start', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('min_term_h', sa.Integer(), nullable=False),
    sa.Column('pricing_model', sa.String(length=16), nullable=False),
    sa.Column('floor_price', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('floor_device_hour', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('closed_months', sa.Integer(), nullable=True),
    sa.Column('open_months', sa.Integer(), nullable=False),
    sa.Column('penalty_rate', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_exchange_offers_provider_id_providers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_exchange_offers_site_id_sites'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_offers'))
    )
    with op.batch_alter_table('exchange_offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_offers_provider_id'), ['provider_id'], unique=False)

    op.create_table('exchange_matches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clearing_id', sa.Integer(), nullable=False),
    sa.Column('offer_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('devices', sa.Integer(), nullable=False),
    sa.Column('node_ids', sa.JSON(), nullable=False),
    sa.Column('start', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('price', zhisuan.store.base.DecimalText(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('deadline', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('tenant_accepted_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('provider_accepted_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('contract_id', sa.Integer(), nullable=True),
    sa.Column('created_at', zhisuan.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['clearing_id'], ['exchange_clearings.id'], name=op.f('fk_exchange_matches_clearing_id_exchange_clearings'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'], name=op.f('fk_exchange_matches_contract_id_contracts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['offer_id'], ['exchange_offers.id'], name=op.f('fk_exchange_matches_offer_id_exchange_offers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_exchange_matches_provider_id_providers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['request_id'], ['exchange_requests.id'], name=op.f('fk_exchange_matches_request_id_exchange_requests'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_exchange_matches_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_matches'))
    )
    with op.batch_alter_table('exchange_matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_matches_clearing_id'), ['clearing_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_matches_offer_id'), ['offer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_matches_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_matches_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_matches_tenant_id'), ['tenant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('exchange_matches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_matches_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_matches_request_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_matches_provider_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_matches_offer_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_matches_clearing_id'))

    op.drop_table('exchange_matches')
    with op.batch_alter_table('exchange_offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_offers_provider_id'))

    op.drop_table('exchange_offers')
    with op.batch_alter_table('exchange_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_requests_tenant_id'))

    op.drop_table('exchange_requests')
    op.drop_table('exchange_clearings')
