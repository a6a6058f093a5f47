"""Admin Center, Sign-in options: the page, and each option enforced at sign-in on the
server (a second factor required, social sign-in and passkeys forbidden)."""

from __future__ import annotations

import re
import uuid

import pyotp
import pytest

from tests.admin_world import PASSWORD, get, new_org, org_admin, person, post, signed_in
from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify
from tests.test_passkeys import _post_json
from tests.webauthn_authenticator import SoftwareAuthenticator


def _org(live, tag: str) -> dict:
    org_id, name, domain = new_org(live, tag)
    return {"id": org_id, "name": name, "domain": domain, "path": f"/admin/orgs/{org_id}/sign-in-options"}


def _member(live, org: dict, **fields) -> tuple[str, str]:
    email = f"m-{uuid.uuid4().hex[:8]}@{org['domain']}"
    return email, person(live, email, org["id"], **fields)


def _set(live, org: dict, **options) -> None:
    from idp.store import Org, db

    with live.db():
        row = db.session.get(Org, org["id"])
        for name, value in options.items():
            setattr(row, name, value)
        db.session.commit()


def _options(live, org: dict) -> tuple[bool, bool, bool]:
    from idp.store import Org, db

    with live.db():
        row = db.session.get(Org, org["id"])
        return row.require_mfa, row.allow_social, row.allow_passkeys


def _events(live, kind: str, org_id: str) -> list:
    from idp.store import SecurityEvent, db

    with live.db():
        return [(e.actor_id, e.user_id, e.detail) for e in db.session.query(SecurityEvent)
                .filter(SecurityEvent.kind == kind, SecurityEvent.org_id == org_id)]


def _give_totp(live, user_id: str) -> str:
    """A confirmed authenticator app, as /account/totp leaves it; returns its secret."""
    from idp.mfa import totp

    with live.db():
        from idp.store import User, db

        user = db.session.get(User, user_id)
        secret = totp.start_enrolment(user)
        assert totp.confirm_enrolment(user, pyotp.TOTP(secret).now())
        db.session.commit()  # the caller commits (notices.record in the app)
    return secret


def _next_code(secret: str) -> str:
    """The code of the next time step: the current one was spent setting the app up."""
    import time

    return pyotp.TOTP(secret).at(time.time() + 30)


def _open_sessions(live, user_id: str) -> int:
    from idp.store import BrowserSession, db

    with live.db():
        return db.session.query(BrowserSession).filter_by(user_id=user_id, ended_at=None).count()


# --- the page ---------------------------------------------------------------------------


def test_the_admin_saves_the_options_and_the_change_is_audited(live):
    org = _org(live, "opt-page")
    admin_email = f"boss-{uuid.uuid4().hex[:6]}@{org['domain']}"
    admin_id = org_admin(live, org["name"], admin_email)
    b = signed_in(live, admin_email)
    page = b.get(f"{live.issuer}{org['path']}")
    assert page.status_code == 200
    for label in ("Require a second factor for every member", "Allow social sign-in", "Allow passkeys", ">Save<"):
        assert label in page.text
    assert _options(live, org) == (False, True, True)  # the defaults: nothing changes for anyone

    # unticked boxes are not sent: social and passkeys off
    done = b.submit(page, {})
    assert done.status_code == 200 and "Sign-in options saved." in done.text
    assert _options(live, org) == (False, False, False)
    assert _events(live, "org.options_changed", org["id"]) == [
        (admin_id, None, {"require_mfa": False, "allow_social": False, "allow_passkeys": False})]
    assert 'name="allow_social" checked' not in done.text

    # without the CSRF token: refused, nothing changed
    resp = post(b, org["path"], {"allow_social": "on", "allow_passkeys": "on"}, csrf=False)
    assert resp.status_code in (400, 403)
    assert _options(live, org) == (False, False, False)
    assert len(_events(live, "org.options_changed", org["id"])) == 1


def test_requiring_a_factor_needs_one_on_the_admins_own_account_first(live):
    org = _org(live, "opt-self")
    admin_email = f"boss-{uuid.uuid4().hex[:6]}@{org['domain']}"
    admin_id = org_admin(live, org["name"], admin_email)
    b = signed_in(live, admin_email)
    resp = post(b, org["path"], {"require_mfa": "on", "allow_social": "on", "allow_passkeys": "on"})
    assert resp.status_code == 409 and "Set up a second factor on your own account" in resp.text
    assert _options(live, org) == (False, True, True)
    assert _events(live, "org.options_changed", org["id"]) == []
    # with an authenticator app (and its code just given), the admin may require one of all
    secret = _give_totp(live, admin_id)
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/admin"), admin_email, PASSWORD)
    page = b.submit(page, {"code": _next_code(secret)})
    resp = post(b, org["path"], {"require_mfa": "on", "allow_social": "on", "allow_passkeys": "on"})
    assert resp.status_code == 302, resp.text[:300]
    assert _options(live, org) == (True, True, True)
    assert get(b, org["path"]).status_code == 200  # and keeps their session


def test_another_orgs_admin_cannot_change_the_options(live):
    org, other = _org(live, "opt-a"), _org(live, "opt-b")
    email = f"boss-{uuid.uuid4().hex[:6]}@{other['domain']}"
    org_admin(live, other["name"], email)
    b = signed_in(live, email)
    resp = post(b, org["path"], {})
    assert resp.status_code == 403
    assert _options(live, org) == (False, True, True) and _events(live, "org.options_changed", org["id"]) == []


# --- a second factor required ------------------------------------------------------------


def test_a_member_without_a_factor_sets_one_up_before_the_request_continues(live):
    org = _org(live, "opt-mfa")
    email, user_id = _member(live, org)
    _set(live, org, require_mfa=True)
    client_id, secret = live.create_client()
    verifier, challenge = pkce()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(authorize_url(live.issuer, client_id, code_challenge=challenge,
                                         code_challenge_method="S256")), email, PASSWORD)
    assert page.status_code == 200 and "/signin/set-up-second-factor" in page.url
    assert "Set up authenticator app" in page.text and "requires a second factor" in page.text
    # no session yet: neither the account page nor the request may go on
    assert _open_sessions(live, user_id) == 0
    assert get(b, "/account").headers["Location"].endswith("/signin")
    req = re.search(r"req=([0-9a-f]{32})", page.url).group(1)
    resume = get(b, f"/authorize/resume/{req}")
    assert resume.status_code == 302 and "/signin?req=" in resume.headers["Location"]

    page = b.get(f"{live.issuer}/signin/set-up-second-factor?req={req}")
    totp_secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    assert b.submit(page, {"code": "000000"}).status_code == 400
    assert _open_sessions(live, user_id) == 0
    done = b.submit(page, {"code": pyotp.TOTP(totp_secret).now()})
    assert done.status_code == 200 and len(re.findall(r"<li>[a-z2-9]{5}-[a-z2-9]{5}</li>", done.text)) == 10
    onward = re.search(r'<a href="([^"]+)">Continue</a>', done.text).group(1).replace("&amp;", "&")
    params = redirect_params(b.follow(b.http.get(live.issuer + onward if onward.startswith("/") else onward,
                                                 allow_redirects=False, timeout=30)))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    # the code proved the app was set up, not a factor held before: one factor, honestly
    assert claims["email"] == email and claims["amr"] == ["pwd"] and claims["acr"] == "urn:myaccount:loa:1"
    assert [kind for kind in _kinds_of(live, user_id) if kind in ("totp.enabled", "signin.success")] == [
        "totp.enabled", "signin.success"]

    # the next sign-in asks for the factor just set up
    again = Browser(live.issuer)
    page = again.sign_in(again.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "Confirm your identity" in page.text


def _kinds_of(live, user_id: str) -> list[str]:
    from idp.store import SecurityEvent, db

    with live.db():
        return [e.kind for e in db.session.query(SecurityEvent).filter_by(user_id=user_id).order_by(SecurityEvent.id)]


def test_a_session_from_before_the_requirement_stops_counting(live):
    org = _org(live, "opt-old")
    email, user_id = _member(live, org)
    b = signed_in(live, email)
    assert get(b, "/account").status_code == 200
    _set(live, org, require_mfa=True)
    resp = get(b, "/account")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")
    client_id, _ = live.create_client()
    resp = b.http.get(authorize_url(live.issuer, client_id, prompt="none"), allow_redirects=False, timeout=30)
    assert resp.status_code == 302 and "error=login_required" in resp.headers["Location"]
    # signing in again leads to the set-up
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "/signin/set-up-second-factor" in page.url
    # a member of an org that does not require it keeps signing in with the password alone
    _set(live, org, require_mfa=False)
    assert "Your account" in signed_in(live, email).get(f"{live.issuer}/account").text


def test_a_member_with_a_factor_is_asked_for_it(live):
    org = _org(live, "opt-has")
    email, user_id = _member(live, org)
    secret = _give_totp(live, user_id)
    _set(live, org, require_mfa=True)
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "Confirm your identity" in page.text and _open_sessions(live, user_id) == 0
    page = b.submit(page, {"code": _next_code(secret)})
    assert "Your account" in page.text


def test_the_requirement_binds_an_account_in_the_orgs_domain_without_membership(live):
    org = _org(live, "opt-dom")
    email = f"loose-{uuid.uuid4().hex[:6]}@{org['domain']}"
    person(live, email)  # no org_id: made before its domain joined the org
    _set(live, org, require_mfa=True)
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "/signin/set-up-second-factor" in page.url


# --- passkeys forbidden ------------------------------------------------------------------


def test_passkeys_forbidden_neither_sign_in_nor_confirm_nor_get_added(live):
    org = _org(live, "opt-pk")
    email, user_id = _member(live, org)
    b = signed_in(live, email)
    account = b.get(f"{live.issuer}/account")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(b, account, "/account/passkeys/options").json()
    assert _post_json(b, account, "/account/passkeys", {"credential": device.create(options)}).status_code == 201

    _set(live, org, allow_passkeys=False)
    # no passwordless sign-in
    fresh = Browser(live.issuer)
    page = fresh.get(f"{live.issuer}/signin")
    options = _post_json(fresh, page, "/signin/passkey/options").json()
    resp = _post_json(fresh, page, "/signin/passkey", {"credential": device.get(options)})
    assert resp.status_code == 403 and "does not allow passkeys" in resp.json()["error"]
    assert _open_sessions(live, user_id) == 1  # only the first browser's
    # not a second factor either: the password alone signs in, no passkey is offered
    page = fresh.sign_in(fresh.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "Your account" in page.text and "Add a passkey" not in page.text
    assert "Your organization does not allow passkeys." in page.text
    # no new passkey
    options = _post_json(fresh, page, "/account/passkeys/options")
    assert options.status_code == 403
    resp = _post_json(fresh, page, "/account/passkeys", {"credential": {}})
    assert resp.status_code == 403 and "does not allow passkeys" in resp.json()["error"]
    from idp.store import Passkey, db

    with live.db():
        assert db.session.query(Passkey).filter_by(user_id=user_id).count() == 1


def test_passkeys_forbidden_refuse_the_passkey_at_the_second_factor_step(live):
    org = _org(live, "opt-pk2")
    email, user_id = _member(live, org)
    secret = _give_totp(live, user_id)
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    page = b.submit(page, {"code": _next_code(secret)})
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(b, page, "/account/passkeys/options").json()
    assert _post_json(b, page, "/account/passkeys", {"credential": device.create(options)}).status_code == 201
    # an options request while passkeys are allowed, answered once they are not
    fresh = Browser(live.issuer)
    page = fresh.sign_in(fresh.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "Use a passkey" in page.text
    options = _post_json(fresh, page, "/signin/verify/passkey/options").json()
    _set(live, org, allow_passkeys=False)
    resp = _post_json(fresh, page, "/signin/verify/passkey", {"credential": device.get(options)})
    assert resp.status_code == 403
    assert _post_json(fresh, page, "/signin/verify/passkey/options").status_code == 403
    page = fresh.get(f"{live.issuer}/signin/verify")
    assert "Confirm your identity" in page.text and "Use a passkey" not in page.text
    assert _open_sessions(live, user_id) == 1


# --- social sign-in forbidden ------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    from tests.conftest import separate_live

    yield from separate_live(tmp_path_factory, "upstream-opt")


def test_social_forbidden_neither_signs_in_nor_links(live, upstream):
    from tests.test_social import _browser, _upstream_sign_in

    name = f"up{uuid.uuid4().hex[:6]}"
    client_id, secret = upstream.create_client(redirect_uris=[f"{live.issuer}/social/{name}/callback"],
                                               first_party=True)
    out = live.idp("social", "add", name, f"--client-id={client_id}", f"--client-secret={secret}",
                   "--issuer", upstream.issuer)
    assert out.returncode == 0, out.stderr
    org = _org(live, "opt-soc")
    email, user_id = _member(live, org)
    up_email = f"u-{uuid.uuid4().hex[:6]}@upstream.example"
    upstream.create_user(up_email, "upstream-password")
    label = name.title()

    # linked while allowed
    b = _browser(live, upstream)
    account = b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)
    done = _upstream_sign_in(b, b.submit(account, {}, action=f"{live.issuer}/account/connected/{name}/link"),
                             up_email, "upstream-password")
    assert done.url.startswith(f"{live.issuer}/account") and "Unlink" in done.text

    _set(live, org, allow_social=False)
    # no sign-in with it
    fresh = _browser(live, upstream)
    resp = _upstream_sign_in(fresh, fresh.get(f"{live.issuer}/social/{name}/start"), up_email, "upstream-password")
    assert resp.status_code == 403 and "does not allow signing in with a social account" in resp.text
    assert _open_sessions(live, user_id) == 1
    # no new link (the account page offers none, and the route refuses)
    other = _browser(live, upstream)
    account = other.sign_in(other.get(f"{live.issuer}/account"), email, PASSWORD)
    assert f"Link {label}" not in account.text and "does not allow social accounts" in account.text
    resp = other.submit(account, {}, action=f"{live.issuer}/account/connected/{name}/link")
    assert resp.status_code == 403 and "does not allow social accounts" in resp.text

    # a link started while allowed, finished after the org said no
    from idp.store import LinkedIdentity, db

    with live.db():
        db.session.query(LinkedIdentity).filter_by(user_id=user_id).delete()
        db.session.commit()
    _set(live, org, allow_social=True)
    account = other.get(f"{live.issuer}/account")
    other.hosts = (live.issuer,)  # stop at the upstream
    start = other.submit(account, {}, action=f"{live.issuer}/account/connected/{name}/link")
    assert start.headers["Location"].startswith(upstream.issuer)
    other.hosts = (live.issuer, upstream.issuer)
    page = other.follow(start)
    _set(live, org, allow_social=False)
    resp = _upstream_sign_in(other, page, up_email, "upstream-password")
    assert resp.status_code == 403
    with live.db():
        assert db.session.query(LinkedIdentity).filter_by(user_id=user_id).count() == 0


def test_enterprise_sign_in_is_the_idps_business(live, upstream):
    """An org with its own IdP that requires a factor and forbids social sign-in: its people
    signing in there are asked for nothing more here, and their session stays usable."""
    import json

    from tests.test_social import _browser, _upstream_sign_in

    org = _org(live, "opt-sso")
    out = live.idp("orgs", "oidc", org["name"], "--issuer", upstream.issuer, "--client-id=placeholder",
                   "--client-secret=placeholder", "--json")
    assert out.returncode == 0, out.stderr
    client_id, secret = upstream.create_client(redirect_uris=[json.loads(out.stdout)["redirect_uri"]],
                                               first_party=True)
    out = live.idp("orgs", "oidc", org["name"], "--issuer", upstream.issuer, f"--client-id={client_id}",
                   f"--client-secret={secret}")
    assert out.returncode == 0, out.stderr
    _set(live, org, require_mfa=True, allow_social=False)
    email = f"ent-{uuid.uuid4().hex[:6]}@{org['domain']}"
    upstream.create_user(email, "upstream-password")
    b = _browser(live, upstream)
    page = b.submit(b.get(f"{live.issuer}/account"), {"email": email})
    page = _upstream_sign_in(b, page, email, "upstream-password")
    assert page.status_code == 200 and "Your account" in page.text, page.url
    assert "Your account" in b.get(f"{live.issuer}/account").text
