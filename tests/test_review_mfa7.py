"""Security review of second factors at sign-in (round 7): each test drives the live server
and names what an attacker or an auditor would check."""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.conftest import Browser, start_live
from tests.smtp import link_in
from tests.test_not_me_link import not_me_link
from tests.test_second_factor import _enrol


def test_the_mailbox_alone_does_not_remove_the_owners_own_second_factor(live):
    """Medium (ASVS 2.5.6, RFC 9700's account recovery, OWASP MFA cheat sheet: recovery must not
    bypass the second factor): the owner sets up an authenticator app from their own session.
    Someone who reads the owner's mail in the next 7 days (a phished webmail password, a
    forwarding rule) opens the set-up notice's "Not you? Remove it" link: the app is removed.
    A reset link to the same mailbox then sets a password, and the sign-in asks for no second
    factor at all: the account is theirs with the mailbox alone, the thing a second factor is
    there to stop. Now the link asks for the password as it was when mailed (a guess is
    refused and counted with the sign-in's), which a reset through the mailbox does not give."""
    email = "rv7-mailbox@example.com"
    _enrol(live, email)  # the owner's own app, set up from their own session
    notice = not_me_link(live, email, 1)
    # the mailbox reader: the notice's link, then a reset link
    reader = Browser(live.issuer)
    page = reader.get(notice)
    assert page.status_code == 200
    assert reader.submit(page, {"password": "a guess"}).status_code == 401
    reader.submit(reader.get(f"{live.issuer}/password/forgot"), {"email": email})
    reset = reader.get(link_in(live.mailbox.wait_for(email, 2)[-1], live.issuer))
    assert reset.status_code == 200 and 'name="password"' in reset.text, reset.text[:300]
    assert "Password changed" in reader.submit(reset, {"password": "mailbox-reader-pw-7"}).text
    # the link, after the reset, with the password the reader has just set: not the one it asks
    assert reader.submit(reader.get(notice), {"password": "mailbox-reader-pw-7"}).status_code == 401
    page = reader.sign_in(reader.get(f"{live.issuer}/account"), email, "mailbox-reader-pw-7")
    assert "Your account" not in page.text and "Confirm your identity" in page.text, \
        "the mailbox alone took an account protected by a second factor"


def test_a_session_left_open_cannot_lock_the_owner_out_of_signing_in_with_their_code(live):
    """Medium (ASVS 2.2.1 / 2.5: a lock-out an attacker can use to deny the owner; idp/mfa/
    lockout.py's premise "only someone who typed the account's password reaches the code step"):
    a session left open on a shared computer (remembered for 30 days) needs no password to reach
    the code step: any product's /authorize with acr_values=urn:myaccount:loa:2 asks it for the
    code (a step-up). Ten wrong codes there, and the owner, signing in elsewhere with the right
    password and the right code from their app, is refused for hours; the mail they get says
    someone typed their password."""
    from idp.ratelimit import POLICIES
    from idp.store import User, db
    from tests.oidc import authorize_url
    from tests.smtp import body_of
    from tests.test_second_factor import _code_at, _past_attempts

    email = "rv7-stepup-lock@example.com"
    left_open, secret, codes = _enrol(live, email)  # the owner's session, left open
    live.mailbox.wait_for(email)  # the set-up's notice
    client_id, _ = live.create_client()
    page = left_open.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2"))
    assert "Confirm your identity" in page.text  # no password asked
    # nine wrong codes from this session an hour ago (past the doubling delays), the tenth now
    with live.db():
        user_id = db.session.query(User).filter_by(email=email).one().id
    _past_attempts(live, user_id, POLICIES["code:account"].lockout_after - 1)
    assert left_open.submit(page, {"code": "000000"}).status_code == 401
    owner = Browser(live.issuer)
    page = owner.sign_in(owner.get(f"{live.issuer}/account"), email, "second-factor-pw")
    assert "Confirm your identity" in page.text
    resp = owner.submit(page, {"code": _code_at(secret, 1)})
    time.sleep(1)  # the mail, if any, has arrived
    lock_mails = [m for m in live.mailbox.to(email) if "typed the password" in body_of(m)]
    assert resp.status_code == 200 and "Your account" in resp.text and not lock_mails, \
        (resp.status_code, len(lock_mails))


def _at_step_up(live, email, client=None) -> tuple[Browser, str, list[str], object, str]:
    """An account with an app, its session open at a product's step-up (`client`'s, else a
    new one's): (the browser, the app's secret, recovery codes, the code page, the account's id)."""
    from idp.store import User, db
    from tests.oidc import authorize_url

    left_open, secret, codes = _enrol(live, email)
    client_id, _ = client or live.create_client()
    page = left_open.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2"))
    assert "Confirm your identity" in page.text
    with live.db():
        user_id = db.session.query(User).filter_by(email=email).one().id
    return left_open, secret, codes, page, user_id


def test_a_step_up_that_spends_its_sessions_budget_signs_the_session_out(live):
    """The product owner's rule for the finding above: a step-up's wrong codes (recovery codes
    too) are the session's; the last of its budget ends the session, as "Sign out" does, and
    the account's budget, its lock-out and its mail are untouched."""
    from idp.ratelimit import POLICIES, DatabaseCounters, throttle_key
    from idp.store import BrowserSession, SecurityEvent, db
    from tests.oidc import verify
    from tests.smtp import body_of
    from tests.test_backchannel import Receiver, _sign_in

    email = "rv7-stepup-ended@example.com"
    product = Receiver()  # a product this session signed in, told of its end by back-channel logout
    client = live.create_client(backchannel_logout_uri=product.url)
    left_open, _secret, _codes, page, user_id = _at_step_up(live, email, client)
    signed_in = _sign_in(live, left_open, *client, email, "second-factor-pw")
    budget = POLICIES["code:session"].lockout_after
    for n in range(budget - 1):  # an app's code, a recovery code: guesses alike
        wrong = left_open.submit(page, {"code": "000000" if n % 2 else "aaaaa-bbbbb"})
        assert wrong.status_code == 401 and "This code is not right" in wrong.text
    ended = left_open.submit(page, {"code": "000000"})
    assert ended.status_code == 401 and "You are signed out" in ended.text and "Sign in again" in ended.text
    assert 'href="/signin?req=' in ended.text  # back to the product's request, password first
    account = left_open.get(f"{live.issuer}/account")
    assert "Your account" not in account.text and 'name="email"' in account.text
    with live.db():
        sessions = db.session.query(BrowserSession).filter_by(user_id=user_id).all()
        assert sessions and all(s.ended_at is not None for s in sessions)
        kinds = [e.kind for e in db.session.query(SecurityEvent).filter_by(user_id=user_id)]
        assert kinds.count("session.ended_wrong_codes") == 1 and "mfa.locked" not in kinds
        assert DatabaseCounters().blocked_until(throttle_key("code:account", user_id)) is None
    try:
        tokens = product.wait_for(1, timeout=15)
    finally:
        product.close()
    assert tokens, "the product was not told"
    _, claims = verify(live.issuer, tokens[0])
    assert claims["sid"] == signed_in["sid"] and claims["sub"] == user_id
    assert not [m for m in live.mailbox.to(email) if "typed the password" in body_of(m)]


def test_the_signed_out_page_of_a_spent_step_up_is_in_the_persons_language(live):
    from idp.ratelimit import POLICIES

    left_open, _secret, _codes, page, _user_id = _at_step_up(live, "rv7-stepup-fr@example.com")
    left_open.http.headers["Accept-Language"] = "fr"
    for _ in range(POLICIES["code:session"].lockout_after):
        ended = left_open.submit(page, {"code": "000000"})
    assert ended.status_code == 401 and "Vous êtes déconnecté" in ended.text
    assert "Trop de codes de vérification erronés" in ended.text


def test_a_spent_step_up_ends_the_browsers_trust_too(live):
    """A trusted device lets the password alone open a session here, each with a fresh
    step-up budget: whoever knows the password at that computer could guess codes without
    end, 5 per sign-in. The spent budget ends the device's trust with the session, so the
    next sign-in asks the code, against the account's budget."""
    from idp.ratelimit import POLICIES
    from tests.oidc import authorize_url, redirect_params

    email = "rv7-stepup-trusted@example.com"
    _, _secret, codes = _enrol(live, email)
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "second-factor-pw")
    b.submit(b.submit(page, {"code": codes[0], "trust": "on"}), {}, action=f"{live.issuer}/signout")
    assert "code" in redirect_params(b.sign_in(b.get(authorize_url(live.issuer, client_id)), email,
                                               "second-factor-pw"))  # trusted: the password alone
    page = b.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2"))
    for _ in range(POLICIES["code:session"].lockout_after):
        ended = b.submit(page, {"code": "000000"})
    assert "You are signed out" in ended.text
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "second-factor-pw")
    assert "Confirm your identity" in page.text and "Your account" not in page.text


def test_a_step_ups_right_code_still_works_after_fewer_wrong_ones_than_its_budget(live):
    from idp.ratelimit import POLICIES
    from tests.oidc import redirect_params
    from tests.test_second_factor import _code_at

    left_open, secret, _codes, page, _user_id = _at_step_up(live, "rv7-stepup-right@example.com")
    for _ in range(POLICIES["code:session"].lockout_after - 1):
        assert left_open.submit(page, {"code": "000000"}).status_code == 401
    assert "code" in redirect_params(left_open.submit(page, {"code": _code_at(secret, 1)}))
    assert "Your account" in left_open.get(f"{live.issuer}/account").text


def test_a_step_up_is_no_way_around_the_accounts_lock_out(live):
    """The password step's wrong codes still lock the account's codes (test_second_factor's
    test_lock_out_after_ten_wrong_codes_mails_the_owner): a session's step-up, with its own
    budget, is refused while that lock holds, and the refusal costs the session nothing."""
    from idp.ratelimit import POLICIES
    from tests.test_second_factor import _code_at, _past_attempts

    left_open, secret, _codes, page, user_id = _at_step_up(live, "rv7-stepup-locked@example.com")
    _past_attempts(live, user_id, POLICIES["code:account"].lockout_after)
    for _ in range(POLICIES["code:session"].lockout_after + 1):
        refused = left_open.submit(page, {"code": _code_at(secret, 1)})
        assert refused.status_code == 429 and "Too many attempts" in refused.text
    assert "Your account" in left_open.get(f"{live.issuer}/account").text  # not signed out


@pytest.fixture(scope="module")
def threaded(database_url, mailbox, tmp_path_factory):
    """A server of its own on the session's PostgreSQL database, several threads per worker: two
    requests waiting on one row must not wait for a thread instead."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the interleaving is forced with PostgreSQL's row lock")
    yield from start_live(database_url, tmp_path_factory.mktemp("mfa7"), mailbox, extra_env={"IDP_THREADS": "4"})


def _waiting_on_locks(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar()


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "the requests never queued on the row"
        time.sleep(0.05)


def _queued_behind_a_row_lock(engine, table: str, user_id: str, calls) -> None:
    """Run `calls` (each in its own thread) queued, in this order, behind a lock held on
    `user_id`'s row of `table` (PostgreSQL), then let them go and wait for them."""
    from sqlalchemy import text

    holder = engine.connect()
    holder.execute(text(f"SELECT 1 FROM {table} WHERE user_id = :u FOR UPDATE"), {"u": user_id})
    threads = []
    try:
        for n, call in enumerate(calls, start=1):
            threads.append(threading.Thread(target=call))
            threads[-1].start()
            _until(lambda n=n: _waiting_on_locks(engine) >= n)
    finally:
        holder.rollback()
        holder.close()
    for t in threads:
        t.join(30)
    engine.dispose()


@pytest.mark.parametrize("first", ["reload", "confirm"])
def test_a_set_up_confirmed_while_another_sign_in_reloads_the_page_keeps_the_owners_secret(threaded, first):
    """Medium (ASVS 1.11.3 / 11.1.6, a check-then-act race across server processes): an org requires
    a second factor; its member's password is known to someone else, who sits at the set-up
    step too and reloads it (each reload makes a new secret, shown to them). The owner types
    the first code of the secret they were shown. `confirm_enrolment` read the row, then wrote
    "confirmed" on it by its key alone; the reload wrote its new secret by the key alone too.
    When the two cross (the reload's write just before the confirmation's, or just after), the
    owner is shown their recovery codes while the factor now holds the OTHER person's secret:
    the owner's app never works, and the intruder's does. The order is forced here with a row
    lock on PostgreSQL; the fix's writes decide against the committed row on either database."""
    live = threaded

    import pyotp
    from sqlalchemy import create_engine

    from idp.mfa import totp
    from idp.store import TotpFactor, User, db
    from keys import unseal
    from tests.admin_world import PASSWORD, at_second_factor_set_up

    intruder, _page, _secret, email = at_second_factor_set_up(live, f"race7{first}")
    owner = Browser(live.issuer)
    page = owner.sign_in(owner.get(f"{live.issuer}/account"), email, PASSWORD)  # a new secret, the owner's
    owners = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    with live.db():
        user_id = db.session.query(User).filter_by(email=email).one().id

    engine = create_engine(live.env["IDP_DATABASE_URL"])
    answers = {}

    def reload():
        answers["reload"] = intruder.get(f"{live.issuer}/signin/set-up-second-factor")

    def confirm():
        answers["confirm"] = owner.submit(page, {"code": pyotp.TOTP(owners).now()})

    steps = {"reload": reload, "confirm": confirm}
    order = [first, "confirm" if first == "reload" else "reload"]
    _queued_behind_a_row_lock(engine, "totp_factors", user_id, [steps[name] for name in order])
    with live.db():
        row = db.session.get(TotpFactor, user_id)
        confirmed = None if row.confirmed_at is None else \
            unseal(live.app.extensions["idp.settings"].secret_key, row.sealed_secret, user_id, totp.PURPOSE).decode()
    assert answers["reload"].status_code == 200, answers["reload"].status_code  # a page, never a 500
    told_done = answers["confirm"].status_code == 200 and "recovery" in answers["confirm"].text.lower()
    assert confirmed in (None, owners), "the set-up was confirmed with a secret the owner never saw"
    assert told_done == (confirmed == owners), (told_done, confirmed == owners)


def test_new_recovery_codes_asked_twice_at_once_leave_only_the_last_list(threaded):
    """Low (the brief's "regenerate invalidates old"; ASVS 2.6.1 a recovery code is good once,
    and only while it is the account's): "New recovery codes" posted twice at once (a double
    click, two tabs, or the owner and whoever holds another recent session) each deleted the
    codes its statement could see, then added ten. On PostgreSQL the second delete cannot see
    the first request's new codes: the account is left with 20, and the list not shown last
    (the one a double click throws away, or the other session's) still signs in, though every
    page said the older codes no longer work."""
    from sqlalchemy import create_engine

    from idp.mfa import totp
    from idp.store import User, db

    live = threaded
    b, _secret, _codes = _enrol(live, "rv7-codes-twice@example.com")  # a recent sign-in: may change factors
    other = Browser(live.issuer)
    other.http.cookies.update(b.http.cookies)
    page = b.get(f"{live.issuer}/account")
    with live.db():
        user = db.session.query(User).filter_by(email="rv7-codes-twice@example.com").one()
        user_id = user.id
    engine = create_engine(live.env["IDP_DATABASE_URL"])
    answers = []

    def regenerate(browser):
        answers.append(browser.submit(page, {}, action=f"{live.issuer}/account/recovery-codes"))

    _queued_behind_a_row_lock(engine, "recovery_codes", user_id,
                              [lambda browser=browser: regenerate(browser) for browser in (b, other)])
    assert [a.status_code for a in answers] == [200, 200]
    with live.db():
        left = totp.recovery_codes_left(db.session.get(User, user_id))
    assert left == 10, f"{left} recovery codes work, two lists of them"
