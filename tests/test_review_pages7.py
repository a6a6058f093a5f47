"""Security review of the person-facing pages, round 7: what a link can leave in the browser's
flow cookie, and what the sign-in tells of an address."""

from __future__ import annotations

import secrets

import requests

from tests.conftest import sign_in_page


# RFC 6265 §6.1: browsers keep cookies of at least (and, all of them today, at most) 4096
# bytes of name and value; a larger Set-Cookie is dropped whole, the old cookie staying.
BROWSER_COOKIE_LIMIT = 4096


def _flow_cookie_length(issuer: str, path: str) -> int:
    """The flow cookie's name=value length once a browser that followed `path` shows /signin."""
    http = requests.Session()
    http.get(f"{issuer}{path}", timeout=10)  # follows the redirect to /signin
    return max(len(c.name) + len(c.value) + 1 for c in http.cookies)


def _path_filling_the_flow_cookie(issuer: str, target: int) -> str:
    """/developer/apps/<random hex> whose flow cookie on /signin is `target` bytes long, give
    or take a few (the cookie grows steadily with a random path, compressed or not); one of
    3,900 characters when the cookie does not grow with the path (the path is not kept)."""
    def path(length: int) -> str:
        return "/developer/apps/" + (secrets.token_hex(length // 2 + 1))[:length]

    short, long_ = 1000, 3000
    a, b = _flow_cookie_length(issuer, path(short)), _flow_cookie_length(issuer, path(long_))
    if b - a < (long_ - short) // 4:
        return path(3900)
    length = short + (target - a) * (long_ - short) // (b - a)
    for _ in range(20):
        candidate = path(length)
        size = _flow_cookie_length(issuer, candidate)
        if target - 30 <= size <= target:
            return candidate
        length += (target - 15 - size) * (long_ - short) // (b - a)
    raise AssertionError("no path fills the flow cookie as wanted")


def test_a_long_link_to_one_of_our_pages_does_not_lock_the_browser_out_of_signing_in(live, chromium):
    """Low - OWASP ASVS 4.0 V3.4 / RFC 6265 §6.1 (cookie size; a cookie bomb by link): a
    page that needs a sign-in keeps its path in the flow cookie as the place to return to
    (`require_sign_in`), whatever its length. A link to /developer/apps/<3,900 characters>
    (one click, or a redirect from any site: a top-level GET carries and sets Lax cookies)
    left a flow cookie just under the 4,096 bytes browsers keep; the email step then added
    the address, the browser dropped the larger cookie, and every sign-in in that browser
    went back to the email step - the person could sign in to nothing until they closed
    the browser. A path that long is no place to return to now (our pages' paths are
    short): the link leaves nothing in the cookie and the sign-in goes on to /account."""
    email = f"cookie-bomb-{secrets.token_hex(4)}@example.com"
    password = "cookie-bomb-password-1"
    live.create_user(email, password)
    # A path whose flow cookie, on the sign-in page, is a few bytes short of the limit.
    path = _path_filling_the_flow_cookie(live.issuer, BROWSER_COOKIE_LIMIT - 20)
    context = chromium.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{live.issuer}{path}")
        assert page.url == f"{live.issuer}/signin"
        sign_in_page(page, email, password)
        page.wait_for_load_state()
        assert page.url == f"{live.issuer}/account", page.url
        assert all(len(c["name"]) + len(c["value"]) <= BROWSER_COOKIE_LIMIT for c in context.cookies())
    finally:
        context.close()
