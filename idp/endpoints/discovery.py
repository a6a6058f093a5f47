"""OpenID Connect Discovery, RFC 8414 metadata and the JWKS.

The metadata is computed once from the same settings that switch features on,
so it cannot claim what the server does not do.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from keys import ALGORITHMS

from ..assurance import ACR_VALUES
from ..oauth.authorization import PROMPTS
from ..oauth.claims import SCOPES
from ..oauth.clients import ASSERTION_ALGORITHMS
from ..oauth.dpop import ALGORITHMS as DPOP_ALGORITHMS
from ..oauth.grants import TOKEN_AUTH_METHODS
from ..oauth.request_objects import ALGORITHMS as REQUEST_OBJECT_ALGORITHMS
from ..store.clients import GRANT_TYPES

bp = Blueprint("discovery", __name__)


def server_metadata(settings) -> dict:
    iss = settings.issuer
    meta = {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "userinfo_endpoint": f"{iss}/userinfo",
        "jwks_uri": f"{iss}/jwks.json",
        "revocation_endpoint": f"{iss}/revoke",
        "introspection_endpoint": f"{iss}/introspect",
        "end_session_endpoint": f"{iss}/logout",
        "pushed_authorization_request_endpoint": f"{iss}/par",
        "device_authorization_endpoint": f"{iss}/device_authorization",
        "require_pushed_authorization_requests": False,
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": [m for m in TOKEN_AUTH_METHODS if m != "none"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash",
            "name", "given_name", "family_name", "locale", "updated_at", "email", "email_verified", "groups",
            "org",
        ],
        "prompt_values_supported": list(PROMPTS),
        "ui_locales_supported": ["en", "fr"],
        "claims_parameter_supported": False,
        # RFC 9101: `request` by value, at /authorize and in PAR; request_uri only from PAR.
        "request_parameter_supported": True,
        "request_uri_parameter_supported": False,
        "request_object_signing_alg_values_supported": list(REQUEST_OBJECT_ALGORITHMS),
        "authorization_response_iss_parameter_supported": True,
        "acr_values_supported": list(ACR_VALUES),
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }
    if settings.registration != "off":
        meta["registration_endpoint"] = f"{iss}/register"
    return meta


# Metadata changes only with a release; keys rotate, and verifiers should see that quickly.
METADATA_CACHE = "public, max-age=300"
JWKS_CACHE = "public, max-age=60"


def public_json_headers(cache_control: str) -> list[tuple[str, str]]:
    """Headers of a public JSON document any web page may read (endpoints/machine.py too)."""
    return [("Content-Type", "application/json"), ("Cache-Control", cache_control),
            ("Access-Control-Allow-Origin", "*")]


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    return Response(metadata_json(current_app), headers=public_json_headers(METADATA_CACHE))


def metadata_json(app) -> bytes:
    """The metadata document, computed once per process."""
    body = app.extensions.get("idp.metadata_json")
    if body is None:
        body = json.dumps(server_metadata(app.extensions["idp.settings"])).encode()
        app.extensions["idp.metadata_json"] = body
    return body


@bp.get("/jwks.json")
def jwks():
    return Response(current_app.extensions["idp.keyring"].jwks_json(), headers=public_json_headers(JWKS_CACHE))
