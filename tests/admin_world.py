"""Orgs, admins and members for the Admin Center tests, made through the CLI and the pages."""

from __future__ import annotations

import re
import uuid

from tests.conftest import Browser, csrf_of

PASSWORD = "admin center pw 1"


def new_org(live, tag: str) -> tuple[str, str, str]:
    """(org id, name, domain) of a fresh org made with `idp orgs create`."""
    name = f"{tag}-{uuid.uuid4().hex[:8]}"
    domain = f"{name}.example"
    out = live.idp("orgs", "create", name, "--domain", domain)
    assert out.returncode == 0, out.stderr
    org_id = re.search(r"\(([0-9a-f]+)\)", out.stdout).group(1)
    return org_id, name, domain


def person(live, email: str, org_id: str | None = None, **fields) -> str:
    return live.create_user(email, PASSWORD, org_id=org_id, **fields)


def org_admin(live, org_name: str, email: str, cli: bool = False) -> str:
    """A new admin of the org: by `idp orgs admin` (`cli`), or straight in the database
    (what that command does, without its process start-up)."""
    from idp import orgs
    from idp.store import db

    if cli:
        user_id = person(live, email)
        out = live.idp("orgs", "admin", org_name, email)
        assert out.returncode == 0, out.stderr
        return user_id
    with live.db():
        org_id = orgs.find(org_name).id
        db.session.remove()
    return person(live, email, org_id, org_admin=True)


def signed_in(live, email: str, lang: str = "en") -> Browser:
    b = Browser(live.issuer, lang=lang)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    assert page.url.startswith(f"{live.issuer}/account"), page.text[:300]
    return b


def post(b: Browser, path: str, data: dict | None = None, csrf: bool = True):
    """A form post as the page would send it (with this browser's CSRF token unless told not)."""
    form = dict(data or {})
    if csrf:
        form["csrf_token"] = csrf_of(b.get(f"{b.issuer}/signin").text)
    return b.http.post(f"{b.issuer}{path}", data=form, allow_redirects=False, timeout=30)


def get(b: Browser, path: str, **params):
    return b.http.get(f"{b.issuer}{path}", params=params, allow_redirects=False, timeout=30)


def user_row(live, user_id: str):
    from idp.store import User, db

    with live.db():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def admin_events(live, user_id: str) -> list:
    from idp.store import SecurityEvent, db

    with live.db():
        return [(e.kind, {**e.detail, "by": e.actor_id}) for e in db.session.query(SecurityEvent)
                .filter(SecurityEvent.user_id == user_id, SecurityEvent.kind.like("admin.%"))]


def age_sessions(live, user_id: str, seconds: int) -> None:
    from idp.store import BrowserSession, db

    with live.db():
        for row in db.session.query(BrowserSession).filter_by(user_id=user_id):
            row.auth_time -= seconds
            if row.mfa_time:
                row.mfa_time -= seconds
        db.session.commit()


def at_second_factor_set_up(live, tag: str):
    """(browser, set-up page, its TOTP secret, email) of a member of a fresh org that requires
    a second factor, signed in with the password and sent to set one up."""
    from idp.store import Org, db

    org_id, _, domain = new_org(live, tag)
    email = f"m-{uuid.uuid4().hex[:8]}@{domain}"
    person(live, email, org_id)
    with live.db():
        db.session.get(Org, org_id).require_mfa = True
        db.session.commit()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "/signin/set-up-second-factor" in page.url
    secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    return b, page, secret, email
