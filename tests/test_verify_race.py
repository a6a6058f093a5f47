"""A mailed verification link opened while its unverified sign-up row is deleted by another
transaction (a directory's rename removes a stranger's sign-up at its new address:
`accounts.remove_unproven`). Whatever moment the row goes, the person gets a readable page that
tells what the database holds: "confirmed" with the row verified, or the expired link's page
with the row gone; never a 500.

The second writer: tests/second_writer.py."""

from __future__ import annotations

import re

from tests.second_writer import SecondWriter, account_with_link, every_moment, row_of

PASSWORD = "sign-up-password-race-1"
EXPIRED = "This link has expired or was already used"
CONFIRMED = "Email address confirmed"


def _unverified_sign_up(live, email: str) -> tuple[str, str]:
    """A sign-up row and its mailed link's token, as `signup._register` leaves them."""
    return account_with_link(live, email, PASSWORD, "verify")


def _open_link(live, token: str, writer: SecondWriter | None = None):
    """Another browser than the one that signed up: the link's page, then its password step
    (the step whose writes the second writer races)."""
    client = live.app.test_client()
    page = client.get(f"/signup/verify/{token}", base_url=live.issuer)
    assert page.status_code == 200 and 'name="password"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def send():
        return client.post(f"/signup/verify/{token}", data={"csrf_token": csrf, "password": PASSWORD},
                           base_url=live.issuer)

    return send() if writer is None else writer.during(live, send)


def test_a_row_deleted_at_any_moment_of_the_verification_gives_a_readable_page(live):
    def attempt(at):
        user_id, token = _unverified_sign_up(live, f"race-{at}@example.com")
        writer = SecondWriter(live.env["IDP_DATABASE_URL"], user_id, at)
        resp = _open_link(live, token, writer)
        verified, events = row_of(live, user_id)
        body = resp.get_data(as_text=True)
        assert resp.status_code != 500, (at, body[:300])
        if writer.deleted:  # the row went first: the link died with it
            assert verified is None
            assert resp.status_code == 400 and EXPIRED in body, (at, body[:300])
        else:  # the verification went first: the row is verified, the DELETE left it alone
            assert verified is True and {"account.adopted", "email.verified"} <= set(events), (at, events)
            assert resp.status_code == 200 and CONFIRMED in body, (at, body[:300])
        return writer

    every_moment(live, attempt)


def test_without_a_second_writer_the_link_verifies_once_then_reads_as_expired(live):
    user_id, token = _unverified_sign_up(live, "race-none@example.com")
    resp = _open_link(live, token)
    assert resp.status_code == 200 and CONFIRMED in resp.get_data(as_text=True)
    verified, events = row_of(live, user_id)
    assert verified is True and events == ["account.adopted", "email.verified"]
    again = live.app.test_client().get(f"/signup/verify/{token}", base_url=live.issuer)
    assert again.status_code == 400 and EXPIRED in again.get_data(as_text=True)
    assert row_of(live, user_id) == (True, ["account.adopted", "email.verified"])
