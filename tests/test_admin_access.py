"""Who may do what in the Admin Center, route by route, built from the app's URL map: a
new /admin route without a row in TABLE fails the suite.

Each route is tried as five people: nobody signed in, a member of org A, the admin of org
B, the admin of org A and an operator. The allowed ones must get the page or have the
action done (and audited with their id); the others must get the sign-in page or a 403
that changed nothing; no answer shows another org's people.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import pytest

from tests.admin_world import admin_events, age_sessions, get, new_org, org_admin, person, post, signed_in, user_row
from tests.conftest import Browser
from tests.test_admin_operator import OPERATOR_TABLE

ROLES = ("anonymous", "member", "other_admin", "admin", "operator")
SIGN_IN, FORBIDDEN = "sign-in", 403


def _add_victim(live, world, **fields):
    return person(live, f"victim-{uuid.uuid4().hex[:8]}@{world['domain_a']}", world["org_a"], **fields)


def _invited(live, world):
    from idp.store import User, db

    victim = _add_victim(live, world)
    with live.db():
        user = db.session.get(User, victim)
        user.email_verified, user.password_hash = False, None
        db.session.commit()
    return victim


def _with_totp(live, world):
    from idp.store import TotpFactor, db, utcnow

    victim = _add_victim(live, world)
    with live.db():
        db.session.add(TotpFactor(user_id=victim, sealed_secret=b"x", confirmed_at=utcnow()))
        db.session.commit()
    return victim


def _claim(live, world):
    """A pending domain claim of org A (its id). Its name is under .invalid, so whichever
    resolver the server asks, the check fails (and is recorded as done)."""
    from idp.store import DomainClaim, db

    with live.db():
        row = DomainClaim(org_id=world["org_a"], domain=f"claim-{uuid.uuid4().hex[:8]}.invalid", token="t" * 32)
        db.session.add(row)
        db.session.commit()
        return row.id


def _proven(live, world):
    """A proven domain of org A (its name)."""
    from idp.store import OrgDomain, db

    domain = f"proven-{uuid.uuid4().hex[:8]}.example"
    with live.db():
        db.session.add(OrgDomain(domain=domain, org_id=world["org_a"]))
        db.session.commit()
    return domain



def _org_state(live, world) -> tuple:
    """What the org-wide (person-less) actions change: org A's IdP, enforcement, OpenID
    provider, sign-in options (second factor required, social allowed, passkeys allowed)."""
    from idp.social import enterprise_provider
    from idp.store import Org, db

    with live.db():
        org = db.session.get(Org, world["org_a"])
        provider = enterprise_provider(org.id)
        return (org.saml_metadata, org.saml_metadata_source, org.enforce_sso, provider.client_id if provider else None,
                org.require_mfa, org.allow_social, org.allow_passkeys)


def _reset_org(live, world) -> None:
    """Org A as before an org-wide action (no IdP, nothing enforced, default sign-in options): the other tests sign its
    people in by password."""
    from idp.social import enterprise_provider
    from idp.store import Org, db

    with live.db():
        org = db.session.get(Org, world["org_a"])
        org.saml_metadata = org.saml_metadata_source = None
        org.enforce_sso = False
        org.require_mfa, org.allow_social, org.allow_passkeys = False, True, True
        provider = enterprise_provider(org.id)
        if provider is not None:
            db.session.delete(provider)
        db.session.commit()


def _idp_metadata(world) -> str:
    if "idp" not in world:
        from tests.saml_idp import TestIdP

        world["idp"] = TestIdP(world["tmp"] / "idp")
    return world["idp"].metadata_xml()


def _with_idp(live, world) -> None:
    from idp import orgs
    from idp.store import Org, db

    with live.db():
        orgs.attach_saml(db.session.get(Org, world["org_a"]), orgs.UPLOADED + "idp.xml", xml=_idp_metadata(world))


def _metadata_url(live, world) -> dict:
    if "metadata_server" not in world:
        from tests.test_admin_enterprise import MetadataServer

        world["metadata_server"] = MetadataServer()
        world["metadata_server"].body = _idp_metadata(world).encode()
    return {"metadata_url": world["metadata_server"].url()}


def _enforce(live, world) -> dict:
    _with_idp(live, world)
    return {"enforce": "on", "confirmed": "yes"}


def _test_connection(live, world) -> dict:
    _with_idp(live, world)
    return {}


ENTERPRISE = "/admin/orgs/<org_id>/enterprise-sign-in"

# (path, method) → (victim maker or None, form, event the allowed roles cause, check of the row after).
# Under /domains the victim is a claim id or a domain, and the check is of the org's
# domain state after: check(state, victim, domain).
# Org-wide actions (no person in the path): form is `(live, world) -> form` (it prepares org A),
# and check is `(live, world, response) -> bool`, as for a GET without a person.
TABLE = {
    ("/admin", "GET"): (None, None, None, None),
    ("/admin/orgs/<org_id>/users", "GET"): (_add_victim, None, None, None),
    ("/admin/orgs/<org_id>/users", "POST"): (None, "add", "admin.user_invited", None),
    ("/admin/orgs/<org_id>/users/<user_id>", "GET"): (_add_victim, None, None, None),
    ("/admin/orgs/<org_id>/users/<user_id>/disable", "POST"):
        (_add_victim, {"confirmed": "yes"}, "admin.user_disabled", lambda u: u.disabled),
    ("/admin/orgs/<org_id>/users/<user_id>/enable", "POST"):
        (lambda live, world: _add_victim(live, world, disabled=True), {}, "admin.user_enabled",
         lambda u: not u.disabled),
    ("/admin/orgs/<org_id>/users/<user_id>/make-admin", "POST"):
        (_add_victim, {}, "admin.made_admin", lambda u: u.org_admin),
    ("/admin/orgs/<org_id>/users/<user_id>/remove-admin", "POST"):
        (lambda live, world: _add_victim(live, world, org_admin=True), {"confirmed": "yes"}, "admin.removed",
         lambda u: not u.org_admin),
    ("/admin/orgs/<org_id>/users/<user_id>/resend-invitation", "POST"):
        (lambda live, world: _invited(live, world), {},
         "admin.user_invited", None),
    ("/admin/orgs/<org_id>/users/<user_id>/reset-second-factor", "POST"):
        (_with_totp, {"confirmed": "yes"}, "admin.second_factor_reset", None),
    ("/admin/orgs/<org_id>/users/<user_id>/sign-out", "POST"):
        (_add_victim, {"confirmed": "yes"}, "admin.signed_out", None),
    ("/admin/orgs/<org_id>/domains", "GET"): (None, None, None, None),
    ("/admin/orgs/<org_id>/domains", "POST"):
        (None, "domain", "domain.claimed", lambda s, v, d: d in {c[0] for c in s.claims.values()}),
    ("/admin/orgs/<org_id>/domains/claims/<claim_id>/verify", "POST"):
        (_claim, {}, "domain.check_failed", lambda s, v, d: s.claims[v][1] is not None and d not in s.proven),
    ("/admin/orgs/<org_id>/domains/claims/<claim_id>/remove", "POST"):
        (_claim, {"confirmed": "yes"}, "domain.claim_withdrawn", lambda s, v, d: v not in s.claims),
    ("/admin/orgs/<org_id>/domains/<domain>/remove", "POST"):
        (_proven, {"confirmed": "yes"}, "domain.removed", lambda s, v, d: v not in s.proven),
    (ENTERPRISE, "GET"): (None, None, None, None),
    (ENTERPRISE + "/metadata", "POST"): (None, _metadata_url, "admin.idp_metadata_saved",
                                         lambda live, world, resp: _org_state(live, world)[0] is not None),
    (ENTERPRISE + "/sp-metadata", "GET"):
        (None, None, None, lambda live, world, resp: f"/saml/{world['org_a']}/acs" in resp.text),
    (ENTERPRISE + "/enforce", "POST"): (None, _enforce, "admin.sso_enforced",
                                        lambda live, world, resp: _org_state(live, world)[2] is True),
    (ENTERPRISE + "/oidc", "POST"):
        (None, lambda live, world: {"issuer": "http://127.0.0.1:8999/acl", "client_id": "acl-app",
                                    "client_secret": "acl-secret"}, "admin.oidc_saved",
         lambda live, world, resp: _org_state(live, world)[3] == "acl-app"),
    (ENTERPRISE + "/test", "POST"):
        (None, _test_connection, None, lambda live, world, resp: "SAMLRequest=" in resp.text),
    ("/admin/orgs/<org_id>/sign-in-options", "GET"): (None, None, None, None),
    # turns passkeys off (and is put back after, like every org-wide row)
    ("/admin/orgs/<org_id>/sign-in-options", "POST"):
        (None, lambda live, world: {"allow_social": "on"}, "org.options_changed",
         lambda live, world, resp: _org_state(live, world)[4:] == (False, True, False)),
    ("/admin/orgs/<org_id>/audit-log", "GET"): (None, None, None, None),
    ("/admin/orgs/<org_id>/audit-log.csv", "GET"): (None, None, None, None),
}


def test_every_admin_route_is_in_the_table(live):
    routes = {(rule.rule, method) for rule in live.app.url_map.iter_rules() if rule.rule.startswith("/admin")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes, "no /admin routes at all"
    tables = set(TABLE) | set(OPERATOR_TABLE)
    assert routes - tables == set(), "add these /admin routes to TABLE (or OPERATOR_TABLE)"
    assert tables - routes == set(), "TABLE names routes that no longer exist"


@pytest.fixture(scope="module")
def world(live, tmp_path_factory):
    org_a, name_a, domain_a = new_org(live, "acl-a")
    org_b, name_b, domain_b = new_org(live, "acl-b")
    tag = uuid.uuid4().hex[:6]
    emails = {
        "member": f"member-{tag}@{domain_a}",
        "other_admin": f"admin-{tag}@{domain_b}",
        "admin": f"admin-{tag}@{domain_a}",
        "operator": f"operator-{tag}@ops.example",
    }
    ids = {"member": person(live, emails["member"], org_a),
           "other_admin": org_admin(live, name_b, emails["other_admin"], cli=True),
           "admin": org_admin(live, name_a, emails["admin"], cli=True),
           "operator": person(live, emails["operator"], is_admin=True)}
    secret_b = f"secret-person-{tag}@{domain_b}"
    world = {"org_a": org_a, "org_b": org_b, "name_a": name_a, "name_b": name_b, "domain_a": domain_a,
             "domain_b": domain_b, "ids": ids, "secret_b": secret_b,
             "victim_b": person(live, secret_b, org_b, name="Bea Secret")}
    browsers = {role: signed_in(live, email) for role, email in emails.items()}
    browsers["anonymous"] = Browser(live.issuer)
    world["browsers"] = browsers
    world["tmp"] = tmp_path_factory.mktemp("acl")
    yield world
    if "metadata_server" in world:
        world["metadata_server"].server.shutdown()


def _path(route: str, world, victim: str | None) -> str:
    for param in ("<user_id>", "<claim_id>", "<domain>"):
        route = route.replace(param, victim or "")
    return route.replace("<org_id>", world["org_a"])


class DomainState(NamedTuple):
    proven: set  # domain names
    claims: dict  # id → (domain, checked_at, last_error)
    events: list  # (kind, actor id, domain) of every domain.* event


def domain_state(live, org_id: str) -> DomainState:
    from idp.store import DomainClaim, OrgDomain, SecurityEvent, db

    with live.db():
        return DomainState(
            {d.domain for d in db.session.query(OrgDomain).filter_by(org_id=org_id)},
            {c.id: (c.domain, c.checked_at, c.last_error)
             for c in db.session.query(DomainClaim).filter_by(org_id=org_id)},
            [(e.kind, e.actor_id, e.detail.get("domain")) for e in db.session.query(SecurityEvent)
             .filter(SecurityEvent.org_id == org_id, SecurityEvent.kind.like("domain.%"))])


def _org_events(live, world, kind: str, role: str | None = None) -> int:
    """Org A's events of this kind (by this role's person, when given)."""
    from idp.store import SecurityEvent, db

    with live.db():
        query = db.session.query(SecurityEvent).filter_by(org_id=world["org_a"], kind=kind)
        if role is not None:
            query = query.filter_by(actor_id=world["ids"][role])
        return query.count()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(TABLE), ids=lambda r: f"{r[1]} {r[0]}")
def test_route_as(live, world, route, role):
    if callable(TABLE[route][1]):  # an org-wide action: org A is put back as it was after it
        try:
            _org_wide_route_as(live, world, route, role)
        finally:
            _reset_org(live, world)
        return
    rule, method = route
    make_victim, form, event, check = TABLE[route]
    victim = make_victim(live, world) if make_victim else None
    about_domains = "/domains" in rule
    before = user_row(live, victim) if victim and not about_domains else None
    domains_before = domain_state(live, world["org_a"]) if about_domains else None
    b = world["browsers"][role]
    path = _path(rule, world, victim)
    if form == "add":
        new_email = f"new-{uuid.uuid4().hex[:8]}@{world['domain_a']}"
        form = {"email": new_email, "name": "New Person"}
    target = None  # the domain a /domains action is about
    if form == "domain":
        target = f"new-{uuid.uuid4().hex[:8]}.example"
        form = {"domain": target}
    elif about_domains and victim:
        target = domains_before.claims[victim][0] if "<claim_id>" in rule else victim
    resp = get(b, path) if method == "GET" else post(b, path, form)

    # never another org's people (the operator's org list names orgs, not people)
    assert world["secret_b"] not in resp.text and "Bea Secret" not in resp.text
    allowed = role in ("admin", "operator")
    if role == "anonymous":
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin"), resp.status_code
    elif not allowed and rule != "/admin":
        assert resp.status_code == FORBIDDEN, resp.status_code
        assert world["domain_a"] not in resp.text
    if not allowed:
        if about_domains:
            assert domain_state(live, world["org_a"]) == domains_before
        elif victim:
            after = user_row(live, victim)
            assert (after.disabled, after.org_admin) == (before.disabled, before.org_admin)
            assert admin_events(live, victim) == []
        if method == "POST" and rule.endswith("/users"):
            from idp.store import User, db

            with live.db():
                assert db.session.query(User).filter_by(email=new_email).first() is None
        return

    # allowed: the page, or the action done and audited with the acting admin's id
    if rule == "/admin":
        if role == "admin":
            assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/admin/orgs/{world['org_a']}/users")
        else:
            assert resp.status_code == 200 and world["name_a"] in resp.text and world["name_b"] in resp.text
    elif method == "GET" and rule.endswith(".csv"):
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
        assert resp.text.startswith("time_utc,")
    elif method == "GET":
        assert resp.status_code == 200
        if check:
            assert check(live, world, resp)
        else:
            assert (user_row(live, victim).email if victim else world["name_a"]) in resp.text
    elif about_domains:
        assert resp.status_code == 302, resp.text[:300]
        assert resp.headers["Location"].split("#")[0].split("?")[0].endswith(f"/admin/orgs/{world['org_a']}/domains")
        after = domain_state(live, world["org_a"])
        assert (event, world["ids"][role], target) in after.events
        assert check(after, victim, target)
    else:
        assert resp.status_code == 302, resp.text[:300]
        if victim is None:  # added a person
            from idp.store import User, db

            with live.db():
                victim = db.session.query(User).filter_by(email=new_email).one().id
        assert resp.headers["Location"].endswith(f"/admin/orgs/{world['org_a']}/users/{victim}") \
            or "invited=1" in resp.headers["Location"]
        assert (event, {"by": world["ids"][role]}) in [(k, {"by": d.get("by")}) for k, d in admin_events(live, victim)]
        if check:
            assert check(user_row(live, victim))


def _org_wide_route_as(live, world, route, role):
    rule, method = route
    _, make_form, event, check = TABLE[route]
    form = make_form(live, world)
    allowed = role in ("admin", "operator")
    before = _org_state(live, world)
    events = _org_events(live, world, event, role if allowed else None) if event else 0
    resp = post(world["browsers"][role], _path(rule, world, None), form)
    assert world["secret_b"] not in resp.text and "Bea Secret" not in resp.text
    if not allowed:
        if role == "anonymous":
            assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin"), resp.status_code
        else:
            assert resp.status_code == FORBIDDEN and world["domain_a"] not in resp.text, resp.status_code
        assert _org_state(live, world) == before
        assert not event or _org_events(live, world, event) == events
        return
    assert resp.status_code in (200, 302), resp.text[:300]
    if event:
        assert _org_events(live, world, event, role) == events + 1
    assert check(live, world, resp)


def test_non_admins_on_slash_admin_get_403(live, world):
    for role in ("member",):
        resp = get(world["browsers"][role], "/admin")
        assert resp.status_code == 403 and world["name_a"] not in resp.text


def test_another_orgs_admin_on_slash_admin_lands_on_their_own_org(live, world):
    resp = get(world["browsers"]["other_admin"], "/admin")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/admin/orgs/{world['org_b']}/users")


def test_a_person_of_another_org_is_not_found_through_your_org(live, world):
    victim_b = world["victim_b"]
    admin = world["browsers"]["admin"]
    base = f"/admin/orgs/{world['org_a']}/users/{victim_b}"
    assert get(admin, base).status_code == 404
    for action in ("disable", "enable", "make-admin", "remove-admin", "resend-invitation", "reset-second-factor",
                   "sign-out"):
        resp = post(admin, f"{base}/{action}", {"confirmed": "yes"})
        assert resp.status_code == 404, action
        assert world["secret_b"] not in resp.text
    row = user_row(live, victim_b)
    assert not row.disabled and not row.org_admin and admin_events(live, victim_b) == []
    # and through the other org's own URL: not theirs to manage
    assert get(admin, f"/admin/orgs/{world['org_b']}/users/{victim_b}").status_code == 403
    assert post(admin, f"/admin/orgs/{world['org_b']}/users/{victim_b}/disable",
                {"confirmed": "yes"}).status_code == 403
    assert not user_row(live, victim_b).disabled


def test_unknown_org(live, world):
    assert get(world["browsers"]["operator"], "/admin/orgs/nosuchorg/users").status_code == 404
    # an org admin learns nothing about which org ids exist
    assert get(world["browsers"]["admin"], "/admin/orgs/nosuchorg/users").status_code == 403
    assert get(world["browsers"]["admin"], f"/admin/orgs/{world['org_b']}/users").status_code == 403


def test_an_org_admin_cannot_act_on_an_operator_in_their_org(live, world):
    operator_in_a = person(live, f"op-{uuid.uuid4().hex[:6]}@{world['domain_a']}", world["org_a"], is_admin=True)
    resp = post(world["browsers"]["admin"], f"/admin/orgs/{world['org_a']}/users/{operator_in_a}/disable",
                {"confirmed": "yes"})
    assert resp.status_code == 403
    assert not user_row(live, operator_in_a).disabled


def test_admin_pages_need_a_sign_in_from_the_last_15_minutes(live, world):
    email = f"stale-{uuid.uuid4().hex[:6]}@{world['domain_a']}"
    admin_id = org_admin(live, world["name_a"], email)
    b = signed_in(live, email)
    users = f"/admin/orgs/{world['org_a']}/users"
    age_sessions(live, admin_id, 800)  # older than the account page's 10 minutes, within 15
    assert get(b, users).status_code == 200
    age_sessions(live, admin_id, 200)
    resp = get(b, users)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")
    victim = _add_victim(live, world)
    resp = post(b, f"{users}/{victim}/disable", {"confirmed": "yes"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")
    assert not user_row(live, victim).disabled
    # signing in again comes back to the page
    page = b.sign_in(b.get(f"{live.issuer}/signin"), email, "admin center pw 1")
    assert page.url.endswith(users), page.url
