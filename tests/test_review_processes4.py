"""Review round 10 (one deployment, many processes): two `idp serve` of our own on the session's
database, one instance directory (secret) and issuer, as behind one load balancer, each with
two workers and behind one proxy (IDP_TRUSTED_PROXIES=1), so each test picks its client's
address and spends no budget of the other tests' 127.0.0.1."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from idp.ratelimit import POLICIES
from tests.conftest import Browser, csrf_of, start_live


@pytest.fixture(scope="module")
def pair(database_url, mailbox, tmp_path_factory):
    """(the first server, the second server's URL): one deployment of four workers."""
    env = {"IDP_TRUSTED_PROXIES": "1"}
    for first in start_live(database_url, tmp_path_factory.mktemp("pair1"), mailbox, extra_env=env):
        shared = {**env, "IDP_INSTANCE_DIR": first.env["IDP_INSTANCE_DIR"], "IDP_ISSUER": first.issuer}
        for second in start_live(database_url, tmp_path_factory.mktemp("pair2"), mailbox, extra_env=shared):
            port = second.proc.args[second.proc.args.index("--port") + 1]
            yield first, f"http://127.0.0.1:{port}"


def _at_password_step(server, address: str, email: str) -> tuple[Browser, requests.Response]:
    b = Browser(server.issuer)
    b.http.headers["X-Forwarded-For"] = address
    page = b.submit(b.get(f"{server.issuer}/signin"), {"email": email})
    assert 'name="password"' in page.text, page.text[:300]
    return b, page


def _raced(calls) -> list[int]:
    """Run `calls` (each returning a status) at the same moment, one connection each."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_wrong_passwords_raced_over_every_worker_stay_within_the_budget(pair):
    """Medium (ASVS 2.2.1): the password step read the account's count (`check_all`), spent
    the argon2 time, and only then counted the failure. Guesses sent together to every
    worker of the deployment all passed the check before the first was counted, so each time
    the account's block ended an attacker had one guess per worker of the deployment instead
    of one: spreading guesses over more servers multiplied the budget."""
    from idp.store import SecurityEvent, User, db

    first, second = pair
    email, address = "race-password@example.com", "203.0.113.71"
    first.create_user(email, "the-right-password-1")
    free = POLICIES["password:account"].free
    for i in range(free):  # the free failures, one after the other
        b, page = _at_password_step(first, address, email)
        assert b.submit(page, {"password": f"wrong-{i}"}).status_code == 401
    # Now every further failure blocks the account for a while: of guesses raced through the
    # four workers of the two servers, one is checked and the others wait.
    browsers = [_at_password_step(first, address, email) for _ in range(8)]

    def guess(i: int):
        b, page = browsers[i]
        base = (first.issuer, second)[i % 2]
        http = requests.Session()
        http.headers.update(b.http.headers)
        http.cookies.update(b.http.cookies)
        return lambda: http.post(f"{base}/signin/password", data={"csrf_token": csrf_of(page.text),
                                                                   "password": f"raced-{i}"},
                                 allow_redirects=False, timeout=60).status_code

    statuses = _raced([guess(i) for i in range(len(browsers))])
    assert sorted(set(statuses)) <= [401, 429], statuses
    assert statuses.count(401) == 1, statuses
    with first.db():
        user = db.session.query(User).filter_by(email=email).one()
        checked = db.session.query(SecurityEvent).filter_by(user_id=user.id, kind="signin.failure").count()
        assert checked == free + 1  # a 429 never reached the password check
    # the block over, the right password still signs in, and forgets the count
    time.sleep(POLICIES["password:account"].base_delay + 0.5)
    b, page = _at_password_step(first, address, email)
    assert b.submit(page, {"password": "the-right-password-1"}).status_code == 200
    b, page = _at_password_step(first, address, email)
    assert b.submit(page, {"password": "wrong-again"}).status_code == 401


def test_wrong_current_passwords_raced_over_every_worker_stay_within_the_budget(pair):
    """Medium, as above: "Change password" on /account checks the current password against the
    same budget, read before and counted after the argon2 check; one stolen session raced
    guesses of the password through every worker at once."""
    first, second = pair
    email, address = "race-change@example.com", "203.0.113.72"
    first.create_user(email, "the-right-password-2")
    b, page = _at_password_step(first, address, email)
    assert "Your account" in b.submit(page, {"password": "the-right-password-2"}).text
    page = b.get(f"{first.issuer}/account/password")
    form = {"csrf_token": csrf_of(page.text), "password": "a-new-password-9"}
    for i in range(POLICIES["password:account"].free):
        assert b.submit(page, {"current_password": f"wrong-{i}", "password": "a-new-password-9"}).status_code == 401

    def guess(i: int):
        http = requests.Session()
        http.headers.update(b.http.headers)
        http.cookies.update(b.http.cookies)
        base = (first.issuer, second)[i % 2]
        return lambda: http.post(f"{base}/account/password", data={**form, "current_password": f"raced-{i}"},
                                 allow_redirects=False, timeout=60).status_code

    statuses = _raced([guess(i) for i in range(8)])
    assert sorted(set(statuses)) <= [401, 429], statuses
    assert statuses.count(401) == 1, statuses
