"""A session left unused stops signing the browser in (ASVS 3.3.2, level 2): half an hour
for a session that was not remembered, a week for one that was. It is not ended by that:
its products keep their online tokens to its end of life, and signing out from the browser
still ends it and revokes them."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import Browser
from tests.oidc import token, verify
from tests.test_review_logout import _code_flow, _signed_in


def _unused_for(live, sid: str, minutes: float) -> None:
    """As if the browser had last used session `sid` that long ago."""
    from sqlalchemy import update

    from idp.store import BrowserSession, db, utcnow

    with live.db():
        db.session.execute(update(BrowserSession).where(BrowserSession.id == sid)
                           .values(last_seen_at=utcnow() - timedelta(minutes=minutes)))
        db.session.commit()


def _signed_in_to_a_product(live, tag: str, remember: bool = False):
    """(browser, client id, secret, token response, sid) of a person signed in to a product
    through the pages, the session remembered or not."""
    email, password = f"idle-{tag}@example.com", "idle-session-password"
    live.create_user(email, password)
    client_id, secret = live.create_client(post_logout_redirect_uris=["http://127.0.0.1:9/bye"])
    browser = Browser(live.issuer)
    browser.sign_in(browser.get(f"{live.issuer}/signin"), email, password, remember=remember)
    body = _code_flow(live, browser, client_id, secret)  # answered from the session: no pages
    return browser, client_id, secret, body, verify(live.issuer, body["id_token"])[1]["sid"]


def test_a_session_unused_for_half_an_hour_no_longer_signs_the_browser_in(live):
    browser, client_id, _, _, sid = _signed_in_to_a_product(live, "short")
    _unused_for(live, sid, 25)
    assert _signed_in(live, browser, client_id)  # in use within the half hour: still signed in
    _unused_for(live, sid, 31)
    assert not _signed_in(live, browser, client_id)  # prompt=none: login_required
    page = browser.get(f"{live.issuer}/account")
    assert 'name="email"' in page.text  # the sign-in page, not the account


def test_using_a_session_keeps_it(live):
    """Each use moves its last-seen time (to within five minutes), so a session in use is
    not idle however long it has lasted."""
    browser, client_id, _, _, sid = _signed_in_to_a_product(live, "used")
    for _ in range(3):
        _unused_for(live, sid, 20)
        assert _signed_in(live, browser, client_id)  # 20 minutes after the last use each time


def test_a_remembered_session_is_kept_a_week_unused(live):
    browser, client_id, _, _, sid = _signed_in_to_a_product(live, "remembered", remember=True)
    _unused_for(live, sid, 3 * 24 * 60)
    assert _signed_in(live, browser, client_id)
    _unused_for(live, sid, 8 * 24 * 60)
    assert not _signed_in(live, browser, client_id)


def test_signing_out_of_an_idle_session_still_ends_it_and_its_products_online_tokens(live):
    """Idle, the session signs nobody in, but its product's online refresh token lives to the
    session's end of life; the person signing out of the product (RP-initiated logout) must
    end it there and then, as a sign-out of a live session does."""
    browser, client_id, secret, body, sid = _signed_in_to_a_product(live, "signout")
    _unused_for(live, sid, 31)
    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 200, refreshed.text  # the product's own session goes on

    resp = browser.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == "http://127.0.0.1:9/bye"
    gone = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
                 auth=(client_id, secret))
    assert gone.status_code == 400, gone.text


def test_signing_in_again_after_idle_renews_the_same_session(live):
    """The same person signing in again on the browser renews the session, as after
    prompt=login: its products (which know it by `sid`) keep it."""
    browser, client_id, secret, _, sid = _signed_in_to_a_product(live, "again")
    _unused_for(live, sid, 31)
    body = _code_flow(live, browser, client_id, secret, "idle-again@example.com", "idle-session-password")
    assert verify(live.issuer, body["id_token"])[1]["sid"] == sid
    assert _signed_in(live, browser, client_id)
