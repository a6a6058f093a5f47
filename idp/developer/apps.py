"""A person's own client apps: what each kind of app is, and the changes the portal makes.

Apps are validated by `idp.clients.validate_metadata`, the same checks as dynamic
registration (RFC 7591); they are never first-party and never verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from .. import audit
from ..clients import N_, ClientMetadataError, create_client, update_client
from ..i18n import gettext as _
from ..store import Client, User, db, digest, new_secret
from ..store.clients import DEVICE_CODE


@dataclass(frozen=True)
class Kind:
    """One kind of app the portal offers, and the metadata it stands for."""

    name: str
    label: Callable[[], str]  # in the page's language
    auth_method: str
    grant_types: tuple[str, ...]
    redirects: bool  # people are sent back to it, so it needs redirect URIs


CODE_FLOW = ("authorization_code", "refresh_token")

KINDS = {k.name: k for k in (
    Kind("web", lambda: _("Web app (runs on a server, keeps a secret)"), "client_secret_basic", CODE_FLOW, True),
    # Public clients: the server then requires PKCE (idp/oauth/grants.py).
    Kind("spa", lambda: _("Single-page app (runs in the browser)"), "none", CODE_FLOW, True),
    Kind("native", lambda: _("Native app (mobile or desktop)"), "none", CODE_FLOW, True),
    Kind("service", lambda: _("Service (no person signs in)"), "client_secret_basic", ("client_credentials",), False),
    # Devices (TVs, command lines) are handed to people and cannot keep a secret (RFC 8628 §5.6).
    Kind("device", lambda: _("Device (TV or command line: enter a code)"), "none",
         (DEVICE_CODE, "refresh_token"), False),
)}


def kind_of(client: Client) -> Kind | None:
    for kind in KINDS.values():
        if client.token_endpoint_auth_method == kind.auth_method and tuple(client.grant_types) == kind.grant_types:
            return kind
    return None


def lines(text: str | None) -> list[str]:
    """The non-empty lines of a textarea, trimmed."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def apps_of(user: User) -> list[Client]:
    return list(db.session.execute(
        select(Client).where(Client.owner_id == user.id).order_by(Client.created_at, Client.client_id)
    ).scalars())


def owned_app(user: User, client_id: str) -> Client | None:
    """The app with this id if `user` registered it, else None: the portal's one way in to
    an app, so that no view loads a client and then checks its owner."""
    return db.session.execute(
        select(Client).where(Client.client_id == client_id[:64], Client.owner_id == user.id)
    ).scalar_one_or_none()


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ClientMetadataError("invalid_client_metadata", N_("Give the app a name."))
    return name


# Registering is free and self-service: a cap keeps one account from filling the clients table.
MAX_APPS_PER_PERSON = 50


def _check_sends_back(kind: Kind | None, redirect_uris: list[str], post_logout_uris: list[str]) -> None:
    if kind is not None and not kind.redirects and (redirect_uris or post_logout_uris):
        raise ClientMetadataError("invalid_redirect_uri", N_(
            "This kind of app sends no one back: leave the redirect URIs empty."))


def register(user: User, kind_name: str, name: str, redirect_uris: list[str],
             post_logout_uris: list[str]) -> tuple[Client, str | None]:
    """Create an app owned by `user`; returns it with its secret (shown once, stored hashed)."""
    if db.session.scalar(select(func.count()).select_from(Client).where(Client.owner_id == user.id)) \
            >= MAX_APPS_PER_PERSON:
        raise ClientMetadataError("invalid_client_metadata", N_(
            "You have reached the limit of %(max)d apps: delete one first."), max=MAX_APPS_PER_PERSON)
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ClientMetadataError("invalid_client_metadata", N_("Choose a kind of app."))
    _check_sends_back(kind, redirect_uris, post_logout_uris)
    meta = {
        "client_name": _check_name(name),
        "token_endpoint_auth_method": kind.auth_method,
        "grant_types": list(kind.grant_types),
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout_uris,
    }
    client, secret = create_client(meta, first_party=False, verified=False, owner_id=user.id)
    audit.record("app.created", user, client_id=client.client_id, app_kind=kind.name)
    return client, secret


def edit(user: User, client: Client, name: str, redirect_uris: list[str], post_logout_uris: list[str]) -> None:
    """Change an app's name and where it sends people; its kind and secret stay."""
    kind = kind_of(client)
    _check_sends_back(kind, redirect_uris, post_logout_uris)
    meta = client.to_metadata()
    meta.update(client_name=_check_name(name), redirect_uris=redirect_uris,
                post_logout_redirect_uris=post_logout_uris)
    try:
        update_client(client, meta)
    except ClientMetadataError:
        db.session.rollback()
        raise
    audit.record("app.updated", user, client_id=client.client_id)


def rotate_secret(user: User, client: Client) -> str:
    """A new secret for a confidential app; the old one stops working at once (the token
    endpoint reads the client on every request)."""
    secret = new_secret(32)
    client.client_secret_hash = digest(secret)
    db.session.commit()
    audit.record("app.secret_rotated", user, client_id=client.client_id)
    return secret


def delete(user: User, client: Client) -> None:
    """Delete an app; its grants, refresh tokens, codes and consents go with it (ON DELETE
    CASCADE), and so do its access tokens (checked against their grant, or the client)."""
    client_id = client.client_id
    db.session.delete(client)
    db.session.commit()
    audit.record("app.deleted", user, client_id=client_id)
