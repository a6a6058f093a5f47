"""Prometheus metrics on IDP_METRICS_PORT (SPEC §2): totals over every worker of a 2-worker
`idp serve`, replaced workers included; bounded labels; nothing at all without the setting."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IDP, Browser, free_port, separate_live
from tests.oidc import authorize_url
from tests.processes import children, wait_for_workers, worker_pids

METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    yield from separate_live(tmp_path_factory, "metered", extra_env={"IDP_METRICS_PORT": str(METRICS_PORT)})


def scrape() -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one GET /metrics."""
    resp = requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def client_credentials(live, client_id: str, secret: str, count: int) -> None:
    for _ in range(count):  # a new connection each: the kernel spreads them over both workers
        resp = requests.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"},
                             auth=(client_id, secret), timeout=10)
        assert resp.status_code == 200, resp.text


def exporter_dir(serve_pid: int) -> Path:
    for pid in children(serve_pid):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"idp.observability.metrics" in args:
            return Path(args[args.index(b"idp.observability.metrics") + 2].decode())
    raise AssertionError("no metrics exporter process")


def test_counters_add_up_every_worker_including_a_killed_one(metered):
    client_id, secret = metered.create_client(grant_types=["client_credentials"], redirect_uris=[])
    before = scrape()
    client_credentials(metered, client_id, secret, 30)
    workers = worker_pids(metered.proc.pid)
    assert len(workers) == 2
    directory = exporter_dir(metered.proc.pid)
    served = [pid for pid in workers if (directory / f"counter_{pid}.db").exists()]
    assert sorted(served) == sorted(workers), "both workers answered and wrote their own counters"

    os.kill(workers[0], signal.SIGKILL)
    wait_for_workers(metered.proc.pid, 2, without=(workers[0],))
    client_credentials(metered, client_id, secret, 20)
    after = scrape()
    sent = 50
    requests_200 = ("idp_http_requests_total", {"endpoint": "/token", "status": "200"})
    assert value(after, requests_200[0], **requests_200[1]) - value(before, requests_200[0], **requests_200[1]) == sent
    grants = dict(grant_type="client_credentials", result="success")
    assert value(after, "idp_token_grants_total", **grants) - value(before, "idp_token_grants_total", **grants) == sent
    count = ("idp_http_request_duration_seconds_count", {"endpoint": "/token"})
    assert value(after, count[0], **count[1]) - value(before, count[0], **count[1]) == sent
    # the dead worker's counters stay in the totals; its live gauge is gone (mark_process_dead)
    assert (directory / f"counter_{workers[0]}.db").exists()
    assert not list(directory.glob(f"gauge_livesum_{workers[0]}.db"))
    assert value(after, "idp_db_connections_in_use") >= 0


def test_labels_are_bounded_and_errors_counted(metered):
    client_id, secret = metered.create_client(grant_types=["client_credentials"], redirect_uris=[])
    before = scrape()
    odd = secrets.token_hex(8)
    assert requests.get(f"{metered.issuer}/nowhere/{odd}", timeout=10).status_code == 404
    resp = requests.post(f"{metered.issuer}/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, "wrong-secret"), timeout=10)
    assert resp.status_code == 401
    resp = requests.post(f"{metered.issuer}/token", data={"grant_type": f"x-{odd}"}, auth=(client_id, secret),
                         timeout=10)
    assert resp.status_code == 400
    text = requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
    assert odd not in text
    after = scrape()
    for name, labels in (("idp_http_requests_total", dict(endpoint="other", status="404")),
                         ("idp_token_grants_total", dict(grant_type="client_credentials", result="invalid_client")),
                         ("idp_token_grants_total", dict(grant_type="other", result="unsupported_grant_type"))):
        assert value(after, name, **labels) - value(before, name, **labels) == 1, (name, labels)


def test_sign_ins_by_method_and_result(metered):
    metered.create_user("metered@example.com", "metered-password-1")
    client_id, _ = metered.create_client()
    before = scrape()
    browser = Browser(metered.issuer)
    page = browser.get(authorize_url(metered.issuer, client_id))
    assert browser.sign_in(page, "metered@example.com", "not-the-password").status_code == 401
    page = browser.get(authorize_url(metered.issuer, client_id))
    assert browser.sign_in(page, "metered@example.com", "metered-password-1").status_code in (302, 303)
    after = scrape()
    for result in ("failure", "success"):
        labels = dict(method="password", result=result)
        assert value(after, "idp_signins_total", **labels) - value(before, "idp_signins_total", **labels) == 1


def test_metrics_listen_on_loopback_only_and_answer_metrics_only(metered):
    assert requests.get(f"http://127.0.0.1:{METRICS_PORT}/other", timeout=10).status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.2:{METRICS_PORT}/metrics", timeout=10)


def test_a_metrics_port_in_use_stops_serve_with_an_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        env = {**os.environ, "IDP_INSTANCE_DIR": str(tmp_path / "inst"),
               "IDP_METRICS_PORT": str(taken.getsockname()[1])}
        env.pop("IDP_DATABASE_URL", None)
        out = subprocess.run([IDP, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("error: IDP_METRICS_PORT") and "Traceback" not in out.stderr


def test_without_metrics_port_no_worker_loads_the_client_library(tmp_path):
    """A worker built as `idp serve` builds it, a request answered: prometheus_client never imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("IDP_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "inst"))
    code = ("import sys; from idp.cli import main; main(['init']);"
            "from idp.server import worker_app; app = worker_app();"
            "assert app.test_client().get('/healthz').status_code == 200;"
            "print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
