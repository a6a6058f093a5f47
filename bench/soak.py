"""`make soak`: mixed traffic for a while against `idp serve --workers 2` on a throwaway
PostgreSQL, then throughput and latency per kind of operation, errors, the server's
memory at the start and the end, and refresh-token families that were lost.

    .venv/bin/python bench/soak.py [--seconds N] [--threads N] [--workdir DIR]

SOAK_SECONDS (default 600) is the measured time when --seconds is not given; a warm-up
of a tenth of it (5 to 30 s) runs first and is not measured, so that the memory taken
at its end is the server with its caches filled, not a cold process.

Exits 1 if any answer was a 5xx or otherwise not what the protocol promises (a network
error included), if a refresh family was lost (its current token, used by one thread at a
time and never replayed, was refused), if a server process died or was replaced, or if the
server's memory (PSS) grew by more than MAX_GROWTH from the start to the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.pg import Cluster  # noqa: E402  (the same throwaway cluster the tests use)

IDP = str(Path(sys.executable).with_name("idp"))
REDIRECT_URI = "http://127.0.0.1:9/cb"  # never contacted: the code is read from the Location header
PASSWORD = "soak-password-1"
USERS = 2  # each `idp users create` is a process start-up; throttling counts failures only
# After the warm-up the per-process caches (clients, keys, templates, SQLAlchemy's compiled
# statements) are full and stay bounded; what still moves is the allocators' fragmentation,
# under 1% in 10 minutes here (PSS 224 -> 226 MiB). 15% is then far above that noise (no
# false alarms on a busy machine) and still catches a steady leak of 34 MiB over the run:
# ~1.8 KiB per request at the 19,000 requests a loaded 2-CPU machine manages in 10 minutes,
# ~0.35 KiB at 100,000. Slower leaks show in the printed KiB per request.
MAX_GROWTH = 0.15
# Share of each kind of operation (weights). Sign-ins cost one argon2id check (~25 ms
# CPU) each: kept rare so the run is not only hashing.
MIX = {
    "signin": 2,
    "code": 8,
    "refresh": 20,
    "client_credentials": 18,
    "userinfo": 14,
    "introspection": 14,
    "discovery": 12,
    "jwks": 12,
}
KEEP_FAMILIES = 64  # families in rotation at once; older ones retire (still valid, just unused)
KEEP_BROWSERS = 32  # signed-in browsers kept for code exchanges without a password
TIMEOUT = 30
FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Unexpected(Exception):
    """An answer the protocol does not allow here: counted as an error."""

    def __init__(self, what: str, status: int | None = None):
        super().__init__(what)
        self.status = status


class Lost(Exception):
    """A refresh family's current token was refused."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"soak [{time.monotonic() - T0:5.1f} s]: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# --- the server's memory, from /proc --------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return sorted(tree)


def _kib(path: str, field: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"{field} not in {path}")


def memory(server_pid: int) -> dict:
    """RSS and PSS (KiB) summed over the server's process tree, and the pids counted."""
    rss = pss = 0
    pids = []
    for pid in process_tree(server_pid):
        try:
            rss += _kib(f"/proc/{pid}/status", "VmRSS")
            pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss")
        except (OSError, ValueError):
            continue  # gone meanwhile
        pids.append(pid)
    return {"rss": rss, "pss": pss, "pids": pids}


# --- the traffic ------------------------------------------------------------------------

class Stats:
    """Latencies and outcomes per kind, for one phase (warm-up or measured)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {kind: [] for kind in MIX}
        self.http = 0
        self.errors = []  # (kind, status or None, what)
        self.lost = []

    def done(self, kind: str, seconds: float, requests_made: int) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.http += requests_made

    def error(self, kind: str, status: int | None, what: str) -> None:
        with self.lock:
            self.errors.append((kind, status, what))


class Soak:
    def __init__(self, issuer: str, meta: dict, web: dict, service: dict, users: list[str]):
        self.issuer = issuer
        self.meta = meta
        self.web_id = web["client_id"]
        self.web_auth = basic(web["client_id"], web["client_secret"])
        self.service_auth = basic(service["client_id"], service["client_secret"])
        self.users = users
        self.lock = threading.Lock()
        self.families = deque()  # [refresh_token]: popped by one thread at a time
        self.access_tokens = deque(maxlen=256)  # (token, usable until)
        self.browsers = deque()  # signed-in requests.Session objects, one user at a time
        self.families_started = 0
        self.rotations = 0
        self.stats = Stats()
        self.stop = threading.Event()

    # Each operation returns how many HTTP requests it made; it raises Unexpected or Lost.

    def _check(self, resp: requests.Response, want: int, what: str) -> requests.Response:
        if resp.status_code != want:
            raise Unexpected(f"{what}: HTTP {resp.status_code} {resp.text[:200]!r}", resp.status_code)
        return resp

    def _follow_to_code(self, http: requests.Session, resp: requests.Response, count: int):
        """Follow the server's redirects until one goes to the client; (code, requests made)."""
        while resp.is_redirect:
            location = resp.headers["Location"]
            if location.startswith(REDIRECT_URI):
                query = parse_qs(urlsplit(location).query)
                if "code" not in query:
                    raise Unexpected(f"authorization answered without a code: {location[:200]}")
                return query["code"][0], count
            url = self.issuer + location if location.startswith("/") else location
            resp = http.get(url, allow_redirects=False, timeout=TIMEOUT)
            count += 1
        raise Unexpected(f"{resp.url}: HTTP {resp.status_code} instead of a redirect with a code "
                         f"{resp.text[:200]!r}", resp.status_code)

    def _authorize(self, http: requests.Session) -> tuple[requests.Response, str]:
        verifier, challenge = pkce()
        query = urlencode({"response_type": "code", "client_id": self.web_id, "redirect_uri": REDIRECT_URI,
                           "scope": "openid profile email offline_access", "state": secrets.token_urlsafe(8),
                           "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        resp = http.get(f"{self.meta['authorization_endpoint']}?{query}", allow_redirects=False, timeout=TIMEOUT)
        return resp, verifier

    def _exchange(self, code: str, verifier: str) -> None:
        resp = requests.post(self.meta["token_endpoint"], timeout=TIMEOUT, headers={"Authorization": self.web_auth},
                             data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                                   "code_verifier": verifier})
        body = self._check(resp, 200, "code exchange").json()
        if not body.get("refresh_token") or not body.get("id_token"):
            raise Unexpected(f"code exchange without refresh or ID token: {sorted(body)}")
        self._keep_tokens(body)
        with self.lock:
            self.families.append(body["refresh_token"])
            self.families_started += 1
            while len(self.families) > KEEP_FAMILIES:
                self.families.popleft()

    def _keep_tokens(self, body: dict) -> None:
        # Drop a token a minute before it expires: a 401 for an expired token is no error.
        until = time.monotonic() + int(body.get("expires_in", 0)) - 60
        with self.lock:
            self.access_tokens.append((body["access_token"], until))

    def signin(self) -> int:
        http = requests.Session()
        resp, verifier = self._authorize(http)
        count = 1
        while resp.is_redirect and resp.headers["Location"].startswith(("/", self.issuer)):
            location = resp.headers["Location"]
            resp = http.get(self.issuer + location if location.startswith("/") else location,
                            allow_redirects=False, timeout=TIMEOUT)
            count += 1
        self._check(resp, 200, "sign-in page")
        for field, value in (("email", random.choice(self.users)), ("password", PASSWORD)):
            if f'name="{field}"' not in resp.text:
                raise Unexpected(f"{resp.url}: no {field} field")
            token = CSRF.search(resp.text)
            if token is None:
                raise Unexpected(f"{resp.url}: no CSRF token")
            # Posted where the form says, as a browser does: /authorize answers with the email
            # page itself, whose form goes to /signin.
            action = FORM_ACTION.search(resp.text)
            url = urljoin(resp.url, html.unescape(action.group(1))) if action else resp.url
            resp = http.post(url, data={"csrf_token": token.group(1), field: value},
                             allow_redirects=False, timeout=TIMEOUT)
            count += 1
            if field == "email":
                # The email step answers with the password page (or a redirect to one).
                while resp.is_redirect and resp.headers["Location"].startswith(("/", self.issuer)):
                    location = resp.headers["Location"]
                    resp = http.get(self.issuer + location if location.startswith("/") else location,
                                    allow_redirects=False, timeout=TIMEOUT)
                    count += 1
                self._check(resp, 200, "password page")
        code, count = self._follow_to_code(http, resp, count)
        self._exchange(code, verifier)
        with self.lock:
            self.browsers.append(http)
            while len(self.browsers) > KEEP_BROWSERS:
                self.browsers.popleft()
        return count + 1

    def code(self) -> int:
        with self.lock:
            http = self.browsers.popleft() if self.browsers else None
        if http is None:
            return self.signin()
        try:
            resp, verifier = self._authorize(http)  # the session signs in: no pages, straight to a code
            code, count = self._follow_to_code(http, resp, 1)
            self._exchange(code, verifier)
            return count + 1
        finally:
            with self.lock:
                self.browsers.append(http)

    def refresh(self) -> int:
        with self.lock:
            token = self.families.popleft() if self.families else None
        if token is None:
            return self.code()
        resp = requests.post(self.meta["token_endpoint"], timeout=TIMEOUT, headers={"Authorization": self.web_auth},
                             data={"grant_type": "refresh_token", "refresh_token": token})
        if resp.status_code == 400 and resp.json().get("error") == "invalid_grant":
            raise Lost(f"refresh refused: {resp.text[:200]}")
        body = self._check(resp, 200, "refresh").json()
        if not body.get("refresh_token") or body["refresh_token"] == token:
            raise Unexpected("refresh answered without a new refresh token")
        self._keep_tokens(body)
        with self.lock:
            self.families.append(body["refresh_token"])
            self.rotations += 1
        return 1

    def client_credentials(self) -> int:
        resp = requests.post(self.meta["token_endpoint"], timeout=TIMEOUT,
                             headers={"Authorization": self.service_auth}, data={"grant_type": "client_credentials"})
        if not self._check(resp, 200, "client_credentials").json().get("access_token"):
            raise Unexpected("client_credentials answered without an access token")
        return 1

    def _access_token(self) -> str | None:
        now = time.monotonic()
        with self.lock:
            while self.access_tokens and self.access_tokens[0][1] < now:
                self.access_tokens.popleft()
            return random.choice(self.access_tokens)[0] if self.access_tokens else None

    def userinfo(self) -> int:
        token = self._access_token()
        if token is None:
            return self.code()
        resp = requests.get(self.meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {token}"},
                            timeout=TIMEOUT)
        if not self._check(resp, 200, "userinfo").json().get("sub"):
            raise Unexpected("userinfo without sub")
        return 1

    def introspection(self) -> int:
        token = self._access_token()
        if token is None:
            return self.code()
        resp = requests.post(self.meta["introspection_endpoint"], headers={"Authorization": self.web_auth},
                             data={"token": token}, timeout=TIMEOUT)
        if self._check(resp, 200, "introspection").json().get("active") is not True:
            raise Unexpected("introspection calls a live access token inactive")
        return 1

    def discovery(self) -> int:
        self._check(requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=TIMEOUT), 200,
                    "discovery")
        return 1

    def jwks(self) -> int:
        if not self._check(requests.get(self.meta["jwks_uri"], timeout=TIMEOUT), 200, "jwks").json().get("keys"):
            raise Unexpected("JWKS without keys")
        return 1

    def run_thread(self, seed: int) -> None:
        rng = random.Random(seed)
        kinds, weights = list(MIX), list(MIX.values())
        while not self.stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            stats = self.stats  # the phase this operation belongs to: the one it started in
            start = time.perf_counter()
            try:
                made = getattr(self, kind)()
            except Lost as exc:
                with stats.lock:
                    stats.lost.append(str(exc))
                continue
            except Unexpected as exc:
                stats.error(kind, exc.status, str(exc))
                continue
            except (requests.RequestException, ValueError) as exc:  # ValueError: a body that is not JSON
                stats.error(kind, None, f"{type(exc).__name__}: {exc}")
                continue
            stats.done(kind, time.perf_counter() - start, made)


# --- set-up, run, report ---------------------------------------------------------------

def idp(env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([IDP, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        fail(f"idp {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(soak: Soak, measured: Stats, warmup: Stats, seconds: float, warm_seconds: int,
           before: dict, after: dict, threads: int) -> int:
    errors = warmup.errors + measured.errors
    lost = warmup.lost + measured.lost
    server_errors = sum(1 for _, status, _ in errors if status is not None and status >= 500)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"=== soak: {seconds:.0f} s measured after {warm_seconds} s warm-up, {threads} threads, idp serve "
          f"--workers 2 on PostgreSQL, {os.cpu_count()} CPUs, {rev.stdout.strip() or 'no commit'} ===")
    print(f"{'kind':20s} {'ops':>8s} {'ops/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}")
    total = 0
    for kind in MIX:
        lat = measured.latency[kind]
        total += len(lat)
        errs = sum(1 for k, _, _ in errors if k == kind)
        p50 = f"{percentile(lat, 0.50):8.1f}" if lat else f"{'-':>8s}"
        p99 = f"{percentile(lat, 0.99):8.1f}" if lat else f"{'-':>8s}"
        print(f"{kind:20s} {len(lat):8d} {len(lat) / seconds:8.1f} {p50} {p99} {errs:7d}")
    print(f"throughput: {total / seconds:.1f} ops/s, {measured.http / seconds:.1f} HTTP requests/s "
          f"({total} ops, {measured.http} requests)")
    print(f"errors: {len(errors)} ({server_errors} 5xx)")
    for kind, _status, what in errors[:10]:
        print(f"  {kind}: {what}")
    print(f"lost refresh families: {len(lost)} (of {soak.families_started} families, {soak.rotations} rotations)")
    for what in lost[:10]:
        print(f"  {what}")
    growth = after["pss"] / before["pss"] - 1 if before["pss"] else 0.0
    for label, m in (("start", before), ("end", after)):
        print(f"memory at {label:5s}: RSS {m['rss'] / 1024:.1f} MiB, PSS {m['pss'] / 1024:.1f} MiB "
              f"({len(m['pids'])} processes: parent + workers)")
    per_request = (after["pss"] - before["pss"]) / measured.http if measured.http else 0.0
    print(f"memory growth: PSS {growth:+.1%} ({(after['pss'] - before['pss']) / 1024:+.1f} MiB, "
          f"{per_request:+.3f} KiB per request), RSS {after['rss'] / before['rss'] - 1:+.1%} "
          f"(limit PSS +{MAX_GROWTH:.0%})")
    reasons = []
    if errors:
        reasons.append(f"{len(errors)} errors")
    if lost:
        reasons.append(f"{len(lost)} lost refresh families")
    if before["pids"] != after["pids"]:
        reasons.append(f"server processes changed: {before['pids']} -> {after['pids']}")
    if growth > MAX_GROWTH:
        reasons.append(f"memory grew {growth:.1%}")
    print("result: " + ("FAIL (" + "; ".join(reasons) + ")" if reasons else "PASS"))
    return 1 if reasons else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, help="measured time (default: SOAK_SECONDS, else 600)")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--workdir", help="where the database and instance live (default: a new temp dir)")
    args = parser.parse_args()
    if args.seconds is None:
        raw = os.environ.get("SOAK_SECONDS", "600")
        if not raw.isdigit() or int(raw) < 1:
            fail("SOAK_SECONDS must be a positive whole number of seconds")
        args.seconds = int(raw)
    if args.seconds < 1 or args.threads < 1:
        fail("--seconds and --threads must be positive")
    if not Path(IDP).exists():
        fail(f"{IDP} not found: run 'make install' first")
    warm_seconds = min(30, max(5, args.seconds // 10))

    # SIGTERM ends the run like Ctrl-C, through the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="idp-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(work / "pg", free_port())
    server = None
    try:
        try:
            database_url = cluster.start()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            fail(f"cannot start PostgreSQL: {exc} {detail.strip()[-300:]}")
        port = free_port()
        env = {**os.environ, "IDP_ISSUER": f"http://127.0.0.1:{port}", "IDP_INSTANCE_DIR": str(work / "instance"),
               "IDP_DATABASE_URL": database_url, "IDP_LOG_LEVEL": "WARNING"}
        for name in ("IDP_SECRET_KEY", "IDP_REDIS_URL", "IDP_SMTP_HOST", "IDP_METRICS_PORT"):
            env.pop(name, None)
        progress(f"PostgreSQL up in {work}")
        idp(env, "init")
        progress("idp init done")
        # The CLI start-ups are most of the set-up time: run them side by side.
        users = [f"soak{i}@example.com" for i in range(USERS)]
        jobs = [[IDP, "users", "create", email, "--name", f"Soak {i}", "--password-stdin"]
                for i, email in enumerate(users)]
        jobs += [[IDP, "clients", "create", "--name", "soak-web", "--redirect-uri", REDIRECT_URI, "--first-party",
                  "--json"],
                 [IDP, "clients", "create", "--name", "soak-service", "--grant-type", "client_credentials", "--json"]]
        procs = [subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for cmd in jobs]
        outputs = [p.communicate(PASSWORD + "\n", timeout=300) for p in procs]
        for cmd, p, (_, err) in zip(jobs, procs, outputs, strict=True):
            if p.returncode != 0:
                fail(f"{' '.join(cmd[1:4])} failed: {err.strip()[-500:]}")
        web, service = (json.loads(out) for out, _ in outputs[-2:])
        progress(f"{USERS} users and 2 clients created")

        log = open(work / "serve.log", "w")  # noqa: SIM115  (open for the server's whole life)
        server = subprocess.Popen([IDP, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        issuer = env["IDP_ISSUER"]
        deadline = time.monotonic() + 120
        while True:
            try:
                resp = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2)
                if resp.ok:
                    meta = resp.json()
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                fail(f"idp serve did not start: {(work / 'serve.log').read_text()[-1000:]}")
            time.sleep(0.2)

        progress("idp serve --workers 2 answers")
        soak = Soak(issuer, meta, web, service, users)
        # Every kind once, in order, so a broken endpoint fails here with its answer.
        for kind in ("signin", "code", "refresh", "client_credentials", "userinfo", "introspection", "discovery",
                     "jwks"):
            try:
                getattr(soak, kind)()
            except (Unexpected, Lost, requests.RequestException, ValueError) as exc:
                fail(f"first {kind} failed: {exc}")

        threads = [threading.Thread(target=soak.run_thread, args=(i,), daemon=True) for i in range(args.threads)]
        for t in threads:
            t.start()
        progress(f"every kind answered once; {args.threads} threads warm up for {warm_seconds} s")
        time.sleep(warm_seconds)
        warmup = soak.stats
        before = memory(server.pid)
        soak.stats = Stats()
        started = time.perf_counter()
        progress(f"measuring for {args.seconds} s")
        time.sleep(args.seconds)
        measured = soak.stats
        seconds = time.perf_counter() - started
        after = memory(server.pid)
        soak.stop.set()
        for t in threads:
            t.join(timeout=TIMEOUT + 5)
        if server.poll() is not None:
            print(f"idp serve exited during the run: {(work / 'serve.log').read_text()[-1000:]}", file=sys.stderr)
        code = report(soak, measured, warmup, seconds, warm_seconds, before, after, args.threads)
        if code:
            print("--- server log (tail) ---\n" + (work / "serve.log").read_text()[-2000:], file=sys.stderr)
        return code
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        cluster.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
