"""SCIM errors (RFC 7644 §3.12): one exception type, answered in one place as an error body."""

from __future__ import annotations

import json

from flask import Response

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
MEDIA_TYPE = "application/scim+json"


class ScimError(Exception):
    """An answer with an HTTP status, an optional `scimType` (invalidFilter, invalidValue,
    invalidSyntax, mutability, uniqueness, noTarget, tooMany ...) and a readable detail."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = headers or {}


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidFilter")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidSyntax")


def mutability(detail: str) -> ScimError:
    return ScimError(400, detail, "mutability")


def no_target(detail: str) -> ScimError:
    return ScimError(400, detail, "noTarget")


def not_found(detail: str = "Resource not found") -> ScimError:
    return ScimError(404, detail)


def scim_response(body: dict | None, status: int = 200, headers: dict | None = None) -> Response:
    resp = Response(json.dumps(body) if body is not None else b"", status=status,
                    mimetype=MEDIA_TYPE if body is not None else None)
    resp.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def error_response(error: ScimError) -> Response:
    body = {"schemas": [ERROR_SCHEMA], "status": str(error.status), "detail": error.detail}
    if error.scim_type:
        body["scimType"] = error.scim_type
    return scim_response(body, error.status, error.headers)


# HTTP errors raised outside our views (unknown path, wrong method, body too large): the
# same error body, so a directory never has to parse an HTML page.
HTTP_DETAILS = {
    404: "Resource not found",
    405: "Method not allowed on this endpoint",
    413: "Request body too large",
}


def http_error_response(code: int, description: str | None = None) -> Response:
    return error_response(ScimError(code, HTTP_DETAILS.get(code, description or "Bad request")))
