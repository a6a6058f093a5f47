"""Request-wide protections: CSRF on every form, security headers, and error answers."""

from __future__ import annotations

import base64
import binascii
import logging
from functools import partial
from urllib.parse import urlencode

from flask import (Flask, Response, current_app, jsonify, make_response, redirect, render_template, request, session,
                   url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import BadHost, HTTPException, RequestEntityTooLarge

from .i18n import gettext as _

log = logging.getLogger(__name__)
csrf = CSRFProtect()

# Machine-facing paths answer errors in JSON, people get a page.
API_PREFIXES = ("/token", "/revoke", "/introspect", "/userinfo", "/register", "/jwks", "/.well-known", "/par",
                "/device_authorization", "/healthz", "/readyz", "/scim/")
SCIM_PREFIX = "/scim/"

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'"
)


ALWAYS_HEADERS = (("X-Content-Type-Options", "nosniff"),)
PAGE_HEADERS = ALWAYS_HEADERS + (
    ("Content-Security-Policy", PAGE_CSP),
    ("X-Frame-Options", "DENY"),
    # Codes and states in URLs must not leak to other sites through Referer.
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIXES)


class FlowSessionInterface(SecureCookieSessionInterface):
    """The signed flow cookie, not even parsed on machine endpoints: they never use it,
    and the token endpoint is the hottest path (about 30 µs a request)."""

    _serializer = (None, None)  # (the keys it was made for, the serializer)

    def open_session(self, app, request):
        if request.path.startswith(API_PREFIXES):
            return self.session_class()
        return super().open_session(app, request)

    def get_signing_serializer(self, app):
        """Flask's serializer, made once per key set rather than twice a request (it holds
        no per-call state); a changed SECRET_KEY or fallback list makes a new one."""
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached_keys, serializer = self._serializer
        if cached_keys != keys:
            serializer = super().get_signing_serializer(app)
            self._serializer = (keys, serializer)
        return serializer


def bind_csrf_to_session() -> None:
    """before_request, ahead of CSRFProtect: a CSRF token belongs to the session cookie it
    was issued beside. The flow cookie notes which one (a hash); when the browser now
    carries another session cookie (a flow cookie planted from elsewhere, or kept across a
    sign-in), its token is dropped, so a form made for one session never posts for another.
    """
    if not is_api_request():
        _bind_csrf()


def _bind_csrf() -> None:
    from . import sessions

    current = sessions.flow_binding(request.cookies.get(sessions.cookie_name(sessions.COOKIE)))
    if session.get(sessions.FLOW_BINDING, sessions.flow_binding(None)) != current:
        session.pop("csrf_token", None)  # Flask-WTF's raw token: validation now fails
        session[sessions.FLOW_BINDING] = current


def refuse_undecodable_basic():
    """before_request: HTTP Basic credentials that are not UTF-8 once decoded are a failed
    client authentication (RFC 6749 §5.2), not a 500: Authlib's parser (used by the fast
    client_credentials path too) decodes them as UTF-8 and lets the error through."""
    return _refuse_undecodable_basic() if is_api_request() else None


def _refuse_undecodable_basic():
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() != "basic ":
        return None
    try:
        base64.b64decode(auth[6:].strip()).decode("utf-8")
    except binascii.Error:
        return None  # Authlib's parser answers these itself
    except UnicodeDecodeError:
        response = jsonify(error="invalid_client", error_description="client credentials are not UTF-8")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="token"'
        response.headers["Cache-Control"] = "no-store"
        return response
    return None


def check_request():
    """before_request: `bind_csrf_to_session` for a page, `refuse_undecodable_basic` for a
    machine endpoint, as one hook with one look at the path (each hook Flask runs costs
    on every request, and each check did nothing for the other kind)."""
    if request.path.startswith(API_PREFIXES):
        return _refuse_undecodable_basic()
    if isinstance(request.routing_exception, BadHost):
        # A Host (or trusted X-Forwarded-Host) werkzeug cannot bind: no URL can be built for
        # this request, so neither can a page (its links), the error page included.
        return Response(_("The request could not be handled."), 400, mimetype="text/plain")
    if has_nul():
        # PostgreSQL text holds no NUL: such a value reaching a query was a 500
        return error_page(_("The request could not be handled."), 400)
    _bind_csrf()
    return None


def has_nul(form: bool = True) -> bool:
    """A NUL character in the request's path, query or (`form`) form values: never in a real one."""
    if "\x00" in request.path:
        return True
    try:
        sources = (request.args, request.form) if form and request.method == "POST" else (request.args,)
        return any("\x00" in value for source in sources for _, values in source.lists() for value in values)
    except RequestEntityTooLarge:
        # Left to the view, which meets the same 413 reading its form: the SAML ACS counts
        # every post against its address first, one too large included.
        return False


# On an https issuer only: browsers then never try plain http (or let a person click through
# a certificate warning) for this host, so a typed address cannot be stripped to http.
TRANSPORT_SECURITY = (("Strict-Transport-Security", "max-age=31536000"),)


def always_headers(settings) -> tuple:
    """What every answer that is not a page carries (`add_headers`; endpoints/machine.py's too)."""
    return ALWAYS_HEADERS + TRANSPORT_SECURITY if settings.secure_cookies else ALWAYS_HEADERS


def add_headers(response: Response, always=ALWAYS_HEADERS, page=PAGE_HEADERS) -> Response:
    headers = response.headers
    # One pass over the headers, not a lookup per name: werkzeug's `setdefault` raises and
    # catches an HTTP exception for every header that is missing (most of them, always).
    present = {name.lower() for name in headers.keys()}
    wanted = page if response.mimetype == "text/html" else always
    for name, value in wanted:
        if name.lower() not in present:
            headers.add(name, value)
    return response


def error_page(message: str, status: int = 400, detail: str | None = None) -> tuple[str, int]:
    """A page saying `message` in the person's language; `detail` is what a protocol error
    says for the developer who sent the request (in English, marked as such)."""
    return render_template("error.html", message=message, detail=detail), status


# The longest request target `idp serve` reads (Granian's HTTP parser): a longer one gets a
# bare 414 with nothing for the person to read.
MAX_TARGET = 65534


def as_get():
    """This POST, sent again by the browser as a GET of the same path and parameters (303).

    Products post some requests to the person's browser pages (an authorization request, a
    sign-out): a form on the product's site, so a cross-site POST, which carries no
    SameSite=Lax cookie and would not see the person's session. The GET is a top-level
    navigation, which carries it."""
    target = f"{url_for(request.endpoint)}?{urlencode(list(request.values.items(multi=True)))}"
    if len(target) > MAX_TARGET:  # a redirect no one could follow: say so instead
        return error_page(_("The request was too large."), 413)
    return redirect(target, code=303)


def _handle_http_error(error: HTTPException) -> Response:
    response = make_response(_http_error_body(error))
    # werkzeug's headers for the error, ours being only the body: a 405's Allow, which
    # RFC 9110 §15.5.6 requires
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _http_error_body(error: HTTPException):
    if request.path.startswith(SCIM_PREFIX):  # unknown path or method under /scim: a SCIM error body
        from .scim.errors import http_error_response

        return http_error_response(error.code or 400, error.description)
    if is_api_request():
        code = {404: "not_found", 405: "invalid_request", 413: "invalid_request"}.get(error.code, "invalid_request")
        return jsonify(error=code, error_description=error.description), error.code
    messages = {
        404: _("This page does not exist."),
        405: _("This page cannot be used that way."),
        413: _("The request was too large."),
    }
    return error_page(messages.get(error.code, _("The request could not be handled.")), error.code or 400)


def _handle_csrf(error: CSRFError):
    return error_page(_("This form has expired. Go back, reload the page and try again."), 400)


def _handle_database_down(error: DBAPIError):
    """The database cannot be reached: a quick 503 with Retry-After, one log line, no
    traceback; the pool reconnects by itself when it is back (idp._ping_if_idle)."""
    if not error.connection_invalidated and not isinstance(error, OperationalError):
        return _handle_unexpected(error)
    log.error("database unavailable on %s %s: %s", request.method, request.path, type(error.orig).__name__)
    from .store import db

    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection is gone already
        pass
    if is_api_request():
        resp = jsonify(error="temporarily_unavailable", error_description="try again shortly")
    else:
        resp = error_page(_("The service is busy. Please try again in a moment."), 503)[0]
    return resp, 503, {"Retry-After": "5"}


def _handle_unexpected(error: Exception):
    log.exception("unexpected error on %s %s", request.method, request.path)
    if request.path.startswith(SCIM_PREFIX):
        from .scim.errors import ScimError, error_response

        return error_response(ScimError(500, "Internal error"))
    if is_api_request():
        return jsonify(error="server_error", error_description="internal error"), 500
    return error_page(_("Something went wrong on our side. Please try again."), 500)


def init_app(app: Flask) -> None:
    app.session_interface = FlowSessionInterface()
    app.before_request(check_request)  # must run before CSRFProtect's own check
    csrf.init_app(app)
    if app.extensions["idp.settings"].secure_cookies:  # the issuer is https
        app.after_request(partial(add_headers, always=always_headers(app.extensions["idp.settings"]),
                                  page=PAGE_HEADERS + TRANSPORT_SECURITY))
    else:
        app.after_request(add_headers)
    app.register_error_handler(CSRFError, _handle_csrf)
    app.register_error_handler(DBAPIError, _handle_database_down)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(Exception, _handle_unexpected)


def app_key(purpose: bytes) -> bytes:
    """The app's key for `purpose` (`keys.derive_key` from IDP_SECRET_KEY), derived once per
    process: every process of the deployment derives the same, without sharing state."""
    from keys import derive_key

    cache = current_app.extensions.setdefault("idp.app_keys", {})
    key = cache.get(purpose)
    if key is None:
        key = cache[purpose] = derive_key(current_app.extensions["idp.settings"].secret_key, purpose)
    return key
