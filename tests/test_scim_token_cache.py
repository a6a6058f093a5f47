"""SCIM tokens kept per process (idp/scim/tokens.py, migration 0012): a cached token and
what it says of its org never outlive a change made by another process. Each test first
gets the token into the cache of the test's own app (Flask's test client) and of the
server's workers (over HTTP), then changes things elsewhere (the CLI, or rows written
through a second app, as another server would), and the very next request must see it.
"""

from __future__ import annotations

import uuid

import requests
from sqlalchemy import select, text

from tests.smtp import body_of

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


class Directory:
    def __init__(self, live):
        self.live = live
        self.name = f"cache-{uuid.uuid4().hex[:8]}"
        self.domain = f"{self.name}.example"
        assert live.idp("orgs", "create", self.name, "--domain", self.domain).returncode == 0
        out = live.idp("orgs", "scim-token", self.name)
        assert out.returncode == 0, out.stderr
        self.token = out.stdout.strip().split()[-1]
        self.client = live.app.test_client()

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}

    def in_process(self, method: str, path: str, **kw):
        return self.client.open(f"/scim/v2{path}", method=method, headers=self.headers(), **kw)

    def over_http(self, method: str, path: str, **kw):
        return requests.request(method, f"{self.live.issuer}/scim/v2{path}", headers=self.headers(), timeout=30, **kw)

    def warm(self) -> None:
        """Into this app's cache and, a few requests each, every worker's."""
        for _ in range(6):
            assert self.in_process("GET", "/Users", query_string={"count": "0"}).status_code == 200
            assert self.over_http("GET", "/Users", params={"count": "0"}).status_code == 200

    def user(self, local: str, domain: str | None = None) -> dict:
        return {"schemas": [CORE], "userName": f"{local}@{domain or self.domain}"}


def stamp(live) -> int:
    from idp.store import db

    with live.db():
        return db.session.execute(text("SELECT n FROM change_stamps WHERE name = 'scim'")).scalar_one()


def test_a_revoked_token_fails_on_its_very_next_request_everywhere(live):
    d = Directory(live)
    d.warm()
    out = live.idp("orgs", "scim-token", d.name, "--revoke-all")
    assert out.returncode == 0, out.stderr
    # the next request of this app, and of each worker (any of them may answer)
    resp = d.in_process("GET", "/Users", query_string={"count": "0"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="scim"'
    for _ in range(6):
        assert d.over_http("GET", "/Users", params={"count": "0"}).status_code == 401
    assert d.in_process("POST", "/Users", json=d.user("late")).status_code == 401


def test_a_deleted_org_domain_is_refused_on_the_next_create(live):
    from idp import create_app
    from idp.config import Settings
    from idp.store import OrgDomain, db

    d = Directory(live)
    second = f"second.{d.domain}"

    other = create_app(Settings.from_env({k: v for k, v in live.env.items() if k.startswith("IDP_")}))
    with other.app_context():  # another process's write, as far as live.app's cache knows
        from idp import orgs

        db.session.add(OrgDomain(domain=second, org_id=orgs.find(d.name).id))
        db.session.commit()
    d.warm()
    assert d.in_process("POST", "/Users", json=d.user("a", second)).status_code == 201
    with other.app_context():
        db.session.execute(OrgDomain.__table__.delete().where(OrgDomain.domain == second))
        db.session.commit()
        db.engine.dispose()
    for local in ("b", "c"):
        resp = d.in_process("POST", "/Users", json=d.user(local, second))
        assert resp.status_code == 400 and resp.json["scimType"] == "invalidValue", resp.get_data(as_text=True)
        resp = d.over_http("POST", "/Users", json=d.user(local + "-http", second))
        assert resp.status_code == 400 and resp.json()["scimType"] == "invalidValue", resp.text


def test_an_org_given_its_own_idp_stops_mailing_invitations_at_once(live):
    from idp import orgs
    from idp.social import add_provider, enterprise_provider_name

    d = Directory(live)
    d.warm()
    assert d.in_process("POST", "/Users", json=d.user("invited")).status_code == 201
    live.mailbox.wait_for(f"invited@{d.domain}")
    with live.db():  # what `idp orgs oidc` stores
        add_provider(enterprise_provider_name(orgs.find(d.name).id), "c", "s", "https://login.corp.example",
                     org_id=orgs.find(d.name).id)
    assert d.in_process("POST", "/Users", json=d.user("sso")).status_code == 201
    assert d.over_http("POST", "/Users", json=d.user("sso-http")).status_code == 201
    from idp.store import MailToken, User, db

    with live.db():
        for email in (f"sso@{d.domain}", f"sso-http@{d.domain}"):
            uid = db.session.execute(select(User.id).where(User.email == email)).scalar_one()
            assert db.session.execute(select(MailToken).where(MailToken.user_id == uid)).first() is None


def test_a_renamed_org_is_named_so_in_the_next_invitation(live):
    from idp import orgs
    from idp.store import db

    d = Directory(live)
    d.warm()
    new_name = d.name + "-renamed"
    with live.db():
        orgs.find(d.name).name = new_name
        db.session.commit()
    assert d.in_process("POST", "/Users", json=d.user("renamed")).status_code == 201
    assert new_name in body_of(live.mailbox.wait_for(f"renamed@{d.domain}")[0])


def test_the_stamp_moves_with_tokens_and_orgs_but_not_with_a_tokens_last_use(live):
    from idp.store import ScimToken, db

    before = stamp(live)
    d = Directory(live)  # an org, its domain and a token
    after_setup = stamp(live)
    assert after_setup > before
    with live.db():  # what a request writes at most once a minute
        db.session.execute(ScimToken.__table__.update().values(last_used_at=None))
        db.session.commit()
    d.warm()
    assert stamp(live) == after_setup
    assert live.idp("orgs", "scim-token", d.name, "--revoke-all").returncode == 0
    assert stamp(live) > after_setup
