"""the org an account last left: another org adopting the row wipes what the person that
org let go holds first; a rehire by the same org keeps it (idp/accounts.py `join_org`)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 16:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('left_org_id', sa.String(length=32), nullable=True))
    # Accounts a directory deleted before now: the org its audit event names, while the log
    # still keeps it (an account whose event was pruned is adopted as one never in an org).
    op.execute(
        "UPDATE users SET left_org_id = (SELECT e.org_id FROM security_events e WHERE e.user_id = users.id"
        " AND e.kind = 'scim.user_deleted' ORDER BY e.id DESC LIMIT 1) WHERE org_id IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('left_org_id')
