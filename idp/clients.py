"""Registering clients: one validation of client metadata for the CLI and RFC 7591.

The ORM (`idp.store`) is imported by the functions that use it: `idp clients create`
makes a client's row with `new_client` and SQLAlchemy Core, without it (issue 14)."""

from __future__ import annotations

import json
import secrets
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import outbound, rsa_bounds
from .client_policy import is_resource_uri
from .grant_types import AUTH_METHODS, GRANT_TYPES, SCOPES, TOKEN_EXCHANGE
from .outbound import DestinationRefused, Outbound, is_loopback_host
from .rows import digest, new_secret

if TYPE_CHECKING:
    from .store import Client

DEFAULT_GRANT_TYPES = ["authorization_code", "refresh_token"]
DEFAULT_SCOPE = "openid profile email offline_access"


def N_(message: str) -> str:
    """Marks a message for the French catalog (pybabel extracts it) and leaves it as is: this
    module answers the CLI and RFC 7591 in English, and the portal's pages translate it."""
    return message


class ClientMetadataError(ValueError):
    """Metadata that cannot be registered; `error` is the RFC 7591 §3.2.2 code.

    `message` is an English msgid with %(name)s placeholders filled from `variables`:
    `description` is it filled in (error_description is ASCII English, RFC 6749 §5.2), and a
    page shows `gettext(message, **variables)` in its own language."""

    def __init__(self, error: str, message: str, **variables):
        self.error = error
        self.message = message
        self.variables = variables
        self.description = message % variables if variables else message
        super().__init__(self.description)


MAX_NAME_LENGTH = 200
# A client's key set, registered (`jwks`) or published (`jwks_uri`): each assertion and request
# object of the client imports it again, so its size is its cost per request. Real ones hold a
# few keys (two through a rotation): 64 kB is hundreds of them.
MAX_JWKS_BYTES = 64 * 1024
MAX_URI_LENGTH = 2000  # as a resource URI (client_policy.MAX_RESOURCE_LENGTH)

# Schemes that run code or read local data in the browser: never a redirect target.
FORBIDDEN_SCHEMES = ("javascript", "data", "file", "vbscript", "blob", "filesystem", "about")


def _check_length(uri: str, what: str, error: str) -> None:
    """Each URI of a client is stored, cached per process, compared or sent on requests."""
    if len(uri) > MAX_URI_LENGTH:
        raise ClientMetadataError(error, N_("%(what)s must be at most %(max)d characters"), what=what,
                                  max=MAX_URI_LENGTH)


def _check_uri(uri, what: str, error: str) -> str:
    """A redirect URI (RFC 9700 §2.1, RFC 8252 §7): `https` anywhere, `http` only on
    loopback hosts, or a native app's private-use scheme (`com.example.app:/cb`); no
    fragment, no wildcard."""
    if not isinstance(uri, str) or not uri:
        raise ClientMetadataError(error, N_("%(what)s must be a non-empty string"), what=what)
    _check_length(uri, what, error)
    # RFC 3986 has no spaces or controls in a URI; urlsplit drops some of them silently,
    # so a URI that differs from the one checked would be stored.
    if not _storable(uri) or any(ch.isspace() or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in uri):
        raise ClientMetadataError(error, N_("%(what)s must not hold spaces or control characters: %(uri)s"),
                                  what=what, uri=repr(uri))
    # Not a URI character (RFC 3986 §2), and read two ways: urlsplit takes
    # "http://evil.example\@127.0.0.1/" for loopback, a browser goes to evil.example.
    if "\\" in uri:
        raise ClientMetadataError(error, N_("%(what)s must not hold a backslash: %(uri)s"), what=what, uri=uri)
    # A URI is ASCII (RFC 3986 §2): an IDN host is registered as its A-label, the host the
    # browser goes to. The consent page names that host; "аpple.example" (Cyrillic а) read
    # as another site's. (Not repeated in the error: error_description is ASCII.)
    if not uri.isascii():
        raise ClientMetadataError(error, N_("%(what)s must be ASCII, an international domain name in its xn-- form"),
                                  what=what)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ClientMetadataError(error, N_("%(what)s is not a valid URI: %(uri)s"), what=what, uri=uri) from None
    if not parts.scheme or parts.fragment or ("#" in uri):
        raise ClientMetadataError(error, N_("%(what)s must be an absolute URI without a fragment: %(uri)s"),
                                  what=what, uri=uri)
    if parts.scheme in FORBIDDEN_SCHEMES:
        raise ClientMetadataError(error, N_("%(what)s uses a forbidden scheme: %(uri)s"), what=what, uri=uri)
    # "https://apple.example@evil.example/cb" goes to evil.example, and reads as apple's.
    if "@" in parts.netloc:
        raise ClientMetadataError(error, N_("%(what)s must not hold a user name or password: %(uri)s"),
                                  what=what, uri=uri)
    if "*" in parts.netloc:
        raise ClientMetadataError(error, N_("%(what)s cannot hold a wildcard: %(uri)s"), what=what, uri=uri)
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ClientMetadataError(error, N_("%(what)s has no host: %(uri)s"), what=what, uri=uri)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ClientMetadataError(
            error, N_("%(what)s must use https; http only for loopback (127.0.0.1, [::1], localhost): %(uri)s"),
            what=what, uri=uri)
    return uri


def _storable(text: str) -> bool:
    """No NUL (PostgreSQL text refuses it) and no lone surrogate (no UTF-8 for it)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Zero-width (non-)joiner: format characters that Persian, Indic scripts and emoji sequences need.
_JOINERS = ("\u200c", "\u200d")


def _plain_text(name: str) -> bool:
    """No control, format (bidi overrides) or line-separator characters: a client's name
    is written on consent pages and, as it is, to the operator's terminal (`idp clients
    list`), where an escape sequence rewrites the listing and a newline forges a line."""
    return all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") or ch in _JOINERS for ch in name)


def _all_storable(value) -> bool:
    # A loop, not recursion: a deeply nested jwks must not raise RecursionError.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and not _storable(item):
            return False
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def _check_backchannel_uri(uri, destinations: Outbound) -> str:
    """This server POSTs to it: the URL must pass the outbound guard (public address or
    allow-listed, https unless allow-listed loopback, usual ports)."""
    if not isinstance(uri, str) or not uri:
        raise ClientMetadataError("invalid_client_metadata", N_("backchannel_logout_uri must be a non-empty string"))
    _check_length(uri, "backchannel_logout_uri", "invalid_client_metadata")
    if "#" in uri:  # Back-Channel Logout 1.0 §2.2
        raise ClientMetadataError("invalid_client_metadata", N_("backchannel_logout_uri has a fragment: %(uri)s"),
                                  uri=uri)
    try:
        destinations.check_url(uri)
    except DestinationRefused as err:
        raise ClientMetadataError("invalid_client_metadata", N_("backchannel_logout_uri refused: %(reason)s"),
                                  reason=str(err)) from None
    return uri


MAX_URIS = 50  # of one kind a client: web, native and local test URIs of one product fit many times


def _uri_list(value, what: str, error: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClientMetadataError(error, N_("%(what)s must be a list"), what=what)
    if len(value) > MAX_URIS:  # open registration would store any number (5,000 were taken)
        raise ClientMetadataError(error, N_("%(what)s may hold at most %(max)d URIs"), what=what, max=MAX_URIS)
    return [_check_uri(u, what, error) for u in value]


def validate_metadata(meta: dict, destinations: Outbound | None = None) -> dict:
    """Normalized client metadata, or ClientMetadataError. `destinations`: the guard the
    back-channel logout URI must pass (the current app's by default)."""
    if not isinstance(meta, dict):
        raise ClientMetadataError("invalid_client_metadata", N_("the body must be a JSON object"))
    auth_method = meta.get("token_endpoint_auth_method") or "client_secret_basic"
    if auth_method not in AUTH_METHODS:
        raise ClientMetadataError("invalid_client_metadata", N_("unsupported token_endpoint_auth_method %(method)s"),
                                  method=auth_method)
    grant_types = meta.get("grant_types") or list(DEFAULT_GRANT_TYPES)
    if not isinstance(grant_types, list) or not all(g in GRANT_TYPES for g in grant_types):
        raise ClientMetadataError("invalid_client_metadata", N_("grant_types must be among %(known)s"),
                                  known=", ".join(GRANT_TYPES))
    for confidential_only in ("client_credentials", TOKEN_EXCHANGE):
        if confidential_only in grant_types and auth_method == "none":
            raise ClientMetadataError("invalid_client_metadata", N_("a public client cannot use %(grant)s"),
                                      grant=confidential_only)
    response_types = meta.get("response_types")
    if response_types is None:
        response_types = ["code"] if "authorization_code" in grant_types else []
    if not isinstance(response_types, list) or not all(t == "code" for t in response_types):
        raise ClientMetadataError("invalid_client_metadata", N_("only the code response type is supported"))
    if ("code" in response_types) != ("authorization_code" in grant_types):
        raise ClientMetadataError("invalid_client_metadata", N_("response_types and grant_types disagree"))
    redirect_uris = _uri_list(meta.get("redirect_uris"), "redirect_uris", "invalid_redirect_uri")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientMetadataError("invalid_redirect_uri", N_("redirect_uris is required for authorization_code"))
    post_logout = _uri_list(meta.get("post_logout_redirect_uris"), "post_logout_redirect_uris",
                            "invalid_client_metadata")
    scope = meta.get("scope") or DEFAULT_SCOPE
    if not isinstance(scope, str) or not set(scope.split()) <= set(SCOPES):
        raise ClientMetadataError("invalid_client_metadata", N_("scope must be among %(known)s"),
                                  known=" ".join(SCOPES))
    jwks = meta.get("jwks")
    if jwks is not None:
        _check_jwks(jwks)
    jwks_uri = meta.get("jwks_uri")
    if jwks_uri is not None:
        if jwks is not None:  # RFC 7591 §2: MUST NOT both be present
            raise ClientMetadataError("invalid_client_metadata", N_("send jwks or jwks_uri, not both"))
        _check_jwks_uri(jwks_uri, destinations or outbound.current())
    if auth_method == "private_key_jwt" and not (jwks or jwks_uri):
        raise ClientMetadataError("invalid_client_metadata", N_("private_key_jwt needs jwks or jwks_uri"))
    # What a client may ask of itself (RFC 9126 §6, RFC 9449 §5.2): it narrows, never widens.
    require_par = _boolean(meta, "require_pushed_authorization_requests")
    require_dpop = _boolean(meta, "dpop_bound_access_tokens")
    backchannel = meta.get("backchannel_logout_uri")
    if backchannel is not None:
        _check_backchannel_uri(backchannel, destinations or outbound.current())
    name = meta.get("client_name") or "Unnamed application"
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        raise ClientMetadataError("invalid_client_metadata",
                                  N_("client_name must be a string of at most %(max)d characters"), max=MAX_NAME_LENGTH)
    if not _plain_text(name):
        raise ClientMetadataError("invalid_client_metadata",
                                  N_("client_name must not hold control, formatting or line-break characters"))
    values = {
        "name": name,
        "token_endpoint_auth_method": auth_method,
        # Sets of values (RFC 7591 §2): each value once, as the scope; stored as sent, a
        # megabyte of "refresh_token" was 4.6 MB in each process's client cache.
        "grant_types": list(dict.fromkeys(grant_types)),
        "response_types": list(dict.fromkeys(response_types)),
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout,
        "scope": " ".join(dict.fromkeys(scope.split())),
        "jwks": jwks,
        "metadata_extra": {"jwks_uri": jwks_uri} if jwks_uri else {},
        "require_par": require_par,
        "require_dpop": require_dpop,
        "backchannel_logout_uri": backchannel,
    }
    # After the URI checks (their own error code): these values go to the database as they are.
    if not _all_storable(values):
        raise ClientMetadataError("invalid_client_metadata", N_("the metadata holds a NUL or an unpaired surrogate"))
    return values


def _boolean(meta: dict, name: str) -> bool:
    value = meta.get(name, False)
    if not isinstance(value, bool):
        raise ClientMetadataError("invalid_client_metadata", N_("%(name)s must be a boolean"), name=name)
    return value


def _is_jwk_set(jwks) -> bool:
    """An object whose "keys" are objects of plain members (RFC 7517 §4-5): strings, numbers,
    booleans, lists of strings (key_ops, x5c). Nothing deeper: a value nested near the JSON
    parser's limit would overflow the stack where it is encoded again (the JSON column)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        return False
    members = [value for name, value in jwks.items() if name != "keys"]
    for key in jwks["keys"]:
        if not isinstance(key, dict):
            return False
        members.extend(key.values())
    return all(not isinstance(value, dict) and (not isinstance(value, list) or all(
        isinstance(item, str) for item in value)) for value in members)


# A key's private or shared parts (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2): a client
# registers the keys that check its signatures, never the ones that make them (OIDC Dynamic
# Client Registration §2); stored, they would be read back by RFC 7592 and `idp clients list`.
SECRET_KEY_MEMBERS = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth", "k"))


def _check_jwks(jwks) -> None:
    if not _is_jwk_set(jwks):
        raise ClientMetadataError("invalid_client_metadata", N_("jwks must be a JWK Set"))
    if any(SECRET_KEY_MEMBERS & key.keys() for key in jwks["keys"]):
        raise ClientMetadataError("invalid_client_metadata", N_("jwks must hold public keys only"))
    if any(rsa_bounds.jwk_refusal(key) for key in jwks["keys"]):
        raise ClientMetadataError("invalid_client_metadata", N_(
            "jwks RSA keys must have 2048 to 4096 bits and a public exponent of at most 32 bits"))
    if len(json.dumps(jwks, separators=(",", ":"))) > MAX_JWKS_BYTES:
        raise ClientMetadataError("invalid_client_metadata", N_("jwks must be at most %(max)d kB"),
                                  max=MAX_JWKS_BYTES // 1024)


def _check_jwks_uri(uri, destinations: Outbound) -> str:
    """This server fetches the client's keys there: the outbound guard must let it."""
    if not isinstance(uri, str) or not uri or "#" in uri:
        raise ClientMetadataError("invalid_client_metadata", N_("jwks_uri must be a URL without a fragment"))
    _check_length(uri, "jwks_uri", "invalid_client_metadata")
    try:
        destinations.check_url(uri)
    except DestinationRefused as err:
        raise ClientMetadataError("invalid_client_metadata", N_("jwks_uri refused: %(reason)s"),
                                  reason=str(err)) from None
    return uri


def validate_policy(*, require_par: bool = False, require_dpop: bool = False, resources: list[str] = (),
                    token_exchange_audiences: list[str] = (),
                    client_exists: Callable[[str], bool] | None = None) -> dict:
    """An operator's per-client policy (SPEC §1) as client columns: authorization requests
    only by PAR, tokens only DPoP-bound, the resources (RFC 8707) it may name, the audiences it may ask for by
    token exchange. Not client metadata: a client cannot register resources or audiences
    for itself. `client_exists(client_id)`: whether that client is registered (asked of the
    current app's session unless given)."""
    for uri in resources:
        if not is_resource_uri(uri):
            raise ClientMetadataError("invalid_client_metadata",
                                      N_("a resource must be an absolute URI without a fragment: %(uri)s"), uri=uri)
    for audience in token_exchange_audiences:
        if not (client_exists or _stored)(audience):
            raise ClientMetadataError("invalid_client_metadata", N_("no client %(id)s to exchange tokens for"),
                                      id=audience)
    return {
        "require_par": require_par,
        "require_dpop": require_dpop,
        "resources": list(dict.fromkeys(resources)) or None,
        "token_exchange_audiences": list(dict.fromkeys(token_exchange_audiences)) or None,
    }


def _stored(client_id: str) -> bool:
    from .store import Client, db

    return db.session.get(Client, client_id) is not None


def needs_secret(auth_method: str) -> bool:
    return auth_method in ("client_secret_basic", "client_secret_post")


def create_client(meta: dict, *, first_party: bool = False, verified: bool = False,
                  owner_id: str | None = None, policy: dict | None = None) -> tuple[Client, str | None]:
    """Validate and store a client; returns it with its secret (shown once, stored hashed).
    `verified`: an operator vouches for it (people see its name without a warning);
    `owner_id`: the person who registered it in the developer portal; `policy`: the
    operator's, as `validate_policy` takes it."""
    from .store import Client, db

    values, secret = new_client(meta, first_party=first_party, verified=verified, owner_id=owner_id, policy=policy)
    client = Client(**values)
    db.session.add(client)
    db.session.commit()
    return client, secret


def new_client(meta: dict, *, first_party: bool = False, verified: bool = False, owner_id: str | None = None,
               policy: dict | None = None, destinations: Outbound | None = None,
               client_exists: Callable[[str], bool] | None = None) -> tuple[dict, str | None]:
    """`create_client`'s new client as column values, and its secret, without storing it.
    `destinations` and `client_exists` stand in for the current app's outbound guard and
    session where there is no app (`idp clients create`)."""
    values = validate_metadata(meta, destinations)
    if policy:
        rules = validate_policy(**policy, client_exists=client_exists)
        for flag in ("require_par", "require_dpop"):  # the operator's or the client's own
            rules[flag] = rules[flag] or values[flag]
        values.update(rules)
    secret = new_secret(32) if needs_secret(values["token_endpoint_auth_method"]) else None
    values.update(
        client_id=secrets.token_hex(16),  # hex: never starts with "-", safe on any command line
        client_secret_hash=digest(secret) if secret else None,
        first_party=first_party,
        verified=verified or first_party,
        owner_id=owner_id,
    )
    return values, secret


def update_client(client: Client, meta: dict) -> None:
    """Replace a client's metadata (RFC 7592 §2.2); its identity stays, and its secret while
    it authenticates with one."""
    from .store import db

    values = validate_metadata(meta)
    if not needs_secret(values["token_endpoint_auth_method"]):
        # Given up for good: a client often leaves its secret because it leaked, and a later
        # update back to a secret method would otherwise make that secret valid again.
        values["client_secret_hash"] = None
    elif not client.client_secret_hash:
        raise ClientMetadataError("invalid_client_metadata", N_("cannot switch to a secret-based method"))
    for key, value in values.items():
        setattr(client, key, value)
    db.session.commit()
