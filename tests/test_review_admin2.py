"""Security review of the Admin Center, second pass (branch review-admin2): each test shows
one finding through the live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import time
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


# --- invitations: one mailbox flooded by "Resend invitation" ------------------------------

def test_resending_an_invitation_again_and_again_is_throttled_per_address(live):
    """Low - OWASP ASVS 11.1.4 (anti-automation: no unlimited mail to one address): each press
    of Resend invitation mailed the invitee again, without limit (a reset mail is throttled
    per address, `reset:address`)."""
    from idp.store import User, db
    from tests.admin_world import post

    w = _org_and_admin(live, "rv2-flood")
    invitee, other = (f"{tag}-{uuid.uuid4().hex[:6]}@{w['domain']}" for tag in ("flood", "calm"))
    for address in (invitee, other):
        assert post(w["b"], f"{w['base']}/users", {"email": address}).status_code == 302
    with live.db():
        ids = dict(db.session.query(User.email, User.id).filter(User.email.in_((invitee, other))).all())
    answers = [post(w["b"], f"{w['base']}/users/{ids[invitee]}/resend-invitation") for _ in range(8)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused and "Too many attempts" in refused[0].text and int(refused[0].headers["Retry-After"]) > 0
    assert all(r.status_code == 302 for r in answers[:3])  # a few resends are fine
    sent = 1 + sum(r.status_code == 302 for r in answers)
    assert sent <= 6
    live.mailbox.wait_for(invitee, count=sent)
    time.sleep(1)  # none of the refused ones follows
    assert len(live.mailbox.to(invitee)) == sent
    # another invitee of the same org is not held up by it
    assert post(w["b"], f"{w['base']}/users/{ids[other]}/resend-invitation").status_code == 302
