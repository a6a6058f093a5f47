"""Security review of the Admin Center, second pass (branch review-admin2): each test shows
one finding through the live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import uuid

from tests.admin_world import get, new_org, org_admin, signed_in


def _org_and_admin(live, tag: str) -> dict:
    org_id, name, domain = new_org(live, tag)
    email = f"boss-{uuid.uuid4().hex[:6]}@{domain}"
    admin_id = org_admin(live, name, email)
    return {"org": org_id, "name": name, "domain": domain, "admin": admin_id, "email": email,
            "b": signed_in(live, email), "base": f"/admin/orgs/{org_id}"}


# --- the audit log: a cursor or a date out of range (500, a broken CSV stream) ------------

def test_an_out_of_range_audit_log_cursor_or_date_is_answered_not_a_500(live):
    """Low - OWASP ASVS 7.4.1 (a generic message, no crash, on bad input): `before=10**20`
    overflowed the database's integer and `to=9999-12-31` the day after it; the export's
    stream broke off after its header."""
    w = _org_and_admin(live, "rv2-range")
    log = f"{w['base']}/audit-log"
    for params in ({"before": str(10**20)}, {"before": str(-10**20)}, {"to": "9999-12-31"},
                   {"from": "0001-01-01", "to": "9999-12-31"}):
        resp = get(w["b"], log, **params)
        assert resp.status_code == 200 and "Something went wrong" not in resp.text, (params, resp.status_code)
    # the admin's own sign-in is in the log, and the last day there is still includes it
    resp = get(w["b"], log + ".csv", to="9999-12-31")
    assert resp.status_code == 200
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0][0] == "time_utc" and any(r[3] == "signin.success" and r[4] == w["email"] for r in rows[1:])
