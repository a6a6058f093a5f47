"""The "Not you? Remove it and sign out everywhere" link in the notice of an added way in
(idp/account/not_me.py): single use, bound to its account and to the one thing added, acting
only on a POST, dead after 7 days. The finding it answers is in test_review_account6."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import Browser
from tests.smtp import body_of
from tests.oidc import verify
from tests.test_backchannel import _setup, receiver  # noqa: F401  (fixture)
from tests.test_passkeys import _passkey_sign_in, _post_json, _with_passkey
from tests.test_second_factor import _enrol
from tests.test_social import _link, provider, upstream  # noqa: F401  (fixtures)
from tests.webauthn_authenticator import SoftwareAuthenticator

PASSWORD = "passkey-password"


def not_me_link(live, email: str, count: int) -> str:
    """The "Not you?" link of the `count`-th mail to `email`."""
    body = body_of(live.mailbox.wait_for(email, count)[count - 1])
    found = re.search(re.escape(live.issuer) + r"/account/not-me/\S+", body)
    assert found, body
    return found.group(0)


def _passkey_ids(live, email: str) -> list[str]:
    from idp.store import Passkey, User, db

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        return [p.id for p in db.session.query(Passkey).filter_by(user_id=user.id).order_by(Passkey.created_at)]


def _signed_in(live, b: Browser) -> bool:
    return "Your account" in b.get(f"{live.issuer}/account").text


def _second_passkey(live, b: Browser):
    page = b.get(f"{live.issuer}/account")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(b, page, "/account/passkeys/options").json()
    assert _post_json(b, page, "/account/passkeys", {"credential": device.create(options)}).status_code == 201
    return device


def test_a_get_alone_changes_nothing(live):
    """Mail scanners and link previews open every link: only the button acts."""
    email = "not-me-get@example.com"
    b, device = _with_passkey(live, email)
    link = not_me_link(live, email, 1)
    for _ in range(2):
        page = Browser(live.issuer).get(link)
        assert page.status_code == 200 and '<form method="post"' in page.text
    assert len(_passkey_ids(live, email)) == 1 and _signed_in(live, b)
    assert _passkey_sign_in(live, Browser(live.issuer), device)[0].status_code == 200


def test_the_link_acts_once_and_only_on_the_passkey_it_names(live):
    email = "not-me-once@example.com"
    b, first = _with_passkey(live, email)
    second = _second_passkey(live, b)
    kept = _passkey_ids(live, email)[1]
    link = not_me_link(live, email, 1)  # the first passkey's notice
    owner = Browser(live.issuer)
    page = owner.get(link)
    assert owner.submit(page, {"password": PASSWORD}).status_code == 200
    assert _passkey_ids(live, email) == [kept] and not _signed_in(live, b)
    assert _passkey_sign_in(live, Browser(live.issuer), first)[0].status_code != 200
    # signed in again, the link used a second time neither signs out nor removes anything
    again = Browser(live.issuer)
    assert _passkey_sign_in(live, again, second)[0].status_code == 200 and _signed_in(live, again)
    assert Browser(live.issuer).get(link).status_code == 410
    assert owner.submit(page, {"password": PASSWORD}).status_code == 410
    assert _passkey_ids(live, email) == [kept] and _signed_in(live, again)
    # the removal is told; the second passkey's own link (its notice, mail 2) is still live
    assert "Passkey removed" in body_of(live.mailbox.wait_for(email, 3)[2])
    assert Browser(live.issuer).get(not_me_link(live, email, 2)).status_code == 200


def test_a_link_cannot_remove_another_accounts_passkey(live):
    """The link is bound to its account: one naming another account's passkey removes nothing
    of it (made here by hand; the server never mails one)."""
    from idp import mail_tokens
    from idp.store import User, db

    email, victim = "not-me-a@example.com", "not-me-b@example.com"
    live.create_user(email, PASSWORD)
    vb, device = _with_passkey(live, victim)
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        token = mail_tokens.issue(user, "undo", target=f"passkey:{_passkey_ids(live, victim)[0]}",
                                  proof=user.password_hash)
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/account/not-me/{token}")
    assert b.submit(page, {"password": PASSWORD}).status_code == 200
    assert len(_passkey_ids(live, victim)) == 1 and _signed_in(live, vb)
    assert _passkey_sign_in(live, Browser(live.issuer), device)[0].status_code == 200


def test_an_expired_link_is_refused_and_acts_on_nothing(live):
    from idp.store import MailToken, db, digest, utcnow

    email = "not-me-expired@example.com"
    b, _ = _with_passkey(live, email)
    link = not_me_link(live, email, 1)
    owner = Browser(live.issuer)
    page = owner.get(link)
    with live.db():
        row = db.session.get(MailToken, digest(link.rsplit("/", 1)[1]))
        assert row.purpose == "undo" and (row.expires_at - utcnow()).days == 6  # 7 days, less a moment
        row.expires_at = utcnow()
        db.session.commit()
    assert Browser(live.issuer).get(link).status_code == 410
    refused = owner.submit(page, {"password": PASSWORD})
    assert refused.status_code == 410 and "expired" in refused.text
    assert len(_passkey_ids(live, email)) == 1 and _signed_in(live, b)
    assert Browser(live.issuer).get(f"{live.issuer}/account/not-me/{'x' * 300}").status_code == 410


def test_a_link_for_a_passkey_already_removed_still_signs_out_everywhere(live):
    """The owner removed the passkey first (on the account page, from a session with it):
    the link then removes nothing, yet whoever else holds a session of the account is out."""
    email = "not-me-gone@example.com"
    b, device = _with_passkey(live, email)
    other = Browser(live.issuer)  # whoever else holds a session (here: signed in with the passkey)
    assert _passkey_sign_in(live, other, device)[0].status_code == 200 and _signed_in(live, other)
    account = b.get(f"{live.issuer}/account")
    remove = re.search(r'action="(/account/passkeys/[^"]+/remove)"', account.text).group(1)
    b.submit(account, {}, action=f"{live.issuer}{remove}")
    assert _passkey_ids(live, email) == []
    owner = Browser(live.issuer)
    done = owner.submit(owner.get(not_me_link(live, email, 1)), {"password": PASSWORD})
    assert done.status_code == 200 and "already gone" in done.text
    assert not _signed_in(live, other) and not _signed_in(live, b)
    assert len(live.mailbox.to(email)) == 2  # added, removed: nothing new to tell
    assert "/account/not-me/" not in body_of(live.mailbox.to(email)[1])  # a removal has no such link


def test_the_link_removes_an_authenticator_app_and_its_recovery_codes(live):
    from idp.store import RecoveryCode, TotpFactor, User, db

    email = "not-me-totp@example.com"
    b, _, _ = _enrol(live, email)
    owner = Browser(live.issuer)
    assert owner.submit(owner.get(not_me_link(live, email, 1)), {"password": "second-factor-pw"}).status_code == 200
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        assert db.session.get(TotpFactor, user.id) is None
        assert db.session.query(RecoveryCode).filter_by(user_id=user.id).count() == 0
    assert "Authenticator app turned off" in body_of(live.mailbox.wait_for(email, 2)[1])
    assert not _signed_in(live, b)
    back = Browser(live.issuer)
    assert "Your account" in back.sign_in(back.get(f"{live.issuer}/account"), email, "second-factor-pw").text


@pytest.mark.usefixtures("provider")
def test_the_link_unlinks_a_connected_account(live, upstream):  # noqa: F811
    from idp.store import LinkedIdentity, User, db

    tag = uuid.uuid4().hex[:8]  # the upstream serves both databases' runs
    email, upstream_email = f"not-me-link-{tag}@example.com", f"not-me-{tag}@upstream.example"
    live.create_user(email, PASSWORD)
    upstream.create_user(upstream_email, "upstream-password")
    b, account = _link(live, upstream, email, PASSWORD, upstream_email)
    assert "Unlink" in account.text
    owner = Browser(live.issuer)
    assert owner.submit(owner.get(not_me_link(live, email, 1)), {"password": PASSWORD}).status_code == 200
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        assert db.session.query(LinkedIdentity).filter_by(user_id=user.id).count() == 0
    assert "Connected account unlinked" in body_of(live.mailbox.wait_for(email, 2)[1])
    assert not _signed_in(live, b)


def test_the_link_tells_the_products_signed_in_to_sign_out_too(live, browser, receiver):  # noqa: F811
    """As "Sign out of all sessions" does: every product that holds a session of the account
    gets its back-channel logout token."""
    user_id, client_id, id_claims = _setup(live, browser, receiver, "not-me-bc@example.com")
    page = browser.get(f"{live.issuer}/account")  # the session that signed in to the product adds a passkey
    assert "Your account" in page.text
    options = _post_json(browser, page, "/account/passkeys/options").json()
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    assert _post_json(browser, page, "/account/passkeys", {"credential": device.create(options)}).status_code == 201
    owner = Browser(live.issuer)
    page = owner.get(not_me_link(live, "not-me-bc@example.com", 1))
    assert owner.submit(page, {"password": "backchannel-password"}).status_code == 200
    tokens = receiver.wait_for(1, timeout=15)
    assert tokens, "the server did not deliver the logout token"
    _, claims = verify(live.issuer, tokens[0])
    assert claims["sub"] == user_id and claims["sid"] == id_claims["sid"] and claims["aud"] == client_id


def test_the_link_asks_the_password_and_a_wrong_one_removes_nothing(live):
    """The mailbox alone is no proof (the owner's own set-up is mailed the same link): the
    button asks the password as it was when mailed. A wrong one is refused, counted with the
    sign-in's guesses, and the link stays good for the owner."""
    from idp.store import RateLimit, db
    from idp.ratelimit import throttle_key

    email = "not-me-password@example.com"
    b, device = _with_passkey(live, email)
    owner = Browser(live.issuer)
    page = owner.get(not_me_link(live, email, 1))
    assert 'name="password"' in page.text
    for typed in ("", "not the password"):
        refused = owner.submit(page, {"password": typed})
        assert refused.status_code in (400, 401), refused.text[:300]
    assert len(_passkey_ids(live, email)) == 1 and _signed_in(live, b)
    with live.db():
        row = db.session.get(RateLimit, throttle_key("password:account", email))
        assert row is not None and row.failures >= 1
    assert owner.submit(page, {"password": PASSWORD}).status_code == 200
    assert _passkey_ids(live, email) == []


def test_an_account_without_a_password_cannot_use_the_link(live):
    """An account that had no password when the link was mailed: nothing the owner alone
    knows can be asked, so the page says so, and nothing is done."""
    from idp.store import User, db

    email = "not-me-no-password@example.com"
    live.create_user(email, PASSWORD)
    b = Browser(live.issuer)
    assert "Your account" in b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD).text
    with live.db():  # no password when the passkey is added (as an account made by a social sign-in)
        db.session.query(User).filter_by(email=email).one().password_hash = None
        db.session.commit()
    _second_passkey(live, b)
    owner = Browser(live.issuer)
    page = owner.get(not_me_link(live, email, 1))
    assert page.status_code == 200 and 'name="password"' not in page.text
    from tests.conftest import csrf_of

    token = csrf_of(owner.get(f"{live.issuer}/signin").text)  # the page has no form: this browser's token
    refused = owner.http.post(page.url, data={"csrf_token": token, "password": "x"}, timeout=30)
    assert refused.status_code == 403
    assert len(_passkey_ids(live, email)) == 1 and _signed_in(live, b)


def test_the_link_works_with_the_password_as_it_was_after_the_owner_resets_it(live):
    """The mail's first advice is a new password: the owner who follows it first still holds
    the password the link asks (the one when it was mailed); the new one is not it."""
    from tests.smtp import link_in

    email = "not-me-after-reset@example.com"
    b, device = _with_passkey(live, email)
    link = not_me_link(live, email, 1)
    owner = Browser(live.issuer)
    owner.submit(owner.get(f"{live.issuer}/password/forgot"), {"email": email})
    reset = owner.get(link_in(live.mailbox.wait_for(email, 2)[-1], live.issuer))
    assert "Password changed" in owner.submit(reset, {"password": "the owners new password 9"}).text
    page = owner.get(link)
    assert owner.submit(page, {"password": "the owners new password 9"}).status_code == 401
    assert owner.submit(page, {"password": PASSWORD}).status_code == 200
    assert _passkey_ids(live, email) == []
    assert _passkey_sign_in(live, Browser(live.issuer), device)[0].status_code != 200
