"""`idp serve`: Granian (a Rust HTTP server) running the WSGI app in N worker processes.

Granian over gunicorn because HTTP parsing and keep-alive in Rust leave the
Python time to the app: measured here with the same app and 2 workers, see the
closing note of issue 2 and `make bench`. Each worker builds its own app, so
database connections are never shared across processes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from .config import Settings
from .observability.logs import granian_config

# Seconds a worker may take to finish its requests after SIGTERM. The slowest legitimate
# request waits on an outbound fetch (10 s timeout), so a little more than that.
WORKERS_KILL_TIMEOUT = 12
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


# What the optimized interpreter runs: the same command line, `idp` as its program name.
_RERUN = "import sys; from idp.cli import main; sys.argv[0] = 'idp'; sys.exit(main())"


def run_optimized(argv: list[str]) -> None:
    """Run `idp <argv>` again, in place of this process (same pid), in an interpreter started
    with -OO, unless this one is (or the operator set PYTHONOPTIMIZE: their choice stands).

    Without docstrings a worker holds about 5 MB less (4 MB of them are the docstrings of
    the modules every worker imports, issue 14's lean workers: measured with
    `bench/memory.py`); -OO also drops `assert` statements, which our code therefore never
    uses for a check that matters (the libraries' are sanity checks of their own state).
    -P keeps the working directory off sys.path, as the `idp` script does.
    """
    if sys.flags.optimize >= 2 or "PYTHONOPTIMIZE" in os.environ:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-OO", "-P", "-X", "no_debug_ranges", "-c", _RERUN, *argv])


def worker_app():
    """The app as each server worker builds it: with the background deliveries running."""
    # A forked worker runs the parent's signal handlers until Granian installs its own, after
    # this app is built (about a second): a SIGTERM meanwhile only set a flag in the worker's
    # copy of the parent, the worker went on to serve and `idp serve` waited for it forever.
    # Until then nothing is in flight, so the default action (exit at once) is the right one.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from . import create_app

    app = create_app(run_workers=True)
    keep_for_good()
    return app


def keep_for_good() -> None:
    """Collect the garbage, then move every object still alive into the collector's permanent
    generation, which no collection scans again.

    In `idp serve` before the workers are forked: they share those pages instead of copying
    them when a collection touches them, and the parent's exit no longer spends seconds
    collecting it after SIGTERM (2.5 s measured on 2 busy cores). In each worker after it
    built its app, which lives as long as the worker: about 140,000 objects the collector
    tracks (routes, models, templates), which every full collection scanned, 68 ms each
    (`gc.collect(2)` timed after `create_app`; 0.0 ms frozen). Full collections are rare
    once a worker is warm, but the request one lands in waited that long.
    Garbage first: frozen, it would never be freed.
    """
    gc.collect()
    gc.freeze()


def _one_malloc_arena() -> None:
    """glibc gives each thread that allocates its own malloc arena, whose freed memory stays
    resident; a worker's threads (Granian's, the background deliveries') then hold 1.5 MB more
    each (measured with `bench/memory.py`). The workers barely allocate outside the GIL, so one
    arena costs them no waiting. Set here, in the process they are forked from (glibc reads
    MALLOC_ARENA_MAX only at start); an operator's own MALLOC_ARENA_MAX is left alone."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # not glibc (musl has no arenas to limit)
        pass


def serve(host: str, port: int, workers: int, settings: Settings | None = None) -> None:
    """Run the server until SIGTERM/SIGINT; with IDP_METRICS_PORT, its metrics exporter too."""
    settings = settings or Settings.from_env()
    exporter = None
    if settings.metrics_port is not None:
        from .observability.metrics import Exporter

        exporter = Exporter(settings.metrics_port)  # before the workers: they need its directory
    # Everything the parent built so far (imported modules) is kept for good; the app the
    # caller dropped is garbage, and freed its pages are reused by each worker's own app
    # instead of adding to its resident memory.
    keep_for_good()
    _one_malloc_arena()
    try:
        Granian(
            "idp.server:worker_app",
            factory=True,
            address=host,
            port=port,
            interface=Interfaces.WSGI,
            workers=max(1, workers),
            blocking_threads=settings.threads,
            log_level=LogLevels.warning,
            respawn_failed_workers=True,
            # SIGTERM drains requests in flight; a worker still busy after this long is killed
            workers_kill_timeout=WORKERS_KILL_TIMEOUT,
            log_dictconfig=granian_config(settings.log_format),
        ).serve()
    finally:
        if exporter is not None:
            exporter.stop()
