"""What a registered client may do, as Authlib's ClientMixin asks it, and its plain
read-only record. Apart from the ORM model (`idp.store.clients`), so that code that reads
clients with SQLAlchemy Core (`idp clients list`, the token endpoint) needs no ORM."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

MAX_RESOURCE_LENGTH = 2000
# A loopback IP redirect URI (RFC 8252 §7.3): host and port, then the path and query.
_LOOPBACK_IP_URI = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?(/[^#]*)?")


def _loopback_without_port(uri: str) -> tuple[str, str] | None:
    """(host, path and query) of a loopback IP redirect URI with a valid or no port, else None."""
    match = _LOOPBACK_IP_URI.fullmatch(uri)
    if match is None or (match.group(2) is not None and not 0 < int(match.group(2)) <= 65535):
        return None
    return match.group(1), match.group(3) or ""


def is_resource_uri(value) -> bool:
    """An absolute URI without a fragment (RFC 8707 §2)."""
    if not isinstance(value, str) or not value or len(value) > MAX_RESOURCE_LENGTH or "#" in value:
        return False
    if any(ch.isspace() or ord(ch) < 0x21 for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    if not parts.scheme or not parts.scheme.isascii() or not parts.scheme[0].isalpha():
        return False
    return not (parts.scheme in ("http", "https") and not parts.hostname)


def web_host(uri: str) -> str | None:
    """The host a page names for where a client sends the browser: only a web address's. An
    app's own scheme may carry any authority ("com.evil.app://accounts.google.com/cb"),
    yet it goes to whichever app on the device opens that scheme."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    return parts.netloc or None


class ClientPolicy:
    """What a client may do, as Authlib's ClientMixin asks it. Shared by the ORM row
    (`idp.store.Client`) and by `ClientRecord`, the plain read-only copy the token endpoint uses."""

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    # --- Authlib's ClientMixin -------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri in every request: never guess one.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match (RFC 9700 §4.1.3): no prefixes, no wildcards.
        if redirect_uri in self.redirect_uris:
            return True
        # Except the port of a native app's loopback IP redirect URI, which the OS picks when
        # the app starts listening (RFC 8252 §7.3 MUST, RFC 9700 §2.1). Native apps are
        # public clients; a confidential one keeps the exact match.
        if not self.is_public or not isinstance(redirect_uri, str) or not redirect_uri.startswith("http://"):
            return False
        wanted = _loopback_without_port(redirect_uri)
        return wanted is not None and any(_loopback_without_port(uri) == wanted for uri in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        from .store import digest  # here, not above: `idp clients list` reads no ORM model

        if not self.client_secret_hash:
            return False
        return hmac.compare_digest(digest(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    # --- what discovery-style metadata says about this client ----------------
    def to_metadata(self) -> dict:
        data = {
            "client_id": self.client_id,
            "client_name": self.name,
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "grant_types": list(self.grant_types),
            "response_types": list(self.response_types),
            "scope": self.scope,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "client_id_issued_at": int(self.created_at.timestamp()) if self.created_at else None,
        }
        if self.jwks:
            data["jwks"] = self.jwks
        if self.backchannel_logout_uri:
            data["backchannel_logout_uri"] = self.backchannel_logout_uri
        if self.require_par:
            data["require_pushed_authorization_requests"] = True  # RFC 9126 §6
        if self.require_dpop:
            data["dpop_bound_access_tokens"] = True  # RFC 9449 §5.2
        data.update(self.metadata_extra or {})
        return data


@dataclass(frozen=True, slots=True)
class ClientRecord(ClientPolicy):
    """A client row read for one request, without ORM instrumentation (about 50 µs cheaper
    to build on the token endpoint's hot path). Read-only: change clients through `idp.store.Client`."""

    client_id: str
    client_secret_hash: str | None
    name: str
    redirect_uris: list
    post_logout_redirect_uris: list
    grant_types: list
    response_types: list
    scope: str
    token_endpoint_auth_method: str
    jwks: dict | None
    first_party: bool
    verified: bool
    backchannel_logout_uri: str | None
    owner_id: str | None
    registration_token_hash: str | None
    metadata_extra: dict
    require_par: bool
    require_dpop: bool
    token_exchange_audiences: list | None
    resources: list | None
    created_at: datetime
