"""Faults a deployment meets, survived without a restart, on real processes: `idp serve
--workers 2` on a throwaway PostgreSQL, a worker killed with SIGKILL under load, SIGTERM
while requests are in flight; and SQLite's durability settings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from tests.conftest import IDP, Browser, csrf_of, free_port, start_live
from tests.oidc import authorize_url
from tests.pg import Cluster
from tests.processes import alive, wait_for_workers, worker_pids


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    """A live server of this module's own, on a PostgreSQL of its own: the tests kill its processes."""
    from tests import smtp

    cluster = Cluster(tmp_path_factory.mktemp("pg-faults"), free_port())
    url = cluster.start()
    controller, box = smtp.start(free_port())
    box.port = controller.port
    server = start_live(url, tmp_path_factory.mktemp("faults"), box)
    try:
        yield next(server)
    finally:
        try:
            next(server)
        except (StopIteration, ProcessLookupError, OSError):
            pass  # the SIGTERM test ended it already
        controller.stop()
        cluster.stop()


def test_a_worker_killed_with_sigkill_is_replaced_and_almost_no_request_fails(pg_server):
    live = pg_server
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    before = worker_pids(live.proc.pid)
    assert len(before) == 2
    stop = threading.Event()
    results: list[bool] = []

    def client():
        http = requests.Session()  # keep-alive, as products do: the killed worker's connections break
        while not stop.is_set():
            try:
                resp = http.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"},
                                 auth=(client_id, secret), timeout=10)
                results.append(resp.status_code == 200)
            except requests.RequestException:
                results.append(False)
                http = requests.Session()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    killed_at = time.monotonic()
    os.kill(before[0], signal.SIGKILL)
    new = wait_for_workers(live.proc.pid, 2, without=(before[0],), timeout=5)
    replaced_in = time.monotonic() - killed_at
    time.sleep(6)  # the new worker serves too
    stop.set()
    for t in threads:
        t.join(timeout=15)
    ok = sum(results) / len(results)
    print(f"\nworker {before[0]} killed: replaced by {set(new) - set(before)} in {replaced_in:.2f} s; "
          f"{sum(results)}/{len(results)} requests succeeded ({ok:.2%})")
    assert replaced_in < 2.0
    # only requests on the killed worker's connections can fail: at most one per client
    assert len(results) > 200 and ok >= 0.99 and len(results) - sum(results) <= len(threads)
    assert not alive(before[0])
    # the server answers as before, on both workers
    for _ in range(10):
        assert requests.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"},
                             auth=(client_id, secret), timeout=10).status_code == 200


def test_sigterm_lets_requests_in_flight_finish_and_exits_0(pg_server):
    live = pg_server
    email, password = "draining@example.com", "draining-password-1"
    live.create_user(email, password)
    client_id, _ = live.create_client()
    # Password sign-ins (an argon2 check each) in flight on both workers when SIGTERM comes.
    pages = []
    for _ in range(4):
        browser = Browser(live.issuer)
        page = browser.submit(browser.get(authorize_url(live.issuer, client_id)), {"email": email})
        assert 'name="password"' in page.text
        pages.append((browser, page))
    with ThreadPoolExecutor(len(pages)) as pool:
        futures = [pool.submit(post_once, b, page, {"password": password}) for b, page in pages]
        time.sleep(0.05)
        os.kill(live.proc.pid, signal.SIGTERM)
        signalled = time.monotonic()
        answers = [f.result(timeout=30).status_code for f in futures]
    assert answers == [302] * len(pages), answers
    assert live.proc.wait(timeout=10) == 0
    took = time.monotonic() - signalled
    print(f"\nSIGTERM: {len(pages)} sign-ins in flight finished, exit 0 after {took:.2f} s")
    assert took < 5
    assert not worker_pids(live.proc.pid)


def test_sigterm_while_workers_start_still_stops_the_server(tmp_path):
    """A worker inherits the parent's signal handler until its app is built (about a second):
    a SIGTERM then (a deploy right after a start, or after a respawn) was swallowed, the
    worker kept serving and `idp serve` waited for it forever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"), IDP_LOG_LEVEL="WARNING")
    assert subprocess.run([IDP, "init"], env=env, capture_output=True, timeout=120).returncode == 0
    proc = subprocess.Popen([IDP, "serve", "--port", str(free_port()), "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_workers(proc.pid, 2, timeout=60)  # forked, still building their apps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def post_once(browser: Browser, page: requests.Response, data: dict) -> requests.Response:
    """Submit the page's form and stop there: a redirect followed after SIGTERM would be refused."""
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    url = action if action.startswith("http") else browser.issuer + action
    return browser.http.post(url, data={"csrf_token": csrf_of(page.text), **data}, allow_redirects=False, timeout=30)


def test_sqlite_keeps_no_half_written_state_after_a_crash(tmp_path):
    """WAL, and synchronous=FULL: a commit is on disk when it returns, so a power loss can
    neither corrupt the file nor bring back a revoked token or a spent code."""
    from idp import create_app
    from idp.config import Settings
    from idp.store import db

    app = create_app(Settings.from_env({"IDP_INSTANCE_DIR": str(tmp_path), "IDP_LOG_LEVEL": "WARNING"}))
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        db.engine.dispose()
