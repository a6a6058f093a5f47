"""Security review of the person-facing pages, round 5: where a sign-in returns to, and what
the text log writes of a request's path."""

from __future__ import annotations

import secrets

import pytest
from tests.conftest import Browser


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
