"""Who may do what in the Admin Center, route by route, built from the app's URL map: a
new /admin route without a row in TABLE fails the suite.

Each route is tried as five people: nobody signed in, a member of org A, the admin of org
B, the admin of org A and an operator. The allowed ones must get the page or have the
action done (and audited with their id); the others must get the sign-in page or a 403
that changed nothing; no answer shows another org's people.
"""

from __future__ import annotations

import uuid

import pytest

from tests.admin_world import admin_events, age_sessions, get, new_org, org_admin, person, post, signed_in, user_row
from tests.conftest import Browser

ROLES = ("anonymous", "member", "other_admin", "admin", "operator")
SIGN_IN, FORBIDDEN = "sign-in", 403


def _add_victim(live, world, **fields):
    return person(live, f"victim-{uuid.uuid4().hex[:8]}@{world['domain_a']}", world["org_a"], **fields)


def _with_totp(live, world):
    from idp.store import TotpFactor, db, utcnow

    victim = _add_victim(live, world)
    with live.db():
        db.session.add(TotpFactor(user_id=victim, sealed_secret=b"x", confirmed_at=utcnow()))
        db.session.commit()
    return victim


# (path, method) → (victim maker or None, form, event the allowed roles cause, check of the row after)
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
    ("/admin/orgs/<org_id>/users/<user_id>/reset-second-factor", "POST"):
        (_with_totp, {"confirmed": "yes"}, "admin.second_factor_reset", None),
    ("/admin/orgs/<org_id>/users/<user_id>/sign-out", "POST"):
        (_add_victim, {"confirmed": "yes"}, "admin.signed_out", None),
    ("/admin/orgs/<org_id>/domains", "GET"): (None, None, None, None),
    ("/admin/orgs/<org_id>/enterprise-sign-in", "GET"): (None, None, None, None),
    ("/admin/orgs/<org_id>/sign-in-options", "GET"): (None, None, None, None),
    # an org-wide action (no person): audited on the org with the acting admin's id; the
    # form turns passkeys off, harmless to the other rows' sign-ins
    ("/admin/orgs/<org_id>/sign-in-options", "POST"):
        (None, {"allow_social": "on"}, "org.options_changed", lambda org: not org.allow_passkeys),
    ("/admin/orgs/<org_id>/audit-log", "GET"): (None, None, None, None),
    ("/admin/orgs/<org_id>/audit-log.csv", "GET"): (None, None, None, None),
}


def _org_row(live, org_id: str):
    from idp.store import Org, db

    with live.db():
        org = db.session.get(Org, org_id)
        db.session.expunge(org)
        return org


def _org_events(live, org_id: str) -> list:
    """Org-wide events (about no person) in the org's log: (kind, by)."""
    from idp.store import SecurityEvent, db

    with live.db():
        return [(e.kind, e.actor_id) for e in db.session.query(SecurityEvent)
                .filter(SecurityEvent.org_id == org_id, SecurityEvent.user_id.is_(None),
                        SecurityEvent.kind.like("org.%"))]


def test_every_admin_route_is_in_the_table(live):
    routes = {(rule.rule, method) for rule in live.app.url_map.iter_rules() if rule.rule.startswith("/admin")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes, "no /admin routes at all"
    assert routes - set(TABLE) == set(), "add these /admin routes to TABLE"
    assert set(TABLE) - routes == set(), "TABLE names routes that no longer exist"


@pytest.fixture(scope="module")
def world(live):
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
    return world


def _path(route: str, world, victim: str | None) -> str:
    return route.replace("<org_id>", world["org_a"]).replace("<user_id>", victim or "")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(TABLE), ids=lambda r: f"{r[1]} {r[0]}")
def test_route_as(live, world, route, role):
    rule, method = route
    make_victim, form, event, check = TABLE[route]
    victim = make_victim(live, world) if make_victim else None
    before = user_row(live, victim) if victim else None
    org_wide = method == "POST" and victim is None and form != "add"
    if org_wide:
        from idp.store import Org, db

        with live.db():  # every row starts from the defaults
            org = db.session.get(Org, world["org_a"])
            org.require_mfa, org.allow_social, org.allow_passkeys = False, True, True
            db.session.commit()
    org_events_before = _org_events(live, world["org_a"])
    b = world["browsers"][role]
    path = _path(rule, world, victim)
    if form == "add":
        new_email = f"new-{uuid.uuid4().hex[:8]}@{world['domain_a']}"
        form = {"email": new_email, "name": "New Person"}
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
        if victim:
            after = user_row(live, victim)
            assert (after.disabled, after.org_admin) == (before.disabled, before.org_admin)
            assert admin_events(live, victim) == []
        if org_wide:
            assert _org_events(live, world["org_a"]) == org_events_before
            assert _org_row(live, world["org_a"]).allow_passkeys
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
        assert (user_row(live, victim).email if victim else world["name_a"]) in resp.text
    elif org_wide:
        assert resp.status_code == 302 and resp.headers["Location"].startswith(_path(rule, world, None))
        assert _org_events(live, world["org_a"]) == [*org_events_before, (event, world["ids"][role])]
        assert check(_org_row(live, world["org_a"]))
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
    for action in ("disable", "enable", "make-admin", "reset-second-factor", "sign-out"):
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
