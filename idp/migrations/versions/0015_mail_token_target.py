"""the one change a mailed "Not you? Remove it" link undoes (a passkey, an authenticator app,
a linked account): the link acts on that thing only, and asks the password as it was when
mailed (idp/account/not_me.py)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mail_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('password_hash', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mail_tokens', schema=None) as batch_op:
        batch_op.drop_column('password_hash')
        batch_op.drop_column('target')
