"""`/healthz` (the process serves) and `/readyz` (it can do its work: the database answers
and a signing key is loaded). Both are cheap, unthrottled and never touch the flow cookie,
so a load balancer may ask every second."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..store import db

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = {"database": "ok", "signing_key": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.commit()
    except Exception as err:  # noqa: BLE001 - any failure means "not ready"; the reason is reported
        db.session.rollback()
        checks["database"] = f"failed: {type(err).__name__}"
    else:
        try:
            current_app.extensions["idp.keyring"].signing_key()
        except Exception as err:  # noqa: BLE001
            checks["signing_key"] = f"failed: {type(err).__name__}"
    ready = all(v == "ok" for v in checks.values())
    resp = jsonify(status="ok" if ready else "fail", checks=checks)
    resp.status_code = 200 if ready else 503
    if not ready:
        resp.headers["Retry-After"] = "5"
    resp.headers["Cache-Control"] = "no-store"
    return resp
