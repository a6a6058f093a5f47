"""Token endpoint grants and client authentication, revocation and introspection."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify


def _tokens(live, browser, client_id, secret, email, scope="openid profile email offline_access"):
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, scope=scope, code_challenge=challenge,
                                     code_challenge_method="S256"))
    resp = page if page.is_redirect else browser.sign_in(page, email, "token-tests-pw")
    code = redirect_params(resp)["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_refresh_token_rotation_and_reuse_detection(live, browser):
    live.create_user("refresh@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    first = _tokens(live, browser, client_id, secret, "refresh@example.com")
    r1 = first["refresh_token"]
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": r1}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["refresh_token"] != r1
    _, claims = verify(live.issuer, second["id_token"])
    assert claims["aud"] == client_id
    # the old token comes back: refused, and the whole family dies
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": r1}, auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
                 auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {second['access_token']}"}
    assert requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 401


def test_concurrent_uses_of_one_refresh_token_one_wins_and_the_family_dies(live, browser):
    """The same refresh token sent several times at once to the two-process server: the
    rotation is a conditional UPDATE, so exactly one request gets tokens and the others
    count as reuse, which revokes the family with what the winner got."""
    log_start = live.log_size()
    live.create_user("rrace@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    refresh = _tokens(live, browser, client_id, secret, "rrace@example.com")["refresh_token"]
    senders = 6
    barrier = threading.Barrier(senders)

    def send(_):
        barrier.wait(timeout=30)
        return token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refresh}, auth=(client_id, secret))

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(send, range(senders)))
    won = [resp for resp in answers if resp.status_code == 200]
    assert len(won) == 1, [resp.text for resp in answers]
    assert all(resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
               for resp in answers if resp.status_code != 200)
    tokens = won[0].json()
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                 auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 401
    assert "Traceback" not in live.log_since(log_start)


def test_refresh_token_of_a_disabled_person_is_refused_until_enabled(live, browser):
    """The person is read with the token: a disabled account gets nothing, even while its
    family stands (only the row is changed here, nothing revoked), and the token is not spent."""
    from sqlalchemy import update

    from idp.store import User, db

    uid = live.create_user("rdisabled@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    refresh = _tokens(live, browser, client_id, secret, "rdisabled@example.com")["refresh_token"]

    def set_disabled(value):
        with live.db():
            db.session.execute(update(User).where(User.id == uid).values(disabled=value))
            db.session.commit()

    set_disabled(True)
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refresh}, auth=(client_id, secret))
    assert resp.status_code == 400 and "access_token" not in resp.json()
    set_disabled(False)
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refresh}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text


def test_refresh_token_is_bound_to_its_client_and_scope(live, browser):
    live.create_user("rbound@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    other_id, other_secret = live.create_client()
    first = _tokens(live, browser, client_id, secret, "rbound@example.com", scope="openid email")
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                 auth=(other_id, other_secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                               "scope": "openid profile"}, auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"


def test_a_repeated_parameter_is_refused_and_spends_nothing(live, browser):
    """RFC 6749 §3.2: parameters MUST NOT be sent more than once (`resource` may, RFC 8707).
    Authlib's grants took the first of them; the token endpoint now refuses the request
    before any grant runs, so a refresh token sent twice in one request is not spent."""
    cc_id, cc_secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], scope="openid")
    for form in ([("grant_type", "client_credentials"), ("scope", "openid"), ("scope", "openid")],
                 [("grant_type", "client_credentials"), ("grant_type", "client_credentials")]):
        resp = token(live.issuer, form, auth=(cc_id, cc_secret))
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
        assert resp.headers["DPoP-Nonce"] and resp.headers["Cache-Control"] == "no-store"
    live.create_user("repeated@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    refresh = _tokens(live, browser, client_id, secret, "repeated@example.com")["refresh_token"]
    resp = token(live.issuer, [("grant_type", "refresh_token"), ("refresh_token", refresh),
                               ("refresh_token", refresh)], auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refresh}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text


def test_client_credentials(live):
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "refresh_token" not in body and "id_token" not in body
    header, claims = verify(live.issuer, body["access_token"])
    assert header["typ"] == "at+jwt" and claims["sub"] == client_id and claims["client_id"] == client_id
    # client_secret_post for a client registered for it
    post_id, post_secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[],
                                              token_endpoint_auth_method="client_secret_post")
    resp = token(live.issuer, {"grant_type": "client_credentials", "client_id": post_id,
                               "client_secret": post_secret})
    assert resp.status_code == 200
    # ... but not by Basic: the registered method is the only one accepted
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(post_id, post_secret))
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


def test_basic_credentials_are_form_decoded(live):
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    # RFC 6749 §2.3.1: id and secret are form-encoded before Basic; encode every character
    encoded = "".join(f"%{b:02X}" for b in client_id.encode()) + ":" + quote(secret, safe="")
    header = "Basic " + base64.b64encode(encoded.encode()).decode()
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": header}, timeout=10)
    assert resp.status_code == 200, resp.text


def test_client_authentication_failures(live):
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret + "x"))
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    assert resp.headers.get("WWW-Authenticate", "").startswith("Basic")
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=("nobody", "nothing"))
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    resp = token(live.issuer, {"grant_type": "client_credentials"})
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client"
    resp = token(live.issuer, {"grant_type": "password", "username": "a", "password": "b"}, auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"


def test_client_credentials_refused_for_clients_not_registered_for_it(live):
    client_id, secret = live.create_client()  # authorization_code + refresh_token only
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client"


def _assertion(key, client_id, aud, jti=None, exp_in=60):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + exp_in,
              "jti": jti or secrets.token_hex(8)}
    return jwt.encode({"alg": "ES256", "kid": "k1"}, claims, key)


def test_private_key_jwt(live):
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[],
                                           token_endpoint_auth_method="private_key_jwt",
                                           jwks={"keys": [key.as_dict(private=False)]})
    assert secret is None
    aud = live.meta["token_endpoint"]
    assertion = _assertion(key, client_id, aud)
    data = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    assert token(live.issuer, data).status_code == 200
    # replayed assertion
    resp = token(live.issuer, data)
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client"
    # signed by another key
    other = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    resp = token(live.issuer, {**data, "client_assertion": _assertion(other, client_id, aud)})
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client"
    # wrong audience, expired
    for bad in (_assertion(key, client_id, "https://elsewhere.example/token"),
                _assertion(key, client_id, aud, exp_in=-300)):
        resp = token(live.issuer, {**data, "client_assertion": bad})
        assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client"


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _key_jwt_client(live):
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    client_id, _ = live.create_client(grant_types=["client_credentials"], redirect_uris=[],
                                      token_endpoint_auth_method="private_key_jwt",
                                      jwks={"keys": [key.as_dict(private=False)]})
    return key, client_id


def _authenticate(live, key, client_id, **claims) -> requests.Response:
    """A client_credentials request authenticated by an assertion with these claims
    (the defaults, iat now and exp a minute later, unless overridden; None drops one)."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": live.meta["token_endpoint"], "iat": now, "exp": now + 60,
            "jti": secrets.token_hex(8), **claims}
    assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, {k: v for k, v in body.items() if v is not None}, key)
    return token(live.issuer, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                               "client_assertion": assertion})


def _marker(live, client_id: str, jti: str):
    from idp.store import RevokedToken, db, digest

    with live.db():
        return db.session.get(RevokedToken, f"assertion:{digest(f'{client_id}:{jti}')}"[:64])


def test_private_key_jwt_assertions_living_too_long_are_refused(live):
    key, client_id = _key_jwt_client(live)
    now = int(time.time())
    for claims in ({"exp": now + 301},  # iat now: one second over five minutes
                   {"exp": now + 365 * 86400},
                   {"iat": None, "exp": now + 3600},
                   {"iat": now - 3600, "exp": now + 60},  # made an hour ago, still "valid" for a minute
                   {"exp": 10**12}):  # past year 9999
        jti = secrets.token_hex(8)
        resp = _authenticate(live, key, client_id, jti=jti, **claims)
        assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", (claims, resp.text)
        assert _marker(live, client_id, jti) is None  # a refused assertion stores nothing
    for claims in ({"exp": now + 300}, {"iat": None, "exp": now + 120}):
        resp = _authenticate(live, key, client_id, **claims)
        assert resp.status_code == 200, (claims, resp.text)


def test_private_key_jwt_replay_is_refused_as_long_as_the_assertion_is_accepted(live):
    from datetime import UTC, datetime

    from idp.housekeeping import purge_expired

    key, client_id = _key_jwt_client(live)
    jti, exp = secrets.token_hex(8), int(time.time()) + 2
    assertion = {"jti": jti, "exp": exp}
    assert _authenticate(live, key, client_id, **assertion).status_code == 200
    # Authlib accepts an assertion until exp + 60 s (its clock-skew leeway): the marker
    # must be kept at least that long, housekeeping included.
    leeway = 60
    marker = _marker(live, client_id, jti)
    assert marker.expires_at >= datetime.fromtimestamp(exp + leeway, UTC).replace(tzinfo=None)
    time.sleep(max(0.0, exp + 1.5 - time.time()))
    with live.db():
        purge_expired()
    assert _marker(live, client_id, jti) is not None
    resp = _authenticate(live, key, client_id, **assertion)
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", resp.text


def test_revocation(live, browser):
    live.create_user("revoke@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    body = _tokens(live, browser, client_id, secret, "revoke@example.com")
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    # another client cannot revoke it
    other_id, other_secret = live.create_client()
    resp = requests.post(f"{live.issuer}/revoke", data={"token": body["access_token"]},
                         auth=(other_id, other_secret), timeout=10)
    assert resp.status_code == 400
    assert requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 200
    # unauthenticated callers are refused
    resp = requests.post(f"{live.issuer}/revoke", data={"token": body["access_token"]}, timeout=10)
    assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client"
    resp = requests.post(f"{live.issuer}/revoke", data={"token": body["access_token"],
                                                         "token_type_hint": "access_token"},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200
    assert requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 401
    # revoking a refresh token ends its grant; unknown tokens are answered 200
    resp = requests.post(f"{live.issuer}/revoke", data={"token": body["refresh_token"]},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                 auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    resp = requests.post(f"{live.issuer}/revoke", data={"token": "not-a-token"}, auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200


def test_introspection(live, browser):
    live.create_user("intro@example.com", "token-tests-pw")
    client_id, secret = live.create_client()
    rs_id, rs_secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    body = _tokens(live, browser, client_id, secret, "intro@example.com")
    resp = requests.post(f"{live.issuer}/introspect", data={"token": body["access_token"]}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    resp = requests.post(f"{live.issuer}/introspect", data={"token": body["access_token"]},
                         auth=(rs_id, rs_secret), timeout=10)
    data = resp.json()
    assert resp.status_code == 200 and data["active"] is True
    assert data["client_id"] == client_id and "openid" in data["scope"].split() and data["exp"] > time.time()
    # a refresh token only to its own client
    resp = requests.post(f"{live.issuer}/introspect", data={"token": body["refresh_token"]},
                         auth=(rs_id, rs_secret), timeout=10)
    assert resp.json() == {"active": False}
    resp = requests.post(f"{live.issuer}/introspect", data={"token": body["refresh_token"]},
                         auth=(client_id, secret), timeout=10)
    assert resp.json()["active"] is True
    requests.post(f"{live.issuer}/revoke", data={"token": body["access_token"]}, auth=(client_id, secret), timeout=10)
    resp = requests.post(f"{live.issuer}/introspect", data={"token": body["access_token"]},
                         auth=(rs_id, rs_secret), timeout=10)
    assert resp.json() == {"active": False}
    resp = requests.post(f"{live.issuer}/introspect", data={"token": "garbage"}, auth=(rs_id, rs_secret), timeout=10)
    assert resp.json() == {"active": False}


def test_basic_credentials_that_are_not_utf8_are_a_failed_authentication_not_a_500(live):
    tracebacks = live.log.read_text().count("Traceback")
    header = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:secret\xff").decode()}
    for path, form in (("/token", {"grant_type": "client_credentials"}),
                       ("/token", {"grant_type": "authorization_code", "code": "x", "redirect_uri": "http://x/cb"}),
                       ("/revoke", {"token": "x"}), ("/introspect", {"token": "x"})):
        resp = requests.post(f"{live.issuer}{path}", data=form, headers=header, timeout=10)
        assert resp.status_code == 401 and resp.json()["error"] == "invalid_client", (path, resp.status_code)
    assert live.log.read_text().count("Traceback") == tracebacks
