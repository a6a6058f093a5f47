"""Security review of the person-facing pages, round 5: where a sign-in returns to, and what
the text log writes of a request's path."""

from __future__ import annotations

import re
import secrets
import time

import pytest
import requests

from tests.conftest import Browser, separate_live


@pytest.fixture(scope="module")
def text_logged(tmp_path_factory):
    yield from separate_live(tmp_path_factory, "review-pages5-log",
                             extra_env={"IDP_LOG_LEVEL": "INFO", "IDP_LOG_FORMAT": "text"})


@pytest.mark.parametrize("path", ["/developer/apps/x%0Ay", "/admin/orgs/x%0D%0Ay/users"])
def test_a_page_address_with_a_line_break_does_not_break_the_sign_in_after_it(live, path):
    """Low - OWASP ASVS 7.4.1 (no 500 on crafted input) / 5.1.3: a link to one of our pages
    whose path holds an encoded CR or LF (/developer/apps/x%0Ay) was kept as the place to
    return to after signing in; the sign-in that followed (the victim's, typing their
    password) then ended in "Something went wrong" and a traceback, the Location header
    being unwritable. Such a path is now no place to return to: the sign-in goes on to
    /account."""
    email = f"return-{secrets.token_hex(4)}@example.com"
    live.create_user(email, "return-to-password-1")
    b = Browser(live.issuer)
    first = b.http.get(f"{live.issuer}{path}", allow_redirects=False, timeout=10)
    assert first.status_code == 302 and first.headers["Location"] == "/signin"
    answer = b.sign_in(b.get(f"{live.issuer}/signin"), email, "return-to-password-1")
    assert answer.status_code == 200, answer.text[:300]
    assert answer.url == f"{live.issuer}/account"


def test_a_request_path_cannot_forge_a_line_of_the_text_log(text_logged):
    """Low - OWASP ASVS 4.0 V7.3.1 (log injection): the request line writes the path, which
    werkzeug has percent-decoded, as it is; an encoded CR or LF in it (anyone can send one)
    ended the line there and started one the client wrote, in the text format operators
    read and grep (a forged "signin.success", a fake error). Control characters in a text
    line are now written escaped (\\n, \\r), so every line of the log is the server's own."""
    marker = secrets.token_hex(6)
    forged = f"2026-01-01 00:00:00,000 INFO idp.audit: signin.success user=forged-{marker}"
    for sep in ("%0A", "%0D%0A", "%0D"):
        requests.get(f"{text_logged.issuer}/account{sep}{forged.replace(' ', '%20')}", allow_redirects=False,
                     timeout=10)
        requests.post(f"{text_logged.issuer}/token{sep}{forged.replace(' ', '%20')}", timeout=10)
    time.sleep(0.5)
    text = text_logged.log.read_text()
    assert f"forged-{marker}" in text  # the requests were logged
    for line in re.split(r"[\r\n]", text):
        assert not line.startswith(forged[:30]), line
    assert text.count(f"forged-{marker}") == 6


def test_the_sign_out_confirmation_keeps_the_language_the_product_asked_for(live):
    """Low - SPEC §4 (language follows ui_locales, else Accept-Language) / OpenID Connect
    RP-Initiated Logout 1.0 §2 (ui_locales): /logout?ui_locales=fr showed "Se déconnecter ?",
    but the confirmation posted back without it, so "You are signed out" (and the question
    again, when the form had expired) came in the browser's English."""
    email = f"logout-fr-{secrets.token_hex(4)}@example.com"
    live.create_user(email, "logout-fr-password-1")
    b = Browser(live.issuer, lang="en")
    b.sign_in(b.get(f"{live.issuer}/signin"), email, "logout-fr-password-1")
    page = b.get(f"{live.issuer}/logout", ui_locales="fr")
    assert "Se déconnecter" in page.text
    done = b.submit(page, {"confirm": "yes"})
    assert done.status_code == 200
    assert "Vous êtes déconnecté" in done.text, done.text[-400:]
