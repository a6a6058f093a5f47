"""Second factor: TOTP enrolment, the "Confirm your identity" step, recovery codes, trusted devices, step-up."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pyotp
import pytest
import requests

from tests.conftest import Browser, csrf_of
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify


def _signed_in(live, email, password="second-factor-pw"):
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/account")
    page = b.sign_in(page, email, password)
    assert page.status_code == 200 and "Your account" in page.text, page.text[:300]
    return b, page


def _enrol(live, email) -> tuple[Browser, str, list[str]]:
    live.create_user(email, "second-factor-pw")
    b, account = _signed_in(live, email)
    assert "Set up authenticator app" in account.text
    page = b.get(f"{live.issuer}/account/totp")
    secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    assert "<svg" in page.text and "Verification code" in page.text
    wrong = b.submit(page, {"code": "000000"})
    assert wrong.status_code == 400
    page = b.get(f"{live.issuer}/account/totp")  # each visit starts over with a new secret
    secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    done = b.submit(page, {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    codes = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", done.text)
    assert len(codes) == 10
    return b, secret, codes


def set_up_app(live, b: Browser) -> str:
    """Set up an authenticator app for the account signed in on `b`; its secret (the
    current step's code is spent)."""
    page = b.get(f"{live.issuer}/account/totp")
    secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    assert b.submit(page, {"code": pyotp.TOTP(secret).now()}).status_code == 200
    return secret


def _code_at(secret: str, offset_steps: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + offset_steps * totp.interval)


def test_totp_sign_in_replay_and_recovery_codes(live):
    _, secret, codes = _enrol(live, "totp@example.com")
    client_id, client_secret = live.create_client()
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    page = b.sign_in(page, "totp@example.com", "second-factor-pw")
    for label in ("Confirm your identity", "Verification code", "Trust this device"):
        assert label in page.text
    wrong = b.submit(page, {"code": "123456"})
    assert wrong.status_code == 401
    code = _code_at(secret, 1)  # enrolment used the current step; each step works once
    params = redirect_params(b.submit(page, {"code": code}))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, client_secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"} and claims["acr"] == "urn:myaccount:loa:2"
    # the same code cannot be used again
    b2 = Browser(live.issuer)
    page = b2.sign_in(b2.get(authorize_url(live.issuer, client_id)), "totp@example.com", "second-factor-pw")
    assert b2.submit(page, {"code": code}).status_code == 401
    # a recovery code works once
    assert "code" in redirect_params(b2.submit(page, {"code": codes[0].upper()}))
    b3 = Browser(live.issuer)
    page = b3.sign_in(b3.get(authorize_url(live.issuer, client_id)), "totp@example.com", "second-factor-pw")
    assert b3.submit(page, {"code": codes[0]}).status_code == 401


def test_trusted_device_skips_the_factor_until_revoked(live):
    _, secret, _ = _enrol(live, "trusted@example.com")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "trusted@example.com", "second-factor-pw")
    page = b.submit(page, {"code": _code_at(secret, 1), "trust": "on"})
    assert "Trusted devices" in page.text and "Revoke" in page.text
    assert b.http.cookies.get("idp_device")
    # sign out and back in: no second factor on this device
    b.submit(page, {}, action=f"{live.issuer}/signout")
    page = b.sign_in(b.get(f"{live.issuer}/account"), "trusted@example.com", "second-factor-pw")
    assert "Your account" in page.text
    # another browser is asked
    other = Browser(live.issuer)
    page = other.sign_in(other.get(f"{live.issuer}/account"), "trusted@example.com", "second-factor-pw")
    assert "Confirm your identity" in page.text
    # revoke the device: asked again
    account = b.get(f"{live.issuer}/account")
    device_id = re.search(r'/account/devices/([0-9a-f]+)/revoke', account.text).group(1)
    b.submit(account, {}, action=f"{live.issuer}/account/devices/{device_id}/revoke")
    b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/signout")
    page = b.sign_in(b.get(f"{live.issuer}/account"), "trusted@example.com", "second-factor-pw")
    assert "Confirm your identity" in page.text


def test_product_asking_for_mfa_gets_a_step_up(live):
    _, secret, codes = _enrol(live, "stepup@example.com")
    client_id, client_secret = live.create_client()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "stepup@example.com", "second-factor-pw")
    page = b.submit(page, {"code": codes[0], "trust": "on"})
    b.submit(page, {}, action=f"{live.issuer}/signout")
    page = b.sign_in(b.get(authorize_url(live.issuer, client_id)), "stepup@example.com", "second-factor-pw")
    params = redirect_params(page)  # trusted device: password only
    # now the product asks for multi-factor assurance
    resp = b.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2", prompt="none"))
    assert redirect_params(resp)["error"] == "interaction_required"
    verifier, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2",
                               code_challenge=challenge, code_challenge_method="S256"))
    assert "Confirm your identity" in page.text
    params = redirect_params(b.submit(page, {"code": _code_at(secret, 1)}))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, client_secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    assert claims["acr"] == "urn:myaccount:loa:2" and "otp" in claims["amr"]


def test_wrong_codes_are_throttled(live):
    _, secret, _ = _enrol(live, "hammer-codes@example.com")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "hammer-codes@example.com", "second-factor-pw")
    statuses = [b.submit(page, {"code": f"00000{i}"}).status_code for i in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429
    resp = b.submit(page, {"code": _code_at(secret, 1)})
    assert resp.status_code == 429 and "Too many attempts" in resp.text


def test_max_age_asks_a_stale_factor_again_even_on_a_trusted_device(live):
    _, secret, codes = _enrol(live, "maxage@example.com")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "maxage@example.com", "second-factor-pw")
    b.submit(page, {"code": codes[0], "trust": "on"})
    time.sleep(1.1)
    # the factor is a second old; the product wants a sign-in within the last 0 seconds
    page = b.get(authorize_url(live.issuer, client_id, max_age="0"))
    page = b.sign_in(page, "maxage@example.com", "second-factor-pw")  # password again
    assert "Confirm your identity" in page.text  # and the factor, trusted device or not
    assert "code" in redirect_params(b.submit(page, {"code": codes[1]}))
    # a generous max_age is satisfied by the fresh factor
    assert "code" in redirect_params(b.get(authorize_url(live.issuer, client_id, max_age="600")))


def _at_code_step(live, email) -> tuple[Browser, requests.Response]:
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "second-factor-pw")
    assert "Confirm your identity" in page.text
    return b, page


def test_concurrent_wrong_codes_stay_within_the_budget(live):
    from idp.ratelimit import POLICIES
    from idp.store import SecurityEvent, User, db

    _, secret, _ = _enrol(live, "race-codes@example.com")
    b, page = _at_code_step(live, "race-codes@example.com")
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    form = {"csrf_token": csrf_of(page.text)}
    start = threading.Barrier(20)

    def guess(i: int) -> int:
        http = requests.Session()  # one connection each, the same browser's cookies
        http.cookies.update(b.http.cookies)
        start.wait()
        return http.post(live.issuer + action, data={**form, "code": f"{i:06d}"}, allow_redirects=False,
                         timeout=30).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(guess, range(20)))
    budget = POLICIES["code:account"].free + 1  # the free ones and the one that starts the first block
    assert statuses.count(401) + statuses.count(429) == 20, statuses
    assert 1 <= statuses.count(401) <= budget, statuses
    with live.db():
        user = db.session.query(User).filter_by(email="race-codes@example.com").one()
        checked = db.session.query(SecurityEvent).filter_by(user_id=user.id, kind="signin.failure").count()
        assert checked == statuses.count(401)  # a 429 never reached the code check


def _past_attempts(live, user_id: str, count: int) -> None:
    """`count` wrong codes an hour ago, a minute apart: the doubling delays are long over."""
    from idp.ratelimit import DatabaseCounters, Throttle
    from idp.store import utcnow

    moments = iter([utcnow() - timedelta(hours=1) + timedelta(minutes=i) for i in range(count)])
    with live.db():
        t = Throttle(DatabaseCounters(), now=lambda: next(moments))
        assert all(t.attempt("code:account", user_id).allowed for _ in range(count))


LOCKOUT_MAIL = {  # (subject, words of the body) in the person's language
    None: ("Too many wrong verification codes for your account", ("10 wrong verification codes", "6 hours")),
    "fr": ("Trop de codes de vérification erronés pour votre compte",
           ("10 codes de vérification erronés", "6 heures")),
}


@pytest.mark.parametrize("locale", [None, "fr"])
def test_lock_out_after_ten_wrong_codes_mails_the_owner(live, locale):
    from idp.ratelimit import POLICIES
    from idp.store import SecurityEvent, User, db
    from tests.smtp import body_of, link_in

    policy = POLICIES["code:account"]
    email = f"locked-out-{locale or 'en'}@example.com"
    _, secret, codes = _enrol(live, email)
    live.mailbox.wait_for(email)  # the enrolment's own notice ("The ways into your account changed")
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        user.locale = locale
        db.session.commit()
        user_id = user.id
    _past_attempts(live, user_id, policy.lockout_after - 1)
    b, page = _at_code_step(live, email)
    assert len(live.mailbox.to(email)) == 1
    wrong = b.submit(page, {"code": "000000"})  # the 10th wrong code in a row
    assert wrong.status_code == 401 and "This code is not right" in wrong.text
    mail = live.mailbox.wait_for(email, 2)[1]
    subject, words = LOCKOUT_MAIL[locale]
    assert str(mail["Subject"]) == subject
    assert all(w in body_of(mail) for w in words), body_of(mail)
    assert link_in(mail, live.issuer) == f"{live.issuer}/password/forgot"
    # now even the right code, or a recovery code, waits for hours
    for code in (_code_at(secret, 1), codes[0]):
        blocked = b.submit(page, {"code": code})
        assert blocked.status_code == 429 and "Too many attempts" in blocked.text
        assert policy.lockout - 60 <= int(blocked.headers["Retry-After"]) <= policy.lockout
    with live.db():
        kinds = [e.kind for e in db.session.query(SecurityEvent).filter_by(user_id=user_id)]
        assert kinds.count("mfa.locked") == 1
    time.sleep(0.5)
    assert len(live.mailbox.to(email)) == 2  # one lock-out, one mail (beside the enrolment's)


def test_a_code_in_other_digits_is_just_wrong(live):
    _enrol(live, "arabic-digits@example.com")
    b, page = _at_code_step(live, "arabic-digits@example.com")
    for code in ("١٢٣٤٥٦", "１２３４５６", "12345²"):
        resp = b.submit(page, {"code": code})
        assert resp.status_code == 401 and "This code is not right" in resp.text, code
