"""Security review of the person's account pages and the factors they manage (round 5):
each test shows one finding through the real server."""

from __future__ import annotations

import re
import uuid

import pyotp
import pytest

from tests.admin_world import PASSWORD
from tests.conftest import Browser
from tests.test_admin_options import _member, _open_sessions, _org, _set
from tests.test_social import provider  # noqa: F401 - the fixture (`idp social add upstream`)

SECRET = re.compile(r'data-totp-secret="([A-Z2-7]+)"')


def test_an_authenticator_secret_another_sign_in_was_shown_is_not_offered_at_the_required_set_up(live):
    """Medium: an org requires a second factor and the account has none yet. Someone who knows
    the password stands at "Set up authenticator app" beside the owner: their page made a new
    secret, and the owner's reload showed them that one (the step kept only "a secret was
    shown", not which). The owner scanned it and set the app up, unaware that the other
    person holds the same secret: the account's second factor was theirs too, silently. The
    account page's set-up has refused this since test_review_mfa; its twin at sign-in did not."""
    org = _org(live, "rv5-enrol")
    email, user_id = _member(live, org)
    _set(live, org, require_mfa=True)
    owner = Browser(live.issuer)
    page = owner.sign_in(owner.get(f"{live.issuer}/account"), email, PASSWORD)
    assert "/signin/set-up-second-factor" in page.url, page.url
    owners_first = SECRET.search(page.text).group(1)

    intruder = Browser(live.issuer)
    seen = intruder.sign_in(intruder.get(f"{live.issuer}/account"), email, PASSWORD)
    intruders = SECRET.search(seen.text).group(1)
    assert intruders != owners_first

    again = owner.get(f"{live.issuer}/signin/set-up-second-factor")
    shown = SECRET.search(again.text).group(1)
    assert shown != intruders, "the owner was offered the secret another sign-in was shown"
    done = owner.submit(again, {"code": pyotp.TOTP(shown).now()})
    assert done.status_code == 200 and _open_sessions(live, user_id) == 1
    # and the intruder's copy is no factor of the account
    retry = intruder.get(f"{live.issuer}/signin/set-up-second-factor")
    assert intruders not in retry.text
    # a new sign-in in a browser where an earlier step was left unfinished (a shared
    # computer) gets a fresh secret, not the one that step showed
    other, _ = _member(live, org)
    left = Browser(live.issuer)
    first = SECRET.search(left.sign_in(left.get(f"{live.issuer}/account"), other, PASSWORD).text).group(1)
    later = left.sign_in(left.get(f"{live.issuer}/account"), other, PASSWORD)
    assert SECRET.search(later.text).group(1) != first


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The upstream OpenID provider: another running instance of this product."""
    from tests.conftest import separate_live

    yield from separate_live(tmp_path_factory, "rv5-upstream")


@pytest.mark.usefixtures("provider")
def test_confirming_it_is_you_with_a_connected_account_asks_the_upstream_to_authenticate_again(live, upstream):
    """Medium: "Confirm it is you" (a sign-in from the last 10 minutes before changing the ways
    in) was met by a connected account without anyone proving anything: the provider was
    not asked to authenticate again (no prompt=login, max_age) and its own session in the
    same browser answered at once. Whoever found a signed-in browser (a shared computer,
    the person signed in to both) clicked the provider's button and could add their own
    authenticator app or passkey (OpenID Connect Core 3.1.2.1 prompt/max_age and auth_time;
    OWASP ASVS 4.0 3.7.1)."""
    from tests.test_social import _link

    tag = uuid.uuid4().hex[:8]
    email, upstream_email = f"rv5-reauth-{tag}@example.com", f"rv5-reauth-{tag}@upstream.example"
    user_id = live.create_user(email, "rv5-local-password")
    upstream_id = upstream.create_user(upstream_email, "upstream-password")
    b, account = _link(live, upstream, email, "rv5-local-password", upstream_email)
    assert "Unlink" in account.text
    # both sign-ins (here and at the provider) are 20 minutes old: not recent any more
    _age_sessions(live, user_id, 1200)
    _age_sessions(upstream, upstream_id, 1200)

    page = b.get(f"{live.issuer}/account/totp")
    assert "data-totp-secret" not in page.text and 'name="email"' in page.text
    start = re.search(r'href="(/social/upstream/start[^"]*)"', page.text).group(1)
    # the browser carries the request to the provider: one that drops prompt and max_age
    # gets the open session's answer, which must not count (its auth_time is old)
    asked = b.http.get(live.issuer + start, allow_redirects=False, timeout=30).headers["Location"]
    assert "prompt=login" in asked and "max_age=0" in asked
    stripped = b.get(asked.replace("&prompt=login", "").replace("&max_age=0", ""))
    assert "data-totp-secret" not in stripped.text, "an old authentication at the provider confirmed it was them"
    page = b.get(live.issuer + start)
    assert "data-totp-secret" not in page.text, "the upstream's open session confirmed it was them"
    assert page.url.startswith(upstream.issuer) and 'name="email"' in page.text  # its sign-in, afresh
    # the person signs in there again: that confirms it
    done = b.sign_in(page, upstream_email, "upstream-password")
    assert done.url.startswith(f"{live.issuer}/account/totp") and "data-totp-secret" in done.text


def test_confirming_it_is_you_through_the_orgs_openid_provider_asks_it_to_authenticate_again(live, upstream):
    """Medium, as the finding above for a member of an org whose own OpenID provider signs
    them in: "Confirm it is you" went through the provider's open session."""
    import json

    name = "rv5-oidc-" + uuid.uuid4().hex[:6]
    domain = f"{name}.example"
    assert live.idp("orgs", "create", name, "--domain", domain).returncode == 0
    out = live.idp("orgs", "oidc", name, "--issuer", upstream.issuer, "--client-id=placeholder",
                   "--client-secret=placeholder", "--json")
    assert out.returncode == 0, out.stderr
    client_id, secret = upstream.create_client(redirect_uris=[json.loads(out.stdout)["redirect_uri"]],
                                               first_party=True)
    out = live.idp("orgs", "oidc", name, "--issuer", upstream.issuer, f"--client-id={client_id}",
                   f"--client-secret={secret}")
    assert out.returncode == 0, out.stderr
    email = f"ivy@{domain}"
    upstream_id = upstream.create_user(email, "upstream-password")
    b = Browser(live.issuer, also=(upstream.issuer,))
    page = b.submit(b.get(f"{live.issuer}/account"), {"email": email})
    assert page.url.startswith(upstream.issuer)
    assert b.sign_in(page, email, "upstream-password").url.startswith(f"{live.issuer}/account")
    from idp.store import User, db

    with live.db():
        user_id = db.session.query(User).filter_by(email=email).one().id
    _age_sessions(live, user_id, 1200)
    _age_sessions(upstream, upstream_id, 1200)

    page = b.get(f"{live.issuer}/account/totp")
    assert "data-totp-secret" not in page.text and 'name="email"' in page.text
    page = b.submit(page, {"email": email})
    assert "data-totp-secret" not in page.text, "the provider's open session confirmed it was them"
    assert page.url.startswith(upstream.issuer)
    done = b.sign_in(page, email, "upstream-password")
    assert done.url.startswith(f"{live.issuer}/account/totp") and "data-totp-secret" in done.text


def _age_sessions(live, user_id: str, seconds: int) -> None:
    from idp.store import BrowserSession, db

    with live.db():
        for row in db.session.query(BrowserSession).filter_by(user_id=user_id, ended_at=None):
            row.auth_time -= seconds
        db.session.commit()


def test_wrong_set_up_codes_do_not_keep_the_owner_from_removing_a_passkey(live):
    """Low: the owner's remedy (revoke a passkey someone else added) held back by codes
    typed wrong at "Set up authenticator app" in a session of the account."""
    from idp.ratelimit import POLICIES
    from tests.test_passkeys import _with_passkey

    b, _ = _with_passkey(live, f"rv5-budget-{uuid.uuid4().hex[:6]}@example.com")
    page = b.get(f"{live.issuer}/account/totp")
    assert SECRET.search(page.text)
    for _ in range(POLICIES["change:account"].free + 1):
        assert b.submit(page, {"code": "000000"}).status_code in (400, 429)
    account = b.get(f"{live.issuer}/account")
    passkey_id = re.search(r"/account/passkeys/([0-9a-f]{32})/remove", account.text).group(1)
    resp = b.submit(account, {}, action=f"{live.issuer}/account/passkeys/{passkey_id}/remove")
    assert resp.status_code == 200 and f"/account/passkeys/{passkey_id}/remove" not in resp.text
