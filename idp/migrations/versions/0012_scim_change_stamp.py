"""a change stamp for SCIM tokens and what a token's org is to SCIM (its name, domains and
own IdP), bumped by the database itself in the same transaction as every such change
(cascades included), so that each process may keep live tokens in memory and drop them
the moment any process revokes one or changes the org (idp/scim/tokens.py)

A token's `last_used_at` (written at most once a minute) does not bump it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 10:00:00
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# table → the UPDATE clause of its trigger ("UPDATE" alone: any column)
WATCHED = {
    "scim_tokens": "UPDATE OF token_hash, org_id, revoked_at",
    "orgs": "UPDATE",
    "org_domains": "UPDATE",
    "social_providers": "UPDATE",
}


def upgrade() -> None:
    op.execute("INSERT INTO change_stamps (name, n) VALUES ('scim', 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION idp_scim_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE change_stamps SET n = n + 1 WHERE name = 'scim';
                RETURN NULL;
            END $$""")
        for table, update in WATCHED.items():
            op.execute(f"""
                CREATE TRIGGER {table}_scim_changed AFTER INSERT OR {update} OR DELETE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION idp_scim_changed()""")
    else:  # SQLite has row triggers only; foreign-key cascades fire them too
        for table, update in WATCHED.items():
            for action in ("INSERT", update, "DELETE"):
                op.execute(f"""
                    CREATE TRIGGER {table}_scim_changed_{action.split()[0].lower()} AFTER {action} ON {table}
                    BEGIN UPDATE change_stamps SET n = n + 1 WHERE name = 'scim'; END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER {table}_scim_changed ON {table}")
        op.execute("DROP FUNCTION idp_scim_changed()")
    else:
        for table in WATCHED:
            for action in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_scim_changed_{action}")
    op.execute("DELETE FROM change_stamps WHERE name = 'scim'")
