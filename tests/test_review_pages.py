"""Security review of the person-facing pages: sign-up, password reset, error pages, headers."""

from __future__ import annotations

import time

from idp.ratelimit import POLICIES
from tests.conftest import Browser


def _sign_up_from(server, forwarded_for: str, email: str):
    b = Browser(server.issuer)
    b.http.headers["X-Forwarded-For"] = forwarded_for
    page = b.get(f"{server.issuer}/signup")
    return b.submit(page, {"email": email, "name": "Someone", "password": "sign-up-password-3"})


def test_a_sign_up_flood_of_mail_to_one_address_is_refused(proxied):
    """Medium — OWASP ASVS 4.0 V11.1.4 (anti-automation): sign-up mails one address no more
    often than "Forgot password?" may (reset:address), however many clients ask."""
    victim = "flooded@example.com"
    proxied.create_user(victim, "victim-password-1")  # each sign-up for a taken address mails its owner
    budget = POLICIES["reset:address"].free
    answers = [_sign_up_from(proxied, f"198.51.100.{i + 1}", victim).status_code for i in range(budget + 2)]
    assert answers[:budget] == [200] * budget and answers[budget:] == [429, 429]
    proxied.mailbox.wait_for(victim, budget)
    time.sleep(1)  # the mail leaves on a background thread: none more may arrive
    assert len(proxied.mailbox.to(victim)) == budget


def test_a_page_of_an_https_issuer_without_strict_transport_security_is_refused(tmp_path):
    """Low — OWASP ASVS 4.0 V14.4.5 (RFC 6797): on an https issuer every page, error pages
    included, tells the browser to use https only (no SSL strip of a typed address); a
    plain-http issuer (a developer's machine) never says so."""
    from idp import create_app
    from idp.config import Settings
    from idp.schema import upgrade

    for issuer, wanted in (("https://idp.example", True), ("http://127.0.0.1:9", False)):
        root = tmp_path / issuer.split(":")[0]
        settings = Settings.from_env({"IDP_ISSUER": issuer, "IDP_INSTANCE_DIR": str(root),
                                      "IDP_SECRET_KEY": "k" * 48})
        app = create_app(settings)
        with app.app_context():
            upgrade()
        client = app.test_client()
        for path, status in (("/signin", 200), ("/password/forgot", 200), ("/no-such-page", 404),
                             ("/token", 405)):
            resp = client.get(path, base_url=issuer)
            assert resp.status_code == status, path
            hsts = resp.headers.get("Strict-Transport-Security")
            if wanted:
                assert hsts is not None and "max-age=" in hsts, path
                assert int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000, path
            else:
                assert hsts is None, path
