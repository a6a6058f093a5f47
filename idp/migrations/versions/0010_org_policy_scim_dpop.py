"""the open issues' schema in one step: org sign-in options and domain claims (Admin
Center), audit events by org and actor, SCIM tokens, groups and external ids,
DPoP/resource bindings and per-client policy, leases for once-per-deployment jobs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 23:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orgs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_mfa', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('allow_social', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('allow_passkeys', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('saml_metadata_valid_until', sa.DateTime(), nullable=True))

    op.create_table(
        'domain_claims',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('org_id', sa.String(length=32), nullable=False),
        sa.Column('domain', sa.String(length=253), nullable=False),
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('checked_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name=op.f('fk_domain_claims_org_id_orgs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_domain_claims')),
        sa.UniqueConstraint('org_id', 'domain', name=op.f('uq_domain_claims_org_id')),
    )

    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('org_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('actor_id', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_security_events_org_id_orgs'), 'orgs', ['org_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_security_events_org_time', ['org_id', 'created_at'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('scim_data', sa.JSON(), nullable=True))
        batch_op.create_index('ix_users_org_external_id', ['org_id', 'external_id'], unique=False)

    op.create_table(
        'scim_tokens',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('org_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name=op.f('fk_scim_tokens_org_id_orgs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_scim_tokens')),
    )
    op.create_index(op.f('ix_scim_tokens_org_id'), 'scim_tokens', ['org_id'], unique=False)

    op.create_table(
        'groups',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('org_id', sa.String(length=32), nullable=False),
        sa.Column('display_name', sa.String(length=256), nullable=False),
        sa.Column('external_id', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name=op.f('fk_groups_org_id_orgs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_groups')),
        sa.UniqueConstraint('org_id', 'display_name', name=op.f('uq_groups_org_id')),
    )
    op.create_table(
        'group_members',
        sa.Column('group_id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_group_members_group_id_groups'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_group_members_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'user_id', name=op.f('pk_group_members')),
    )
    op.create_index(op.f('ix_group_members_user_id'), 'group_members', ['user_id'], unique=False)

    for table in ('grants', 'authorization_codes'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('dpop_jkt', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column('resource', sa.JSON(), nullable=True))

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_par', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('require_dpop', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('token_exchange_audiences', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=True))

    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_leases')),
    )


def downgrade() -> None:
    op.drop_table('leases')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        for column in ('resources', 'token_exchange_audiences', 'require_dpop', 'require_par'):
            batch_op.drop_column(column)
    for table in ('authorization_codes', 'grants'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('resource')
            batch_op.drop_column('dpop_jkt')
    op.drop_index(op.f('ix_group_members_user_id'), table_name='group_members')
    op.drop_table('group_members')
    op.drop_table('groups')
    op.drop_index(op.f('ix_scim_tokens_org_id'), table_name='scim_tokens')
    op.drop_table('scim_tokens')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_org_external_id')
        batch_op.drop_column('scim_data')
        batch_op.drop_column('external_id')
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_org_time')
        batch_op.drop_constraint(batch_op.f('fk_security_events_org_id_orgs'), type_='foreignkey')
        batch_op.drop_column('actor_id')
        batch_op.drop_column('org_id')
    op.drop_table('domain_claims')
    with op.batch_alter_table('orgs', schema=None) as batch_op:
        for column in ('saml_metadata_valid_until', 'allow_passkeys', 'allow_social', 'require_mfa'):
            batch_op.drop_column(column)
