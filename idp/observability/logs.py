"""The server's log: text or one JSON object a line (`IDP_LOG_FORMAT`, SPEC §2), a request id
on every line written while answering a request, one line per request, and a last filter
that masks secrets whatever a log call was given.

JSON by a small stdlib Formatter rather than python-json-logger: the fields are few and
fixed by SPEC §2 (`time`, `level`, `event`, `request_id`, `client_id`, `user_id`), so a
dependency would save a dozen lines and add its own field renaming rules to learn.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

# Flask is imported by the functions that run in a request: `idp` commands that write with
# SQLAlchemy Core log their audit lines through `configure` without it (issue 14).
if TYPE_CHECKING:
    from flask import Flask

REQUEST_ID_HEADER = "X-Request-ID"
# What we take from a proxy's X-Request-ID: short, and nothing that could forge a log line.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
CLIENT_ID = re.compile(r"[A-Za-z0-9._~:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("request_id", "client_id", "user_id")
# Polled by load balancers every second or so: their lines only at DEBUG.
QUIET_PATHS = ("/healthz", "/readyz")
request_log = logging.getLogger("idp.request")

# --- redaction ------------------------------------------------------------------------

REDACTED = "[redacted]"
# Parameter, form and JSON member names whose values are credentials or one-time codes.
SECRET_NAMES = (
    r"(?:access_|refresh_|id_|logout_|subject_|actor_|registration_access_|initial_access_|scim_|device_)?token"
    r"|code|device_code|user_code|code_verifier|password|new_password|current_password|passwd|secret"
    r"|client_secret|client_assertion|assertion|SAMLResponse|SAMLRequest|otp|recovery_code|csrf_token"
    r"|refresh_token_hash|(?:__Host-)?idp_(?:session|flow|device)"
)
# (cheap test on the text, pattern, replacement): a line (most request lines) that fails the
# test skips the pattern, so the net costs a few microseconds where there is nothing to mask.
_PATTERNS = [
    # name=value in query strings, forms, cookies and `key=value` log text
    (lambda t, low: "=" in t, re.compile(rf"(?i)\b({SECRET_NAMES})=([^&\s;,'\"]+)"), rf"\1={REDACTED}"),
    # "name": "value" (JSON) and 'name': 'value' (Python reprs)
    (lambda t, low: ":" in t and ("'" in t or '"' in t),
     re.compile(rf"(?i)([\"']({SECRET_NAMES})[\"']\s*:\s*)([\"'])(.*?)\3"), rf"\1\3{REDACTED}\3"),
    # Authorization / Cookie headers, whatever the scheme
    (lambda t, low: "authorization" in low or "cookie" in low or "dpop" in low,
     re.compile(r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|dpop)([\"']?\s*[:=]\s*[\"']?)[^\n\"']+"),
     rf"\1\2{REDACTED}"),
    (lambda t, low: "bearer" in low or "basic" in low or "dpop" in low,
     re.compile(r"(?i)\b(Bearer|Basic|DPoP)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # any JWT (access, ID, logout, registration tokens; signed request objects)
    (lambda t, low: "eyJ" in t, re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
]


def redact(text: str, secret_paths: re.Pattern | None = None) -> str:
    """`text` with every credential-looking value masked."""
    low = text.lower()
    for worth_trying, pattern, replacement in _PATTERNS:
        if worth_trying(text, low):
            text = pattern.sub(replacement, text)
    if secret_paths is not None:
        text = secret_paths.sub(rf"\1{REDACTED}", text)
    return text


class Redact(logging.Filter):
    """The safety net on every handler: no password, secret, code, token or cookie gets
    written, whatever a log call (ours or a library's, at any level) was given. A record
    marked `unredacted` (`idp dev`'s mail, links included, on a developer's machine) passes."""

    # Paths with a mailed token in them (/password/reset/<token>), from the app's routes.
    secret_paths: re.Pattern | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "unredacted", False):
            return True
        message = record.getMessage()
        record.msg = redact(message, Redact.secret_paths)
        record.args = None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {k: redact(v, Redact.secret_paths) if isinstance(v, str) else v
                             for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, Redact.secret_paths)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, Redact.secret_paths)
        return True


def note_secret_paths(app: Flask) -> None:
    """Learn the routes that carry a token in the path, for `Redact`."""
    prefixes = sorted({rule.rule.split("<", 1)[0] for rule in app.url_map.iter_rules()
                       if {"token", "code", "secret"} & set(rule.arguments)})
    if prefixes:
        Redact.secret_paths = re.compile("(" + "|".join(re.escape(p) for p in prefixes) + r")[^/\s?#\"']+")


# --- request context ------------------------------------------------------------------

def request_id() -> str:
    """This request's id: the trusted proxy's X-Request-ID when sane, else a new one."""
    from flask import g, request

    rid = g.get("request_id")
    if rid is None:
        g.request_id = rid = new_request_id(request.headers.get(REQUEST_ID_HEADER, ""), _trusted_proxies())
    return rid


def new_request_id(given: str, trusted: int) -> str:
    """The id a request is known by: the X-Request-ID a trusted proxy gave when sane, else a new one."""
    if trusted and SANE_REQUEST_ID.fullmatch(given):
        return given
    return secrets.token_hex(12)


def _trusted_proxies() -> int:
    from flask import current_app

    return current_app.extensions["idp.settings"].trusted_proxies


def client_id() -> str | None:
    """The client a request names (form, query or HTTP Basic user), when it looks like one."""
    from flask import request

    try:
        named = request.form.get("client_id") or request.args.get("client_id")
        if not named and request.authorization and request.authorization.type == "basic":
            named = request.authorization.username
    except Exception:  # noqa: BLE001 - a malformed request still gets its log line
        return None
    return named if named and CLIENT_ID.fullmatch(named) else None


def user_id() -> str | None:
    from flask import g

    browser = g.get("browser_session")
    return getattr(browser, "user_id", None)


class RequestContext(logging.Filter):
    """Adds the request id and the client and account ids to lines written during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        flask = sys.modules.get("flask")  # a process that never imported Flask has no request
        if flask is not None and flask.has_request_context():
            try:
                record.request_id = request_id()
                record.client_id = client_id()
                record.user_id = user_id()
            except Exception:  # noqa: BLE001 - outside an app (a bare request context): no ids
                pass
        return True


# --- formatters -----------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, event, logger, pid, then what is known."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "event": record.getMessage(),
            "logger": record.name,
            "pid": record.process,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # As \uXXXX escapes, the same string to a JSON reader: a terminal showing the log is not
        # sent C1 controls nor bidirectional reordering (`one_line` does this for text lines).
        return _RAW_IN_JSON.sub(_json_escaped, json.dumps(entry, ensure_ascii=False, default=str))


def _json_escaped(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


# Line breaks (CR, LF, NEL, U+2028/9), the other control characters, and the bidirectional
# controls (U+061C, U+200E/F, U+202A-E, U+2066-9): what a client sent (a request's path,
# percent-decoded; a name chosen at sign-up) must not end a text line and start one of its
# own, nor reorder what a terminal shows after it on the line ("Trojan Source", CVE-2021-42574).
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{_BIDI}]")
# What json.dumps(ensure_ascii=False) leaves as it is of those (it escapes \x00-\x1f only).
_RAW_IN_JSON = re.compile(f"[\\x7f-\\x9f\\u2028\\u2029{_BIDI}]")


def _escaped(match: re.Match) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def one_line(text: str) -> str:
    """`text` with its line breaks and control characters written as escapes (`\\n`, `\\x1b`):
    someone else's text (a name anyone may choose at sign-up) on a log line or the operator's
    terminal, where it must not start a line of its own nor send the terminal a command."""
    return _CONTROL.sub(_escaped, text)


class TextFormatter(logging.Formatter):
    """The classic line, with the request's ids appended when there are some; one line a
    record (a traceback follows it, indented as Python writes it)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS
                         if getattr(record, name, None) is not None)
        line = f"{line} {extra}" if extra else line
        if getattr(record, "unredacted", False):  # `idp dev`'s mail, for its developer to read as mailed
            return line
        return one_line(line)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(settings) -> None:
    """Set up the root logger's handler (once per process; again when settings change).

    A process whose root logger already has handlers of someone else's (a test runner's)
    keeps them, as `logging.basicConfig` would."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "idp", False)]
    if not ours and root.handlers:
        return
    handler = ours[0] if ours else logging.StreamHandler()
    handler.idp = True
    handler.setFormatter(formatter(settings.log_format))
    handler.filters = [RequestContext(), Redact()]
    if not ours:
        root.addHandler(handler)
    root.setLevel(settings.log_level)


def granian_config(log_format: str) -> dict | None:
    """Granian's own logging (its parent process and workers) in our format, or None for its own."""
    if log_format != "json":
        return None
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json",
               "filters": ["redact"]}
    return {
        "formatters": {"json": {"()": "idp.observability.logs.JsonFormatter"}},
        "filters": {"redact": {"()": "idp.observability.logs.Redact"}},
        "handlers": {"console": handler, "access": handler},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


# --- per request ----------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Request ids and the request line; call first, so the line is written last."""
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    from flask import g

    g.log_started = time.perf_counter()


def _finish(response):
    from flask import g, request

    response.headers[REQUEST_ID_HEADER] = request_id()
    # never the query string: codes and tokens travel there
    log_request(request.method, request.path, response.status_code, g.get("log_started"), request.remote_addr)
    return response


def log_request(method: str, path: str, status: int, started: float | None, remote_addr: str | None,
                **ids: str | None) -> None:
    """The request's line. `ids`: request_id and client_id, given where no Flask request
    context supplies them (`RequestContext`), as in endpoints/machine.py."""
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if request_log.isEnabledFor(level):
        took = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
        request_log.log(level, "%s %s %s %s ms", method, path, status, took,
                        extra={**ids, "fields": {"method": method, "path": path, "status": status,
                                                 "duration_ms": took, "remote_addr": remote_addr}})

