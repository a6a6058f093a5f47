"""`idp serve`: gunicorn with N worker processes, each building its own app after fork."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker: database connections are never shared across fork.
        from . import create_app

        return create_app()


def serve(host: str, port: int, workers: int) -> None:
    _Gunicorn({
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        "worker_class": "sync",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "keepalive": 5,
        "preload_app": False,
    }).run()
