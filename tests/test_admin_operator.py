"""The operator's pages of the Admin Center (every client, social provider, signing key):
operators only, destructive actions confirmed first, each done action audited with the
operator's id. Every such route must be in OPERATOR_TABLE (test_admin_access checks the
union of both tables against the URL map)."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.admin_world import get, new_org, org_admin, person, post, signed_in
from tests.conftest import Browser

ROLES = ("anonymous", "member", "admin", "operator")


def _client(live, world):
    client_id, _ = live.create_client(first_party=False, client_name=f"Victim {uuid.uuid4().hex[:6]}")
    return client_id


def _provider(live, world):
    name = f"victim{uuid.uuid4().hex[:6]}"
    out = live.idp("social", "add", name, "--client-id", "cid", "--client-secret", "s3cret",
                   "--issuer", "https://login.example")
    assert out.returncode == 0, out.stderr
    return name


def _retired_key(live, world):
    """A retired key nobody's token depends on (revoking the signing key of a shared test
    server would break other tests' tokens)."""
    from datetime import timedelta

    from idp.store import SigningKey, db, utcnow
    from keys import new_key_record

    with live.db():
        rec = new_key_record("ES256", live.app.extensions["idp.settings"].secret_key, utcnow())
        db.session.add(SigningKey(kid=rec.kid, alg=rec.alg, private_key=rec.sealed_private_key,
                                  public_jwk=rec.public_jwk, created_at=rec.created_at, retired_at=utcnow(),
                                  unpublish_at=utcnow() + timedelta(hours=1)))
        db.session.commit()
    return rec.kid


def _exists(model, key_name):
    def check(live, key):
        from idp.store import db

        with live.db():
            return db.session.get(model(), key) is not None
    return check


def _signing_kids(live):
    from idp.store import SigningKey, db

    with live.db():
        return {k.kid for k in db.session.query(SigningKey)}


def _model(name):
    def load():
        import idp.store

        return getattr(idp.store, name)
    return load


# (path, method) → (victim maker, form, audited event, "is the victim still there?")
OPERATOR_TABLE = {
    ("/admin/clients", "GET"): (_client, None, None, None),
    ("/admin/social", "GET"): (_provider, None, None, None),
    ("/admin/keys", "GET"): (_retired_key, None, None, None),
    ("/admin/clients/<client_id>/delete", "POST"): (_client, {"confirmed": "yes"}, "client.deleted",
                                                 _exists(_model("Client"), "client_id")),
    ("/admin/social/<name>/delete", "POST"): (_provider, {"confirmed": "yes"}, "social.provider_removed",
                                                _exists(_model("SocialProvider"), "name")),
    ("/admin/keys/<kid>/revoke", "POST"): (_retired_key, {"confirmed": "yes"}, "signing_key.revoked",
                                              _exists(_model("SigningKey"), "kid")),
    ("/admin/keys/rotate", "POST"): (None, {"confirmed": "yes", "alg": "ES256"}, "signing_key.rotated", None),
}


@pytest.fixture(scope="module")
def world(live):
    org_id, name, domain = new_org(live, "ops")
    tag = uuid.uuid4().hex[:6]
    emails = {"member": f"member-{tag}@{domain}", "admin": f"admin-{tag}@{domain}",
              "operator": f"operator-{tag}@ops.example"}
    ids = {"member": person(live, emails["member"], org_id), "admin": org_admin(live, name, emails["admin"]),
           "operator": person(live, emails["operator"], is_admin=True)}
    browsers = {role: signed_in(live, email) for role, email in emails.items()}
    browsers["anonymous"] = Browser(live.issuer)
    return {"ids": ids, "browsers": browsers, "org_name": name}


def _events(live, kind: str, actor: str) -> list:
    from idp.store import SecurityEvent, db

    with live.db():
        return [e.detail for e in db.session.query(SecurityEvent).filter_by(kind=kind, actor_id=actor)]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(OPERATOR_TABLE), ids=lambda r: f"{r[1]} {r[0]}")
def test_operator_route_as(live, world, route, role):
    rule, method = route
    make_victim, form, event, still_there = OPERATOR_TABLE[route]
    victim = make_victim(live, world) if make_victim else None
    kids_before = _signing_kids(live)
    b = world["browsers"][role]
    path = re.sub(r"<[^>]+>", victim or "", rule)
    if route == ("/admin/clients", "GET"):
        # Clients are listed by id, 100 a page, and the session's database holds more by now:
        # the page that starts at the victim (a prefix sorts just before it).
        path += f"?after={victim[:-1]}"
    resp = get(b, path) if method == "GET" else post(b, path, form)

    if role == "anonymous":
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin"), resp.status_code
    elif role != "operator":
        assert resp.status_code == 403, resp.status_code
        assert victim is None or victim not in resp.text
    if role != "operator":
        if still_there:
            assert still_there(live, victim)
        assert _signing_kids(live) == kids_before
        return

    if method == "GET":
        assert resp.status_code == 200 and victim in resp.text
        return
    assert resp.status_code == 302, resp.text[:300]
    assert _events(live, event, world["ids"]["operator"]), event
    if still_there:
        assert not still_there(live, victim)
    else:  # rotation: one new signing key
        assert len(_signing_kids(live) - kids_before) == 1


def test_destructive_actions_ask_first(live, world):
    b = world["browsers"]["operator"]
    client_id = _client(live, world)
    page = post(b, f"/admin/clients/{client_id}/delete", {})
    assert page.status_code == 200 and 'name="confirmed" value="yes"' in page.text and "Delete" in page.text
    assert _exists(_model("Client"), "client_id")(live, client_id)
    kids = _signing_kids(live)
    page = post(b, "/admin/keys/rotate", {"alg": "RS256"})
    assert page.status_code == 200 and 'value="RS256"' in page.text and _signing_kids(live) == kids


def test_unknown_things_and_bad_algorithms(live, world):
    b = world["browsers"]["operator"]
    assert post(b, "/admin/clients/no-such-client/delete", {"confirmed": "yes"}).status_code == 404
    assert post(b, "/admin/keys/no-such-kid/revoke", {"confirmed": "yes"}).status_code == 404
    kids = _signing_kids(live)
    assert post(b, "/admin/keys/rotate", {"confirmed": "yes", "alg": "HS256"}).status_code == 400
    assert _signing_kids(live) == kids


def test_an_orgs_enterprise_provider_is_not_removable_here(live, world):
    out = live.idp("orgs", "oidc", world["org_name"], "--issuer", "https://corp.example", "--client-id", "c",
                   "--client-secret", "s")
    assert out.returncode == 0, out.stderr
    from idp.social import enterprise_provider_name
    from idp.store import Org, db

    with live.db():
        org_id = db.session.query(Org.id).filter_by(name=world["org_name"]).scalar()
    name = enterprise_provider_name(org_id)
    b = world["browsers"]["operator"]
    assert name not in get(b, "/admin/social").text
    assert post(b, f"/admin/social/{name}/delete", {"confirmed": "yes"}).status_code == 404
    assert _exists(_model("SocialProvider"), "name")(live, name)
