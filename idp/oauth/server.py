"""The Authlib authorization server, assembled: grants, client authentication, endpoints."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Request, UnsupportedResponseTypeError
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import current_app
from sqlalchemy import bindparam, select

from ..store import Client, db
from ..store.clients import ClientRecord
from .authorization import named
from .clients import PrivateKeyJWT, sends_basic
from . import dpop
from .device import DeviceAuthorizationService, DeviceCodeGrant
from .grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    OpenIDCodeExtension,
    RefreshTokenGrant,
    S256CodeChallenge,
    family_of,
    store_refresh_token,
)
from .token_exchange import TokenExchangeGrant

_CLIENT_BY_ID = select(Client.__table__).where(Client.__table__.c.client_id == bindparam("client_id"))


def lookup_client(client_id: str) -> ClientRecord | None:
    """The client as a plain `ClientRecord`: from this process's cache while no process
    changed any client (client_cache.py), else read with one Core query."""
    return current_app.extensions["idp.client_cache"].get(client_id, _read_client)


def _read_client(client_id: str) -> ClientRecord | None:
    if "\x00" in client_id:  # PostgreSQL text holds no NUL (the query would fail): no client has one
        return None
    # An ORM `session.get` costs about four times as much CPU (identity map, session
    # state) for a row we only read.
    with db.engine.connect() as conn:
        row = conn.execute(_CLIENT_BY_ID, {"client_id": client_id}).first()
    return ClientRecord(**row._mapping) if row is not None else None



class AuthorizationServer(FlaskAuthorizationServer):
    def query_client(self, client_id):
        if not isinstance(client_id, str) or len(client_id) > 64:
            return None
        return lookup_client(client_id)

    def authenticate_client(self, request, methods, endpoint="token"):
        client = super().authenticate_client(request, methods, endpoint)
        if request.auth_method != "client_secret_basic" and sends_basic(request.headers):
            # Authlib passed over Basic credentials that failed and took the body's client_id
            # as a public client's: RFC 6749 §5.2 answers a failed Authorization header 401.
            raise InvalidClientError(status_code=401, description="the Basic credentials do not authenticate a client")
        # RFC 7521 §4.2 (and RFC 6749 §2.3: one client a request): a client_id beside
        # Basic credentials or an assertion names the client they authenticate. Authlib
        # ignored it, and the request's log lines named it instead (logs.client_id).
        if any(named != client.client_id for named in request.payload.datalist.get("client_id") or ()):
            raise InvalidRequestError("client_id does not match the authenticated client")
        return client

    def get_authorization_grant(self, request):
        response_type = request.payload.response_type
        if response_type and named(response_type) != response_type:
            # No grant answers it, and Authlib's refusal, which names it as sent, cannot be
            # built with a character no error description may hold (a ValueError: a 500).
            # A page, not the redirect: a type no product sends.
            raise UnsupportedResponseTypeError(f"The response type '{named(response_type)}' is not supported "
                                               "by the server.", named(response_type))
        return super().get_authorization_grant(request)

    def save_token(self, token, request):
        """Store what must be revocable: the refresh token, by hash, in its family."""
        if self.store_token(token, request):
            db.session.commit()

    def store_token(self, token, request) -> bool:
        """`save_token` without the commit (the refresh grant commits it with the rotation);
        True when there was something to store."""
        value = token.get("refresh_token")
        if not value:
            return False
        source = request.authorization_code or request.refresh_token or request.credential
        family = family_of(request, source.grant_id)
        dpop.bind_refresh_family(family, request.client, request)
        store_refresh_token(value, family, request.client.client_id)
        return True

    def create_oauth2_request(self, request):
        # The resumed authorization request is rebuilt from its stored parameters.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


class Issuer(IssuerParameter):
    def get_issuer(self):
        return current_app.extensions["idp.settings"].issuer

    def add_issuer_parameter(self, authorization_server, response):
        """RFC 9207's `iss` appended to the redirect Authlib just built (its query already
        encoded by `add_params_to_uri`, never a fragment: RFC 6749 §3.1.2), instead of
        parsing and encoding that query all over again for one more parameter."""
        location = response.location
        if not location or not self.get_issuer():
            return
        if "#" in location:  # not one of Authlib's redirects: its own, general way
            return super().add_issuer_parameter(authorization_server, response)
        query = urlencode({"iss": self.get_issuer()})
        response.location = f"{location}&{query}" if urlsplit(location).query else f"{location}?{query}"


def create_authorization_server(app) -> AuthorizationServer:
    server = AuthorizationServer()
    server.init_app(app)
    server.register_grant(AuthorizationCodeGrant,
                          [OpenIDCodeExtension(require_nonce=False), S256CodeChallenge(required=True),
                           dpop.DPoPCodeBinding()])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(DeviceCodeGrant)
    server.register_grant(TokenExchangeGrant)
    server.register_endpoint(DeviceAuthorizationService)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJWT())
    server.register_extension(Issuer())
    from .endpoints import register_endpoints

    register_endpoints(server)
    return server
