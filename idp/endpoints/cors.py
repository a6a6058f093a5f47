"""Cross-origin reads (CORS) of the endpoints a browser app calls itself: a single-page app
(a public client, the developer portal's "Single-page app") exchanges its code and
refreshes at /token, reads /userinfo and revokes at /revoke from its own origin.

Any origin may read these answers, because none of them acts on what a browser adds by
itself: the client authenticates in the request, or the access token is in it. No
`Access-Control-Allow-Credentials` is ever sent, so a browser never attaches this server's
cookies to such a request. Discovery and the JWKS are public documents and say so in
their own headers (`discovery.public_json_headers`). Pages and the other endpoints get no
CORS header: what a session cookie may do stays same-origin.
"""

from __future__ import annotations

from flask import Flask, Response, request

PATHS = frozenset(("/token", "/userinfo", "/revoke"))
# What every answer of those paths carries: a DPoP client reads its next nonce, and an
# app told 401 reads why.
HEADERS = [("Access-Control-Allow-Origin", "*"),
           ("Access-Control-Expose-Headers", "DPoP-Nonce, WWW-Authenticate")]
# The answer to a preflight: a bearer token, a DPoP proof or a JSON body make one.
PREFLIGHT = [("Access-Control-Allow-Methods", "GET, POST"),
             ("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP"),
             ("Access-Control-Max-Age", "600")]


def add_headers(response: Response) -> Response:
    """after_request: the CORS headers on the answers of PATHS (Flask's automatic OPTIONS
    answer included, which becomes the preflight's)."""
    if request.path in PATHS:
        for name, value in HEADERS:
            response.headers[name] = value
        if request.method == "OPTIONS":
            for name, value in PREFLIGHT:
                response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_headers)
