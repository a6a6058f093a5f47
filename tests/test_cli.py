"""The `idp` command: outputs, JSON, and one-line errors for operator mistakes."""

from __future__ import annotations

import json
import time

import requests

from tests.oidc import token


def test_users_and_clients_commands(live):
    out = live.idp("users", "create", "CLI@Example.com", "--name", "Cli", "--password-stdin", "--json",
                   input="a-good-password\n")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["email"] == "cli@example.com" and created["id"]
    listed = json.loads(live.idp("users", "list", "--json").stdout)
    assert any(u["email"] == "cli@example.com" for u in listed)
    dup = live.idp("users", "create", "cli@example.com")
    assert dup.returncode != 0 and dup.stderr.startswith("error: ") and len(dup.stderr.strip().splitlines()) == 1

    out = live.idp("clients", "create", "--name", "Pub", "--redirect-uri", "http://127.0.0.1:9/cb", "--public",
                   "--json")
    pub = json.loads(out.stdout)
    assert "client_secret" not in pub and pub["token_endpoint_auth_method"] == "none"
    out = live.idp("clients", "create", "--name", "Svc", "--grant-type", "client_credentials", "--json")
    svc = json.loads(out.stdout)
    assert svc["grant_types"] == ["client_credentials"] and svc["client_secret"]
    assert token(live.issuer, {"grant_type": "client_credentials"},
                 auth=(svc["client_id"], svc["client_secret"])).status_code == 200
    ids = [c["client_id"] for c in json.loads(live.idp("clients", "list", "--json").stdout)]
    assert svc["client_id"] in ids and pub["client_id"] in ids
    assert live.idp("clients", "delete", svc["client_id"]).returncode == 0
    gone = live.idp("clients", "delete", svc["client_id"])
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")


def test_operator_mistakes_are_one_line_errors(live):
    for args in (["clients", "create", "--name", "x"],  # authorization_code without redirect URI
                 ["users", "create", "not-an-email"],
                 ["keys", "rotate", "--alg", "HS256"],
                 ["clients", "create"],
                 ["bogus"]):
        out = live.idp(*args)
        assert out.returncode != 0, args
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    short = live.idp("users", "create", "short@example.com", "--password-stdin", input="short\n")
    assert short.returncode == 1 and "error: password refused" in short.stderr
    assert live.idp("--help").returncode == 0 and live.idp("clients", "create", "--help").returncode == 0


def test_bad_configuration_is_an_error_line(live):
    import subprocess

    from tests.conftest import IDP

    env = {**live.env, "IDP_REGISTRATION": "sometimes"}
    out = subprocess.run([IDP, "init"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("error: IDP_REGISTRATION")


def test_key_rotation_reaches_running_workers_and_keeps_old_keys_published(live):
    svc = json.loads(live.idp("clients", "create", "--name", "Rot", "--grant-type", "client_credentials",
                              "--json").stdout)
    auth = (svc["client_id"], svc["client_secret"])

    def kid_of(tok: str) -> str:
        import base64
        head = tok.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]

    before = token(live.issuer, {"grant_type": "client_credentials"}, auth=auth).json()["access_token"]
    out = live.idp("keys", "rotate", "--alg", "EdDSA")
    assert out.returncode == 0, out.stderr
    keys = json.loads(live.idp("keys", "list", "--json").stdout)
    new_kid = next(k["kid"] for k in keys if k["state"] == "active")
    time.sleep(1.5)  # the key ring's cache lifetime in each worker
    for _ in range(6):  # several requests, so both workers answer
        after = token(live.issuer, {"grant_type": "client_credentials"}, auth=auth).json()["access_token"]
        assert kid_of(after) == new_kid
    published = {k["kid"] for k in requests.get(f"{live.issuer}/jwks.json", timeout=10).json()["keys"]}
    assert {kid_of(before), new_kid} <= published
    # a token signed by the retired key is still accepted until it expires
    info = requests.post(f"{live.issuer}/introspect", data={"token": before}, auth=auth, timeout=10).json()
    assert info["active"] is True
    live.idp("keys", "rotate")  # back to ES256 for the other tests
    time.sleep(1.5)
