"""The code exchange's plain-case path (idp/oauth/fast_code.py, answered in front of Flask by
idp/endpoints/machine.py and in the token view) against Authlib's path.

In process, on the real database (SQLite and PostgreSQL): each exchange is sent once with
the plain-case path on and once with it switched off (so Authlib's grant answers, as before
it existed), on twin codes; the answers, and the state each leaves (code spent or not,
family revoked or not), must be the same. Which path answered is recorded from the
plain-case function's return value, so a test that means the fast path fails if it did not answer.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests import test_refresh_fast
from tests.test_refresh_fast import (
    VARIABLE_CLAIMS,
    _claims,
    _holder,
    _proof,
    _set,
    _spent,
    assert_bad_proofs_refused_alike,
)

app = test_refresh_fast.app  # the fixture: an app of its own, on its own database

SCOPE = "openid profile email"
REDIRECT = "http://127.0.0.1:9/cb"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class World:
    """Clients, a person and codes made in the database as the authorization endpoint makes them."""

    def __init__(self, app, monkeypatch):
        from idp.clients import create_client
        from idp.oauth import fast_code
        from idp.store import User, db

        self.app, self.http = app, app.test_client()
        self.fast_answers: list[bool] = []
        self.fast_on = True
        inner = fast_code.grant

        def recorded(form, authorization, proof=None):
            if not self.fast_on:
                return None
            found = inner(form, authorization, proof)
            self.fast_answers.append(found is not None)
            return found

        monkeypatch.setattr(fast_code, "grant", recorded)
        with app.app_context():
            self.web, self.web_secret = self._client(create_client, "client_secret_basic")
            self.post, self.post_secret = self._client(create_client, "client_secret_post")
            self.other, self.other_secret = self._client(create_client, "client_secret_basic")
            self.public, _ = self._client(create_client, "none")
            self.service, self.service_secret = (lambda c: (c[0].client_id, c[1]))(create_client(
                {"client_name": "rs", "grant_types": ["client_credentials"], "redirect_uris": []}))
            person = User(email=f"cf-{secrets.token_hex(6)}@example.com", email_verified=True, name="C F",
                          given_name="C")
            db.session.add(person)
            db.session.commit()
            self.person = person.id

    @staticmethod
    def _client(create_client, method):
        client, secret = create_client({"client_name": "cf", "redirect_uris": [REDIRECT],
                                        "grant_types": ["authorization_code", "refresh_token"], "scope": SCOPE,
                                        "token_endpoint_auth_method": method}, first_party=True)
        return client.client_id, secret

    def code(self, client_id: str, *, pkce: bool = True, expires_in: int = 60, nonce: str | None = "n-1",
             dpop_jkt: str | None = None):
        """(code, verifier or None, family id): a fresh code as save_authorization_code stores it."""
        from idp.store import AuthorizationCode, Grant, db, digest, new_id, utcnow

        value, verifier, family = secrets.token_urlsafe(36), secrets.token_urlsafe(48), new_id()
        with self.app.app_context():
            now = utcnow()
            db.session.execute(Grant.__table__.insert().values(
                id=family, client_id=client_id, user_id=self.person, scope=SCOPE, sid=new_id(),
                auth_time=int(time.time()) - 5, amr=["pwd"], acr=None, created_at=now))
            db.session.execute(AuthorizationCode.__table__.insert().values(
                code_hash=digest(value), grant_id=family, client_id=client_id, user_id=self.person,
                redirect_uri=REDIRECT, scope=SCOPE, nonce=nonce,
                code_challenge=_challenge(verifier) if pkce else None,
                code_challenge_method="S256" if pkce else None, auth_time=int(time.time()) - 5, amr=["pwd"],
                acr=None, sid=None, dpop_jkt=dpop_jkt, resource=None, expires_at=now + timedelta(seconds=expires_in)))
            db.session.commit()
        return value, (verifier if pkce else None), family

    def send(self, form: dict, *, basic: tuple[str, str] | None = None, fast: bool = True,
             dpop: str | None = None):
        self.fast_on = fast
        headers = {}
        if basic:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        if dpop is not None:
            headers["DPoP"] = dpop
        return self.http.post("/token", data=form, headers=headers)

    def exchange(self, value: str, verifier: str | None, *, fast: bool = True, dpop: str | None = None, **extra):
        form = {"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT}
        if verifier is not None:
            form["code_verifier"] = verifier
        return self.send({**form, **extra}, basic=(self.web, self.web_secret), fast=fast, dpop=dpop)

    def public_exchange(self, value: str, verifier: str, *, fast: bool = True, dpop: str | None = None):
        return self.send({"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT,
                          "code_verifier": verifier, "client_id": self.public}, fast=fast, dpop=dpop)

    def state(self, value: str, family_id: str):
        """(code spent, family revoked, refresh tokens of the family still live)."""
        from idp.store import AuthorizationCode, Grant, RefreshToken, db, digest

        with self.app.app_context():
            used = db.session.scalar(select(AuthorizationCode.used_at)
                                     .where(AuthorizationCode.code_hash == digest(value)))
            revoked = db.session.scalar(select(Grant.revoked_at).where(Grant.id == family_id))
            live = db.session.scalar(select(RefreshToken.token_hash).where(
                RefreshToken.grant_id == family_id, RefreshToken.revoked.is_(False)).limit(1))
            return used is not None, revoked is not None, live is not None

    def introspect(self, access_token: str) -> bool:
        auth = base64.b64encode(f"{self.service}:{self.service_secret}".encode()).decode()
        resp = self.http.post("/introspect", data={"token": access_token}, headers={"Authorization": f"Basic {auth}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.json["active"] is True


@pytest.fixture
def world(app, monkeypatch):
    return World(app, monkeypatch)


def test_success_answers_are_the_same_on_both_paths(world):
    fast_code, fast_verifier, fast_family = world.code(world.web)
    slow_code, slow_verifier, slow_family = world.code(world.web)
    fast = world.exchange(fast_code, fast_verifier)
    slow = world.exchange(slow_code, slow_verifier, fast=False)
    assert world.fast_answers == [True]
    assert fast.status_code == slow.status_code == 200, (fast.get_data(as_text=True), slow.get_data(as_text=True))
    assert list(fast.json) == list(slow.json)  # same members, same order
    assert fast.json["token_type"] == slow.json["token_type"] == "Bearer"
    assert fast.json["scope"] == slow.json["scope"] == SCOPE
    assert fast.json["expires_in"] == slow.json["expires_in"]
    assert sorted(fast.headers.keys()) == sorted(slow.headers.keys())
    for name in ("Content-Type", "Cache-Control", "Pragma", "X-Content-Type-Options"):
        assert fast.headers[name] == slow.headers[name], name
    assert fast.headers["DPoP-Nonce"] and fast.headers["DPoP-Nonce"] == slow.headers["DPoP-Nonce"]
    for kind in ("access_token", "id_token"):
        a, b = _claims(fast.json[kind]), _claims(slow.json[kind])
        assert a.keys() == b.keys(), kind
        same = {k for k in a if k not in VARIABLE_CLAIMS | {"gid", "sid"}}
        assert {k: a[k] for k in same} == {k: b[k] for k in same}, kind
    assert _claims(fast.json["id_token"])["nonce"] == "n-1"
    assert _claims(fast.json["access_token"])["gid"] == fast_family
    assert world.state(fast_code, fast_family) == world.state(slow_code, slow_family) == (True, False, True)
    assert world.introspect(fast.json["access_token"])
    # the refresh token issued works
    again = world.send({"grant_type": "refresh_token", "refresh_token": fast.json["refresh_token"]},
                       basic=(world.web, world.web_secret))
    assert again.status_code == 200


def test_client_secret_post_and_public_clients_take_the_plain_path(world):
    value, verifier, _ = world.code(world.post)
    resp = world.send({"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT,
                       "code_verifier": verifier, "client_id": world.post, "client_secret": world.post_secret})
    assert resp.status_code == 200 and "refresh_token" in resp.json
    value, verifier, _ = world.code(world.public)
    resp = world.send({"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT,
                       "code_verifier": verifier, "client_id": world.public})
    assert resp.status_code == 200 and "id_token" in resp.json
    assert world.fast_answers == [True, True]


@pytest.mark.parametrize("first_fast", [True, False])
def test_a_reused_code_is_refused_and_revokes_what_it_issued(world, first_fast):
    value, verifier, family = world.code(world.web)
    first = world.exchange(value, verifier, fast=first_fast)
    assert first.status_code == 200
    assert world.fast_answers == ([True] if first_fast else [])
    assert world.introspect(first.json["access_token"])
    reuse = world.exchange(value, verifier)
    assert reuse.status_code == 400 and reuse.json["error"] == "invalid_grant"
    assert world.fast_answers[-1] is False  # the plain path declined; Authlib's grant detected it
    assert world.state(value, family) == (True, True, False)
    assert not world.introspect(first.json["access_token"])
    refreshed = world.send({"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
                           basic=(world.web, world.web_secret))
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"


def _refusal_cases(world):
    """(name, make) pairs: make() returns (code, family, send) for a fresh twin."""

    def plain(verifier=None, **extra):
        def make():
            value, real, family = world.code(world.web)
            return value, family, lambda fast: world.exchange(value, real if verifier is None else verifier,
                                                              fast=fast, **extra)
        return make

    def as_client(client_id, secret):
        def make():
            value, verifier, family = world.code(world.web)
            form = {"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT,
                    "code_verifier": verifier}
            if secret is None:
                return value, family, lambda fast: world.send({**form, "client_id": client_id}, fast=fast)
            return value, family, lambda fast: world.send(form, basic=(client_id, secret), fast=fast)
        return make

    def public_without_verifier():
        value, _, family = world.code(world.public)
        form = {"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT, "client_id": world.public}
        return value, family, lambda fast: world.send(form, fast=fast)

    def verifier_without_challenge():
        value, _, family = world.code(world.web, pkce=False)
        return value, family, lambda fast: world.exchange(value, secrets.token_urlsafe(48), fast=fast)

    def expired():
        value, verifier, family = world.code(world.web, expires_in=-5)
        return value, family, lambda fast: world.exchange(value, verifier, fast=fast)

    def disabled_person():
        from idp.store import User, db

        value, verifier, family = world.code(world.web)

        def set_disabled(flag):
            with world.app.app_context():
                db.session.execute(User.__table__.update().where(User.id == world.person).values(disabled=flag))
                db.session.commit()

        def send(fast):
            set_disabled(True)
            try:
                return world.exchange(value, verifier, fast=fast)
            finally:
                set_disabled(False)
        return value, family, send

    return [
        ("wrong verifier", plain(verifier=secrets.token_urlsafe(48))),
        ("malformed verifier", plain(verifier="short")),
        ("missing verifier", plain(verifier="")),
        ("public client without verifier", public_without_verifier),
        ("verifier without challenge", verifier_without_challenge),
        ("wrong redirect_uri", plain(redirect_uri="http://127.0.0.1:9/other")),
        ("missing redirect_uri", plain(redirect_uri="")),
        ("expired code", expired),
        ("another client's code", as_client(world.other, world.other_secret)),
        ("wrong secret", as_client(world.web, "not-the-secret")),
        ("confidential client without its secret", as_client(world.web, None)),
        ("unknown code", lambda: ("x", None, lambda fast: world.exchange("not-a-code", "v" * 43, fast=fast))),
        ("disabled person", disabled_person),
    ]


def test_refusals_are_the_same_on_both_paths_and_leave_the_same_state(world):
    for name, make in _refusal_cases(world):
        answers, states = [], []
        for fast in (True, False):
            value, family, send = make()
            before = len(world.fast_answers)
            resp = send(fast)
            if fast:  # declined (or never reached: the request was not a plain one)
                assert True not in world.fast_answers[before:], name
            body = resp.json
            answers.append((resp.status_code, body.get("error"), body.get("error_description"),
                            resp.headers.get("WWW-Authenticate")))
            assert resp.status_code in (400, 401) and "access_token" not in body, (name, body)
            if family is not None:
                states.append(world.state(value, family))
        assert answers[0] == answers[1], name
        assert len(set(states)) <= 1, (name, states)
        assert not any(state[2] for state in states), name  # no refresh token issued


def test_pkce_is_checked_in_constant_time(world, monkeypatch):
    """Both paths compare the verifier's hash to the challenge with hmac.compare_digest."""
    import hmac

    from idp.oauth import grants

    compared = []
    real = hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(grants.hmac, "compare_digest", recording)
    for fast in (True, False):
        value, verifier, _ = world.code(world.web)
        assert world.exchange(value, verifier, fast=fast).status_code == 200
    assert len([pair for pair in compared if len(pair[0]) == 43]) == 2


def test_a_fault_after_the_commit_is_a_500_and_the_code_stays_spent_without_revocation(world, monkeypatch):
    from idp.oauth import dpop

    value, verifier, family = world.code(world.web)
    monkeypatch.setattr(dpop, "current_nonce", lambda: (_ for _ in ()).throw(RuntimeError("nonce key unreadable")))
    resp = world.exchange(value, verifier)
    assert world.fast_answers == [True]
    assert resp.status_code == 500 and resp.json == {"error": "server_error", "error_description": "internal error"}
    assert world.state(value, family) == (True, False, True)  # spent, its token stored, nothing revoked


def test_two_concurrent_exchanges_of_one_code_give_one_token_and_revoke_it(world):
    """Both reach the plain path's UPDATE at about the same time: one spends the code, the
    other finds it spent, declines with nothing written, and Authlib's grant refuses it and
    revokes the family, so the first one's tokens die too (RFC 6749 §4.1.2)."""
    import threading

    value, verifier, family = world.code(world.web)
    barrier, answers = threading.Barrier(2), []
    auth = "Basic " + base64.b64encode(f"{world.web}:{world.web_secret}".encode()).decode()
    form = {"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT, "code_verifier": verifier}

    def exchange():
        http = world.app.test_client()
        barrier.wait()
        resp = http.post("/token", data=form, headers={"Authorization": auth})
        answers.append((resp.status_code, resp.json))

    threads = [threading.Thread(target=exchange) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(status for status, _ in answers) == [200, 400]
    assert world.fast_answers.count(True) == 1  # the plain path answered the one that spent it
    refused = next(body for status, body in answers if status == 400)
    assert refused["error"] == "invalid_grant"
    issued = next(body for status, body in answers if status == 200)
    assert world.state(value, family) == (True, True, False)
    assert not world.introspect(issued["access_token"])


# --- DPoP (RFC 9449) ------------------------------------------------------------------------
# As for the refresh grant (test_refresh_fast): the general path spends a proof's jti before
# any grant runs, the plain path only with the code, so whatever it declines, the general
# path checks the proof afresh and gives the answer.

def _family_jkt(world, family: str) -> str | None:
    from idp.store import Grant, db

    with world.app.app_context():
        return db.session.scalar(select(Grant.dpop_jkt).where(Grant.id == family))


def _same_dpop_answers(fast, slow, jkt: str) -> None:
    assert fast.status_code == slow.status_code == 200, (fast.get_data(as_text=True), slow.get_data(as_text=True))
    assert list(fast.json) == list(slow.json)
    assert fast.json["token_type"] == slow.json["token_type"] == "DPoP"
    for name in ("Content-Type", "Cache-Control", "Pragma", "DPoP-Nonce"):
        assert fast.headers[name] == slow.headers[name], name
    for kind in ("access_token", "id_token"):
        a, b = _claims(fast.json[kind]), _claims(slow.json[kind])
        assert a.keys() == b.keys(), kind
        same = {k for k in a if k not in VARIABLE_CLAIMS | {"gid", "sid"}}
        assert {k: a[k] for k in same} == {k: b[k] for k in same}, kind
    assert _claims(fast.json["access_token"])["cnf"] == {"jkt": jkt}


def test_a_dpop_exchange_is_answered_on_the_plain_path_as_on_the_general_one(world):
    holder = _holder(world)
    fast_code, fast_verifier, fast_family = world.code(world.web)
    slow_code, slow_verifier, slow_family = world.code(world.web)
    fast_proof, slow_proof = _proof(world, holder), _proof(world, holder)
    fast = world.exchange(fast_code, fast_verifier, dpop=fast_proof)
    slow = world.exchange(slow_code, slow_verifier, fast=False, dpop=slow_proof)
    assert world.fast_answers == [True]
    _same_dpop_answers(fast, slow, holder.jkt)
    assert _spent(world, holder, fast_proof) and _spent(world, holder, slow_proof)
    assert world.state(fast_code, fast_family) == world.state(slow_code, slow_family) == (True, False, True)
    # a confidential client's family is not bound (RFC 9449 §5), on either path
    assert _family_jkt(world, fast_family) is None and _family_jkt(world, slow_family) is None
    assert world.introspect(fast.json["access_token"])
    # a code asked for with dpop_jkt, exchanged with a proof of that key
    value, verifier, _ = world.code(world.web, dpop_jkt=holder.jkt)
    bound = world.exchange(value, verifier, dpop=_proof(world, holder))
    assert bound.status_code == 200 and bound.json["token_type"] == "DPoP" and world.fast_answers == [True, True]
    assert _claims(bound.json["access_token"])["cnf"] == {"jkt": holder.jkt}


def test_a_public_clients_family_is_bound_by_the_exchanges_proof_on_both_paths(world):
    holder, thief = _holder(world), _holder(world)
    fast_code, fast_verifier, fast_family = world.code(world.public)
    slow_code, slow_verifier, slow_family = world.code(world.public)
    fast = world.public_exchange(fast_code, fast_verifier, dpop=_proof(world, holder))
    slow = world.public_exchange(slow_code, slow_verifier, fast=False, dpop=_proof(world, holder))
    assert world.fast_answers == [True]
    _same_dpop_answers(fast, slow, holder.jkt)
    assert _family_jkt(world, fast_family) == _family_jkt(world, slow_family) == holder.jkt
    # the bound family's refresh token: a proof of its key only
    for proof in (_proof(world, thief), None):
        resp = world.send({"grant_type": "refresh_token", "refresh_token": fast.json["refresh_token"],
                           "client_id": world.public}, dpop=proof)
        assert resp.status_code == 400 and resp.json["error"] == "invalid_grant", resp.json
    resp = world.send({"grant_type": "refresh_token", "refresh_token": fast.json["refresh_token"],
                       "client_id": world.public}, dpop=_proof(world, holder))
    assert resp.status_code == 200 and _claims(resp.json["access_token"])["cnf"] == {"jkt": holder.jkt}


def test_a_code_bound_with_dpop_jkt_is_refused_alike_with_another_key_or_none(world):
    """The general path spends the code before DPoPCodeBinding refuses it (Authlib consumes a
    code before its extensions' checks): the plain path declines, and the state is the same."""
    holder, thief = _holder(world), _holder(world)
    for proof in (lambda: _proof(world, thief), lambda: None):
        answers, states = [], []
        for fast in (True, False):
            value, verifier, family = world.code(world.web, dpop_jkt=holder.jkt)
            before = len(world.fast_answers)
            resp = world.exchange(value, verifier, fast=fast, dpop=proof())
            assert True not in world.fast_answers[before:]
            answers.append((resp.status_code, resp.json.get("error"), resp.json.get("error_description")))
            states.append(world.state(value, family))
        assert answers[0] == answers[1] == (400, "invalid_grant", "the code is bound to another DPoP key (dpop_jkt)")
        assert states[0] == states[1] == (True, False, False)


def test_a_replayed_proof_is_refused_alike_and_the_code_not_spent(world):
    holder = _holder(world)
    for first_fast in (True, False):  # the proof spent by either path first
        value, verifier, _ = world.code(world.web)
        proof = _proof(world, holder)
        before = len(world.fast_answers)
        assert world.exchange(value, verifier, fast=first_fast, dpop=proof).status_code == 200
        assert world.fast_answers[before:] == ([True] if first_fast else [])
        answers = []
        for fast in (True, False):
            value, verifier, family = world.code(world.web)
            before = len(world.fast_answers)
            resp = world.exchange(value, verifier, fast=fast, dpop=proof)
            assert True not in world.fast_answers[before:]
            answers.append((resp.status_code, resp.json.get("error"), resp.json.get("error_description")))
            assert world.state(value, family) == (False, False, False)  # the code can be exchanged again
            assert world.exchange(value, verifier, dpop=_proof(world, holder)).status_code == 200
        assert answers[0] == answers[1] == (400, "invalid_dpop_proof", "this DPoP proof was already used")


def test_bad_proofs_are_refused_alike_and_spend_nothing(world):
    def send(fast, proof):
        value, verifier, family = world.code(world.web)
        resp = world.exchange(value, verifier, fast=fast, dpop=proof)
        return resp, world.state(value, family) == (False, False, False)

    assert_bad_proofs_refused_alike(world, send)


def test_a_client_that_requires_dpop_is_answered_on_the_plain_path_with_a_proof(world):
    from idp.store import Client

    _set(world, Client, Client.client_id == world.web, require_dpop=True)
    try:
        value, verifier, family = world.code(world.web)
        refused = world.exchange(value, verifier)
        assert refused.status_code == 400 and refused.json["error"] == "invalid_dpop_proof"
        assert world.state(value, family) == (False, False, False)
        resp = world.exchange(value, verifier, dpop=_proof(world, _holder(world)))
        assert resp.status_code == 200 and resp.json["token_type"] == "DPoP"
        assert world.fast_answers[-1] is True
    finally:
        _set(world, Client, Client.client_id == world.web, require_dpop=False)


def test_a_code_used_first_by_another_exchange_leaves_the_proof_to_the_general_path(world, monkeypatch):
    """A code another exchange used after this one read it as live, with a proof: the plain
    path declines with the proof unspent (it is claimed only with the code), so the general
    path checks it, once, and answers as for any used code: invalid_grant (not a replayed
    proof), what the code issued revoked."""
    from idp.oauth import fast_code
    from idp.store import AuthorizationCode, digest, utcnow

    holder = _holder(world)
    value, verifier, family = world.code(world.web)
    read = fast_code.read_code

    def read_then_lose_the_race(connection, presented):
        found = read(connection, presented)
        _set(world, AuthorizationCode, AuthorizationCode.code_hash == digest(presented), used_at=utcnow())
        return found

    monkeypatch.setattr(fast_code, "read_code", read_then_lose_the_race)
    proof = _proof(world, holder)
    resp = world.exchange(value, verifier, dpop=proof)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.json["error"] == "invalid_grant"
    assert world.fast_answers == [False, False]  # in front of Flask and in the token view
    assert _spent(world, holder, proof)  # by the general path
    assert world.state(value, family) == (True, True, False)
