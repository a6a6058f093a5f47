"""Review (round 7) of the code added in the last two days: each test names a hole found in
review and proves it shut, through the live server."""

from __future__ import annotations

import html
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import Browser, sign_in_page
from tests.oidc import authorize_url, token
from tests.test_review_logout import _code_flow
from tests.test_session_idle import _signed_in_to_a_product, _unused_for
from tests.test_social import provider, upstream  # noqa: F401  (fixtures)

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
        sign_in_page(page, email, "logout-password")
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


def test_a_third_party_page_cannot_sign_out_an_idle_session_without_the_persons_confirmation(live):
    """A session left idle signs nobody in, but it lives on: its products keep their online
    refresh tokens to its end of life, and a sign-out from the browser still ends it and tells
    them (README). /logout looked only at a session that counts: for an idle one it saw none,
    so it skipped the confirmation a page without the person's ID token gets, and ended it
    anyway. Any page sending the browser to /logout (or with an ID token of another account,
    even the page's own) ended the person's session and their products' online tokens, and
    told every product to sign them out. The idle session is asked about as a live one is."""
    browser, client_id, secret, body, sid = _signed_in_to_a_product(live, "fresh7-third-party")
    _unused_for(live, sid, 31)
    other_id, other_secret = live.create_client(post_logout_redirect_uris=["http://127.0.0.1:9/bye"])
    live.create_user("idle-fresh7-stranger@example.com", "stranger-password")
    stranger = _code_flow(live, Browser(live.issuer), other_id, other_secret, "idle-fresh7-stranger@example.com",
                          "stranger-password")

    for params in ({}, {"id_token_hint": stranger["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:9/bye"}):
        resp = browser.http.get(f"{live.issuer}/logout", params=params, allow_redirects=False, timeout=10)
        assert resp.status_code == 200 and 'name="confirm"' in resp.text, (params, resp.status_code, resp.text[:300])

    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 200, refreshed.text  # the session and its product went on

    # the person's own confirmation still ends it, and its product's online tokens
    page = browser.http.get(f"{live.issuer}/logout", timeout=10)
    assert browser.submit(page, {"confirm": "yes"}).status_code == 200
    gone = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
                 auth=(client_id, secret))
    assert gone.status_code == 400, gone.text


@pytest.mark.usefixtures("provider")
def test_linking_an_account_linked_already_tells_the_owner_nothing(live, upstream):  # noqa: F811
    """Low: linking the connected account the account already has (the link button sent
    twice, or a link started again) changed nothing, yet mailed "Connected account linked"
    with a "Not you? Remove it" link that removed the owner's long-standing connection and
    signed them out everywhere. Only a new link is told now."""
    import time

    from tests.test_social import _link, _upstream_sign_in

    tag = uuid.uuid4().hex[:8]  # the upstream serves both databases' runs
    email, upstream_email = f"relink-{tag}@example.com", f"relink-{tag}@upstream.example"
    live.create_user(email, "relink password 1")
    upstream.create_user(upstream_email, "upstream-password")
    b, account = _link(live, upstream, email, "relink password 1", upstream_email)
    assert "Unlink" in account.text
    assert len(live.mailbox.wait_for(email, 1)) == 1  # the link, told
    page = b.submit(account, {}, action=f"{live.issuer}/account/connected/upstream/link")
    again = _upstream_sign_in(b, page, upstream_email, "upstream-password")
    assert again.url.startswith(f"{live.issuer}/account"), again.url
    time.sleep(1.5)  # the notice is sent after the commit: give a wrong one time to arrive
    assert len(live.mailbox.to(email)) == 1
