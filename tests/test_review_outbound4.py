"""Security review, round 4: what this server fetches and mails on someone's say-so.

The outbound guard itself (tests/test_outbound.py) and the mail links (tests/test_password_reset.py,
tests/test_proxies.py) were found sound; these are what remained around them."""

from __future__ import annotations

import logging
import time

import pytest
import requests
from aiosmtpd.controller import Controller

from tests.conftest import free_port
from tests.smtp import Mailbox
from tests.test_mail_sender import mailers  # noqa: F401 - the fixture
from tests.test_registration import _initial_token


def test_uris_this_server_fetches_or_posts_to_are_as_bounded_as_redirect_uris(live):
    """Low, OWASP ASVS 5.1.4 / 12.1.1: redirect URIs are cut at 2,000 characters, as "each is
    stored, cached per process and compared on every request"; a jwks_uri or a
    backchannel_logout_uri took anything up to the 1 MB body. A jwks_uri is the key of a
    per-process cache of fetched key sets, and every such URI went out as an HTTP request line."""
    closed = f"http://127.0.0.1:{free_port()}/"  # loopback is allowed for a loopback issuer
    long = closed + "k" * 100_000
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    meta = {"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}
    for field in ("jwks_uri", "backchannel_logout_uri"):
        extra = {} if field == "jwks_uri" else {"jwks_uri": closed + "jwks"}
        resp = requests.post(f"{live.issuer}/register", json={**meta, **extra, field: long}, headers=auth,
                             timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (field, resp.text[:200])
        assert "2000" in resp.json()["error_description"] and len(resp.text) < 5000
    # an ordinary one is fine, and an update cannot bring in a long one either
    ok = requests.post(f"{live.issuer}/register", json={**meta, "jwks_uri": closed + "jwks"}, headers=auth, timeout=10)
    assert ok.status_code == 201, ok.text
    reg = ok.json()
    resp = requests.put(reg["registration_client_uri"], timeout=10,
                        headers={"Authorization": f"Bearer {reg['registration_access_token']}"},
                        json={**meta, "client_id": reg["client_id"], "jwks_uri": long})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata"


def test_the_cache_of_fetched_client_key_sets_is_bounded(live, caplog):
    """Low, OWASP ASVS 12.1.1 (resource exhaustion): the key sets fetched from clients'
    jwks_uri were kept per process under their URI, and never let go: a client that sets
    itself a new jwks_uri (RFC 7592 update) and then sends a private_key_jwt assertion, again
    and again, grew every server process by one entry a round, for ever. Refused
    destinations (no connection at all) stand in for the attacker's own host here."""
    from idp.oauth import clients

    caplog.set_level(logging.ERROR, logger="idp.oauth.clients")
    with live.app.app_context():
        start = len(clients._fetched)
        for i in range(3000):
            clients._published_keys(f"https://10.0.0.1/keys/{i}")
        kept = len(clients._fetched)
    assert kept <= 1000, f"{kept - start} key sets kept for 3000 URIs"


class _AsciiOnlyMailbox(Mailbox):
    """Keeps each message's envelope recipients too."""

    def __init__(self):
        super().__init__()
        self.recipients: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.recipients.extend(envelope.rcpt_tos)
        return await super().handle_DATA(server, session, envelope)


def test_mail_to_an_internationalised_domain_goes_through_a_relay_without_smtputf8(mailers):  # noqa: F811
    """Low, RFC 5890 / RFC 6531: an address at an internationalised domain (bücher.example)
    is accepted at sign-up and kept in Unicode; mailed as it is, it needs the relay's SMTPUTF8
    extension, which many relays do not offer: each mail to it (verification, reset) failed
    and was retried for a day, and never arrived. Its domain goes as A-labels (xn--), which
    every relay takes; the address stays as the person typed it everywhere else."""
    box = _AsciiOnlyMailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        mailer = mailers(port)
        mailer.send("jo@bücher.example", "Confirm your email address", "the link")
        deadline = time.time() + 10
        while time.time() < deadline and not box.recipients:
            time.sleep(0.05)
        assert box.recipients == ["jo@xn--bcher-kva.example"]
        assert str(box.messages[0]["To"]) == "jo@xn--bcher-kva.example"
    finally:
        controller.stop()


@pytest.mark.xfail(strict=True, reason="design decision: a local part in Unicode (RFC 6531) has no ASCII form; "
                   "refuse such addresses at input (emails.normalize, allow_smtputf8=False), or require a relay "
                   "with SMTPUTF8 and say so in README; today they are accepted and their mail is retried for a day")
def test_an_address_no_relay_without_smtputf8_can_take_is_refused_at_input():
    """Low: jörg@example.test is accepted at sign-up; through a relay without SMTPUTF8 each of its
    mails fails (SMTPNotSupportedError, counted as the relay being away: the round stops, the
    connection is dropped) and is retried for a day, never arriving."""
    from idp.emails import normalize

    assert normalize("jörg@example.test") is None
