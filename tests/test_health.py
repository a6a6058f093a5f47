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
