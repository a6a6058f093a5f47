"""JWT-secured authorization requests (RFC 9101): the `request` parameter, at /authorize
and inside a pushed request (RFC 9126 §3).

A request object is a JWT the client signed with a key it registered (`jwks` or
`jwks_uri`, looked up in `idp.oauth.clients.client_key_set`). Once it verifies, its
claims ARE the authorization request: the parameters outside it are ignored
(RFC 9101 §6.3) except `client_id`, which must agree. Authlib's rfc9101 extension is
not used: it swaps the payload inside Authlib's own validation, where our checks and
the pending request (which read the same parameters) would not see it, and it does
not check `aud`, `exp` or `nbf`.
"""

from __future__ import annotations

import json
import math
import time

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc9101.errors import InvalidRequestObjectError, RequestUriNotSupportedError
from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError

from .clients import client_key_set

# Asymmetric only: a client secret is not a key the client alone holds, and `none` is no signature.
ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
TYPES = ("oauth-authz-req+jwt", "application/oauth-authz-req+jwt", "jwt")
# A request object is made for one request: an hour from nbf to exp is the most we take
# (FAPI 2.0 asks for at most 60 minutes), and a minute of clock difference for nbf.
MAX_LIFETIME = 3600
CLOCK_SKEW = 60
JWT_CLAIMS = ("iss", "aud", "exp", "nbf", "iat", "jti", "sub")
MAX_LENGTH = 20_000


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def verify_request_object(raw, client) -> dict:
    """The claims of a request object signed by `client`, else InvalidRequestObjectError."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_LENGTH:
        raise InvalidRequestObjectError("the request object is empty or too long")
    if raw.count(".") == 4:
        raise InvalidRequestObjectError("encrypted request objects are not supported")
    try:
        header = jws.extract_compact(raw.encode()).protected
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise InvalidRequestObjectError("the request object is not a signed JWT") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidRequestObjectError(f"request objects must be signed with one of {', '.join(ALGORITHMS)}")
    if "typ" in header and str(header["typ"]).lower() not in TYPES:
        raise InvalidRequestObjectError("the request object's typ must be oauth-authz-req+jwt")
    try:
        claims = jwt.decode(raw, client_key_set(client), algorithms=[alg]).claims
    except (JoseError, ValueError, TypeError, RecursionError):  # RecursionError: JSON nested too deep
        raise InvalidRequestObjectError("the request object's signature does not verify with the client's keys") \
            from None
    if not isinstance(claims, dict):
        raise InvalidRequestObjectError("the request object's payload must be a JSON object")
    _check_claims(claims, client)
    return claims


def _check_claims(claims: dict, client) -> None:
    issuer = current_app.extensions["idp.settings"].issuer
    if claims.get("client_id") != client.client_id:
        raise InvalidRequestObjectError("client_id in the request object must be the request's client_id")
    if "iss" in claims and claims["iss"] != client.client_id:
        raise InvalidRequestObjectError("iss in the request object must be the client_id")
    aud = claims.get("aud")
    if not (aud == issuer or (isinstance(aud, list) and issuer in aud)):
        raise InvalidRequestObjectError("aud in the request object must be the issuer")
    now = time.time()
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not _number(exp):
        raise InvalidRequestObjectError("the request object must have exp")
    if exp <= now:
        raise InvalidRequestObjectError("the request object has expired")
    if nbf is not None and (not _number(nbf) or nbf > now + CLOCK_SKEW):
        raise InvalidRequestObjectError("the request object is not valid yet (nbf)")
    if iat is not None and not _number(iat):
        raise InvalidRequestObjectError("iat in the request object must be a number")
    start = nbf if nbf is not None else iat if iat is not None else now
    # Also from now: a future iat (nbf is optional) would otherwise start the hour years ahead.
    if exp - start > MAX_LIFETIME or exp - now > MAX_LIFETIME + CLOCK_SKEW:
        raise InvalidRequestObjectError(f"the request object may live at most {MAX_LIFETIME} seconds")


def _parameter(name: str, value):
    if name == "resource":  # RFC 8707 may repeat it: a JSON array in a request object
        values = [value] if isinstance(value, str) else value
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            return values
    elif isinstance(value, str):
        return value
    elif name == "max_age" and _number(value) and value == int(value):
        return str(int(value))
    elif name == "claims" and isinstance(value, dict):  # OIDC Core §5.5: an object, a JSON string in a query
        return json.dumps(value, separators=(",", ":"))
    raise InvalidRequestObjectError(f"{name} in the request object must be a string")


def authorization_parameters(params: dict, client) -> dict:
    """The authorization request to process: `params` as sent, or, when they carry a
    `request`, the parameters inside it (RFC 9101 §6.3)."""
    params = _from_request_object(params, client) if "request" in params else params
    # PostgreSQL text holds no NUL: a pushed request or a request object is not a page's
    # query (security.check_request refuses those), and a NUL in it failed the sign-in later
    if any("\x00" in value for values in params.values() for value in _listed(values)):
        raise InvalidRequestError("a parameter holds a NUL character")
    return params


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _from_request_object(params: dict, client) -> dict:
    claims = verify_request_object(params["request"], client)
    if "request" in claims or "request_uri" in claims:
        raise InvalidRequestObjectError("a request object cannot hold request or request_uri")
    inner = {name: _parameter(name, value) for name, value in claims.items() if name not in JWT_CLAIMS}
    # OpenID Connect Core §6.1 has clients repeat response_type outside: it must agree.
    if params.get("response_type") not in (None, inner.get("response_type")):
        raise InvalidRequestObjectError("response_type differs from the request object's")
    return inner


def front_channel_parameters(params: dict, client) -> dict:
    """An authorization request sent straight to /authorize (not pushed): refused for a
    client that must push them (RFC 9126 §6), else its parameters, from its request object
    when it sends one. A `request_uri` here is a PAR one or unsupported."""
    if "request_uri" in params:
        raise RequestUriNotSupportedError("only request_uri values from the pushed authorization endpoint are accepted")
    if client is not None and client.require_par:
        raise InvalidRequestError("pushed authorization requests required")
    if client is None:
        return params  # Authlib answers an unknown client, on a page
    return authorization_parameters(params, client)


def error_redirect_uri(params: dict, client) -> str | None:
    """Where a refused request's error may be sent: a redirect URI registered for the
    client, from the request or its (maybe unverified) request object; None: show a page.
    A registered URI is safe whoever chose it; any other is never redirected to."""
    if client is None:
        return None
    candidates = [params.get("redirect_uri")]
    raw = params.get("request")
    if isinstance(raw, str) and raw.count(".") == 2 and len(raw) <= MAX_LENGTH:
        try:
            candidates.append(json.loads(jws.extract_compact(raw.encode()).payload).get("redirect_uri"))
        except (JoseError, ValueError, TypeError, UnicodeError, AttributeError, RecursionError):
            pass
    for uri in candidates:
        if isinstance(uri, str) and uri and client.check_redirect_uri(uri):
            return uri
    return None
