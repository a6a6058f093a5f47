"""The checks an authorization request goes through, in order, shared by every way in.

Authlib validates client, redirect URI, response type, scope, PKCE and nonce; the
small checks below add what OpenID Connect and RFC 9700 ask on top. Each takes
the request parameters and raises the RFC's error or returns nothing.
"""

from __future__ import annotations

from urllib.parse import quote

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

from .dpop import check_dpop_jkt
from .tokens import decode_own_jwt

PROMPTS = ("none", "login", "consent", "select_account")  # discovery's prompt_values_supported
# One session a browser: the sign-in page is where the person names the account to use, so
# select_account (OIDC Core §3.1.2.1) asks for it as login does.
SIGN_IN_PROMPTS = frozenset(("login", "select_account"))
SINGLE_VALUED = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt",
                 "max_age", "code_challenge", "code_challenge_method", "login_hint", "ui_locales", "dpop_jkt",
                 "request", "request_uri", "response_mode", "id_token_hint", "acr_values", "claims", "display",
                 "claims_locales")


# What an error_description may hold (RFC 6749 §4.1.2.1): printable ASCII but '"' and '\\'.
_DESCRIBABLE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\')


def named(value: str) -> str:
    """A value the request sent, as an error's description may name it: percent-encoded
    where RFC 6749 allows no such character (Authlib refuses to build an error holding
    one: a ValueError, so a 500)."""
    return quote(value, safe=_DESCRIBABLE)


def described(text: str) -> str:
    """A library's error text, which may quote what the request sent (a JWT header's alg or
    kid), as an error's description may hold it: `named`, its spaces kept."""
    return quote(text, safe=_DESCRIBABLE + " ")


class RequestNotSupported(OAuth2Error):
    error = "request_not_supported"


class RequestUriNotSupported(OAuth2Error):
    error = "request_uri_not_supported"


class StoredAuthorizationRequest(OAuth2Request):
    """An authorization request rebuilt from its parameters (saved while the person signs in)."""

    def __init__(self, params: dict, uri: str):
        super().__init__("GET", uri)
        self.payload = BasicOAuth2Payload(dict(params))
        self._params = dict(params)

    @property
    def args(self):
        return self._params

    @property
    def form(self):
        return {}


def check_request_object(params: dict) -> None:
    # `request` (RFC 9101) and PAR's `request_uri` are resolved before the checks run
    # (`idp.oauth.request_objects`): what is left here was never resolved.
    if "request" in params:
        raise RequestNotSupported("request objects are not supported")
    if "request_uri" in params:
        raise RequestUriNotSupported("request_uri is not supported")


def check_response_mode(params: dict) -> None:
    mode = params.get("response_mode")
    if mode not in (None, "query"):
        raise InvalidRequestError("response_mode must be query")


def check_prompt(params: dict) -> None:
    prompts = set(params.get("prompt", "").split())
    if not prompts <= set(PROMPTS):
        raise InvalidRequestError("unknown prompt value")
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("prompt=none cannot be combined with other values")


def check_max_age(params: dict) -> None:
    raw = params.get("max_age")
    if raw is None:
        return
    # ASCII digits only: str.isdigit() also takes "²" and "١٢", which int() refuses or reads.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise InvalidRequestError("max_age must be a non-negative integer")


def check_openid_nonce(params: dict) -> None:
    if "openid" in params.get("scope", "").split() and "nonce" in params and not params["nonce"]:
        raise InvalidRequestError("nonce must not be empty")


def hinted_subject(params: dict) -> str | None:
    """The account `id_token_hint` names (OIDC Core §3.1.2.1): the `sub` of an ID token we
    issued to this request's client, expired or not (a hint usually is); None without one."""
    hint = params.get("id_token_hint")
    if hint is None:
        return None
    claims = decode_own_jwt(hint, typ="jwt", allow_expired=True) if isinstance(hint, str) else None
    aud = claims.get("aud") if claims else None
    if claims is None or params.get("client_id") not in (aud if isinstance(aud, list) else [aud]) \
            or not isinstance(claims.get("sub"), str):
        raise InvalidRequestError("id_token_hint must be an ID token issued to this client")
    return claims["sub"]


# The order in which every authorization request is checked after Authlib's own validation.
CHECKS = (check_request_object, check_response_mode, check_prompt, check_max_age, check_openid_nonce,
          check_dpop_jkt, hinted_subject)


def run_checks(params: dict) -> None:
    for check in CHECKS:
        check(params)


def request_params(multi, skip=()) -> dict:
    """The parameters of an authorization request from a MultiDict: one value each, but
    `resource` (RFC 8707 §2, may repeat) as a list when sent."""
    params = {k: v for k, v in multi.items() if k not in skip and k != "resource"}
    if multi.getlist("resource"):
        params["resource"] = multi.getlist("resource")
    return params


def duplicated_parameter(multi) -> str | None:
    """The first parameter sent more than once (RFC 6749 §3.1), from a MultiDict."""
    for name in SINGLE_VALUED:
        if len(multi.getlist(name)) > 1:
            return name
    return None
