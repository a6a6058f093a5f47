"""Review (round 7) of the code added in the last two days: each test names a hole found in
review and proves it shut, through the live server."""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

import requests

from tests.oidc import authorize_url

# A page on another site than the identity provider's (127.0.0.1): Playwright answers for
# it, so no server is needed, and the browser applies its cross-site rules.
ELSEWHERE = "http://localhost:9"


def _auto_post(action: str, fields: dict) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
    return (f'<form id="f" method="post" action="{action}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script>')


def _signed_in_with(live, client_id: str, callback: str, cookie: str) -> bool:
    resp = requests.get(authorize_url(live.issuer, client_id, redirect_uri=callback, prompt="none"),
                        cookies={"idp_session": cookie}, allow_redirects=False, timeout=10)
    return "code" in parse_qs(urlsplit(resp.headers["Location"]).query)


def test_a_third_party_post_naming_confirm_does_not_sign_the_browser_out(live, chromium, product):
    """/logout sends a product's POST again as a GET (a cross-site POST carries no SameSite=Lax
    session cookie), except the person's own confirmation, told apart by a field named
    `confirm` alone. Any page could post `confirm=yes` cross-site: the endpoint then saw no
    session, "ended" none, told the browser to drop its cookie and said "signed out": a
    sign-out the person never confirmed (the module's own rule: without a hint, the person
    confirms first, so a third-party page cannot sign them out), which also left the session
    live for a copied cookie, its online tokens and its products. Only a POST carrying this
    site's CSRF token is the confirmation; any other is the product's, by GET."""
    email = "review7-fresh-logout-csrf@example.com"
    live.create_user(email, "logout-password")
    callback = f"http://127.0.0.1:{product.server_address[1]}/callback"
    client_id, _secret = live.create_client(redirect_uris=[callback])
    context = chromium.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(authorize_url(live.issuer, client_id, redirect_uri=callback, state="s7"))
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Next").click()
        page.get_by_label("Password").fill("logout-password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{callback}*", timeout=15000)
        cookie = next(c for c in context.cookies() if c["name"] == "idp_session")["value"]

        form = _auto_post(f"{live.issuer}/logout", {"confirm": "yes"})
        context.route(f"{ELSEWHERE}/**", lambda route: route.fulfill(status=200, content_type="text/html", body=form))
        page.goto(f"{ELSEWHERE}/evil")
        page.wait_for_url(f"{live.issuer}/logout*", timeout=15000)
        page.wait_for_load_state()

        # The person is asked, and their browser is still signed in, with the same session.
        assert page.get_by_role("button", name="Sign out").count() == 1, page.content()[:800]
        kept = [c["value"] for c in context.cookies() if c["name"] == "idp_session"]
        assert kept == [cookie]
        assert _signed_in_with(live, client_id, callback, cookie)
    finally:
        context.close()
