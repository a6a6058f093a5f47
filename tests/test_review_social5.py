"""Security review of social sign-in and account linking, round 5 (review-social5): each test
drives the real server against a real OpenID provider on loopback (`HostileProvider`, which
signs whatever ID token the test asks for)."""

from __future__ import annotations

import secrets
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.admin_world import get, new_org, person
from tests.conftest import Browser
from tests.test_review_social import CLIENT_ID, HostileProvider


@pytest.fixture(scope="module")
def hostile():
    op = HostileProvider()
    yield op
    op.server.shutdown()
    op.server.server_close()


@pytest.fixture
def provider(live, hostile):
    """A platform social provider at the hostile OpenID provider (a name of its own per test)."""
    name = "rs5-" + secrets.token_hex(3)
    out = live.idp("social", "add", name, f"--client-id={CLIENT_ID}", "--client-secret=review-secret",
                   "--issuer", hostile.issuer)
    assert out.returncode == 0, out.stderr
    return name


def _start(live, b: Browser, name: str):
    """(state, nonce) of the flow this browser starts at provider `name`."""
    resp = b.http.get(f"{live.issuer}/social/{name}/start", allow_redirects=False, timeout=30)
    assert resp.status_code == 302, resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    return query["state"][0], query["nonce"][0]


def _callback(live, b: Browser, name: str, **params):
    return b.http.get(f"{live.issuer}/social/{name}/callback", params={"code": "any-code", **params},
                      allow_redirects=False, timeout=30)


def _link(live, user_id: str, name: str, subject: str) -> None:
    from idp.store import LinkedIdentity, db

    with live.db():
        db.session.add(LinkedIdentity(user_id=user_id, provider=name, subject=subject))
        db.session.commit()


def _set(live, org_id: str, **options) -> None:
    from idp.store import Org, db

    with live.db():
        row = db.session.get(Org, org_id)
        for key, value in options.items():
            setattr(row, key, value)
        db.session.commit()


def _signed_in_with_a_linked_account(live, hostile, provider, org_id: str, domain: str) -> Browser:
    """A browser signed in with a new member's linked social account (`hostile` answers for it)."""
    user_id = person(live, f"m-{uuid.uuid4().hex[:8]}@{domain}", org_id)
    subject = "social-" + secrets.token_hex(4)
    _link(live, user_id, provider, subject)
    b = Browser(live.issuer)
    state, nonce = _start(live, b, provider)
    hostile.claims = hostile.id_claims(nonce, sub=subject)
    assert _callback(live, b, provider, state=state).status_code == 302
    assert get(b, "/account").status_code == 200
    return b


def test_a_social_session_is_not_taken_for_one_of_the_orgs_own_idp(live, hostile, provider):
    """Medium: a session opened with a linked social account stops counting once the member's org
    requires a second factor, as a password session does (OWASP ASVS 3.3, 4.3): only a session from
    the org's own IdP is that IdP's business. Both carry amr "fed", and the social one passed too."""
    org_id, org_name, domain = new_org(live, "rs5-mfa")
    out = live.idp("orgs", "oidc", org_name, "--issuer", hostile.issuer, "--client-id=org-client",
                   "--client-secret=org-secret")
    assert out.returncode == 0, out.stderr
    b = _signed_in_with_a_linked_account(live, hostile, provider, org_id, domain)
    _set(live, org_id, require_mfa=True)
    resp = get(b, "/account")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")


def _linked_browser(live, hostile, name: str):
    """(browser, state) of a flow started at provider `name`, whose ID token is for an account's link."""
    email = f"iss-{secrets.token_hex(4)}@example.com"
    user_id = live.create_user(email, "iss-password-1")
    subject = "iss-" + secrets.token_hex(4)
    _link(live, user_id, name, subject)
    b = Browser(live.issuer)
    state, nonce = _start(live, b, name)
    hostile.claims = hostile.id_claims(nonce, sub=subject)
    return b, state


def test_an_authorization_response_from_another_issuer_is_refused(live, hostile, provider):
    """Low: an `iss` in the authorization response that is not the provider's issuer means the answer came
    from another authorization server (a mix-up): it is refused before the code goes anywhere (RFC 9207 §2.4;
    RFC 9700 §4.4.2.1). The provider's own issuer is taken."""
    b, state = _linked_browser(live, hostile, provider)
    resp = _callback(live, b, provider, state=state, iss="https://attacker.example")
    assert resp.status_code == 400 and "did not confirm who you are" in resp.text
    assert get(b, "/account").status_code == 302
    b, state = _linked_browser(live, hostile, provider)
    resp = _callback(live, b, provider, state=state, iss=hostile.issuer)
    assert resp.status_code == 302 and get(b, "/account").status_code == 200


def test_an_authorization_response_without_the_iss_its_provider_promised_is_refused(live, hostile, provider):
    """Low: a provider whose discovery says `authorization_response_iss_parameter_supported` always sends
    `iss`; a response without it is refused (RFC 9207 §2.4)."""
    from idp.store import SocialProvider, db, utcnow

    b, state = _linked_browser(live, hostile, provider)  # its start fetched the discovery document
    with live.db():
        row = db.session.get(SocialProvider, provider)
        row.metadata_cache = {**row.metadata_cache, "authorization_response_iss_parameter_supported": True}
        row.metadata_fetched_at = utcnow()  # fresh: the callback reads it as it is
        db.session.commit()
    resp = _callback(live, b, provider, state=state)
    assert resp.status_code == 400 and "did not confirm who you are" in resp.text
    assert get(b, "/account").status_code == 302
    b, state = _linked_browser(live, hostile, provider)
    resp = _callback(live, b, provider, state=state, iss=hostile.issuer)
    assert resp.status_code == 302 and get(b, "/account").status_code == 200


def test_a_social_session_stops_counting_once_the_org_forbids_social_sign_in(live, hostile, provider):
    """Medium (ASVS 3.3): `allow_social` off refused the next social sign-in and link, but a session
    opened with the linked account a minute before went on for its whole lifetime. It now stops
    counting, as a session without a factor does once the org requires one."""
    org_id, _, domain = new_org(live, "rs5-soc")
    b = _signed_in_with_a_linked_account(live, hostile, provider, org_id, domain)
    _set(live, org_id, allow_social=False)
    resp = get(b, "/account")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")
