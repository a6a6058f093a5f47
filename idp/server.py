"""`idp serve`: Granian (a Rust HTTP server) running the WSGI app in N worker processes.

Granian over gunicorn because HTTP parsing and keep-alive in Rust leave the
Python time to the app: measured here with the same app and 2 workers, see the
closing note of issue 2 and `make bench`. Each worker builds its own app, so
database connections are never shared across processes.
"""

from __future__ import annotations

import os

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels


def worker_app():
    """The app as each server worker builds it: with the background deliveries running."""
    from . import create_app

    return create_app(run_workers=True)


def serve(host: str, port: int, workers: int) -> None:
    Granian(
        "idp.server:worker_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=max(1, workers),
        blocking_threads=int(os.environ.get("IDP_THREADS", "1")),
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
    ).serve()
