"""Security review of the browser sign-in after its same-request rework (a finished sign-in
answers its authorization request itself; /authorize and the email step answer with the
next page; per-process org and provider caches). Each test drives the real server."""

from __future__ import annotations

import re
import time
import uuid

import pyotp
from sqlalchemy import select

from tests.admin_world import new_org
from tests.conftest import Browser, csrf_of
from tests.oidc import authorize_url, redirect_params

ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def _post(b: Browser, page, data: dict):
    """Submit `page`'s form and return the server's answer itself (no redirect followed)."""
    action = ACTION.search(page.text).group(1).replace("&amp;", "&")
    base = re.match(r"https?://[^/]+", page.url).group(0)
    return b.http.post(base + action, data={"csrf_token": csrf_of(page.text), **data},
                       allow_redirects=False, timeout=30)


def _password_page(b: Browser, url: str, email: str):
    page = b.submit(b.get(url), {"email": email})
    assert 'name="password"' in page.text, page.text[:300]
    return page


def _shape(resp) -> tuple:
    """What an onlooker can compare between two answers: status, redirect, the page's text
    with the CSRF token and the typed address taken out."""
    body = resp.text.replace(csrf_of(resp.text), "") if 'name="csrf_token"' in resp.text else resp.text
    body = re.sub(r"[\w.+-]+@[\w.-]+", "ADDRESS", body)
    return resp.status_code, resp.headers.get("Location"), body


def test_the_password_step_does_not_tell_a_member_of_an_enforcing_org_from_nobody(live):
    """An account that belongs to an org enforcing Enterprise Sign-In by membership (its
    address outside the org's domains: `idp users create --org`, a domain the org gave up)
    was told apart from an unknown address by a wrong password: 403 "requires Enterprise
    Sign-In" at once (no argon2 either) against 401 "Incorrect email or password". The
    email step says nothing about accounts; the password step must not either, until the
    password is right."""
    from idp.store import Org, db

    org_id, _name, _domain = new_org(live, "member-enum")
    with live.db():
        db.session.get(Org, org_id).enforce_sso = True
        db.session.commit()
    outside = f"elsewhere-{uuid.uuid4().hex[:8]}.example"
    live.create_user(f"member@{outside}", "member-password-1", org_id=org_id)

    answers = {}
    for who in ("member", "nobody"):
        b = Browser(live.issuer)
        page = _password_page(b, f"{live.issuer}/signin", f"{who}@{outside}")
        answers[who] = _post(b, page, {"password": "not the password"})
    assert answers["member"].status_code == answers["nobody"].status_code == 401
    assert "Incorrect email or password" in answers["member"].text
    assert _shape(answers["member"]) == _shape(answers["nobody"])

    # The right password still gets the member no session, only the way to their org's IdP.
    b = Browser(live.issuer)
    page = _password_page(b, f"{live.issuer}/signin", f"member@{outside}")
    refused = _post(b, page, {"password": "member-password-1"})
    assert refused.status_code == 403 and "Enterprise Sign-In" in refused.text
    assert not refused.cookies.get("idp_session")
    assert "Your account" not in b.get(f"{live.issuer}/account").text
