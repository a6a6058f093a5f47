"""a change stamp for clients, bumped by the database itself on every insert, update or
delete of a client (cascades included), so that each process may keep clients in memory
and drop them the moment any process changes one (idp/oauth/client_cache.py)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 23:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'change_stamps',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_change_stamps')),
    )
    op.execute("INSERT INTO change_stamps (name, n) VALUES ('clients', 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION idp_clients_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE change_stamps SET n = n + 1 WHERE name = 'clients';
                RETURN NULL;
            END $$""")
        op.execute("""
            CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE ON clients
            FOR EACH STATEMENT EXECUTE FUNCTION idp_clients_changed()""")
    else:  # SQLite has row triggers only; foreign-key cascades fire them too
        for action in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER clients_changed_{action.lower()} AFTER {action} ON clients
                BEGIN UPDATE change_stamps SET n = n + 1 WHERE name = 'clients'; END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER clients_changed ON clients")
        op.execute("DROP FUNCTION idp_clients_changed()")
    else:
        for action in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER clients_changed_{action}")
    op.drop_table('change_stamps')
