"""Memory of `idp serve --workers 2` after warm-up, and how fast the `idp` CLI answers.

Issue 14's budgets: at most 80 MB resident per worker and 200 MB for the whole server,
pages shared between the processes counted once (the sum of their PSS); every `idp`
command that does not touch SAML answers in under 0.5 s.

    .venv/bin/python bench/memory.py
        makes a throw-away SQLite instance, starts `idp serve --workers 2` on it, warms it up
        and measures, then stops it; the CLI is timed on the same instance.
    BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/memory.py
        the same on that (empty) PostgreSQL database instead of SQLite.
    .venv/bin/python bench/memory.py --issuer URL --pid PID
        measures a server already running (`bench/run.sh` does this with its own), with
        IDP_INSTANCE_DIR (and BASIC, base64 of client_id:client_secret, for the token grant)
        from the environment.

Warm-up: WARMUP requests (default 2000), in turn discovery, JWKS, a client_credentials
grant and the sign-in page, so every worker has run the code paths most requests take.
CLI figures: the median of 5 runs of each command, wall time and the CPU time the child
process used (the CPU figure is the one a busy machine does not inflate).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
IDP = str(ROOT / ".venv" / "bin" / "idp")
WARMUP = int(os.environ.get("WARMUP", "2000"))
RUNS = 5
# Commands that never touch SAML, one per command group that only reads (so repeating them
# changes nothing); `--help` is the floor: parsing arguments and nothing else.
CLI_COMMANDS = (["--help"], ["users", "list"], ["users", "list", "--json"], ["clients", "list"], ["keys", "list"])


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, ()))
    return sorted(found)


def rollup(pid: int) -> dict[str, int]:
    """Rss, Pss, Shared_Clean and the private pages (Private, Private_Clean + Private_Dirty)
    of one process in kB, from /proc/PID/smaps_rollup."""
    values = {"Private": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Shared_Clean"):
            values[key] = int(rest.split()[0])
        elif key in ("Private_Clean", "Private_Dirty"):
            values["Private"] += int(rest.split()[0])
    return values


def warm_up(issuer: str, basic: str | None, count: int) -> None:
    parts = urlsplit(issuer)
    prefix = parts.path.rstrip("/")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    requests = [("GET", prefix + "/.well-known/openid-configuration", None, {}),
                ("GET", prefix + "/jwks", None, {}),
                ("GET", prefix + "/signin", None, {})]
    if basic:
        requests.append(("POST", prefix + "/token", "grant_type=client_credentials",
                         {"Authorization": "Basic " + basic,
                          "Content-Type": "application/x-www-form-urlencoded"}))
    jwks = json.loads(_get(conn, prefix + "/.well-known/openid-configuration"))["jwks_uri"]
    requests[1] = ("GET", urlsplit(jwks).path, None, {})
    for i in range(count):
        method, path, body, headers = requests[i % len(requests)]
        # A new connection now and then, so both workers get their share of requests.
        if i % 50 == 0:
            conn.close()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 400:
            sys.exit(f"warm-up: HTTP {resp.status} from {method} {path}")


def _get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        sys.exit(f"HTTP {resp.status} from {path}")
    return body


def server_memory(pid: int) -> list[str]:
    procs = [(p, rollup(p)) for p in descendants(pid)]
    pss = sum(v["Pss"] for _, v in procs) / 1024
    per = ", ".join(f"{'parent' if p == pid else 'worker'} {v['Rss'] / 1024:.0f}/{v['Pss'] / 1024:.0f}"
                    for p, v in procs)
    # A worker's RSS counts in full the code pages it runs from the shared libraries (Python,
    # Granian's and cryptography's Rust, OpenSSL, libpq): mapped from files, clean and the same
    # pages in every process. Shown apart, with the pages only that process holds (USS).
    workers = [v for p, v in procs if p != pid]
    split = ", ".join(f"{v['Shared_Clean'] / 1024:.0f}/{v['Private'] / 1024:.0f}" for v in workers)
    return [f"idp serve --workers 2 memory after {WARMUP} requests: PSS sum {pss:.0f} MB (budget 200); "
            f"RSS/PSS MB {per} (budget 80 a worker)",
            f"of each worker's RSS, MB of shared clean pages (library code mapped from files) / "
            f"private pages (USS): {split}"]


def cli_timing() -> list[str]:
    lines = []
    for argv in CLI_COMMANDS:
        walls, cpus = [], []
        for _ in range(RUNS):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run([IDP, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0:
                sys.exit(f"idp {' '.join(argv)} failed: {done.stderr.strip()}")
        lines.append(f"idp {' '.join(argv)}: median wall {statistics.median(walls):.2f} s, "
                     f"CPU {statistics.median(cpus):.2f} s (budget 0.5 s; {RUNS} runs)")
    return lines


def own_server() -> tuple[str, int, str, str]:
    """Start `idp serve --workers 2` on a new instance: (issuer, pid, basic, instance dir)."""
    tmp = tempfile.mkdtemp(prefix="idp-memory-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issuer = f"http://127.0.0.1:{port}"
    os.environ.update(IDP_INSTANCE_DIR=tmp, IDP_ISSUER=issuer, IDP_LOG_LEVEL="WARNING")
    for name in ("IDP_DATABASE_URL", "IDP_REDIS_URL", "IDP_METRICS_PORT"):
        os.environ.pop(name, None)
    if os.environ.get("BENCH_DATABASE_URL"):
        os.environ["IDP_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    subprocess.run([IDP, "init"], check=True, stdout=subprocess.DEVNULL)
    client = json.loads(subprocess.run(
        [IDP, "clients", "create", "--name", "bench", "--grant-type", "client_credentials", "--json"],
        check=True, capture_output=True, text=True).stdout)
    basic = base64.b64encode(
        f"{quote(client['client_id'], safe='')}:{quote(client['client_secret'], safe='')}".encode()).decode()
    proc = start_serve(port, workers=2)
    return issuer, proc.pid, basic, tmp


def start_serve(port: int, workers: int) -> subprocess.Popen:
    """`idp serve` on `port` (in its own process group), once it accepts connections."""
    proc = subprocess.Popen([IDP, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("error: idp serve did not start")
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--issuer")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--cli-only", action="store_true",
                        help="only time the CLI, on the instance IDP_INSTANCE_DIR names")
    args = parser.parse_args()
    if args.cli_only:
        print("\n".join(cli_timing()))
        return
    tmp = None
    if args.pid:
        issuer, pid, basic = args.issuer, args.pid, os.environ.get("BASIC")
    else:
        issuer, pid, basic, tmp = own_server()
    try:
        warm_up(issuer, basic, WARMUP)
        time.sleep(0.5)  # let the workers settle (collections, freed buffers)
        lines = server_memory(pid)
        lines += cli_timing()
    finally:
        if tmp:
            os.killpg(pid, signal.SIGTERM)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
