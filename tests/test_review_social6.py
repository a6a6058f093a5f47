"""Security review of social sign-in and account linking, round 6 (review-social6): each test
drives the real server against a real OpenID provider on loopback (`HostileProvider`, which
signs whatever ID token the test asks for)."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Browser
from tests.test_review_social import HostileProvider, _callback, _to_enterprise_idp, hostile_org  # noqa: F401
from tests.test_review_social5 import hostile, provider  # noqa: F401 - the fixtures

GOOGLE = "https://accounts.google.com"


def _answering_as(live, name: str, op: HostileProvider, issuer: str) -> None:
    """Provider `name`'s issuer is `issuer`, its discovery (as kept here, fresh) that issuer's
    with `op`'s endpoints: how `issuer` itself would answer, without reaching it from a test."""
    from idp.store import SocialProvider, db, utcnow

    with live.db():
        row = db.session.get(SocialProvider, name)
        row.issuer = issuer
        row.metadata_cache = {"issuer": issuer, "authorization_endpoint": op.issuer + "/authorize",
                              "token_endpoint": op.issuer + "/token", "jwks_uri": op.issuer + "/jwks",
                              "token_endpoint_auth_methods_supported": ["client_secret_post"]}
        row.metadata_fetched_at = utcnow()
        db.session.commit()


@pytest.fixture
def google_org(live, hostile, hostile_org):  # noqa: F811
    """(org domain, provider name) of an org whose enterprise OpenID provider is Google (Workspace)."""
    _, domain, name = hostile_org
    _answering_as(live, name, hostile, GOOGLE)
    return domain, name


def _google_sign_in(live, op: HostileProvider, domain: str, name: str, **claims):
    """A new browser's enterprise sign-in at the org's Google as `email` (in `domain`): the callback's answer."""
    email = f"ex-{secrets.token_hex(4)}@{domain}"
    b, resp = _to_enterprise_idp(live, email)
    assert resp.headers["Location"].startswith(op.issuer + "/authorize"), resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    op.claims = {**op.id_claims(query["nonce"][0], email=email, email_verified=True), "iss": GOOGLE, **claims}
    return b, email, _callback(live, b, name, query["state"][0])


def test_a_google_consumer_account_is_not_taken_for_the_orgs_workspace_account(live, hostile, google_org):  # noqa: F811
    """Medium: an org whose own OpenID provider is Google (Workspace, issuer https://accounts.google.com, one
    issuer for every Google account) admitted any Google account whose verified email is in the org's
    domains. A consumer Google account keeps `email_verified` true for an address verified once (an
    ex-employee's, made with the work address), though Google is not authoritative for it: Google says only
    an `hd` claim (a Workspace account) or a gmail.com address makes it so (Google Identity, "Authenticate
    with a backend server" / OpenID Connect: email, email_verified and hd). Such a token now makes no account
    and signs nobody in; the Workspace account (hd) still does."""
    from idp.store import User, db

    domain, name = google_org
    b, email, resp = _google_sign_in(live, hostile, domain, name)
    assert resp.status_code == 400, resp.text
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
    with live.db():
        assert db.session.query(User).filter_by(email=email).count() == 0
    b, email, resp = _google_sign_in(live, hostile, domain, name, hd=domain)
    assert resp.status_code == 302 and b.get(f"{live.issuer}/account").status_code == 200


def test_a_link_asks_the_provider_who_sits_at_the_browser_now(live, hostile, provider):  # noqa: F811
    """Low (a new way into the account must be bound to the person present, as a passkey is): linking
    asks the provider for an authorization answered from whatever session it holds in this browser. On
    a shared computer where someone else left their provider session open, the person linking (signed
    in here a minute ago, as the link requires) silently links that someone's upstream account, who then
    signs in to their account at will. `_start` already says it: "the provider's own session, open in
    the same browser, proves nothing about who sits at it now", but asked fresh only for a sign-in.
    A link now asks as "Confirm it is you" does, and the ID token's auth_time is held to it."""
    from idp.store import LinkedIdentity, User, db
    from tests.conftest import csrf_of

    email = f"link-{secrets.token_hex(4)}@example.com"
    live.create_user(email, "link-password-1")
    b = Browser(live.issuer)
    account = b.sign_in(b.get(f"{live.issuer}/account"), email, "link-password-1")

    def link(**claims):
        """The callback's answer to a link the provider answers with an ID token carrying `claims`."""
        resp = b.http.post(f"{live.issuer}/account/connected/{provider}/link",
                           data={"csrf_token": csrf_of(account.text)}, allow_redirects=False, timeout=30)
        assert resp.headers["Location"].startswith(hostile.issuer + "/authorize"), resp.text
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert query.get("prompt") == ["login"] and query.get("max_age") == ["0"]
        hostile.claims = {**hostile.id_claims(query["nonce"][0]), **claims}
        return _callback(live, b, provider, query["state"][0])

    def linked() -> int:
        with live.db():
            user = db.session.query(User).filter_by(email=email).one()
            return db.session.query(LinkedIdentity).filter_by(user_id=user.id).count()

    assert link().status_code == 400 and linked() == 0, "no auth_time: answered from whatever session it had"
    assert link(auth_time=int(time.time()) - 600).status_code == 400 and linked() == 0, "an older sign-in"
    assert link(auth_time=int(time.time())).status_code == 302 and linked() == 1
