"""The machine endpoints answered in front of Flask (idp/endpoints/machine.py): the plain
requests get the answer Flask's path gives, and everything else reaches Flask with its
body intact. In process, on the live server's database (SQLite and PostgreSQL), with a
recorder in front of Flask's own WSGI app to tell who answered.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from idp.endpoints.machine import MAX_FORM, MachineEndpoints

VARYING = {"X-Request-ID", "DPoP-Nonce", "Content-Length"}  # per request, or with the token's length


class Recorder:
    """Flask's WSGI app, counting the requests that reach it."""

    def __init__(self, flask_app):
        self.flask_app, self.calls = flask_app, 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return Flask.wsgi_app(self.flask_app, environ, start_response)


@pytest.fixture
def machine(live):
    recorder = Recorder(live.app)
    return MachineEndpoints(live.app, recorder), recorder


def call(wsgi, method, path, *, data=None, headers=None, content_type=None):
    environ = EnvironBuilder(path=path, method=method, data=data, headers=headers, content_type=content_type,
                             base_url=None).get_environ()
    body, status, got = run_wsgi_app(wsgi, environ, buffered=True)
    return int(status.split()[0]), dict(got), b"".join(body)


def basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("path", ["/jwks.json", "/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
def test_public_documents_answered_as_flask_answers_them(machine, path):
    wsgi, recorder = machine
    fast = call(wsgi, "GET", path)
    assert recorder.calls == 0
    flask = call(recorder, "GET", path)
    assert fast[0] == flask[0] == 200 and fast[2] == flask[2] and json.loads(fast[2])
    assert fast[1].keys() == flask[1].keys()
    assert {k: v for k, v in fast[1].items() if k not in VARYING} == \
        {k: v for k, v in flask[1].items() if k not in VARYING}
    assert fast[1]["X-Request-ID"] != flask[1]["X-Request-ID"]


def test_plain_client_credentials_answered_before_flask(live, machine):
    from idp.oauth.tokens import verify_access_token

    wsgi, recorder = machine
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    form = {"grant_type": "client_credentials", "scope": "openid"}
    fast = call(wsgi, "POST", "/token", data=form, headers=basic(client_id, secret))
    assert fast[0] == 200 and recorder.calls == 0
    flask = call(recorder, "POST", "/token", data=form, headers=basic(client_id, secret))
    assert flask[0] == 200 and recorder.calls == 1
    assert fast[1].keys() == flask[1].keys()
    assert {k: v for k, v in fast[1].items() if k not in VARYING} == \
        {k: v for k, v in flask[1].items() if k not in VARYING}
    body = json.loads(fast[2])
    assert body.keys() == json.loads(flask[2]).keys() and body["token_type"] == "Bearer"
    with live.app.app_context():
        claims = verify_access_token(body["access_token"])
    assert claims["sub"] == client_id and claims["scope"] == "openid"


@pytest.mark.parametrize("case", [
    "wrong secret", "repeated parameter", "resource parameter", "secret in the body", "unregistered scope",
    "dpop proof", "not ascii", "too long", "no length", "json body", "head", "post to jwks", "query string",
])
def test_everything_else_reaches_flask_with_its_body(live, machine, case):
    """Each request Flask must answer gets there, and gets Flask's own answer: the body read
    in front of Flask is handed on whole (an unregistered scope needs the form to be refused)."""
    wsgi, recorder = machine
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    method, path, data, ctype = "POST", "/token", "grant_type=client_credentials", FORM
    headers = basic(client_id, secret)
    if case == "wrong secret":
        headers = basic(client_id, secret + "x")
    elif case == "repeated parameter":
        data += "&scope=openid&scope=openid"
    elif case == "resource parameter":
        data += "&resource=https%3A%2F%2Fapi.example"
    elif case == "secret in the body":
        headers, data = {}, f"{data}&client_id={client_id}&client_secret={secret}"
    elif case == "unregistered scope":
        data += "&scope=openid%20profile"
    elif case == "dpop proof":  # a bad one (a good one: test_a_dpop_bound_grant_...)
        headers = {**headers, "DPoP": "not-a-proof"}
    elif case == "not ascii":
        data = "grant_type=client_credentials&scope=op\u00e9nid".encode()
    elif case == "too long":
        data += "&scope=" + "%20" * MAX_FORM
    elif case == "json body":
        data, ctype = json.dumps({"grant_type": "client_credentials"}), "application/json"
    elif case == "head":
        method, path, data, headers, ctype = "HEAD", "/jwks.json", None, {}, None
    elif case == "post to jwks":
        path = "/jwks.json"
    elif case == "query string":  # Authlib reads `scope` from it first: never answered in front of Flask
        path = "/token?scope=openid%20profile"
    environ_data = data if case != "no length" else None
    if case == "no length":  # chunked: no Content-Length
        environ = EnvironBuilder(path=path, method=method, headers={**headers, "Transfer-Encoding": "chunked"},
                                 content_type=ctype, input_stream=io.BytesIO(data.encode())).get_environ()
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
        _, status, _ = run_wsgi_app(wsgi, environ, buffered=True)
        assert recorder.calls == 1 and status.startswith("200")
        return
    fast = call(wsgi, method, path, data=environ_data, headers=headers, content_type=ctype)
    assert recorder.calls == 1
    flask = call(recorder, method, path, data=environ_data, headers=headers, content_type=ctype)
    assert fast[0] == flask[0]
    if fast[1].get("Content-Type") == "application/json" and fast[2]:
        if fast[0] == 200:
            assert json.loads(fast[2]).keys() == json.loads(flask[2]).keys()
        else:
            assert json.loads(fast[2])["error"] == json.loads(flask[2])["error"]
    expected = {
        "wrong secret": 401, "repeated parameter": 400, "resource parameter": 400, "secret in the body": 401,
        "unregistered scope": 400, "dpop proof": 400, "not ascii": 400, "too long": 200, "json body": 400,
        "head": 200, "post to jwks": 405, "query string": 400,
    }
    assert fast[0] == expected[case]


def test_a_client_that_requires_dpop_gets_flasks_refusal(live, machine):
    wsgi, recorder = machine
    made = live.idp("clients", "create", "--name", "Bound", "--grant-type", "client_credentials",
                    "--require-dpop", "--json")
    client_id, secret = json.loads(made.stdout)["client_id"], json.loads(made.stdout)["client_secret"]
    status, _, body = call(wsgi, "POST", "/token", data={"grant_type": "client_credentials"},
                           headers=basic(client_id, secret))
    assert recorder.calls == 1 and status == 400 and json.loads(body)["error"] == "invalid_dpop_proof"


def test_a_failure_in_front_of_flask_is_answered_by_flask(live, machine, monkeypatch):
    """Whatever raises in front of Flask (the database going away, say) is not answered
    there: Flask's path runs and gives its answer (here, once the fault is gone, a token)."""
    from sqlalchemy.exc import OperationalError

    from idp.oauth import fast_token

    wsgi, recorder = machine
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    real = fast_token.plain_request
    faults = []

    def flaky(form, authorization):
        if not faults:
            faults.append(1)
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real(form, authorization)

    monkeypatch.setattr(fast_token, "plain_request", flaky)
    status, _, body = call(wsgi, "POST", "/token", data={"grant_type": "client_credentials"},
                           headers=basic(client_id, secret))
    assert faults and recorder.calls == 1 and status == 200 and json.loads(body)["token_type"] == "Bearer"


def test_a_dpop_bound_grant_is_answered_before_flask_and_its_proof_spent(live, machine):
    """A good proof with the server's nonce: a DPoP token in front of Flask. The same proof
    again, a proof without the nonce, and a proof for another URL all reach Flask, which
    refuses them as it always did."""
    from idp.oauth import dpop
    from idp.oauth.tokens import verify_access_token
    from tests.test_dpop import Holder

    wsgi, recorder = machine
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    holder = Holder()
    form = {"grant_type": "client_credentials"}
    status, _, body = call(wsgi, "POST", "/token", data=form,
                           headers={**basic(client_id, secret), "DPoP": holder.proof("POST", f"{live.issuer}/token")})
    assert recorder.calls == 1 and status == 400 and json.loads(body)["error"] == "use_dpop_nonce"
    with live.app.app_context():
        holder.nonce = dpop.current_nonce()
    proof = holder.proof("POST", f"{live.issuer}/token")
    status, headers, body = call(wsgi, "POST", "/token", data=form, headers={**basic(client_id, secret), "DPoP": proof})
    assert recorder.calls == 1 and status == 200 and headers["DPoP-Nonce"]
    issued = json.loads(body)
    assert issued["token_type"] == "DPoP"
    with live.app.app_context():
        assert verify_access_token(issued["access_token"])["cnf"] == {"jkt": holder.jkt}
    status, _, body = call(wsgi, "POST", "/token", data=form, headers={**basic(client_id, secret), "DPoP": proof})
    assert recorder.calls == 2 and status == 400 and json.loads(body)["error"] == "invalid_dpop_proof"
    elsewhere = holder.proof("POST", f"{live.issuer}/userinfo")
    status, _, body = call(wsgi, "POST", "/token", data=form,
                           headers={**basic(client_id, secret), "DPoP": elsewhere})
    assert recorder.calls == 3 and status == 400 and json.loads(body)["error"] == "invalid_dpop_proof"


def _family(live, client_id, user_id, scope="openid profile"):
    """(refresh token, family id): a family with one live token, as the code exchange makes it."""
    import secrets
    import time
    from datetime import timedelta

    from idp.store import Grant, RefreshToken, db, digest, new_id, utcnow

    value, family = secrets.token_urlsafe(32), new_id()
    with live.app.app_context():
        now = utcnow()
        db.session.execute(Grant.__table__.insert().values(
            id=family, client_id=client_id, user_id=user_id, scope=scope, sid=new_id(),
            auth_time=int(time.time()) - 60, amr=["pwd"], acr=None, created_at=now))
        db.session.execute(RefreshToken.__table__.insert().values(
            token_hash=digest(value), grant_id=family, client_id=client_id, scope=scope, created_at=now,
            expires_at=now + timedelta(seconds=3600), revoked=False))
        db.session.commit()
    return value, family


def _token_state(live, value, family):
    """(the token's rotated_at, the family's revoked_at, whether any of its tokens is still unrevoked)."""
    from sqlalchemy import select

    from idp.store import Grant, RefreshToken, db, digest

    with live.app.app_context():
        rotated = db.session.scalar(select(RefreshToken.rotated_at).where(RefreshToken.token_hash == digest(value)))
        revoked = db.session.scalar(select(Grant.revoked_at).where(Grant.id == family))
        live_left = db.session.scalar(select(RefreshToken.token_hash).where(
            RefreshToken.grant_id == family, RefreshToken.revoked.is_(False)).limit(1))
        return rotated, revoked, live_left is not None


@pytest.fixture
def refresher(live):
    import secrets

    client_id, secret = live.create_client(grant_types=["authorization_code", "refresh_token"],
                                           scope="openid profile email")
    user_id = live.create_user(f"mr-{secrets.token_hex(5)}@example.com")
    return client_id, secret, user_id


def test_plain_refresh_answered_before_flask_as_flask_answers_it(live, machine, refresher):
    from idp.oauth.tokens import verify_access_token

    wsgi, recorder = machine
    client_id, secret, user_id = refresher
    fast_value, fast_family = _family(live, client_id, user_id)
    slow_value, _ = _family(live, client_id, user_id)
    fast = call(wsgi, "POST", "/token", data={"grant_type": "refresh_token", "refresh_token": fast_value},
                headers=basic(client_id, secret))
    assert fast[0] == 200 and recorder.calls == 0
    flask = call(recorder, "POST", "/token", data={"grant_type": "refresh_token", "refresh_token": slow_value},
                 headers=basic(client_id, secret))
    assert flask[0] == 200 and recorder.calls == 1
    assert fast[1].keys() == flask[1].keys()
    assert {k: v for k, v in fast[1].items() if k not in VARYING} == \
        {k: v for k, v in flask[1].items() if k not in VARYING}
    issued, expected = json.loads(fast[2]), json.loads(flask[2])
    assert list(issued) == list(expected) and issued["scope"] == expected["scope"] == "openid profile"
    with live.app.app_context():
        claims = verify_access_token(issued["access_token"])
    assert claims["sub"] == user_id and claims["gid"] == fast_family
    assert _token_state(live, fast_value, fast_family)[0] is not None  # rotated
    # the new token works (in front of Flask again); the old one, presented again, reaches
    # Flask, which revokes the family
    again = call(wsgi, "POST", "/token", data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
                 headers=basic(client_id, secret))
    assert again[0] == 200 and recorder.calls == 1
    reuse = call(wsgi, "POST", "/token", data={"grant_type": "refresh_token", "refresh_token": fast_value},
                 headers=basic(client_id, secret))
    assert reuse[0] == 400 and json.loads(reuse[2])["error"] == "invalid_grant" and recorder.calls == 2
    _, revoked, live_left = _token_state(live, fast_value, fast_family)
    assert revoked is not None and not live_left


@pytest.mark.parametrize("case", ["wrong secret", "repeated parameter", "dpop proof", "resource parameter",
                                  "unknown token", "widened scope", "query string"])
def test_other_refresh_requests_reach_flask_and_spend_nothing(live, machine, refresher, case):
    wsgi, recorder = machine
    client_id, secret, user_id = refresher
    value, family = _family(live, client_id, user_id)
    form = f"grant_type=refresh_token&refresh_token={value}"
    headers, path = basic(client_id, secret), "/token"
    if case == "wrong secret":
        headers = basic(client_id, secret + "x")
    elif case == "repeated parameter":
        form += "&scope=openid&scope=openid"
    elif case == "dpop proof":
        headers = {**headers, "DPoP": "not-a-proof"}
    elif case == "resource parameter":
        form += "&resource=https%3A%2F%2Fapi.example"
    elif case == "unknown token":
        form = "grant_type=refresh_token&refresh_token=not-a-token"
    elif case == "widened scope":
        form += "&scope=openid%20profile%20email"
    elif case == "query string":
        path += "?scope=openid%20profile%20email"  # Authlib reads it: a widened scope, refused
    status, _, body = call(wsgi, "POST", path, data=form, headers=headers, content_type=FORM)
    assert recorder.calls == 1 and status in (400, 401) and "access_token" not in json.loads(body)
    assert _token_state(live, value, family) == (None, None, True)


def test_a_fault_after_the_rotation_is_a_500_and_never_reaches_flask(live, machine, refresher, monkeypatch):
    """Once the rotation is committed the token is spent: a fault then (here the DPoP nonce
    cannot be made) must not hand the request to Flask, which would find the token spent and
    revoke the family. The answer is the one Flask gives an unexpected fault, and the family lives."""
    from idp.oauth import dpop, fast_token

    wsgi, recorder = machine
    client_id, secret, user_id = refresher
    value, family = _family(live, client_id, user_id)

    def broken():
        raise RuntimeError("nonce key unreadable")

    monkeypatch.setattr(dpop, "current_nonce", broken)
    status, headers, body = call(wsgi, "POST", "/token", data={"grant_type": "refresh_token", "refresh_token": value},
                                 headers={**basic(client_id, secret), "X-Request-ID": "r-1"})
    assert status == 500 and recorder.calls == 0
    assert json.loads(body) == {"error": "server_error", "error_description": "internal error"}
    rotated, revoked, live_left = _token_state(live, value, family)
    assert rotated is not None and revoked is None and live_left  # spent, and only that

    # Flask's answer to an unexpected fault in the token view, for comparison
    def raising(request):
        raise RuntimeError("fault in the view")

    monkeypatch.setattr(fast_token, "client_credentials", raising)
    flask = call(recorder, "POST", "/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                 headers=basic(client_id, secret))
    assert flask[0] == 500 and flask[2] == body
    assert headers.keys() == flask[1].keys()
    assert {k: v for k, v in headers.items() if k not in VARYING} == \
        {k: v for k, v in flask[1].items() if k not in VARYING}


def test_a_fault_after_the_rotation_is_logged_with_the_request_id(live, machine, refresher, monkeypatch, caplog):
    import logging

    from idp.oauth import dpop

    wsgi, _ = machine
    client_id, secret, user_id = refresher
    value, _ = _family(live, client_id, user_id)
    monkeypatch.setattr(dpop, "current_nonce", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    with caplog.at_level(logging.INFO):
        status, headers, _ = call(wsgi, "POST", "/token",
                                  data={"grant_type": "refresh_token", "refresh_token": value},
                                  headers=basic(client_id, secret))
    assert status == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "idp.endpoints.machine"]
    assert len(errors) == 1 and errors[0].request_id == headers["X-Request-ID"]
    assert errors[0].client_id == client_id
    assert value not in caplog.text and secret not in caplog.text
    lines = [r for r in caplog.records if r.name == "idp.access" or "POST /token 500" in r.getMessage()]
    assert any("POST /token 500" in r.getMessage() and r.request_id == headers["X-Request-ID"] for r in lines)


def _code(live, client_id, user_id, verifier):
    """A code as the authorization endpoint stores it, with an S256 challenge of `verifier`."""
    import hashlib
    import secrets
    import time
    from datetime import timedelta

    from idp.store import AuthorizationCode, Grant, db, digest, new_id, utcnow

    value, family = secrets.token_urlsafe(36), new_id()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with live.app.app_context():
        now = utcnow()
        db.session.execute(Grant.__table__.insert().values(
            id=family, client_id=client_id, user_id=user_id, scope="openid profile", sid=new_id(),
            auth_time=int(time.time()) - 5, amr=["pwd"], acr=None, created_at=now))
        db.session.execute(AuthorizationCode.__table__.insert().values(
            code_hash=digest(value), grant_id=family, client_id=client_id, user_id=user_id,
            redirect_uri="http://127.0.0.1:9/cb", scope="openid profile", nonce="n", code_challenge=challenge,
            code_challenge_method="S256", auth_time=int(time.time()) - 5, amr=["pwd"], acr=None, sid=None,
            dpop_jkt=None, resource=None, expires_at=now + timedelta(seconds=60)))
        db.session.commit()
    return value, family


def test_plain_code_exchange_answered_before_flask_as_flask_answers_it(live, machine, refresher):
    import secrets

    wsgi, recorder = machine
    client_id, secret, user_id = refresher
    verifier = secrets.token_urlsafe(48)
    answers = []
    for answerer in (wsgi, recorder):
        value, _ = _code(live, client_id, user_id, verifier)
        answers.append(call(answerer, "POST", "/token", headers=basic(client_id, secret), data={
            "grant_type": "authorization_code", "code": value, "redirect_uri": "http://127.0.0.1:9/cb",
            "code_verifier": verifier}))
        if answerer is wsgi:
            assert recorder.calls == 0
    fast, flask = answers
    assert fast[0] == flask[0] == 200 and recorder.calls == 1
    assert fast[1].keys() == flask[1].keys()
    assert {k: v for k, v in fast[1].items() if k not in VARYING} == \
        {k: v for k, v in flask[1].items() if k not in VARYING}
    assert list(json.loads(fast[2])) == list(json.loads(flask[2]))
    # the same code again: Flask's path refuses it and revokes what it issued
    value, family = _code(live, client_id, user_id, verifier)
    form = {"grant_type": "authorization_code", "code": value, "redirect_uri": "http://127.0.0.1:9/cb",
            "code_verifier": verifier}
    assert call(wsgi, "POST", "/token", headers=basic(client_id, secret), data=form)[0] == 200
    again = call(wsgi, "POST", "/token", headers=basic(client_id, secret), data=form)
    assert again[0] == 400 and json.loads(again[2])["error"] == "invalid_grant" and recorder.calls == 2
    with live.app.app_context():
        from sqlalchemy import select

        from idp.store import Grant, db

        assert db.session.scalar(select(Grant.revoked_at).where(Grant.id == family)) is not None
