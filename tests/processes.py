"""Looking at the processes of a running `idp serve` through /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def worker_pids(serve_pid: int) -> list[int]:
    """The Granian worker processes of `idp serve` (not its metrics exporter)."""
    workers = []
    for pid in children(serve_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"idp.observability.metrics" not in cmdline:
            workers.append(pid)
    return workers


def wait_for_workers(serve_pid: int, count: int, without: tuple[int, ...] = (), timeout: float = 10) -> list[int]:
    """Wait until `idp serve` has `count` workers none of which is in `without`; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(serve_pid) if p not in without and alive(p)]
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"idp serve {serve_pid} has workers {worker_pids(serve_pid)}, wanted {count} new ones")


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
