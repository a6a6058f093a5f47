"""The refresh grant's plain-case path (idp/oauth/fast_refresh.py, answered in front of
Flask by idp/endpoints/machine.py) against Authlib's path.

In process, on the real database (SQLite and PostgreSQL): each request is sent once with
the plain-case path on, and once with it switched off (so Authlib's grant answers, as
before it existed), on twin tokens; the answers must be the same. Which path answered is
recorded from the plain-case function's return value, so a test that means the fast path
fails if the fast path did not answer.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

SCOPE = "openid profile email"


@pytest.fixture(scope="module")
def app(database_url, tmp_path_factory):
    from idp import create_app
    from idp.cli import initialize
    from idp.config import Settings
    from idp.store import db

    instance = tmp_path_factory.mktemp("refresh-fast")
    app = create_app(Settings.from_env({"IDP_DATABASE_URL": _own_database(database_url, instance),
                                        "IDP_INSTANCE_DIR": str(instance), "IDP_LOG_LEVEL": "WARNING"}))
    initialize(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def _own_database(database_url: str, instance) -> str:
    """A database of this module's own on the session's server: the app here seals its
    signing key with its own secret, which the live servers sharing `database_url` cannot read."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{instance / 'idp.db'}"
    from sqlalchemy import create_engine, text

    name = "refresh_fast_" + secrets.token_hex(4)
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return database_url.rsplit("/", 1)[0] + "/" + name


class World:
    """Clients, a person and token families made in the database as the code exchange makes them."""

    def __init__(self, app, monkeypatch):
        from idp.clients import create_client
        from idp.oauth import fast_refresh
        from idp.store import User, db

        self.app, self.http = app, app.test_client()
        self.fast_answers: list[bool] = []
        self.fast_on = True
        inner = fast_refresh.grant

        # Both plain-case answerers (in front of Flask, endpoints/machine.py, and in the
        # token view) go through `grant`: switched off here, Authlib's grant answers.
        def recorded(form, authorization, proof=None):
            if not self.fast_on:
                return None
            found = inner(form, authorization, proof)
            self.fast_answers.append(found is not None)
            return found

        monkeypatch.setattr(fast_refresh, "grant", recorded)
        with app.app_context():
            self.web, self.web_secret = self._client(create_client, "client_secret_basic")
            self.post, self.post_secret = self._client(create_client, "client_secret_post")
            self.other, self.other_secret = self._client(create_client, "client_secret_basic")
            self.public, _ = self._client(create_client, "none")
            self.service, self.service_secret = (lambda c: (c[0].client_id, c[1]))(create_client(
                {"client_name": "rs", "grant_types": ["client_credentials"], "redirect_uris": []}))
            person = User(email=f"rf-{secrets.token_hex(6)}@example.com", email_verified=True, name="R F",
                          given_name="R")
            db.session.add(person)
            db.session.commit()
            self.person = person.id
        self.auth_time = int(time.time()) - 60  # the sign-in every family here comes from

    @staticmethod
    def _client(create_client, method):
        client, secret = create_client({"client_name": "rf", "redirect_uris": ["http://127.0.0.1:9/cb"],
                                        "grant_types": ["authorization_code", "refresh_token"], "scope": SCOPE,
                                        "token_endpoint_auth_method": method}, first_party=True)
        return client.client_id, secret

    def refresh_token(self, client_id: str, *, scope: str = SCOPE, expires_in: int = 3600) -> tuple[str, str]:
        """(refresh token, family id): a fresh family with one live token."""
        from idp.store import Grant, RefreshToken, db, digest, new_id, utcnow

        value, family = secrets.token_urlsafe(32), new_id()
        with self.app.app_context():
            now = utcnow()
            db.session.execute(Grant.__table__.insert().values(
                id=family, client_id=client_id, user_id=self.person, scope=scope, sid=new_id(),
                auth_time=self.auth_time, amr=["pwd"], acr=None, created_at=now))
            db.session.execute(RefreshToken.__table__.insert().values(
                token_hash=digest(value), grant_id=family, client_id=client_id, scope=scope, created_at=now,
                expires_at=now + timedelta(seconds=expires_in), revoked=False))
            db.session.commit()
        return value, family

    def send(self, form: dict, *, basic: tuple[str, str] | None = None, fast: bool = True,
             dpop: str | None = None):
        self.fast_on = fast
        headers = {}
        if basic:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        if dpop is not None:
            headers["DPoP"] = dpop
        return self.http.post("/token", data=form, headers=headers)

    def refresh(self, value: str, *, fast: bool = True, dpop: str | None = None, **extra):
        return self.send({"grant_type": "refresh_token", "refresh_token": value, **extra},
                         basic=(self.web, self.web_secret), fast=fast, dpop=dpop)

    def row(self, value: str):
        from idp.store import RefreshToken, db, digest

        with self.app.app_context():
            return db.session.execute(select(RefreshToken.rotated_at, RefreshToken.revoked)
                                      .where(RefreshToken.token_hash == digest(value))).one()

    def family(self, family_id: str):
        from idp.store import Grant, RefreshToken, db

        with self.app.app_context():
            revoked_at = db.session.scalar(select(Grant.revoked_at).where(Grant.id == family_id))
            live = db.session.scalar(select(RefreshToken.token_hash).where(
                RefreshToken.grant_id == family_id, RefreshToken.revoked.is_(False)).limit(1))
            return revoked_at, live is not None

    def introspect(self, access_token: str) -> bool:
        auth = base64.b64encode(f"{self.service}:{self.service_secret}".encode()).decode()
        resp = self.http.post("/introspect", data={"token": access_token}, headers={"Authorization": f"Basic {auth}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.json["active"] is True


@pytest.fixture
def world(app, monkeypatch):
    return World(app, monkeypatch)


def _claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


VARIABLE_CLAIMS = {"iat", "exp", "jti", "at_hash"}


def test_success_answers_are_the_same_on_both_paths(world):
    fast_value, fast_family = world.refresh_token(world.web)
    slow_value, slow_family = world.refresh_token(world.web)
    fast = world.refresh(fast_value)
    slow = world.refresh(slow_value, fast=False)
    assert world.fast_answers == [True]
    assert fast.status_code == slow.status_code == 200, (fast.get_data(as_text=True), slow.get_data(as_text=True))
    assert list(fast.json) == list(slow.json)  # same members, same order
    assert fast.json["token_type"] == slow.json["token_type"] == "Bearer"
    assert fast.json["scope"] == slow.json["scope"] == SCOPE
    assert fast.json["expires_in"] == slow.json["expires_in"]
    for name in ("Content-Type", "Cache-Control", "Pragma"):
        assert fast.headers[name] == slow.headers[name], name
    assert fast.headers["DPoP-Nonce"] and fast.headers["DPoP-Nonce"] == slow.headers["DPoP-Nonce"]
    for kind in ("access_token", "id_token"):
        a, b = _claims(fast.json[kind]), _claims(slow.json[kind])
        assert a.keys() == b.keys(), kind
        same = {k for k in a if k not in VARIABLE_CLAIMS | {"gid", "sid"}}
        assert {k: a[k] for k in same} == {k: b[k] for k in same}, kind
    assert _claims(fast.json["access_token"])["gid"] == fast_family
    assert _claims(slow.json["access_token"])["gid"] == slow_family
    # both rotated their token and stored the new one, which works (on the fast path again)
    assert world.row(fast_value).rotated_at is not None and world.row(slow_value).rotated_at is not None
    again = world.refresh(fast.json["refresh_token"])
    assert again.status_code == 200 and world.fast_answers == [True, True]
    assert world.introspect(again.json["access_token"])


def test_client_secret_post_and_public_clients_take_the_plain_path(world):
    value, _ = world.refresh_token(world.post)
    resp = world.send({"grant_type": "refresh_token", "refresh_token": value, "client_id": world.post,
                       "client_secret": world.post_secret})
    assert resp.status_code == 200 and "refresh_token" in resp.json
    value, _ = world.refresh_token(world.public)
    resp = world.send({"grant_type": "refresh_token", "refresh_token": value, "client_id": world.public})
    assert resp.status_code == 200 and "refresh_token" in resp.json
    assert world.fast_answers == [True, True]


@pytest.mark.parametrize("first_fast", [True, False])
def test_reuse_after_a_use_revokes_the_family_once(world, first_fast):
    """A spent token presented again: refused, its family revoked, and the access token the
    first use got stops working, whichever path answered the first use."""
    value, family = world.refresh_token(world.web)
    first = world.refresh(value, fast=first_fast)
    assert first.status_code == 200
    assert world.fast_answers == ([True] if first_fast else [])
    assert world.introspect(first.json["access_token"])
    assert world.family(family) == (None, True)

    reuse = world.refresh(value)
    assert reuse.status_code == 400 and reuse.json["error"] == "invalid_grant"
    assert world.fast_answers[-1] is False  # the plain path declined; Authlib's grant detected it
    revoked_at, live_tokens = world.family(family)
    assert revoked_at is not None and not live_tokens
    assert not world.introspect(first.json["access_token"])
    newer = world.refresh(first.json["refresh_token"])
    assert newer.status_code == 400 and newer.json["error"] == "invalid_grant"
    assert world.family(family)[0] == revoked_at  # revoked once: a later reuse changes nothing


def _set(world, table, where, **values):
    from idp.store import db

    with world.app.app_context():
        db.session.execute(update(table).where(where).values(**values))
        db.session.commit()


def _refusal_cases(world):
    """(name, make) pairs: make() returns (value, family, send) for a fresh twin."""
    from idp.store import Grant, User, utcnow

    def plain(**extra):
        def make():
            value, family = world.refresh_token(world.web)
            return value, family, lambda fast: world.refresh(value, fast=fast, **extra)
        return make

    def as_client(client_id, secret):
        def make():
            value, family = world.refresh_token(world.web)
            form = {"grant_type": "refresh_token", "refresh_token": value}
            if secret is None:
                return value, family, lambda fast: world.send({**form, "client_id": client_id}, fast=fast)
            return value, family, lambda fast: world.send(form, basic=(client_id, secret), fast=fast)
        return make

    def public_with_secret():
        value, family = world.refresh_token(world.public)
        form = {"grant_type": "refresh_token", "refresh_token": value, "client_id": world.public,
                "client_secret": "made-up"}
        return value, family, lambda fast: world.send(form, fast=fast)

    def expired():
        value, family = world.refresh_token(world.web, expires_in=-5)
        return value, family, lambda fast: world.refresh(value, fast=fast)

    def revoked_grant():
        value, family = world.refresh_token(world.web)
        _set(world, Grant, Grant.id == family, revoked_at=utcnow())
        return value, family, lambda fast: world.refresh(value, fast=fast)

    def disabled_person():
        value, family = world.refresh_token(world.web)

        def send(fast):
            _set(world, User, User.id == world.person, disabled=True)
            try:
                return world.refresh(value, fast=fast)
            finally:
                _set(world, User, User.id == world.person, disabled=False)
        return value, family, send

    return [
        ("another client's token", as_client(world.other, world.other_secret)),
        ("wrong secret", as_client(world.web, "not-the-secret")),
        ("confidential client without its secret", as_client(world.web, None)),
        ("public client sending a secret", public_with_secret),
        ("widened scope", plain(scope="openid profile email groups")),
        ("scope outside the grant", plain(scope="offline_access")),
        ("unknown token", lambda: ("x", None, lambda fast: world.refresh("not-a-token", fast=fast))),
        ("expired token", expired),
        ("revoked grant", revoked_grant),
        ("disabled person", disabled_person),
    ]


def test_refusals_are_the_same_on_both_paths_and_spend_nothing(world):
    for name, make in _refusal_cases(world):
        answers = []
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
                assert world.row(value).rotated_at is None, name  # the token was not spent
        assert answers[0] == answers[1], name


def test_narrower_scope_is_answered_alike_on_both_paths(world):
    answers = []
    for fast in (True, False):
        value, _ = world.refresh_token(world.web)
        resp = world.refresh(value, fast=fast, scope="openid email")
        assert resp.status_code == 200 and resp.json["scope"] == "openid email"
        answers.append((_claims(resp.json["access_token"])["scope"], sorted(_claims(resp.json["id_token"]))))
    assert world.fast_answers == [True]
    assert answers[0] == answers[1]


def test_a_broken_connection_is_replaced_and_no_request_fails(world):
    """The plain path's statements run on the thread's own connection (store/driver.py): one
    that broke (a database restart; closed here at the driver) fails that request's first
    statement, a read, before anything is written; the connection is dropped, so the token
    view's plain path, which answers the request next, and every later request get a new one."""
    from idp.oauth import fast_refresh

    first, family = world.refresh_token(world.web)
    assert world.refresh(first).status_code == 200  # the thread's connection is made
    assert world.fast_answers == [True]
    with world.app.app_context():
        fast_refresh.OWN.get()[0].close()
    second, _ = world.refresh_token(world.web)
    resp = world.refresh(second)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    # in front of Flask the plain path raised (not recorded); the view's, on a new connection, answered
    assert world.fast_answers == [True, True]
    assert world.row(second).rotated_at is not None
    third, _ = world.refresh_token(world.web)
    assert world.refresh(third).status_code == 200
    assert world.fast_answers == [True, True, True]
    assert world.family(family) == (None, True)



def _lose_the_race(world, monkeypatch) -> None:
    """The plain path reads the presented token as live, then another request rotates it
    before this one writes."""
    from idp.oauth import fast_refresh
    from idp.store import RefreshToken, digest, utcnow

    read = fast_refresh.read_refresh_token

    def read_then_lose_the_race(connection, presented):
        found = read(connection, presented)
        _set(world, RefreshToken, RefreshToken.token_hash == digest(presented), rotated_at=utcnow())
        return found

    monkeypatch.setattr(fast_refresh, "read_refresh_token", read_then_lose_the_race)

def test_a_token_rotated_between_its_read_and_its_rotation_is_not_used_twice(world, monkeypatch):
    """The single-use claim on the plain path (on PostgreSQL one statement that rotates and
    stores the successor, on SQLite the conditional UPDATE then the insert): a token that
    another request rotated after this one read it as live gives this one no token and
    stores no successor; the general path then finds it spent and revokes the family once."""
    from idp.store import RefreshToken, db, digest

    value, family = world.refresh_token(world.web)
    _lose_the_race(world, monkeypatch)
    resp = world.refresh(value)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    # the plain path declined, in front of Flask and in the token view: Authlib's grant answered
    assert world.fast_answers == [False, False]
    with world.app.app_context():
        tokens = db.session.scalars(select(RefreshToken.token_hash).where(RefreshToken.grant_id == family)).all()
    assert tokens == [digest(value)]  # no successor stored
    revoked_at, live_tokens = world.family(family)
    assert revoked_at is not None and not live_tokens


# --- DPoP (RFC 9449) ------------------------------------------------------------------------
# A proof's jti is spent by the general path before any grant runs; the plain path spends it
# only with the rotation, so that whatever it declines, the general path checks the proof
# afresh (and never finds it spent by the plain path).

def _holder(world):
    """A client's DPoP key, with the server's current nonce (the token endpoint requires one)."""
    from idp.oauth import dpop
    from tests.test_dpop import Holder

    holder = Holder()
    with world.app.app_context():
        holder.nonce = dpop.current_nonce()
    return holder


def _proof(world, holder, **claims) -> str:
    return holder.proof("POST", world.app.extensions["idp.settings"].issuer.rstrip("/") + "/token", **claims)


def _spent(world, holder, proof: str) -> bool:
    """Whether the proof's jti marker is stored (the proof was spent)."""
    from idp import single_use
    from idp.store import RevokedToken, db

    marker = single_use.marker_id("dpop", f"{holder.jkt}:{_claims(proof)['jti']}")
    with world.app.app_context():
        return db.session.get(RevokedToken, marker) is not None


def _public_refresh(world, value: str, *, fast: bool = True, dpop: str | None = None):
    return world.send({"grant_type": "refresh_token", "refresh_token": value, "client_id": world.public},
                      fast=fast, dpop=dpop)


def _bind(world, family: str, jkt: str) -> None:
    from idp.store import Grant

    _set(world, Grant, Grant.id == family, dpop_jkt=jkt)


def _family_jkt(world, family: str) -> str | None:
    from idp.store import Grant, db

    with world.app.app_context():
        return db.session.scalar(select(Grant.dpop_jkt).where(Grant.id == family))


def test_a_dpop_refresh_is_answered_on_the_plain_path_as_on_the_general_one(world):
    holder = _holder(world)
    fast_value, fast_family = world.refresh_token(world.web)
    slow_value, _ = world.refresh_token(world.web)
    fast_proof, slow_proof = _proof(world, holder), _proof(world, holder)
    fast = world.refresh(fast_value, dpop=fast_proof)
    slow = world.refresh(slow_value, fast=False, dpop=slow_proof)
    assert world.fast_answers == [True]
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
    assert _claims(fast.json["access_token"])["cnf"] == {"jkt": holder.jkt}
    assert _spent(world, holder, fast_proof) and _spent(world, holder, slow_proof)
    assert world.row(fast_value).rotated_at is not None
    assert _family_jkt(world, fast_family) is None  # a confidential client's family is not bound
    # the new token, with a new proof (fast again), and without one: a Bearer token
    again = world.refresh(fast.json["refresh_token"], dpop=_proof(world, holder))
    assert again.status_code == 200 and again.json["token_type"] == "DPoP" and world.fast_answers == [True, True]
    bearer = world.refresh(again.json["refresh_token"])
    assert bearer.status_code == 200 and bearer.json["token_type"] == "Bearer"
    assert "cnf" not in _claims(bearer.json["access_token"]) and world.fast_answers == [True, True, True]
    assert world.introspect(again.json["access_token"])


def test_a_replayed_proof_is_refused_alike_and_spends_nothing(world):
    holder = _holder(world)
    first, _ = world.refresh_token(world.web)
    proof = _proof(world, holder)
    assert world.refresh(first, dpop=proof).status_code == 200 and world.fast_answers == [True]
    answers = []
    for fast in (True, False):
        value, family = world.refresh_token(world.web)
        resp = world.refresh(value, fast=fast, dpop=proof)
        answers.append((resp.status_code, resp.json.get("error"), resp.json.get("error_description")))
        assert world.row(value).rotated_at is None and world.family(family) == (None, True)
    assert answers[0] == answers[1] == (400, "invalid_dpop_proof", "this DPoP proof was already used")
    assert True not in world.fast_answers[1:]


def test_a_bound_family_takes_a_proof_of_its_key_only(world):
    holder, thief = _holder(world), _holder(world)
    answers = []
    for fast in (True, False):
        value, family = world.refresh_token(world.public)
        _bind(world, family, holder.jkt)
        before = len(world.fast_answers)
        for proof in (_proof(world, thief), None):  # another key, or none
            resp = _public_refresh(world, value, fast=fast, dpop=proof)
            answers.append((fast, resp.status_code, resp.json.get("error"), resp.json.get("error_description")))
        assert True not in world.fast_answers[before:]
        assert world.row(value).rotated_at is None and world.family(family) == (None, True)
    assert [a[1:] for a in answers[:2]] == [a[1:] for a in answers[2:]]
    assert {a[2] for a in answers} == {"invalid_grant"}
    resp = _public_refresh(world, value, dpop=_proof(world, holder))
    assert resp.status_code == 200 and resp.json["token_type"] == "DPoP"
    assert _claims(resp.json["access_token"])["cnf"] == {"jkt": holder.jkt}
    assert world.fast_answers[-1] is True
    resp = _public_refresh(world, resp.json["refresh_token"], dpop=_proof(world, thief))
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"


def test_a_public_clients_family_is_bound_by_its_first_proof(world):
    """RFC 9449 §5: the first proof binds a public client's family (on the general path, once
    a family: `dpop.bind_refresh_family`); from then on the plain path answers its key only."""
    holder, thief = _holder(world), _holder(world)
    value, family = world.refresh_token(world.public)
    first = _public_refresh(world, value, dpop=_proof(world, holder))
    assert first.status_code == 200 and first.json["token_type"] == "DPoP"
    assert True not in world.fast_answers
    assert _family_jkt(world, family) == holder.jkt
    second = _public_refresh(world, first.json["refresh_token"], dpop=_proof(world, holder))
    assert second.status_code == 200 and world.fast_answers[-1] is True
    assert _claims(second.json["access_token"])["cnf"] == {"jkt": holder.jkt}
    for proof in (_proof(world, thief), None):
        resp = _public_refresh(world, second.json["refresh_token"], dpop=proof)
        assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"


def bad_proofs(world, holder) -> dict:
    """{what is wrong: a function making such a proof of `holder`'s key}: one each (fresh jti)."""
    issuer = world.app.extensions["idp.settings"].issuer.rstrip("/")
    return {
        "wrong htu": lambda: holder.proof("POST", f"{issuer}/userinfo"),
        "wrong htm": lambda: holder.proof("GET", f"{issuer}/token"),
        "no nonce": lambda: _proof(world, holder, nonce=None),
        "made-up nonce": lambda: _proof(world, holder, nonce="made-up"),
        "old iat": lambda: _proof(world, holder, iat=int(time.time()) - 600),
        "two proofs": lambda: _proof(world, holder) + ", " + _proof(world, holder),
        "not a JWS": lambda: "not-a-proof",
    }


def assert_bad_proofs_refused_alike(world, send) -> None:
    """Each of `bad_proofs`, on the plain path and on the general one: the same 400 answer,
    none from the plain path, the proof unspent. `send(fast, proof)` presents a fresh grant
    with `proof` and returns (the answer, whether that grant is left untouched)."""
    holder = _holder(world)
    for name, make in bad_proofs(world, holder).items():
        answers = []
        for fast in (True, False):
            before = len(world.fast_answers)
            proof = make()
            resp, untouched = send(fast, proof)
            answers.append((resp.status_code, resp.json.get("error"), resp.json.get("error_description"),
                            resp.headers.get("DPoP-Nonce") is not None))
            assert True not in world.fast_answers[before:], name
            assert untouched, name
            if name not in ("two proofs", "not a JWS"):
                assert not _spent(world, holder, proof), name
        assert answers[0] == answers[1], name
        assert answers[0][0] == 400 and answers[0][1] in ("invalid_dpop_proof", "use_dpop_nonce"), (name, answers)


def test_bad_proofs_are_refused_alike_and_spend_nothing(world):
    def send(fast, proof):
        value, _ = world.refresh_token(world.web)
        resp = world.refresh(value, fast=fast, dpop=proof)
        return resp, world.row(value).rotated_at is None

    assert_bad_proofs_refused_alike(world, send)


def test_a_client_that_requires_dpop_is_answered_on_the_plain_path_with_a_proof(world):
    from idp.store import Client

    _set(world, Client, Client.client_id == world.web, require_dpop=True)
    try:
        value, _ = world.refresh_token(world.web)
        refused = world.refresh(value)
        assert refused.status_code == 400 and refused.json["error"] == "invalid_dpop_proof"
        assert world.row(value).rotated_at is None
        resp = world.refresh(value, dpop=_proof(world, _holder(world)))
        assert resp.status_code == 200 and resp.json["token_type"] == "DPoP"
        assert world.fast_answers[-1] is True
    finally:
        _set(world, Client, Client.client_id == world.web, require_dpop=False)


def test_a_token_rotated_first_leaves_the_proof_to_the_general_path(world, monkeypatch):
    """A token another request rotated after this one read it as live, with a proof: the
    plain path declines with the proof unspent (it is claimed only with the rotation), so the
    general path checks it, once, and answers as for any spent token: invalid_grant (not a
    replayed proof), the family revoked, no successor stored."""
    from idp.store import RefreshToken, db, digest

    holder = _holder(world)
    value, family = world.refresh_token(world.web)
    _lose_the_race(world, monkeypatch)
    proof = _proof(world, holder)
    resp = world.refresh(value, dpop=proof)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.json["error"] == "invalid_grant"
    assert world.fast_answers == [False, False]  # in front of Flask and in the token view
    assert _spent(world, holder, proof)  # by the general path
    with world.app.app_context():
        tokens = db.session.scalars(select(RefreshToken.token_hash).where(RefreshToken.grant_id == family)).all()
    assert tokens == [digest(value)]
    revoked_at, live_tokens = world.family(family)
    assert revoked_at is not None and not live_tokens
