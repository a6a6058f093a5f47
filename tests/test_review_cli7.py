"""Review of the operator's surface (round 13): what `idp` accepts from its environment and
arguments, and what it prints to the operator's terminal."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.conftest import IDP, free_port


def _serve_refused(env) -> subprocess.CompletedProcess:
    """`idp serve` with `env`, expected to exit at once; failing the test if it serves."""
    proc = subprocess.Popen([IDP, "serve", "--port", str(free_port()), "--workers", "1"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its workers too
        proc.communicate()
        pytest.fail("`idp serve` started with " + " ".join(f"{k}={v}" for k, v in env.items()
                                                             if k in ("IDP_ISSUER", "IDP_THREADS")))
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    return {**env, "IDP_INSTANCE_DIR": str(tmp_path / "instance"), "IDP_LOG_LEVEL": "WARNING",
            "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.db'}", **extra}


# Each was taken and published as is: "?" and "#" made every endpoint in discovery
# "https://idp.example/?/token"; a user:password went into every token's `iss` and the
# discovery document; a port out of range or an empty host was a server nobody can reach;
# "HTTPS://" served an https issuer without Secure cookies, __Host- names or HSTS (all of
# them test `issuer.startswith("https://")`), and without the plain-http warning either.
BAD_ISSUERS = ["https://idp.example/?", "https://idp.example/#", "https://idp.example?x#",
               "https://admin:hunter2@idp.example", "https://idp.example:99999", "https://idp.example:0",
               "https://:443", "https://idp example", "https://idp.exa\tmple", "HTTPS://idp.example",
               "https://[::1"]


@pytest.mark.parametrize("issuer", BAD_ISSUERS)
def test_an_issuer_that_cannot_be_published_is_refused_at_start(tmp_path, issuer):
    out = subprocess.run([IDP, "init"], env=_env(tmp_path, IDP_ISSUER=issuer), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1, (issuer, out.stdout)
    assert out.stderr.startswith("error: IDP_ISSUER") and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_idp_serve_refuses_an_upper_case_https_issuer_before_serving(tmp_path):
    out = _serve_refused(_env(tmp_path, IDP_ISSUER="HTTPS://idp.example"))
    assert out.returncode == 1 and out.stderr.startswith("error: IDP_ISSUER"), out.stderr


@pytest.mark.parametrize("issuer", ["https://idp.example", "https://idp.example/tenant/", "http://127.0.0.1:5000",
                                    "https://[2001:db8::1]:8443/x", "https://IdP.Example"])
def test_ordinary_issuers_are_taken(tmp_path, issuer):
    from idp.config import Settings

    assert Settings.from_env(_env(tmp_path, IDP_ISSUER=issuer)).issuer == issuer.rstrip("/")


def test_a_name_given_at_sign_up_cannot_forge_lines_or_drive_the_operators_terminal(live):
    """Anyone may sign up with any name; `idp users list` wrote it to the operator's terminal
    as it was: a line break forged a listing line (here an admin that does not exist), an
    escape sequence cleared the screen or retitled the window."""
    import secrets
    import time

    from tests.conftest import Browser
    from tests.test_review_signin7 import _from

    email = f"forger-{secrets.token_hex(4)}@example.com"
    forged = "x\r\n00000000000000000000000000000000  boss@example.com  Boss  (admin)\x1b[2J\x1b]0;owned\x07\x9b1m"
    b = _from("127.0.0.74", Browser(live.issuer))  # not the sign-up budget other tests share
    resp = b.submit(b.get(f"{live.issuer}/signup"), {"email": email, "name": forged, "password": "a-good-password"})
    assert resp.status_code == 200, resp.text
    for _ in range(100):  # the account is made after the answer
        out = live.idp("users", "list")
        if email in out.stdout:
            break
        time.sleep(0.1)
    assert out.returncode == 0 and email in out.stdout, out.stderr
    line = next(line for line in out.stdout.splitlines() if email in line)
    assert "boss@example.com" in line, "the name is shown, on its own line"
    assert "boss@example.com" not in out.stdout.replace(line, ""), "a forged line in the listing"
    assert not any(ch in out.stdout for ch in "\r\x1b\x07\x9b"), "control characters reached the terminal"
    # the JSON listing keeps the name exactly (json escapes it)
    import json

    assert any(u["name"] == forged.strip() for u in json.loads(live.idp("users", "list", "--json").stdout))


@pytest.mark.parametrize("threads", ["0", "-3", "abc", "100000"])
def test_a_bad_idp_threads_is_one_error_line_at_start(tmp_path, threads):
    """IDP_THREADS (each worker's request threads) was read by `int()` when Granian started:
    0 started a server whose every answer was a 500 and whose workers ignored SIGTERM, -3 a
    crash loop of tracebacks, "abc" a ValueError line not naming the variable."""
    out = _serve_refused(_env(tmp_path, IDP_THREADS=threads, IDP_ISSUER="http://127.0.0.1:5000"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: IDP_THREADS") and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize("name", ["IDP_AUDIT_RETENTION_DAYS", "IDP_DELIVERY_RETENTION_DAYS", "IDP_KEY_ROTATION_DAYS"])
def test_a_number_of_days_reaching_before_year_one_is_refused_at_start(tmp_path, name):
    """999999 ("keep them forever") was taken; counted back from today it is before year 1,
    so every housekeeping round failed with OverflowError (nothing expired was ever deleted:
    codes, pending requests, throttle counters) and so did every rotation check."""
    out = subprocess.run([IDP, "init"], env=_env(tmp_path, **{name: "999999"}), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and out.stderr.startswith(f"error: {name}"), out.stderr


def test_housekeeping_and_key_rotation_run_with_the_longest_days_taken(tmp_path):
    from idp import create_app, housekeeping, key_rotation
    from idp.config import MAX_DAYS, Settings

    env = _env(tmp_path, IDP_AUDIT_RETENTION_DAYS=str(MAX_DAYS), IDP_DELIVERY_RETENTION_DAYS=str(MAX_DAYS),
               IDP_KEY_ROTATION_DAYS=str(MAX_DAYS))
    assert subprocess.run([IDP, "init"], env=env, capture_output=True, timeout=60).returncode == 0
    app = create_app(Settings.from_env(env))
    with app.app_context():
        assert housekeeping.purge_expired() == 0
        assert key_rotation.run_round("test") is None


def _stored_secret(live, name: str) -> str:
    from keys import unseal

    from idp.providers import PURPOSE
    from idp.store import SocialProvider, db

    with live.db():
        row = db.session.get(SocialProvider, name)
        return unseal(live.app.extensions["idp.settings"].secret_key, row.sealed_client_secret, name, PURPOSE).decode()


def test_a_providers_client_secret_can_be_given_without_putting_it_in_argv(live):
    """`--client-secret SECRET` (SPEC §1) puts the secret in /proc/PID/cmdline, which every
    local user reads with `ps` while the command runs (discovery is fetched meanwhile), and
    in the shell's history; there was no other way to give it. `--client-secret-stdin`
    reads one line, as `idp users create --password-stdin` does."""
    import secrets

    name, secret = f"stdin-{secrets.token_hex(3)}", "s3cret-" + secrets.token_urlsafe(12)
    out = live.idp("social", "add", name, "--issuer", live.issuer, "--client-id", "cid", "--client-secret-stdin",
                   input=secret + "\n")
    assert out.returncode == 0, out.stderr
    assert _stored_secret(live, name) == secret

    org = f"stdin-{secrets.token_hex(3)}"
    assert live.idp("orgs", "create", org, "--domain", f"{org}.example").returncode == 0
    other = "s3cret-" + secrets.token_urlsafe(12)
    out = live.idp("orgs", "oidc", org, "--issuer", live.issuer, "--client-id", "cid", "--client-secret-stdin",
                   "--json", input=other + "\r\n")
    assert out.returncode == 0, out.stderr
    from idp.orgs import find
    from idp.providers import enterprise_provider_name

    with live.db():
        provider = enterprise_provider_name(find(org).id)
    assert _stored_secret(live, provider) == other

    # the one or the other, and an empty line is no secret
    both = live.idp("social", "add", name, "--client-id", "c", "--client-secret", "x", "--client-secret-stdin",
                    "--issuer", live.issuer, input="y\n")
    empty = live.idp("social", "add", name, "--client-id", "c", "--client-secret-stdin", "--issuer", live.issuer,
                     input="\n")
    neither = live.idp("orgs", "oidc", org, "--issuer", live.issuer, "--client-id", "c")
    for refused in (both, empty, neither):
        assert refused.returncode != 0 and refused.stderr.startswith("error: "), refused.stderr
    assert _stored_secret(live, name) == secret


def test_idp_init_says_where_the_database_is_without_its_credentials(live):
    """`idp init` printed IDP_DATABASE_URL after its last "@": a password given as a query
    parameter (libpq's `?password=`, `sslpassword=`) went to stdout, into deployment logs."""
    if not live.env["IDP_DATABASE_URL"].startswith("postgresql"):
        pytest.skip("query parameters of the URL are libpq's")
    secret = "pw-in-query-7Hq2"
    env = {**live.env, "IDP_DATABASE_URL": live.env["IDP_DATABASE_URL"].replace("idp@", "idp:pw-in-userinfo@")
           + f"?password={secret}&application_name=init"}
    out = subprocess.run([IDP, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("database ready: ") and "/idp" in out.stdout
    assert secret not in out.stdout + out.stderr and "pw-in-userinfo" not in out.stdout + out.stderr, out.stdout


@pytest.mark.parametrize("host", ["999.1.1.1", ""])  # no name: its lookup would need a DNS server
def test_a_host_to_listen_on_that_is_no_address_is_one_error_line_naming_it(tmp_path, host):
    """`idp serve --host 999.1.1.1` (or an empty one) started, then failed
    in Granian with "error: ValueError: invalid IP address syntax", naming no option."""
    out = subprocess.run([IDP, "serve", "--host", host, "--port", str(free_port())], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--host" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_host_name_is_listened_on_at_its_address(tmp_path):
    """`--host localhost` is what operators type; Granian refused it as no IP address."""
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([IDP, "serve", "--host", "localhost", "--port", str(port), "--workers", "1"],
                            env=_env(tmp_path, IDP_ISSUER=f"http://127.0.0.1:{port}"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                                            timeout=2) as resp:
                    assert resp.status == 200
                    return
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(proc.stderr.read())
                time.sleep(0.2)
        pytest.fail("`idp serve --host localhost` did not answer")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
