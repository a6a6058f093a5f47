"""Security review of bad input, round 6 (branch rev12-input): what the round 4 fuzzer
(test_review_input4) does not look at, since it asks only for "no 500, a readable 4xx": the
headers an error must carry, parameters given twice by way of the query string, and a NUL
that comes in where no page check looks (a pushed request, a request object)."""

from __future__ import annotations

import uuid

import requests

from tests.conftest import Browser
from tests.test_review_input4 import Server


def test_a_method_not_allowed_answer_names_the_methods_allowed(live):
    """Low - RFC 9110 §15.5.6 (the origin server MUST send an Allow header field with a
    405): the error handlers wrote their own body for werkzeug's MethodNotAllowed and
    dropped its headers, so no 405 said which methods the resource takes, on the protocol
    endpoints, the SCIM API and the pages alike."""
    client_id, secret = live.create_client()
    server = Server(live.issuer)
    for method, path, allowed in (("PUT", "/token", {"POST"}), ("GET", "/token", {"POST"}),
                                  ("DELETE", "/jwks.json", {"GET"}), ("PUT", "/signin", {"GET", "POST"}),
                                  ("PATCH", "/scim/v2/ServiceProviderConfig", {"GET"}),
                                  ("DELETE", "/account", {"GET"})):
        conn = requests.request(method, f"{live.issuer}{path}", timeout=10, allow_redirects=False)
        assert conn.status_code == 405, (method, path, conn.status_code)
        named = {m.strip() for m in conn.headers.get("Allow", "").split(",") if m.strip()}
        assert allowed <= named and method not in named, (method, path, conn.headers)
    # the bodies are as before: the OAuth JSON error, a SCIM error, a page
    status, ctype, body = server.send("PUT", "/token")
    assert status == 405 and ctype.startswith("application/json") and b"invalid_request" in body


def test_a_token_endpoint_parameter_given_in_the_query_and_the_body_is_refused(live):
    """Low - RFC 6749 §3.2 (request parameters MUST NOT be included more than once): the
    token, revocation, introspection and device authorization endpoints refuse a parameter
    repeated in the body, but Authlib reads the query string and the body together (the
    query string first), and the check looked at the body only. A `scope` (or `grant_type`,
    `token`, ...) in both was accepted, the query's value silently winning over the body's:
    what a proxy or a log sees in the body is not what was granted."""
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[],
                                           scope="openid email profile")
    token_url = f"{live.issuer}/token"
    both = requests.post(f"{token_url}?scope=email", data={"grant_type": "client_credentials", "scope": "profile"},
                         auth=(client_id, secret), timeout=10)
    assert both.status_code == 400 and both.json()["error"] == "invalid_request", both.text
    assert "scope" in both.json()["error_description"]
    for endpoint, data in (("revoke", {"token": "a"}), ("introspect", {"token": "a"}),
                           ("device_authorization", {"scope": "openid"})):
        first = next(iter(data))
        resp = requests.post(f"{live.issuer}/{endpoint}?{first}=b", data=data, auth=(client_id, secret), timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", (endpoint, resp.text)
    # a parameter given once, in either place, is answered as ever
    once = requests.post(token_url, data={"grant_type": "client_credentials", "scope": "profile"},
                         auth=(client_id, secret), timeout=10)
    assert once.status_code == 200 and once.json()["scope"] == "profile", once.text
    once = requests.post(f"{token_url}?x=1", data={"grant_type": "client_credentials", "scope": "profile"},
                         auth=(client_id, secret), timeout=10)
    assert once.status_code == 200 and once.json()["scope"] == "profile", once.text


NUL_PARAMS = ({"nonce": "n\x00n"}, {"login_hint": "par-nul\x00@example.com"}, {"acr_values": "a\x00"},
              {"state": "s\x00s"}, {"ui_locales": "fr\x00"})


def test_a_nul_in_a_pushed_request_is_refused_where_it_is_pushed(live):
    """Low - OWASP ASVS 7.4.1 (no 500 on crafted input): PostgreSQL text holds no NUL, so
    pages refuse one in a request's query or form (security.check_request); but /par is no
    page, and took a pushed `nonce` holding a NUL: the person then signed in at the
    request_uri, typed their password, and got "Something went wrong" (a 500 and a
    traceback as the code was stored). A request object's claims passed the same way. A NUL
    in any parameter of a pushed request or request object is now invalid_request."""
    from tests.oidc import REDIRECT, pkce

    offset = live.log_size()
    email = f"par-nul-{uuid.uuid4().hex[:6]}@example.com"
    live.create_user(email, "par-nul-password-1")
    client_id, secret = live.create_client()
    problems = []
    for extra in NUL_PARAMS:
        _, challenge = pkce()
        data = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid email",
                "state": "st", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
        pushed = requests.post(f"{live.issuer}/par", data=data, auth=(client_id, secret), timeout=10)
        if pushed.status_code == 201:
            b = Browser(live.issuer)
            page = b.get(f"{live.issuer}/authorize?client_id={client_id}&request_uri={pushed.json()['request_uri']}")
            answer = b.sign_in(page, email, "par-nul-password-1") if page.status_code == 200 and \
                'name="email"' in page.text else page
            problems.append((extra, pushed.status_code, page.status_code, answer.status_code))
        elif pushed.status_code != 400 or pushed.json()["error"] != "invalid_request":
            problems.append((extra, pushed.status_code, pushed.text[:200]))
    log = live.log_since(offset)
    assert not problems, problems
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


def test_a_nul_in_a_request_object_is_refused_before_the_sign_in(live):
    """The same NUL as a request object's (RFC 9101) `nonce` at /authorize: the query holds
    none, so the page check let it through to the same 500 after the password."""
    from tests.oidc import REDIRECT, pkce, redirect_params
    from tests.test_request_objects import _claims, _client, _key, _sign

    offset = live.log_size()
    email = f"ro-nul-{uuid.uuid4().hex[:6]}@example.com"
    live.create_user(email, "ro-nul-password-1")
    key = _key()
    client_id, _ = _client(live, key)
    _, challenge = pkce()
    signed = _sign(key, _claims(live, client_id, nonce="n\x00n", code_challenge=challenge,
                                code_challenge_method="S256"))
    b = Browser(live.issuer)
    answer = b.http.get(f"{live.issuer}/authorize", params={"client_id": client_id, "request": signed},
                        allow_redirects=False, timeout=10)
    if answer.status_code == 200:  # the sign-in page: what the person meets after it
        answer = b.sign_in(answer, email, "ro-nul-password-1")
    assert redirect_params(answer, REDIRECT)["error"] == "invalid_request", answer.headers.get("Location")
    log = live.log_since(offset)
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
