"""users in the order they signed up, read from an index: `idp users list` sorted 100,000
rows on the server (spilling to disk at the default work_mem) before it sent the first one

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 20:00:00
"""
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_users_created_at', 'users', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_users_created_at', table_name='users')
