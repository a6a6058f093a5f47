"""a budget per address for stored authorization requests: each /authorize request kept
records its address's hash, indexed with its age for counting and evicting the oldest
(idp/pending.py)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 13:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address_key', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_pending_authorizations_address_created', ['address_key', 'created_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_authorizations_address_created')
        batch_op.drop_column('address_key')
