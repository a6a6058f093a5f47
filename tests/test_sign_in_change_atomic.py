"""A change of the ways into an account and its notice (audit event and the owner's mail) are
one commit: when the notice cannot be written, the change is not made either and the person
sees an error, never a new way in that its owner is not told of (ASVS 2.2.3)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid

import pyotp
import pytest
from sqlalchemy import text

from tests.admin_world import at_second_factor_set_up
from tests.conftest import Browser, server_apart
from tests.test_admin_users import _confirm, _org_and_admin, _person_page
from tests.test_passkeys import _post_json
from tests.webauthn_authenticator import SoftwareAuthenticator
from tests.test_second_factor import _enrol, _signed_in

FAILED = "Something went wrong on our side"


@pytest.fixture(scope="module")
def live(live, tmp_path_factory):
    """A server apart: these tests make the database refuse a write on purpose."""
    yield from server_apart(live, tmp_path_factory)


@contextlib.contextmanager
def _notice_fails(live, kind: str, user_id: str):
    """While inside, the database refuses the audit event `kind` of `user_id`, as a process
    killed between two commits would leave it: written, then gone."""
    from idp.store import db

    name = f"refuse_{uuid.uuid4().hex[:12]}"
    where = f"NEW.kind = '{kind}' AND NEW.user_id = '{user_id}'"
    with live.db():
        if db.engine.dialect.name == "sqlite":
            db.session.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT ON security_events WHEN {where} "
                                    "BEGIN SELECT RAISE(ABORT, 'notice refused by the test'); END"))
        else:
            db.session.execute(text(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                                    "$$ BEGIN RAISE EXCEPTION 'notice refused by the test'; END $$"))
            db.session.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT ON security_events FOR EACH ROW "
                                    f"WHEN ({where}) EXECUTE FUNCTION {name}()"))
        db.session.commit()
    try:
        yield
    finally:
        with live.db():
            if db.engine.dialect.name == "sqlite":
                db.session.execute(text(f"DROP TRIGGER {name}"))
            else:
                db.session.execute(text(f"DROP TRIGGER {name} ON security_events"))
                db.session.execute(text(f"DROP FUNCTION {name}()"))
            db.session.commit()


def _user_id(live, email: str) -> str:
    from idp.store import User, db

    with live.db():
        return db.session.query(User.id).filter_by(email=email).scalar()


def _events(live, user_id: str, kind: str) -> int:
    from idp.store import SecurityEvent, db

    with live.db():
        return db.session.query(SecurityEvent).filter_by(user_id=user_id, kind=kind).count()


def _code_hashes(live, user_id: str) -> set[str]:
    from idp.store import RecoveryCode, db

    with live.db():
        return {row.code_hash for row in db.session.query(RecoveryCode).filter_by(user_id=user_id)}


def _no_mail(live, email: str, expected: int) -> None:
    time.sleep(1)  # the sender would have had its chance
    assert len(live.mailbox.to(email)) == expected


def test_authenticator_app_not_set_up_when_its_notice_fails(live):
    from idp.mfa import totp
    from idp.store import User, db

    email = "atomic-totp@example.com"
    user_id = live.create_user(email, "second-factor-pw")
    b, _ = _signed_in(live, email)
    page = b.get(f"{live.issuer}/account/totp")
    secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    with _notice_fails(live, "totp.enabled", user_id):
        failed = b.submit(page, {"code": pyotp.TOTP(secret).now()})
    assert failed.status_code == 500 and FAILED in failed.text
    assert "recovery" not in failed.text.lower()  # no codes shown for an app that is not set up
    with live.db():
        assert not totp.has_totp(db.session.get(User, user_id)), "the app was set up, its owner never told"
    assert _code_hashes(live, user_id) == set()
    assert _events(live, user_id, "totp.enabled") == 0
    _no_mail(live, email, 0)

    # Nothing half-done stands in the way: the same secret, confirmed again, sets it up and tells.
    page = b.get(f"{live.issuer}/account/totp")
    assert re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1) == secret
    done = b.submit(page, {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and len(re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", done.text)) == 10
    assert _events(live, user_id, "totp.enabled") == 1
    live.mailbox.wait_for(email, 1)


def test_recovery_codes_not_replaced_when_their_notice_fails(live):
    email = "atomic-codes@example.com"
    b, _, codes = _enrol(live, email)
    user_id = _user_id(live, email)
    live.mailbox.wait_for(email, 1)  # the enrolment's notice
    before = _code_hashes(live, user_id)
    assert len(before) == 10
    with _notice_fails(live, "recovery.generated", user_id):
        failed = b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/account/recovery-codes")
    assert failed.status_code == 500 and FAILED in failed.text
    assert not re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", failed.text)
    assert _code_hashes(live, user_id) == before, "the codes were replaced, their owner never told"
    assert _events(live, user_id, "recovery.generated") == 0
    _no_mail(live, email, 1)


def test_passkey_not_added_when_its_notice_fails(live):
    from idp.store import Passkey, db

    email = "atomic-passkey@example.com"
    user_id = live.create_user(email, "passkey-password")
    b, page = _signed_in(live, email, "passkey-password")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(b, page, "/account/passkeys/options").json()
    with _notice_fails(live, "passkey.added", user_id):
        failed = _post_json(b, page, "/account/passkeys", {"credential": device.create(options)})
    assert failed.status_code == 500
    with live.db():
        assert db.session.query(Passkey).filter_by(user_id=user_id).count() == 0, \
            "the passkey was added, its owner never told"
    _no_mail(live, email, 0)


def test_admin_reset_not_made_when_its_notice_fails(live):
    from idp.store import TotpFactor, User, db

    world = _org_and_admin(live, "atomic")
    email = f"atomic-reset-{uuid.uuid4().hex[:6]}@{world['domain']}"
    _enrol(live, email)
    live.mailbox.wait_for(email, 1)
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        user.org_id = world["org"]
        db.session.commit()
        victim = user.id
    before = _code_hashes(live, victim)
    page = _person_page(live, world, victim)
    with _notice_fails(live, "admin.second_factor_reset", victim):
        _, failed = _confirm(world["b"], page, "Reset second factor")
    assert failed.status_code == 500 and FAILED in failed.text
    with live.db():
        assert db.session.get(TotpFactor, victim) is not None, "the factor was reset, its owner never told"
    assert _code_hashes(live, victim) == before
    assert _events(live, victim, "admin.second_factor_reset") == 0
    _no_mail(live, email, 1)


def test_a_passkey_registered_already_is_refused_and_nothing_is_told(live):
    """The insert is refused (another account holds the credential id): the write is rolled
    back before any notice, the answer is the usual refusal, and the next try works."""
    from idp.store import Passkey, db

    email = "atomic-duplicate@example.com"
    user_id = live.create_user(email, "passkey-password")
    holder = live.create_user("atomic-duplicate-holder@example.com", "passkey-password")
    b, page = _signed_in(live, email, "passkey-password")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    credential = device.create(_post_json(b, page, "/account/passkeys/options").json())
    with live.db():
        db.session.add(Passkey(user_id=holder, credential_id=credential["id"], public_key=b"\x00"))
        db.session.commit()
    refused = _post_json(b, page, "/account/passkeys", {"credential": credential})
    assert refused.status_code == 400 and refused.json() == {"error": "This passkey could not be added."}
    with live.db():
        assert db.session.query(Passkey).filter_by(user_id=user_id).count() == 0
    assert _events(live, user_id, "passkey.added") == 0
    _no_mail(live, email, 0)

    added = _post_json(b, page, "/account/passkeys",
                       {"credential": device.create(_post_json(b, page, "/account/passkeys/options").json())})
    assert added.status_code == 201, added.text
    assert _events(live, user_id, "passkey.added") == 1
    live.mailbox.wait_for(email, 1)


def test_an_app_set_up_during_a_sign_in_is_not_kept_when_its_notice_fails(live):
    """The org requires a second factor and the member sets one up right after the password:
    the same one commit; the step can be finished once the notice can be written."""
    from idp.mfa import totp
    from idp.store import User, db

    b, page, secret, email = at_second_factor_set_up(live, "atomic")
    user_id = _user_id(live, email)
    with _notice_fails(live, "totp.enabled", user_id):
        failed = b.submit(page, {"code": pyotp.TOTP(secret).now()})
    assert failed.status_code == 500 and FAILED in failed.text
    with live.db():
        assert not totp.has_totp(db.session.get(User, user_id)), "the app was set up, its owner never told"
    assert _code_hashes(live, user_id) == set()
    _no_mail(live, email, 0)

    page = b.get(page.url)  # the step is still there, with the same secret
    assert re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1) == secret
    assert b.submit(page, {"code": pyotp.TOTP(secret).now()}).status_code == 200
    assert _events(live, user_id, "totp.enabled") == 1
    live.mailbox.wait_for(email, 1)


def test_the_not_me_link_acts_wholly_or_not_at_all(live):
    """The mailed "Not you? Remove it" link (idp/account/not_me.py): the passkey removed,
    every session ended, the link spent and the removal told are one commit. When the notice
    cannot be written, none of it is done and the link still works."""
    from tests.test_not_me_link import _passkey_ids, not_me_link
    from tests.test_passkeys import _with_passkey

    email = "atomic-not-me@example.com"
    b, _ = _with_passkey(live, email)
    user_id = _user_id(live, email)
    owner = Browser(live.issuer)
    page = owner.get(not_me_link(live, email, 1))
    with _notice_fails(live, "passkey.removed", user_id):
        failed = owner.submit(page, {"password": "passkey-password"})
    assert failed.status_code == 500 and FAILED in failed.text
    assert len(_passkey_ids(live, email)) == 1 and "Your account" in b.get(f"{live.issuer}/account").text
    assert _events(live, user_id, "sessions.revoked") == 0
    _no_mail(live, email, 1)

    assert owner.submit(owner.get(not_me_link(live, email, 1)), {"password": "passkey-password"}).status_code == 200
    assert _passkey_ids(live, email) == [] and "Your account" not in b.get(f"{live.issuer}/account").text
    live.mailbox.wait_for(email, 2)
