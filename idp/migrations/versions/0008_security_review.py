"""security review: pending requests bound to a browser and to the account that consented;
clients vouched for by an operator

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 20:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('browser_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('consented_user_id', sa.String(length=32), nullable=True))
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verified', sa.Boolean(), nullable=False, server_default=sa.false()))
    # Clients an operator made (no RFC 7592 registration token) are vouched for; pending
    # requests from before this revision were bound to no browser and are dropped.
    op.execute("UPDATE clients SET verified = true WHERE registration_token_hash IS NULL")
    op.execute("DELETE FROM pending_authorizations")


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('verified')
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.drop_column('consented_user_id')
        batch_op.drop_column('browser_hash')
