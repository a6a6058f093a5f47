"""the trusted device that opened a browser session without its second factor: the step-up
budget of every session it opens is one (idp/signin/step_up.py)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 14:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trusted_device_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('browser_sessions', schema=None) as batch_op:
        batch_op.drop_column('trusted_device_id')
