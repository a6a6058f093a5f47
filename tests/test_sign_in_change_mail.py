"""The owner hears by mail of every change to the ways into their account (OWASP ASVS 4.0
2.2.3): whoever holds an open session (or an administrator) may add a way in that outlives a
password reset, or take a factor away."""

from __future__ import annotations

import re

from tests.smtp import body_of, link_in
from tests.test_passkeys import _with_passkey
from tests.test_second_factor import _enrol
from tests.test_social import _link, provider, upstream  # noqa: F401  (fixtures)

SUBJECT = "The ways into your account changed"


def _told(live, email: str, count: int, change: str) -> str:
    """The body of the `count`-th mail to `email`, checked to be the change notice naming `change`."""
    mail = live.mailbox.wait_for(email, count)[count - 1]
    assert str(mail["Subject"]) == SUBJECT
    body = body_of(mail)
    assert change in body, body
    assert link_in(mail, live.issuer) == f"{live.issuer}/password/forgot"  # first the way back: a reset
    assert f"{live.issuer}/account\n" in body.replace("\r\n", "\n")  # then the page to remove what is not theirs
    return body


def test_the_authenticator_app_and_its_recovery_codes(live):
    email = "told-totp@example.com"
    b, secret, codes = _enrol(live, email)
    body = _told(live, email, 1, "Authenticator app set up")
    assert secret not in body and not any(code in body for code in codes)

    account = b.get(f"{live.issuer}/account")
    done = b.submit(account, {}, action=f"{live.issuer}/account/recovery-codes")
    new_codes = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", done.text)
    assert len(new_codes) == 10
    body = _told(live, email, 2, "New recovery codes")
    assert not any(code in body for code in new_codes)

    b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/account/totp/remove")
    _told(live, email, 3, "Authenticator app turned off")
    assert len(live.mailbox.to(email)) == 3


def test_a_passkey_added_and_removed(live):
    email = "told-passkey@example.com"
    b, _ = _with_passkey(live, email)
    _told(live, email, 1, "Passkey added")
    account = b.get(f"{live.issuer}/account")
    remove = re.search(r'action="(/account/passkeys/[^"]+/remove)"', account.text).group(1)
    b.submit(account, {}, action=f"{live.issuer}{remove}")
    _told(live, email, 2, "Passkey removed")


def test_a_connected_account_linked_and_unlinked(live, upstream, provider):  # noqa: F811
    email = "told-link@example.com"
    live.create_user(email, "told-link-password")
    upstream.create_user("told@upstream.example", "upstream-password")
    b, account = _link(live, upstream, email, "told-link-password", "told@upstream.example")
    assert "Unlink" in account.text
    _told(live, email, 1, "Connected account linked")
    unlink = re.search(r'action="(/account/connected/[^"]+/unlink)"', account.text).group(1)
    b.submit(account, {}, action=f"{live.issuer}{unlink}")
    _told(live, email, 2, "Connected account unlinked")


def test_a_failed_change_tells_nobody(live):
    """A wrong code at set-up changes nothing, so nothing is mailed."""
    from tests.test_second_factor import _signed_in

    email = "told-nothing@example.com"
    live.create_user(email, "second-factor-pw")
    b, _ = _signed_in(live, email)
    page = b.get(f"{live.issuer}/account/totp")
    assert b.submit(page, {"code": "000000"}).status_code == 400
    b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/account/totp/remove")  # none to remove
    assert live.mailbox.to(email) == []


def test_sign_out_everywhere_tells_only_what_it_removed(live):
    """"Also remove every passkey" removes, records and tells; ticked (by a crafted form)
    where there is nothing to remove, it tells nothing: no change was made."""
    from tests.test_second_factor import _signed_in

    email = "told-everywhere@example.com"
    b, _ = _with_passkey(live, email)
    _told(live, email, 1, "Passkey added")
    account = b.get(f"{live.issuer}/account")
    done = b.submit(account, {"remove_passkeys": "on", "unlink_all": "on"},
                    action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200
    _told(live, email, 2, "Passkey removed")

    nothing = "told-nothing-everywhere@example.com"
    live.create_user(nothing, "second-factor-pw")
    b, account = _signed_in(live, nothing)
    done = b.submit(account, {"remove_passkeys": "on", "unlink_all": "on"},
                    action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200
    import time

    time.sleep(1)
    assert live.mailbox.to(nothing) == []
    assert len(live.mailbox.to(email)) == 2  # no "connected account unlinked" for links that were not there


def test_a_trusted_device_is_told_even_past_the_hours_changes(live):
    """"Trust this device" is a change of the ways in (the password alone opens the account
    there for 30 days), told as the others are; it is part of a sign-in, which is never refused
    for its notice: the hour's budget of changes (`notices.refused`) spent, it is still made and told."""
    from tests.conftest import Browser
    from tests.test_second_factor import _code_at

    email = "told-trust@example.com"
    owner, secret, _ = _enrol(live, email)
    _told(live, email, 1, "Authenticator app set up")
    answers = [owner.submit(owner.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/account/recovery-codes")
               for _ in range(12)]
    assert answers[-1].status_code == 429  # the hour's changes are spent
    made = 1 + sum(r.status_code == 200 for r in answers)
    live.mailbox.wait_for(email, made)
    other = Browser(live.issuer)
    page = other.sign_in(other.get(f"{live.issuer}/account"), email, "second-factor-pw")
    page = other.submit(page, {"code": _code_at(secret, 1), "trust": "on"})
    assert page.status_code == 200 and "Your account" in page.text
    _told(live, email, made + 1, "Device trusted")
