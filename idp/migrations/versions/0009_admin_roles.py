"""org admins and the owners of apps registered in the developer portal

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 20:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('org_admin', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_id', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_clients_owner_id_users'), 'users', ['owner_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_clients_owner_id'), ['owner_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clients_owner_id'))
        batch_op.drop_constraint(batch_op.f('fk_clients_owner_id_users'), type_='foreignkey')
        batch_op.drop_column('owner_id')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('org_admin')
