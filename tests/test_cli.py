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
                 ["serve", "--workers", "0"],  # started one worker, quietly
                 ["serve", "--port", "70000"],
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


def _kid_of(tok: str) -> str:
    import base64

    head = tok.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def _published(live) -> set[str]:
    return {k["kid"] for k in requests.get(f"{live.issuer}/jwks.json", timeout=10).json()["keys"]}


def test_revoking_the_signing_key_drops_it_everywhere_and_signing_goes_on(live, browser):
    from tests.oidc import authorize_url, pkce, redirect_params, REDIRECT

    live.create_user("revoked-key@example.com", "revoked-key-pw")
    client_id, secret = live.create_client()
    rs = json.loads(live.idp("clients", "create", "--name", "RS", "--grant-type", "client_credentials",
                             "--json").stdout)
    rs_auth = (rs["client_id"], rs["client_secret"])
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    code = redirect_params(browser.sign_in(page, "revoked-key@example.com", "revoked-key-pw"))["code"]
    access = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": verifier}, auth=(client_id, secret)).json()["access_token"]
    kid = _kid_of(access)
    bearer = {"Authorization": f"Bearer {access}"}

    def accepted() -> tuple[bool, bool]:
        userinfo = requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 200
        info = requests.post(f"{live.issuer}/introspect", data={"token": access}, auth=rs_auth, timeout=10)
        return userinfo, info.json()["active"]

    assert accepted() == (True, True) and kid in _published(live)

    out = live.idp("keys", "revoke", kid)
    assert out.returncode == 0, out.stderr
    assert f"revoked signing key {kid}" in out.stdout and "new signing key" in out.stdout
    time.sleep(1.5)  # the key ring's cache time (1 s) in every worker, and a margin
    for _ in range(6):  # several requests, so both workers answer
        assert kid not in _published(live)
        assert accepted() == (False, False)
        fresh = token(live.issuer, {"grant_type": "client_credentials"}, auth=rs_auth).json()["access_token"]
        assert _kid_of(fresh) != kid and _kid_of(fresh) in _published(live)
        info = requests.post(f"{live.issuer}/introspect", data={"token": fresh}, auth=rs_auth, timeout=10).json()
        assert info["active"] is True
    keys = json.loads(live.idp("keys", "list", "--json").stdout)
    assert kid not in {k["kid"] for k in keys} and sum(k["state"] == "active" for k in keys) == 1
    with live.db():
        from sqlalchemy import select

        from idp.store import SecurityEvent, db

        event = db.session.execute(select(SecurityEvent).where(SecurityEvent.kind == "signing_key.revoked")
                                   .order_by(SecurityEvent.created_at.desc())).scalars().first()
        assert event is not None and event.detail["kid"] == kid


def test_revoking_a_retired_key_keeps_the_signing_key(live):
    rs = json.loads(live.idp("clients", "create", "--name", "RS2", "--grant-type", "client_credentials",
                             "--json").stdout)
    rs_auth = (rs["client_id"], rs["client_secret"])
    old = token(live.issuer, {"grant_type": "client_credentials"}, auth=rs_auth).json()["access_token"]
    assert live.idp("keys", "rotate").returncode == 0
    time.sleep(1.5)
    current = token(live.issuer, {"grant_type": "client_credentials"}, auth=rs_auth).json()["access_token"]
    assert _kid_of(current) != _kid_of(old) and _kid_of(old) in _published(live)  # retired, still published
    out = live.idp("keys", "revoke", _kid_of(old))
    assert out.returncode == 0 and "new signing key" not in out.stdout, out.stderr
    time.sleep(1.5)
    for _ in range(4):
        assert _kid_of(old) not in _published(live) and _kid_of(current) in _published(live)
        info = requests.post(f"{live.issuer}/introspect", data={"token": old}, auth=rs_auth, timeout=10).json()
        assert info == {"active": False}
        info = requests.post(f"{live.issuer}/introspect", data={"token": current}, auth=rs_auth, timeout=10).json()
        assert info["active"] is True
        again = token(live.issuer, {"grant_type": "client_credentials"}, auth=rs_auth).json()["access_token"]
        assert _kid_of(again) == _kid_of(current)


def test_revoking_an_unknown_key_is_an_error_line(live):
    out = live.idp("keys", "revoke", "no-such-kid")
    assert out.returncode == 1 and out.stderr.startswith("error: no signing key no-such-kid")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert live.idp("keys", "revoke", "--help").returncode == 0
    assert live.idp("keys", "revoke").returncode != 0  # the kid is required


def test_deleting_a_client_takes_its_consents_and_its_tokens_on_running_servers(live):
    from idp.store import Client, Consent, db

    svc = json.loads(live.idp("clients", "create", "--name", "Gone", "--grant-type", "client_credentials",
                              "--json").stdout)
    creds = (svc["client_id"], svc["client_secret"])
    user_id = live.create_user("consenting@example.com")
    with live.db():
        db.session.add(Consent(user_id=user_id, client_id=svc["client_id"], scope="openid"))
        db.session.commit()
    # The server now holds the client in its cache: the delete must reach it.
    assert token(live.issuer, {"grant_type": "client_credentials"}, auth=creds).status_code == 200

    out = live.idp("clients", "delete", svc["client_id"])
    assert out.returncode == 0 and out.stdout == f"deleted client {svc['client_id']}\n", out.stderr
    refused = token(live.issuer, {"grant_type": "client_credentials"}, auth=creds)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    with live.db():
        assert db.session.get(Client, svc["client_id"]) is None
        assert db.session.get(Consent, (user_id, svc["client_id"])) is None  # cascaded by the database
    again = live.idp("clients", "delete", svc["client_id"])
    assert again.returncode == 1 and again.stderr == f"error: no client {svc['client_id']}\n"
