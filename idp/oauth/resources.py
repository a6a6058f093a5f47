"""Resource indicators (RFC 8707): which protected resource an access token is for.

A client may name, with `resource`, only resources registered for it (`Client.resources`,
set by an operator). Named at authorization, they are kept on the code and the grant;
named at the token endpoint, they can only narrow what was granted (or, for client
credentials, what the client may ask for). The access token's `aud` is the resources
named, and without any it stays the client itself, as before.
"""

from __future__ import annotations

from authlib.oauth2.base import OAuth2Error

from ..client_policy import MAX_RESOURCE_LENGTH, is_resource_uri  # noqa: F401 - importable from here too
from .authorization import named

MAX_RESOURCES = 10


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the resource is invalid, unknown, or not allowed for this client."""

    error = "invalid_target"
    status_code = 400


def requested_resources(values) -> list[str]:
    """The `resource` values of a request, checked for form; [] when none was sent."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or len(values) > MAX_RESOURCES:
        raise InvalidTargetError(f"at most {MAX_RESOURCES} resource values")
    for value in values:
        if not is_resource_uri(value):
            raise InvalidTargetError("resource must be an absolute URI without a fragment")
    return list(dict.fromkeys(values))


def _allowed_for(client) -> set[str]:
    return set(client.resources or [])


def check_authorization_resources(params: dict, client) -> None:
    """An authorization request may name only resources registered for its client."""
    wanted = requested_resources(params.get("resource"))
    unknown = [r for r in wanted if r not in _allowed_for(client)]
    if unknown:
        raise InvalidTargetError(f"resource not allowed for this client: {named(unknown[0])}")


def token_audience(client, requested, granted: list | None, *, from_grant: bool) -> str | list[str] | None:
    """The `aud` of an access token issued at the token endpoint, None for the default
    (the client itself). `from_grant`: the token comes from a person's grant (code,
    refresh, device), which bounds what may be asked for; otherwise the client's own
    registration does. Resources the operator has since taken away are no longer given."""
    wanted = requested_resources(requested)
    allowed = _allowed_for(client)
    if from_grant:
        allowed &= set(granted or [])
    unknown = [r for r in wanted if r not in allowed]
    if unknown:
        raise InvalidTargetError(f"resource not granted to this client: {named(unknown[0])}")
    chosen = wanted
    if not chosen and from_grant:
        chosen = [r for r in (granted or []) if r in allowed]
    if not chosen:
        if from_grant and granted:
            raise InvalidTargetError("the resources granted are no longer allowed for this client")
        return None
    return chosen[0] if len(chosen) == 1 else chosen
