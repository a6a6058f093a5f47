"""What SCIM's speed rests on (issue 11): a create is one transaction, and a userName
filter asks the database only what it must. In process, through Flask's test client on
the live server's database (SQLite and PostgreSQL), counting the engine's commits and
statements; the answers are checked as well.
"""

from __future__ import annotations

import contextlib
import uuid

from sqlalchemy import event, select

from tests.smtp import link_in

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


class Org:
    def __init__(self, live, own_idp: bool):
        from idp import orgs
        from idp.scim import tokens
        from idp.social import add_provider, enterprise_provider_name

        self.live = live
        self.name = f"speed-{uuid.uuid4().hex[:8]}"
        self.domain = f"{self.name}.example"
        with live.db():
            org = orgs.create(self.name, [self.domain])
            self.id, self.token = org.id, tokens.issue(org)
            if own_idp:  # what `idp orgs oidc` stores
                add_provider(enterprise_provider_name(org.id), "c", "s", "https://login.corp.example", org_id=org.id)
        self.client = live.app.test_client()

    def call(self, method: str, path: str, **kw):
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}
        return self.client.open(f"/scim/v2{path}", method=method, headers=headers, **kw)

    def create(self, local: str, **attrs):
        return self.call("POST", "/Users", json={"schemas": [CORE], "userName": f"{local}@{self.domain}", **attrs})


@contextlib.contextmanager
def counted(live):
    """Commits and statements on the app's engine while the block runs."""
    from idp.store import db

    with live.db():
        engine = db.engine
    seen = {"commits": 0, "statements": []}

    def on_commit(conn):
        seen["commits"] += 1

    def on_statement(conn, cursor, statement, *args):
        seen["statements"].append(statement)

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "before_cursor_execute", on_statement)


def warm(org: Org) -> None:
    """A first request, so that the token's last use is written (once a minute) before counting."""
    assert org.call("GET", "/Users", query_string={"count": "0"}).status_code == 200


def test_a_create_with_an_invitation_is_one_transaction(live):
    from idp.store import MailToken, SecurityEvent, User, db

    org = Org(live, own_idp=False)
    warm(org)
    with counted(live) as seen:
        resp = org.create("newbie", externalId="n-1", name={"givenName": "New"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    # the account, its audit event and the invitation's token: one commit, on SQLite one fsync
    assert seen["commits"] == 1, seen["statements"]
    uid = resp.json["id"]
    with live.db():
        user = db.session.get(User, uid)
        assert user.org_id == org.id and user.email_verified and user.external_id == "n-1"
        assert db.session.execute(select(SecurityEvent.kind).where(SecurityEvent.user_id == uid)).scalars().all() \
            == ["scim.user_created"]
        assert db.session.execute(select(MailToken.purpose).where(MailToken.user_id == uid)).scalars().all() \
            == ["invite"]
    mail = live.mailbox.wait_for(f"newbie@{org.domain}")[0]
    assert link_in(mail, live.issuer)  # mailed once its token was stored


def test_a_create_in_an_org_with_its_own_idp_is_one_transaction_without_mail(live):
    from idp.store import MailToken, SecurityEvent, db

    org = Org(live, own_idp=True)
    warm(org)
    with counted(live) as seen:
        resp = org.create("sso")
    assert resp.status_code == 201
    assert seen["commits"] == 1
    uid = resp.json["id"]
    with live.db():
        assert db.session.execute(select(SecurityEvent.kind).where(SecurityEvent.user_id == uid)).scalars().all() \
            == ["scim.user_created"]
        assert db.session.execute(select(MailToken).where(MailToken.user_id == uid)).first() is None


def test_a_refused_create_stores_and_mails_nothing(live):
    """The one query that finds the address's holder and an externalId clash still refuses
    both, and only within the org: another org may use the same externalId."""
    from idp.store import User, db

    org, other = Org(live, own_idp=False), Org(live, own_idp=False)
    assert org.create("first", externalId="dup").status_code == 201
    clash = org.create("second", externalId="dup")
    assert clash.status_code == 409 and clash.json["scimType"] == "uniqueness"
    again = org.create("first", externalId="other")
    assert again.status_code == 409 and again.json["scimType"] == "uniqueness"
    assert other.create("second", externalId="dup").status_code == 201  # another org's directory
    with live.db():
        assert db.session.execute(select(User).where(User.email == f"second@{org.domain}")).first() is None
    assert live.mailbox.to(f"second@{org.domain}") == []


def test_a_username_filter_reads_three_times(live):
    """The token, one page of people and their groups; a page that is not full gives the
    total without a count query."""
    org = Org(live, own_idp=True)
    assert org.create("alice").status_code == 201
    assert org.create("bob").status_code == 201
    warm(org)
    with counted(live) as seen:
        resp = org.call("GET", "/Users", query_string={"filter": f'userName eq "ALICE@{org.domain}"'})
    assert resp.status_code == 200
    assert resp.json["totalResults"] == 1 and resp.json["Resources"][0]["userName"] == f"alice@{org.domain}"
    assert len(seen["statements"]) <= 3, seen["statements"]
    assert not any("count(" in s.lower() for s in seen["statements"]), seen["statements"]
    # a full page still counts, and a page past the end still reports the total
    full = org.call("GET", "/Users", query_string={"count": "1"})
    assert full.json["totalResults"] == 2 and full.json["itemsPerPage"] == 1
    past = org.call("GET", "/Users", query_string={"startIndex": "5"})
    assert past.json["totalResults"] == 2 and past.json["Resources"] == []
    second = org.call("GET", "/Users", query_string={"startIndex": "2"})
    assert second.json["totalResults"] == 2 and second.json["itemsPerPage"] == 1
