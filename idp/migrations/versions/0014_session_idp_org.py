"""the org whose own IdP signed a browser session in: a session from a linked social
account carries the same amr ("fed") and must not pass for one (idp/accounts.py)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idp_org_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.drop_column('idp_org_id')
