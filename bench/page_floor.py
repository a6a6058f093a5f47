"""CPU of the smallest requests, in process: what Flask itself costs (a bare app, with and
without writing its session cookie) beside ours (`/healthz`, a 404 page, the email page),
to tell the framework's share of a page from our hooks', templates' and rules' (issue 14
item 3). Run with the project's venv: `.venv/bin/python bench/page_floor.py`.
"""

import io
import os
import tempfile
import time

os.environ["IDP_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="idp-floor-")
os.environ.pop("IDP_DATABASE_URL", None)
os.environ["IDP_LOG_LEVEL"] = "WARNING"

from flask import Flask, session  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from idp import create_app  # noqa: E402
from idp.cli import initialize  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2000"))

bare = Flask("bare")
bare.secret_key = "bench"


@bare.get("/hello")
def hello():
    return "hi"


@bare.get("/session")
def with_session():
    session["seen"] = 1
    return "hi"


app = create_app()
initialize(app)


def cpu_per_call(wsgi, path: str) -> float:
    """Microseconds of CPU for one WSGI call of GET `path`, after 200 warm-up calls."""
    environ = EnvironBuilder(path=path).get_environ()

    def start_response(status, headers, exc_info=None):
        return None

    def call():
        b"".join(wsgi({**environ, "wsgi.input": io.BytesIO()}, start_response))

    for _ in range(200):
        call()
    start = time.process_time()
    for _ in range(ROUNDS):
        call()
    return (time.process_time() - start) / ROUNDS * 1e6


for label, wsgi, path in (
    ("bare Flask, a route returning a string", bare.wsgi_app, "/hello"),
    ("bare Flask, the same writing its session cookie", bare.wsgi_app, "/session"),
    ("ours, /healthz", app.wsgi_app, "/healthz"),
    ("ours, a 404 page", app.wsgi_app, "/no-such-page"),
    ("ours, the email page (/signin)", app.wsgi_app, "/signin"),
):
    print(f"{label:50s} {cpu_per_call(wsgi, path):7.0f} µs CPU")
