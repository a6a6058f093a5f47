"""Health and readiness (SPEC §2), and a database outage answered with 503 and Retry-After."""

from __future__ import annotations

import time

import requests

from tests.conftest import free_port, start_live
from tests.pg import Cluster


def test_healthz_and_readyz(live):
    resp = requests.get(f"{live.issuer}/healthz", timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] == "ok"
    assert "Set-Cookie" not in resp.headers
    resp = requests.get(f"{live.issuer}/readyz", timeout=10)
    assert resp.status_code == 200 and resp.json()["checks"] == {"database": "ok", "signing_key": "ok"}


def test_database_outage_gives_quick_503s_and_recovers_by_itself(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("pg-outage"), free_port())
    url = cluster.start()
    from tests import smtp

    controller, box = smtp.start(free_port())
    box.port = controller.port
    server = start_live(url, tmp_path_factory.mktemp("outage"), box)
    live = next(server)
    try:
        client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
        grant = {"grant_type": "client_credentials"}
        assert requests.post(f"{live.issuer}/token", data=grant, auth=(client_id, secret), timeout=10).ok
        cluster.stop()
        started = time.monotonic()
        for path in ("/readyz", "/signin"):
            resp = requests.get(f"{live.issuer}{path}", timeout=10)
            assert resp.status_code == 503 and resp.headers["Retry-After"], path
        resp = requests.post(f"{live.issuer}/token", data=grant, auth=(client_id, secret), timeout=10)
        assert resp.status_code == 503 and resp.json()["error"] == "temporarily_unavailable"
        assert time.monotonic() - started < 10  # quick answers, no hanging
        assert requests.get(f"{live.issuer}/readyz", timeout=10).json()["checks"]["database"].startswith("failed")
        assert requests.get(f"{live.issuer}/healthz", timeout=10).status_code == 200  # the process serves
        cluster.resume()
        for _ in range(50):
            if requests.get(f"{live.issuer}/readyz", timeout=10).status_code == 200:
                break
            time.sleep(0.2)
        assert requests.post(f"{live.issuer}/token", data=grant, auth=(client_id, secret), timeout=10).ok
        assert "Traceback" not in live.log.read_text()
    finally:
        try:
            next(server)
        except StopIteration:
            pass
        controller.stop()
        cluster.stop()


def test_a_postgresql_restart_fails_no_request_after_it(tmp_path_factory):
    """Without pool_pre_ping, the pooled connections a restart killed are found by the
    checkout's ping of idle connections (idp._ping_if_idle): every request after the server
    is back succeeds, on every worker, Flask's paths and those in front of it alike."""
    from idp import IDLE_BEFORE_PING

    cluster = Cluster(tmp_path_factory.mktemp("pg-restart"), free_port())
    url = cluster.start()
    from tests import smtp

    controller, box = smtp.start(free_port())
    box.port = controller.port
    server = start_live(url, tmp_path_factory.mktemp("restart"), box)
    live = next(server)
    try:
        client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
        grant = {"grant_type": "client_credentials"}

        def round_of_requests():
            answers = []
            for _ in range(12):  # both workers, several pooled connections each
                token = requests.post(f"{live.issuer}/token", data=grant, auth=(client_id, secret), timeout=10)
                answers.append(token.status_code)
                if token.ok:
                    answers.append(requests.post(f"{live.issuer}/introspect", auth=(client_id, secret), timeout=10,
                                                 data={"token": token.json()["access_token"]}).status_code)
                answers.append(requests.get(f"{live.issuer}/readyz", timeout=10).status_code)
                answers.append(requests.get(f"{live.issuer}/signin", timeout=10).status_code)
            return answers

        assert set(round_of_requests()) == {200}
        cluster.stop()
        cluster.resume()
        time.sleep(IDLE_BEFORE_PING)  # a restart takes longer than that; this one may not have
        assert set(round_of_requests()) == {200}
        assert "Traceback" not in live.log.read_text()
    finally:
        try:
            next(server)
        except StopIteration:
            pass
        controller.stop()
        cluster.stop()
