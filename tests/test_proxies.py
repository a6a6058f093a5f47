"""Behind reverse proxies (IDP_TRUSTED_PROXIES): whose address counts for throttling, audit and
sessions, and that a client cannot choose it itself."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from idp.ratelimit import POLICIES
from tests.conftest import IDP, Browser, separate_live

PASSWORD = "proxied-password-1"


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    """A server with the default IDP_TRUSTED_PROXIES=0: forwarding headers mean nothing."""
    yield from separate_live(tmp_path_factory, "direct")


def _at_password_step(server, forwarded_for: str, email: str) -> tuple[Browser, object]:
    b = Browser(server.issuer)
    b.http.headers["X-Forwarded-For"] = forwarded_for
    page = b.submit(b.get(f"{server.issuer}/signin"), {"email": email})
    assert 'name="password"' in page.text, page.text[:300]
    return b, page


def _wrong_passwords(server, forwarded_for: list[str]) -> list[int]:
    """One wrong password per entry (each for another unknown account, so that only the
    per-IP count grows), sent with that entry as X-Forwarded-For; the statuses."""
    statuses = []
    for header in forwarded_for:
        b, page = _at_password_step(server, header, f"{uuid.uuid4().hex}@example.com")
        statuses.append(b.submit(page, {"password": "not-the-password"}).status_code)
    return statuses


def test_behind_a_proxy_each_client_has_its_own_budget(proxied):
    from idp.store import BrowserSession, SecurityEvent, User, db

    free = POLICIES["password:ip"].free
    proxied.create_user("proxied@example.com", PASSWORD)
    # the client cannot choose its address: whatever it puts first, our proxy appended the last entry
    headers = ["203.0.113.5" if i % 2 else f"10.9.{i}.1, 203.0.113.5" for i in range(free + 1)]
    assert _wrong_passwords(proxied, headers) == [401] * (free + 1)
    # 203.0.113.5 spent its budget: even the right password waits now ...
    b, page = _at_password_step(proxied, "203.0.113.5", "proxied@example.com")
    blocked = b.submit(page, {"password": PASSWORD})
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text and blocked.headers["Retry-After"]
    # ... while another client of the same proxy signs in
    b, page = _at_password_step(proxied, "203.0.113.6", "proxied@example.com")
    account = b.submit(page, {"password": PASSWORD})
    assert account.status_code == 200 and "Your account" in account.text
    with proxied.db():
        user = db.session.query(User).filter_by(email="proxied@example.com").one()
        success = db.session.query(SecurityEvent).filter_by(user_id=user.id, kind="signin.success").one()
        assert success.ip == "203.0.113.6"  # the audit trail and the sessions list show the client
        assert db.session.query(BrowserSession).filter_by(user_id=user.id).one().ip == "203.0.113.6"
        ips = [e.ip for e in db.session.query(SecurityEvent).filter_by(kind="signin.failure")]
        assert ips.count("203.0.113.5") == free + 1 and not any(ip.startswith("10.9.") for ip in ips)


def test_without_trusted_proxies_a_forged_header_changes_nothing(direct):
    from idp.store import SecurityEvent, db

    free = POLICIES["password:ip"].free
    direct.create_user("direct@example.com", PASSWORD)
    forged = [f"198.51.100.{i}" for i in range(free + 1)]
    assert _wrong_passwords(direct, forged) == [401] * (free + 1)
    # every forged address landed in the one bucket of the real peer, 127.0.0.1
    b, page = _at_password_step(direct, "198.51.100.200", "direct@example.com")
    assert b.submit(page, {"password": PASSWORD}).status_code == 429
    with direct.db():
        ips = {e.ip for e in db.session.query(SecurityEvent).filter_by(kind="signin.failure")}
        assert ips == {"127.0.0.1"}


def test_mail_links_ignore_a_forwarded_host(proxied):
    from tests.smtp import link_in

    proxied.create_user("proxied-reset@example.com", PASSWORD)
    b = Browser(proxied.issuer)
    b.http.headers.update({"X-Forwarded-For": "203.0.113.40", "X-Forwarded-Host": "evil.example",
                           "X-Forwarded-Proto": "https",
                           # over https Flask-WTF wants a same-origin Referer, as the page itself gives
                           "Referer": "https://evil.example/password/forgot"})
    page = b.get(f"{proxied.issuer}/password/forgot")
    assert b.submit(page, {"email": "proxied-reset@example.com"}).status_code == 200
    link = link_in(proxied.mailbox.wait_for("proxied-reset@example.com")[-1], proxied.issuer)
    assert link.startswith(f"{proxied.issuer}/password/reset/") and "evil.example" not in link


@pytest.mark.parametrize("value", ["-1", "one", "1.5", "+2", "١"])
def test_a_bad_proxy_count_is_an_error_line(value, tmp_path):
    from idp.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="IDP_TRUSTED_PROXIES"):
        Settings.from_env({"IDP_TRUSTED_PROXIES": value})
    env = {"PATH": "/usr/bin:/bin", "IDP_INSTANCE_DIR": str(tmp_path), "IDP_TRUSTED_PROXIES": value}
    out = subprocess.run([IDP, "init"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("error: IDP_TRUSTED_PROXIES")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_proxy_count_is_read_from_the_environment():
    from idp.config import Settings

    assert Settings.from_env({}).trusted_proxies == 0
    assert Settings.from_env({"IDP_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
