"""The requests machines send most, answered in front of Flask.

Discovery, the JWKS, and a plain client_credentials grant, refresh_token grant or code
exchange (each DPoP-bound or not) are what relying parties, resource servers and services
ask every few seconds, and for them Flask's per-request machinery (request and response
objects, nine hooks, the session interface, context locals) cost more CPU than the answer
itself: 190-250 µs of the 190-530 µs each took (profiled in the closing note of issue 14).
This WSGI layer answers exactly those when the request is the plain case, with the headers,
request id, request line and metrics Flask's path gives them; everything else, and anything
that raises before a write, goes on to Flask untouched, which gives every error its one
answer.

A refresh grant and a code exchange are the exception to "anything that raises goes to
Flask": once their write may be committed, the presented token or code is spent, and Flask's
path would take it for a stolen one presented again and revoke the family. A fault from
then on (`fast_refresh.Committed`) is answered here, with what Flask answers an unexpected
fault (500, server_error).

It sits under ProxyFix and the metrics wrapper (see `create_app`), so both see its
requests as they see Flask's.
"""

from __future__ import annotations

import io
import json
import logging
import time
from urllib.parse import parse_qsl

from .. import security
from ..oauth import dpop, fast_code, fast_refresh, fast_token
from ..observability import logs, metrics
from . import cors
from .discovery import JWKS_CACHE, METADATA_CACHE, metadata_json, public_json_headers

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
MAX_FORM = 2048  # a plain grant's body is under 500 bytes; larger ones go to Flask
STATUS_LINES = {200: "200 OK", 500: "500 INTERNAL SERVER ERROR"}
# what security._handle_unexpected answers on an API path, as Flask's JSON writes it
SERVER_ERROR = b'{"error":"server_error","error_description":"internal error"}\n'
METADATA_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class MachineEndpoints:
    """WSGI middleware: `flask_app` is the Flask app, `next_app` what answers the rest."""

    def __init__(self, flask_app, next_app):
        self.flask_app = flask_app
        self.next_app = next_app

    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        if method == "GET" and (path == "/jwks.json" or path in METADATA_PATHS):
            handler = self._jwks if path == "/jwks.json" else self._metadata
        elif method == "POST" and path == "/token":
            handler = self._token
        else:
            return self.next_app(environ, start_response)
        started = time.perf_counter()
        status, failure = 200, None
        try:
            with self.flask_app.app_context():
                answer = handler(environ)
        except fast_refresh.Committed as exc:
            # A refresh token was rotated, or a code spent: Flask's path would find it spent and revoke its
            # family, so the answer is the one Flask gives an unexpected fault, given here.
            status, failure = 500, exc
            answer = SERVER_ERROR, [("Content-Type", "application/json")], exc.client_id
        except Exception as exc:  # noqa: BLE001 - Flask's path answers it (a 503 when the database is down)
            log.debug("machine endpoint %s fell back to Flask: %s", path, type(exc).__name__)
            answer = None
        if answer is None:
            return self.next_app(environ, start_response)
        body, headers, client_id = answer
        settings = self.flask_app.extensions["idp.settings"]
        rid = logs.new_request_id(environ.get("HTTP_X_REQUEST_ID", ""), settings.trusted_proxies)
        if failure is not None:  # as security._handle_unexpected logs it; the request line follows
            log.error("unexpected error on %s %s", method, path, exc_info=failure,
                      extra={"request_id": rid, "client_id": client_id})
        headers += [("Content-Length", str(len(body))), *security.always_headers(settings),
                    (logs.REQUEST_ID_HEADER, rid)]
        if path in cors.PATHS:  # as cors.add_headers gives Flask's answers
            headers += cors.HEADERS
        start_response(STATUS_LINES[status], headers)
        environ[metrics.ROUTE_KEY] = path
        logs.log_request(method, path, status, started, environ.get("REMOTE_ADDR"), request_id=rid,
                         client_id=client_id)
        return [body]

    def _jwks(self, environ):
        return self.flask_app.extensions["idp.keyring"].jwks_json(), public_json_headers(JWKS_CACHE), None

    def _metadata(self, environ):
        return metadata_json(self.flask_app), public_json_headers(METADATA_CACHE), None

    def _token(self, environ):
        if environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != FORM:
            return None
        if environ.get("QUERY_STRING"):
            return None  # Authlib reads parameters from the query string too
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= MAX_FORM:
            return None
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again if we do not answer
        environ["CONTENT_LENGTH"] = str(len(raw))
        try:
            form = parse_qsl(raw.decode("ascii"), keep_blank_values=True, max_num_fields=6)
        except ValueError:  # not ASCII, or too many fields
            return None
        if ("grant_type", fast_refresh.GRANT_TYPE) in form:
            return self._rotating(environ, form, fast_refresh)
        if ("grant_type", fast_code.GRANT_TYPE) in form:
            return self._rotating(environ, form, fast_code)
        return self._client_credentials(environ, form)

    def _client_credentials(self, environ, form):
        found = fast_token.plain_request(form, environ.get("HTTP_AUTHORIZATION"))
        if found is None:
            return None
        client, scope = found
        bound, jkt = fast_token.dpop_binding(client, environ.get("HTTP_DPOP"), dpop.token_endpoint_url())
        if not bound:
            return None
        # From here on a proof's jti is spent: should signing raise, Flask's path answers
        # with the proof refused as replayed (the client sends a new one), not with a token.
        body = fast_token.token_body(client, scope, jkt).encode()
        # as every token endpoint answer has (RFC 9449 §8)
        headers = [*fast_token.HEADERS.items(), ("DPoP-Nonce", dpop.current_nonce())]
        metrics.token_grant_result("client_credentials", "success")
        return body, headers, client.client_id


    def _rotating(self, environ, form, grant):
        """A refresh grant (`grant` is fast_refresh) or a code exchange (fast_code): what
        they present is spent once they have answered."""
        fields = dict(form)
        if len(fields) != len(form):
            return None  # a repeated parameter: Flask's path
        found = grant.grant(fields, environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_DPOP"))
        if found is None:
            return None
        client, token = found
        try:  # the token or code is spent and committed: nothing below may fall back to Flask
            # what Flask's JSON provider writes (sorted keys, ASCII), without its app lookups
            body = json.dumps(token, sort_keys=True).encode()
            headers = [*fast_token.HEADERS.items(), ("DPoP-Nonce", dpop.current_nonce())]
            metrics.token_grant_result(grant.GRANT_TYPE, "success")
        except Exception as exc:
            raise fast_refresh.Committed(client.client_id) from exc
        return body, headers, client.client_id
