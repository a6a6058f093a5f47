"""Prometheus metrics for `idp serve` (SPEC §2, `IDP_METRICS_PORT`).

The client library's multi-process mode: every worker writes its samples to files of its
own in `PROMETHEUS_MULTIPROC_DIR` (fresh and empty per `idp serve`), and a small exporter
process, started by `idp serve` before the workers, adds them up on each scrape. A counter
of a worker that died stays in its files, so totals keep the work of replaced workers; a
gauge of the pool's connections in use counts live workers only ("livesum"), the exporter
removing a dead worker's gauge files as the library documents (`mark_process_dead`).

Without `IDP_METRICS_PORT` nothing here runs: prometheus_client is not even imported and
each hook below is one test of a module global.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ROUTE_KEY = "idp.route"
OTHER = "other"  # the label of whatever is outside a known, bounded set of values
GRANT_TYPES = frozenset((
    "authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:jwt-bearer",
))
# RFC 6749 §5.2 and RFC 8628 §3.5: the error codes the token endpoint answers with.
TOKEN_ERRORS = frozenset((
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "authorization_pending", "slow_down", "access_denied", "expired_token", "invalid_target",
    "invalid_dpop_proof", "use_dpop_nonce", "temporarily_unavailable", "server_error",
))
# The audit trail's sign-in methods (amr values, SAML), as metric labels.
SIGNIN_METHODS = {"pwd": "password", "hwk": "passkey", "otp": "otp", "mfa": "recovery_code", "fed": "federated",
                  "saml": "saml", "oidc": "enterprise_oidc", "social": "social"}
SIGNIN_RESULTS = ("success", "failure", "throttled")
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_metrics = None  # this process's metric objects, once `init_app` switched them on


class _Metrics:
    """The metric objects; built once per worker process (the library refuses duplicates)."""

    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("idp_http_requests", "HTTP requests answered, by route and status",
                                ["endpoint", "status"])
        self.latency = Histogram("idp_http_request_duration_seconds", "Time to answer an HTTP request, by route",
                                 ["endpoint"], buckets=LATENCY_BUCKETS)
        self.signins = Counter("idp_signins", "Sign-in attempts, by method and result", ["method", "result"])
        self.grants = Counter("idp_token_grants", "Token endpoint requests, by grant type and result",
                              ["grant_type", "result"])
        self.throttled = Counter("idp_throttled", "Attempts refused by throttling, by scope", ["scope"])
        self.backchannel = Counter("idp_backchannel_logouts", "Back-channel logout POSTs, by result", ["result"])
        self.db_in_use = Gauge("idp_db_connections_in_use", "Database connections checked out of the pools",
                               multiprocess_mode="livesum")


def enabled(settings) -> bool:
    """True in an `idp serve` worker with IDP_METRICS_PORT set (the server made the directory)."""
    return settings.metrics_port is not None and bool(os.environ.get(MULTIPROC_ENV))


def init_app(app) -> None:
    """Switch metrics on in this worker: requests through a WSGI wrapper, the pool by events."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    app.wsgi_app = RequestMetrics(app.wsgi_app)
    app.after_request(_note_route)
    from sqlalchemy import event

    from ..store import db

    with app.app_context():
        pool = db.engine.pool
    event.listen(pool, "checkout", lambda *args: _metrics.db_in_use.inc())
    event.listen(pool, "checkin", lambda *args: _metrics.db_in_use.dec())


class RequestMetrics:
    """WSGI wrapper counting each answer by its route's rule (`/token`, `/admin/orgs/<org_id>`),
    never the raw path: the label set stays bounded whatever paths clients send."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = ["500"]

        def start(code, headers, exc_info=None):
            status[0] = code[:3]
            return start_response(code, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            endpoint = environ.get(ROUTE_KEY, OTHER)
            _metrics.requests.labels(endpoint, status[0]).inc()
            _metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def _note_route(response):
    # Flask has dropped its request object from the environ by the time the wrapper reads it.
    from flask import request

    if request.url_rule is not None:
        request.environ[ROUTE_KEY] = request.url_rule.rule
    return response


def signin(method: str | None, result: str) -> None:
    """Count one sign-in outcome; `method` as the audit trail writes it ("pwd", "step-up otp")."""
    if _metrics is None:
        return
    words = [w for w in (method or "").split() if w != "step-up"]
    label = SIGNIN_METHODS.get(words[0], OTHER) if words else OTHER
    _metrics.signins.labels(label, result if result in SIGNIN_RESULTS else OTHER).inc()


def token_grant(grant_type: str | None, response) -> None:
    """Count one token request by grant type and outcome (success or the RFC error code)."""
    if _metrics is None:
        return
    result = "success"
    if response.status_code != 200:
        error = (response.get_json(silent=True) or {}).get("error") if response.is_json else None
        result = error if error in TOKEN_ERRORS else "failure"
    token_grant_result(grant_type, result)


def token_grant_result(grant_type: str | None, result: str) -> None:
    """Count one token request whose outcome ("success" or an RFC error code) is known."""
    if _metrics is not None:
        _metrics.grants.labels(grant_type if grant_type in GRANT_TYPES else OTHER, result).inc()


def throttled(scope: str) -> None:
    """Count one attempt refused by throttling (`scope` is a key of ratelimit.POLICIES)."""
    if _metrics is not None:
        _metrics.throttled.labels(scope).inc()


def backchannel(delivered: bool) -> None:
    """Count one back-channel logout POST: delivered or failed."""
    if _metrics is not None:
        _metrics.backchannel.labels("delivered" if delivered else "failed").inc()


# --- the exporter: one small process per `idp serve` ------------------------------------

class Exporter:
    """The `/metrics` listener of one `idp serve`, started before its workers.

    The parent binds the port (so a port in use is an error at start, before anything
    else runs) and hands the socket to a child process that answers scrapes. Not a thread
    of the parent: Granian forks its workers from the parent, and each would inherit the
    listening socket.
    """

    def __init__(self, port: int):
        self.directory = tempfile.mkdtemp(prefix="idp-metrics-")  # fresh, empty, ours (0700)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
        except OSError as err:
            sock.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            from ..config import ConfigError

            raise ConfigError(f"IDP_METRICS_PORT {port}: {err.strerror}") from None
        # Workers read the directory from the environment when they import the client library.
        os.environ[MULTIPROC_ENV] = self.directory
        with sock:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "idp.observability.metrics", str(sock.fileno()), self.directory,
                 str(os.getpid())], pass_fds=(sock.fileno(),))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def _serve_scrapes(fd: int, directory: str, parent: int) -> None:
    """The exporter process: answer GET /metrics with every worker's samples added up,
    until the `idp serve` process that started it is gone."""
    import glob
    import re
    import threading
    from http.server import ThreadingHTTPServer

    os.environ[MULTIPROC_ENV] = directory
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import MetricsHandler
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    live_gauge_file = re.compile(r"gauge_live\w+_(\d+)\.db$")

    class Workers(MultiProcessCollector):
        def collect(self):
            # A killed worker never says it died: whoever has no process any more is dead.
            for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
                m = live_gauge_file.search(path)
                if m and not os.path.exists(f"/proc/{m.group(1)}"):
                    mark_process_dead(int(m.group(1)), directory)
            return super().collect()

    registry = CollectorRegistry()
    Workers(registry, path=directory)

    class Handler(MetricsHandler.factory(registry)):
        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=fd)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while os.getppid() == parent:  # re-parented: `idp serve` is gone, so are we
        time.sleep(1)


if __name__ == "__main__":
    _serve_scrapes(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
