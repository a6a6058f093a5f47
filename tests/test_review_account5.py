"""Security review of the person's account pages and the factors they manage (round 5):
each test shows one finding through the real server."""

from __future__ import annotations

import re

import pyotp

from tests.admin_world import PASSWORD
from tests.conftest import Browser
from tests.test_admin_options import _member, _open_sessions, _org, _set

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
