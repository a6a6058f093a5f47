"""One address is one addr-spec, everywhere an address enters (security review, finding 4)."""

from __future__ import annotations

import time

import pytest

from idp.emails import normalize
from tests.conftest import Browser

LIST = "attacker@evil.example,ceo@corp.example"


@pytest.mark.parametrize("address, expected", [
    ("Bob@Example.COM", "bob@example.com"),
    ("  alice@acme.example ", "alice@acme.example"),
    ("a@b.test", "a@b.test"),
    (LIST, None),
    ("attacker@evil.example;ceo@corp.example", None),
    ("Boss <ceo@corp.example>", None),
    ('"ceo@corp.example"@evil.example', None),
    ("ceo@[10.0.0.1]", None),
    ("ceo@corp.example\nBcc: x@evil.example", None),
    ("no-at-sign", None),
    ("x@localhost", None),
    ("a" * 250 + "@x.example", None),
    (None, None),
])
def test_normalize_accepts_exactly_one_address(address, expected):
    assert normalize(address) == expected


def test_a_list_is_refused_at_sign_up_sign_in_and_reset(live):
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/signup")
    resp = b.submit(page, {"email": LIST, "name": "X", "password": "some-long-password-1"})
    assert resp.status_code == 400 and "valid email" in resp.text
    resp = b.submit(b.get(f"{live.issuer}/signin"), {"email": LIST})
    assert resp.status_code == 400 and "valid email" in resp.text
    resp = b.submit(b.get(f"{live.issuer}/password/forgot"), {"email": LIST})
    assert resp.status_code == 400 and "valid email" in resp.text
    time.sleep(1)
    assert live.mailbox.to("ceo@corp.example") == [] and live.mailbox.to("attacker@evil.example") == []
    from idp.store import User, db

    with live.db():
        assert db.session.query(User).filter(User.email.like("%ceo@corp.example%")).count() == 0


def test_the_cli_refuses_a_list(live):
    out = live.idp("users", "create", LIST)
    assert out.returncode != 0 and out.stderr.startswith("error: not an email address")
    assert "Traceback" not in out.stderr
