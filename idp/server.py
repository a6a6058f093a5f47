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

from .config import Settings
from .observability.logs import granian_config


def worker_app():
    """The app as each server worker builds it: with the background deliveries running."""
    from . import create_app

    return create_app(run_workers=True)


def serve(host: str, port: int, workers: int, settings: Settings | None = None) -> None:
    """Run the server until SIGTERM/SIGINT; with IDP_METRICS_PORT, its metrics exporter too."""
    settings = settings or Settings.from_env()
    exporter = None
    if settings.metrics_port is not None:
        from .observability.metrics import Exporter

        exporter = Exporter(settings.metrics_port)  # before the workers: they need its directory
    try:
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
            log_dictconfig=granian_config(settings.log_format),
        ).serve()
    finally:
        if exporter is not None:
            exporter.stop()
