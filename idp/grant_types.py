"""The grant types, scopes and client authentication methods a client may be registered
for: plain names, importable without the database layer (`idp --help` builds its parser
from them, `idp clients create` checks a client with them)."""

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", DEVICE_CODE, TOKEN_EXCHANGE)
SCOPES = ("openid", "profile", "email", "offline_access", "groups")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
