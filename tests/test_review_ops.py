"""Review of the operator side: CLI commands that change security state leave an audit event,
as the same actions in the Admin Center do; an insecure issuer is said out loud at start."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.conftest import IDP, free_port


def _events(live, kind: str) -> list[dict]:
    from sqlalchemy import select

    from idp.store import SecurityEvent, db

    with live.db():
        rows = db.session.execute(select(SecurityEvent).where(SecurityEvent.kind == kind)).scalars().all()
        return [{"actor_id": r.actor_id, **(r.detail or {})} for r in rows]


def test_keys_rotate_from_the_command_line_is_audited(live):
    before = json.loads(live.idp("keys", "list", "--json").stdout)
    previous = next(k["kid"] for k in before if k["state"] == "active")
    out = live.idp("keys", "rotate", "--alg", "EdDSA")
    assert out.returncode == 0, out.stderr
    new = next(k["kid"] for k in json.loads(live.idp("keys", "list", "--json").stdout) if k["state"] == "active")
    assert new != previous
    found = [e for e in _events(live, "signing_key.rotated") if e.get("kid") == new]
    assert found, "`idp keys rotate` changed the signing key without an audit event"
    assert found[0]["alg"] == "EdDSA" and found[0]["previous"] == previous and found[0]["actor_id"] is None


def test_clients_delete_from_the_command_line_is_audited(live):
    out = live.idp("clients", "create", "--name", "Gone", "--grant-type", "client_credentials", "--json")
    client_id = json.loads(out.stdout)["client_id"]
    assert live.idp("clients", "delete", client_id).returncode == 0
    assert [e for e in _events(live, "client.deleted") if e.get("client_id") == client_id], \
        "`idp clients delete` removed a client without an audit event"
    # an unknown client is an error and no event
    gone = live.idp("clients", "delete", client_id)
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")
    assert len([e for e in _events(live, "client.deleted") if e.get("client_id") == client_id]) == 1


def _serve_output(tmp_path, issuer: str) -> str:
    """What `idp serve` writes on stderr while starting with `issuer`, until it answers."""
    port = free_port()
    env = {**os.environ, "IDP_ISSUER": issuer, "IDP_INSTANCE_DIR": str(tmp_path / "inst"),
           "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.db'}"}
    env.pop("IDP_SECRET_KEY", None)
    tmp_path.mkdir(parents=True)
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([IDP, "serve", "--port", str(port), "--workers", "1"], env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        import requests

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise AssertionError(log.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return log.read_text()


def test_an_http_issuer_off_loopback_is_warned_about_at_start(tmp_path):
    insecure = _serve_output(tmp_path / "a", "http://idp.example.com")
    assert "IDP_ISSUER" in insecure and "https" in insecure and "WARNING" in insecure, insecure
    loopback = _serve_output(tmp_path / "b", "http://127.0.0.1:5000")
    assert "IDP_ISSUER" not in loopback, loopback


def test_an_unreachable_database_is_one_error_line(tmp_path):
    # psycopg's message has a second line ("Is the server running on that host ..."): SPEC §1
    # promises one `error:` line, and never the URL's password.
    env = {**os.environ, "IDP_INSTANCE_DIR": str(tmp_path),
           "IDP_DATABASE_URL": f"postgresql+psycopg://bob:hunter2-secret@127.0.0.1:{free_port()}/idp"}
    for args in (["users", "list"], ["keys", "list"], ["clients", "delete", "nobody"]):
        out = subprocess.run([IDP, *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and out.stderr.startswith("error: database unavailable"), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "hunter2" not in out.stderr and "Traceback" not in out.stderr


def test_enterprise_sign_in_set_up_from_the_command_line_is_audited(live, tmp_path):
    """`idp orgs oidc`, `idp orgs saml` and `idp orgs enforce-sso` record the events the
    Admin Center records for the same changes, in the org's log, with no person acting."""
    from tests.admin_world import new_org
    from tests.saml_idp import TestIdP

    org_id, name, _domain = new_org(live, "cliaudit")

    def mine(kind):
        from sqlalchemy import select

        from idp.store import SecurityEvent, db

        with live.db():
            rows = db.session.execute(select(SecurityEvent).where(SecurityEvent.kind == kind,
                                                                  SecurityEvent.org_id == org_id)).scalars().all()
            return [{"actor_id": r.actor_id, **(r.detail or {})} for r in rows]

    out = live.idp("orgs", "oidc", name, "--issuer", "https://login.cliaudit.example", "--client-id", "c-id",
                   "--client-secret", "c-secret")
    assert out.returncode == 0, out.stderr
    [saved] = mine("admin.oidc_saved")
    assert saved["issuer"] == "https://login.cliaudit.example" and saved["via"] == "cli"
    assert "c-secret" not in json.dumps(saved)
    assert live.idp("orgs", "enforce-sso", name).returncode == 0
    assert live.idp("orgs", "enforce-sso", name).returncode == 0  # no change: no second event
    assert live.idp("orgs", "enforce-sso", name, "--off").returncode == 0
    assert len(mine("admin.sso_enforced")) == 1 and len(mine("admin.sso_optional")) == 1
    idp = TestIdP(tmp_path / "idp")
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    out = live.idp("orgs", "saml", name, "--metadata", str(path))
    assert out.returncode == 0, out.stderr
    [metadata] = mine("admin.idp_metadata_saved")
    assert metadata["via"] == "cli" and metadata["entity_id"] and metadata["actor_id"] is None


def test_accounts_clients_tokens_and_providers_made_from_the_command_line_are_audited(live):
    """`idp users create` (an operator admin included), `idp clients create`, `idp clients
    registration-token` and `idp social add` change who can sign in or register clients:
    each writes an audit event, with no person acting and no secret in it."""
    out = live.idp("users", "create", "cli-made-admin@example.com", "--admin", "--json")
    assert out.returncode == 0, out.stderr
    user_id = json.loads(out.stdout)["id"]

    def made():
        from sqlalchemy import select

        from idp.store import SecurityEvent, db

        with live.db():
            return [{"actor_id": e.actor_id, **e.detail} for e in db.session.execute(select(SecurityEvent).where(
                SecurityEvent.kind == "user.created", SecurityEvent.user_id == user_id)).scalars()]

    assert made() == [{"actor_id": None, "via": "cli", "operator_admin": True}]

    out = live.idp("clients", "create", "--name", "Made", "--grant-type", "client_credentials", "--json")
    client = json.loads(out.stdout)
    [registered] = [e for e in _events(live, "client.created") if e.get("client_id") == client["client_id"]]
    assert registered["via"] == "cli" and client["client_secret"] not in json.dumps(registered)

    tokens_before = len(_events(live, "registration_token.created"))
    token = live.idp("clients", "registration-token").stdout.strip()
    issued = _events(live, "registration_token.created")
    assert len(issued) == tokens_before + 1
    assert all(e["via"] == "cli" and e["expires_at"] for e in issued) and token not in json.dumps(issued)

    client_id = f"g-id-{user_id}"
    out = live.idp("social", "add", "google", "--client-id", client_id, "--client-secret", "g-secret")
    assert out.returncode == 0, out.stderr
    [added] = [e for e in _events(live, "social.provider_added") if e.get("client_id") == client_id]
    assert added["provider"] == "google" and added["via"] == "cli" and "g-secret" not in json.dumps(added)
    # a refused command records nothing
    assert live.idp("users", "create", "cli-made-admin@example.com").returncode == 1
    assert len(made()) == 1
