"""The flow cookie starts afresh at sign-in and sign-out, a CSRF token belongs to the session
cookie it was issued beside, and cookie names carry `__Host-` on https issuers (security
review, finding 12)."""

from __future__ import annotations

import re

from tests.conftest import Browser, csrf_of


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_a_token_from_before_sign_in_is_void_after_it(live):
    live.create_user("csrf-before@example.com", "csrf-before-pw")
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/signin")
    stale = csrf_of(page.text)
    b.sign_in(page, "csrf-before@example.com", "csrf-before-pw")
    resp = b.http.post(f"{live.issuer}/account/sessions/revoke-all", data={"csrf_token": stale},
                       allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and "expired" in resp.text
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/account")  # still signed in


def test_a_planted_flow_cookie_cannot_post_for_the_victims_session(live):
    """Cookie injection (a sibling subdomain, an http page) can plant the attacker's own flow
    cookie in the victim's browser; its CSRF token must not work with the victim's session."""
    live.create_user("csrf-victim@example.com", "csrf-victim-pw")
    attacker = Browser(live.issuer)
    attacker_page = attacker.get(f"{live.issuer}/signin")
    planted_flow = attacker.http.cookies.get("idp_flow")
    token = csrf_of(attacker_page.text)

    victim = Browser(live.issuer)
    victim.sign_in(victim.get(f"{live.issuer}/account"), "csrf-victim@example.com", "csrf-victim-pw")
    planted = [c for c in victim.http.cookies if c.name == "idp_flow"]
    assert planted
    for cookie in planted:  # replace the victim's own flow cookie, as an injected cookie would
        cookie.value = planted_flow
    resp = victim.http.post(f"{live.issuer}/account/sessions/revoke-all", data={"csrf_token": token},
                            allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and "expired" in resp.text
    assert victim.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/account")


def test_sign_out_renews_the_flow_cookie(live):
    live.create_user("csrf-out@example.com", "csrf-out-pw")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "csrf-out@example.com", "csrf-out-pw")
    flow = b.http.cookies.get("idp_flow")
    b.submit(page, {}, action=f"{live.issuer}/signout")
    assert b.http.cookies.get("idp_flow") != flow
    resp = b.http.post(f"{live.issuer}/signin", data={"csrf_token": _csrf(page.text), "email": "x@example.com"},
                       allow_redirects=False, timeout=10)
    assert resp.status_code == 400


def test_cookie_names_carry_the_host_prefix_on_https(tmp_path):
    from idp import create_app
    from idp.config import Settings
    from idp.schema import upgrade

    settings = Settings.from_env({"IDP_ISSUER": "https://idp.example", "IDP_INSTANCE_DIR": str(tmp_path),
                                  "IDP_SECRET_KEY": "k" * 48})
    app = create_app(settings)
    with app.app_context():
        upgrade()
    client = app.test_client()
    resp = client.get("/signin", base_url="https://idp.example")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("__Host-idp_flow=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    with app.test_request_context(base_url="https://idp.example"):
        from idp.mfa.devices import COOKIE as DEVICE
        from idp.sessions import COOKIE as SESSION, cookie_name

        assert cookie_name(SESSION) == "__Host-idp_session" and cookie_name(DEVICE) == "__Host-idp_device"
