"""Security review of bad input, round 6 (branch rev12-input): what the round 4 fuzzer
(test_review_input4) does not look at, since it asks only for "no 500, a readable 4xx": the
headers an error must carry, and parameters given twice by way of the query string."""

from __future__ import annotations

import requests

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
