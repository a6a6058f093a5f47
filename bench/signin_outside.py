"""The whole password sign-in measured from outside, as issue 14 item 3 first measured it:
a real `idp serve --workers 1`, the sign-in driven over HTTP by this process (authorize, the
email step, the password step, the code exchange, every redirect on the issuer followed),
and the server's CPU read from /proc: every process of the server, threads included.

`bench/password_cost.py` measures the same steps in process, with the test client: this one
counts what a real server does instead (Granian's HTTP parsing and the WSGI environ, the
sockets' system calls) and not the test client's own work, and cannot split the argon2id
verify from the rest, so it subtracts a verify timed alone in this process.

    .venv/bin/python bench/signin_outside.py
        on a throw-away SQLite instance; BENCH_DATABASE_URL for an (empty) PostgreSQL
        database, whose server's CPU is not counted; BENCH_ROUNDS sign-ins (default 300) after
        BENCH_WARMUP (default 30).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from memory import descendants, start_serve  # bench/memory.py, beside this file

ROOT = Path(__file__).resolve().parent.parent
IDP = str(ROOT / ".venv" / "bin" / "idp")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "30"))
PASSWORD = "correct horse battery staple"
EMAIL = f"bench-{os.getpid()}@example.com"  # a new account each run, whatever the database holds
REDIRECT_URI = "http://127.0.0.1:9/cb"
VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
MAX_STEPS = 12  # a loop between pages is an error, not a hang


def idp(*argv: str, stdin: str | None = None) -> str:
    """What `idp ARGV` printed; exits with its error when it fails."""
    done = subprocess.run([IDP, *argv], input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: idp {argv[0]} failed: {done.stderr.strip()}")
    return done.stdout


def server_cpu(pid: int) -> float:
    """Seconds of CPU (user and system) of `pid` and every process below it."""
    ticks = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Browser:
    """One browser on one keep-alive connection: its cookies, and nothing else."""

    def __init__(self, conn: http.client.HTTPConnection):
        self.conn, self.cookies = conn, {}

    def send(self, method: str, path: str, form: dict | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body, headers["Content-Type"] = urlencode(form), "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        text = resp.read().decode()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                key, _, val = value.split(";", 1)[0].partition("=")
                self.cookies[key] = val
        return resp, text


def sign_in(conn: http.client.HTTPConnection, authorize: str, basic: str) -> None:
    """From /authorize to the redirect to the client, then the code exchange; exits on anything else."""
    browser = Browser(conn)
    resp, text = browser.send("GET", authorize)
    for _ in range(MAX_STEPS):
        if resp.status == 302:
            location = resp.getheader("Location")
            if location.startswith(REDIRECT_URI):
                code = parse_qs(urlsplit(location).query)["code"][0]
                resp, text = browser.send("POST", "/token", {
                    "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                    "code_verifier": VERIFIER}, {"Authorization": basic})
                if resp.status != 200:
                    sys.exit(f"error: the code exchange answered {resp.status}: {text[:200]}")
                return
            parts = urlsplit(location)
            resp, text = browser.send("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        elif resp.status == 200 and '<form method="post"' in text:
            action = re.search(r'<form method="post" action="([^"]+)"', text).group(1).replace("&amp;", "&")
            fields = {"password": PASSWORD} if 'name="password"' in text else {"email": EMAIL}
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)
            resp, text = browser.send("POST", action, {"csrf_token": csrf, **fields})
        else:
            sys.exit(f"error: the sign-in stopped at HTTP {resp.status}: {text[:200]}")
    sys.exit("error: the sign-in went round in circles")


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="idp-signin-outside-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(IDP_INSTANCE_DIR=tmp, IDP_ISSUER=f"http://127.0.0.1:{port}", IDP_LOG_LEVEL="WARNING")
    for name in ("IDP_DATABASE_URL", "IDP_REDIS_URL", "IDP_METRICS_PORT"):
        os.environ.pop(name, None)
    if os.environ.get("BENCH_DATABASE_URL"):
        os.environ["IDP_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    idp("init")
    idp("users", "create", EMAIL, "--password-stdin", stdin=PASSWORD + "\n")
    client = json.loads(idp("clients", "create", "--name", "bench", "--redirect-uri", REDIRECT_URI,
                            "--grant-type", "authorization_code", "--first-party", "--json"))
    basic = "Basic " + base64.b64encode(
        f"{quote(client['client_id'], safe='')}:{quote(client['client_secret'], safe='')}".encode()).decode()
    authorize = (f"/authorize?response_type=code&client_id={client['client_id']}&redirect_uri={REDIRECT_URI}"
                 f"&scope=openid&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256")
    server = start_serve(port, workers=1)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(WARMUP):
            sign_in(conn, authorize, basic)
        time.sleep(0.5)  # let the workers settle
        before = server_cpu(server.pid)
        for _ in range(ROUNDS):
            sign_in(conn, authorize, basic)
        whole = (server_cpu(server.pid) - before) / ROUNDS * 1000
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()

    sys.path.insert(0, str(ROOT))
    from idp.passwords import hash_password, verify_password

    stored = hash_password(PASSWORD)
    spent = []
    for _ in range(60):
        start = time.process_time()
        verify_password(stored, PASSWORD)
        spent.append(time.process_time() - start)
    verify = statistics.median(spent) * 1000
    print(f"whole password sign-in from outside: {whole:.1f} ms of server CPU each over {ROUNDS} sign-ins "
          f"({whole - verify:+.1f} ms beside an argon2id verify timed alone here, {verify:.1f} ms; budget +5 ms)")


if __name__ == "__main__":
    main()
