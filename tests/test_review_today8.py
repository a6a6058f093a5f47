"""Security review of the day's new sign-in defences (round 8: device cookies, step-up codes
charged to the session). Each test drives the real server (`live`: `idp serve` on SQLite and
on PostgreSQL) and names what an attacker would try."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Browser
from tests.test_second_factor import _enrol


@pytest.mark.parametrize("hide_trust", [False, True], ids=["kept", "cookie-dropped-at-step-up"])
def test_signing_out_before_the_last_code_gives_a_trusted_browser_no_fresh_step_up_budget(live, hide_trust):
    """Medium (ASVS 2.2.1 anti-automation; the rule of test_review_mfa7's
    test_a_spent_step_up_ends_the_browsers_trust_too): a trusted device lets the password alone
    open a session, and each session brings a fresh step-up budget ("code:session", keyed by
    the session). The trust ends only with the budget's LAST wrong code: whoever knows the
    password at that computer types one code fewer, signs out and in again (no code asked:
    trusted) and has a fresh budget: 4 guesses per sign-in, without end, none of them charged
    to the account. Wrong step-up codes from one trusted browser must add up across the
    sessions its trust opens, the trusted-device cookie dropped during each step-up (and put
    back to sign in) or not."""
    from idp.ratelimit import POLICIES
    from tests.oidc import authorize_url

    email = f"rv8-stepup-resign-{int(hide_trust)}@example.com"
    _, _secret, codes = _enrol(live, email)
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "second-factor-pw")
    b.submit(b.submit(page, {"code": codes[0], "trust": "on"}), {}, action=f"{live.issuer}/signout")
    budget = POLICIES["code:session"].lockout_after
    wrong_and_still_open = 0
    for _round in range(3):
        page = b.sign_in(b.get(f"{live.issuer}/account"), email, "second-factor-pw")
        if "Confirm your identity" in page.text:  # the trust is gone: the account's budget now
            break
        trust = b.http.cookies.get("idp_device")
        if hide_trust:
            b.http.cookies.set("idp_device", None)
        page = b.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2"))
        assert "Confirm your identity" in page.text
        ended = False
        for _ in range(budget - 1):
            answer = b.submit(page, {"code": "000000"})
            if "You are signed out" in answer.text:
                ended = True
                break
            assert answer.status_code == 401 and "This code is not right" in answer.text
            wrong_and_still_open += 1
        if ended:
            break
        b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/signout")
        if hide_trust:
            b.http.cookies.set("idp_device", trust, domain=re.match(r"https?://([^:/]+)", live.issuer).group(1),
                               path="/")
    assert wrong_and_still_open < budget, \
        f"{wrong_and_still_open} wrong step-up codes from one trusted browser, its sessions still open"
