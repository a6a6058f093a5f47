"""Review (round 7) of sign-out, sessions and the device grant: each test names a hole found
in review and proves it shut, through the live server."""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

import requests

from tests.conftest import sign_in_page
from tests.oidc import authorize_url, pkce, token

# A product's pages on another site than the identity provider's (127.0.0.1): Playwright
# answers for them, so no server is needed, and the browser applies its cross-site rules.
RP = "http://localhost:9"


def _auto_post(action: str, fields: dict) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
    return (f'<form id="f" method="post" action="{action}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script>')


def test_a_product_signing_out_by_post_ends_the_browsers_session(live, chromium, product):
    """RP-Initiated Logout 1.0 §2: the end-session endpoint accepts POST, which a product sends
    as a form its own page posts: a cross-site POST, which carries no SameSite=Lax session
    cookie. The endpoint saw no session and ended none: it only told the browser to drop its
    cookie, and sent the person back to the product as signed out. The session stayed live
    (a copied cookie went on working), its refresh tokens without offline_access went on
    refreshing (Back-Channel Logout 1.0 §2.7), and no other product was told. It is taken as
    the same request by GET (a top-level navigation, which carries the cookie)."""
    email = "review7-logout-post@example.com"
    live.create_user(email, "logout-password")
    callback = f"http://127.0.0.1:{product.server_address[1]}/callback"
    client_id, secret = live.create_client(redirect_uris=[callback], post_logout_redirect_uris=[f"{RP}/bye"])
    context = chromium.new_context(locale="en-US")
    try:
        page = context.new_page()
        verifier, challenge = pkce()
        page.goto(authorize_url(live.issuer, client_id, redirect_uri=callback, code_challenge=challenge,
                                code_challenge_method="S256", state="s7"))
        sign_in_page(page, email, "logout-password")
        page.wait_for_url(f"{callback}*", timeout=15000)
        code = parse_qs(urlsplit(page.url).query)["code"][0]
        tokens = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": callback,
                                     "code_verifier": verifier}, auth=(client_id, secret)).json()
        id_token = tokens["id_token"]
        copied = next(c for c in context.cookies() if c["name"] == "idp_session")["value"]

        form = _auto_post(f"{live.issuer}/logout", {"id_token_hint": id_token,
                                                   "post_logout_redirect_uri": f"{RP}/bye", "state": "bye7"})
        context.route(f"{RP}/**", lambda route: route.fulfill(
            status=200, content_type="text/html", body=form if route.request.url.endswith("/signout") else "bye"))
        page.goto(f"{RP}/signout")
        page.wait_for_url(f"{RP}/bye*", timeout=15000)
        assert parse_qs(urlsplit(page.url).query)["state"] == ["bye7"]

        again = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                      auth=(client_id, secret))
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
        resp = requests.get(authorize_url(live.issuer, client_id, redirect_uri=callback, prompt="none"),
                            cookies={"idp_session": copied}, allow_redirects=False, timeout=10)
        assert parse_qs(urlsplit(resp.headers["Location"]).query).get("error") == ["login_required"]
    finally:
        context.close()
