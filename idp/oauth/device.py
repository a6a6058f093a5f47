"""Device authorization grant (RFC 8628) on Authlib's endpoint and grant classes."""

from __future__ import annotations

from datetime import timedelta

from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidGrantError, UnauthorizedClientError
from authlib.oauth2.rfc8628 import (
    AuthorizationPendingError,
    DeviceAuthorizationEndpoint,
    ExpiredTokenError,
    SlowDownError,
)
from authlib.oauth2.rfc8628 import (
    DeviceCodeGrant as AuthlibDeviceCodeGrant,
)
from flask import current_app
from sqlalchemy import update

from ..accounts import can_sign_in
from ..store import DeviceAuthorization, Grant, User, db, digest, utcnow
from ..store.clients import DEVICE_CODE
from .grants import TOKEN_AUTH_METHODS, IssuesSignedTokens, add_id_token

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words; no look-alike digits
DEVICE_CODE_TTL = 600


def normalize_user_code(value: str) -> str:
    """What a person typed, as stored: upper case, letters only ("bcdf-ghjk" = "BCDFGHJK")."""
    return "".join(ch for ch in value.upper() if ch in USER_CODE_ALPHABET)


class DeviceAuthorizationService(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS
    USER_CODE_TYPE = "string"
    EXPIRES_IN = DEVICE_CODE_TTL
    INTERVAL = 5

    def authenticate_client(self, request):
        client = super().authenticate_client(request)
        if not client.check_grant_type(DEVICE_CODE):
            raise UnauthorizedClientError("the client is not registered for the device flow")
        return client

    def get_verification_uri(self):
        return f"{current_app.extensions['idp.settings'].issuer}/device"

    def save_device_credential(self, client_id, scope, data):
        client = self.server.query_client(client_id)
        db.session.add(DeviceAuthorization(
            device_code_hash=digest(data["device_code"]),
            user_code_hash=digest(normalize_user_code(data["user_code"])),
            client_id=client_id,
            scope=client.get_allowed_scope(scope) if scope else client.get_allowed_scope(client.scope),
            expires_at=utcnow() + timedelta(seconds=self.EXPIRES_IN),
            interval=self.INTERVAL,
        ))
        db.session.commit()


class DeviceCodeGrant(IssuesSignedTokens, AuthlibDeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def token_family(self):
        return db.session.get(Grant, self.request.credential.grant_id)

    def query_device_credential(self, device_code):
        row = db.session.get(DeviceAuthorization, digest(device_code))
        if row is None:
            raise InvalidGrantError("unknown device_code")
        return row

    def validate_device_credential(self, credential):
        if credential.status == "used":
            raise InvalidGrantError("device_code already used")
        if credential.is_expired():
            raise ExpiredTokenError()
        if credential.status == "denied":
            raise AccessDeniedError()
        if credential.status == "approved":
            user = db.session.get(User, credential.user_id)
            if not can_sign_in(user):  # disabled, or (from before the rule) unverified since
                raise AccessDeniedError()
            family = db.session.get(Grant, credential.grant_id)
            if family is None or family.revoked_at is not None:  # signed out everywhere since the approval
                raise AccessDeniedError()
            return user
        now = utcnow()
        too_fast = credential.last_polled_at and (now - credential.last_polled_at).total_seconds() < credential.interval
        credential.last_polled_at = now
        if too_fast:
            credential.interval += 5  # RFC 8628 §3.5: slow_down adds 5 seconds
        db.session.commit()
        raise SlowDownError() if too_fast else AuthorizationPendingError()

    def create_token_response(self):
        # The device code is single-use: claim it atomically before issuing.
        claimed = db.session.execute(
            update(DeviceAuthorization)
            .where(DeviceAuthorization.device_code_hash == self.request.credential.device_code_hash,
                   DeviceAuthorization.status == "approved")
            .values(status="used")
        ).rowcount
        db.session.commit()
        if claimed != 1:
            raise InvalidGrantError("device_code already used")
        status, token, headers = super().create_token_response()
        add_id_token(token, self.request.client, self.request.user, self.token_family())
        return status, token, headers


def find_by_user_code(user_code: str) -> DeviceAuthorization | None:
    """The pending request a person's typed code names, if it is still waiting."""
    normalized = normalize_user_code(user_code)
    if len(normalized) != 8:
        return None
    row = db.session.query(DeviceAuthorization).filter_by(user_code_hash=digest(normalized)).one_or_none()
    if row is None or row.status != "pending" or row.is_expired():
        return None
    return row


def decide(row: DeviceAuthorization, user: User, browser, approve: bool) -> bool:
    """Record the person's answer; an approval opens the token family the device will use.
    False when the request was decided meanwhile (another tab, another person who knows
    the code): the answer is written only while it is pending, so a second one never
    reconnects the device to another account."""
    table = DeviceAuthorization.__table__
    still_pending = (table.c.device_code_hash == row.device_code_hash) & (table.c.status == "pending")
    values = {"status": "denied"}
    if approve:
        family = Grant(client_id=row.client_id, user_id=user.id, scope=row.scope, sid=browser.id,
                       auth_time=browser.auth_time, amr=list(browser.amr), acr=browser.acr)
        db.session.add(family)
        db.session.flush()
        values = {"status": "approved", "user_id": user.id, "grant_id": family.id}
    if db.session.execute(update(table).where(still_pending).values(**values)).rowcount != 1:
        db.session.rollback()  # the family too
        return False
    db.session.commit()
    return True

