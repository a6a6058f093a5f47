"""Admin Center, Audit log: the org's events (who, what, to whom, when, from where), filters,
keyset pages, the CSV export, and nobody else's events."""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from datetime import datetime, timedelta

import pytest

from tests.admin_world import PASSWORD, get, new_org, org_admin, person, signed_in
from tests.conftest import Browser


@pytest.fixture(scope="module")
def world(live):
    org_id, name, domain = new_org(live, "log-a")
    other_id, other_name, other_domain = new_org(live, "log-b")
    tag = uuid.uuid4().hex[:6]
    admin_email, member_email = f"boss-{tag}@{domain}", f"member-{tag}@{domain}"
    other_admin_email, outsider_email = f"boss-{tag}@{other_domain}", f"secret-{tag}@{other_domain}"
    world = {
        "org": org_id, "name": name, "domain": domain, "other": other_id,
        "admin_email": admin_email, "admin": org_admin(live, name, admin_email),
        "member_email": member_email, "member": person(live, member_email, org_id),
        "other_admin_email": other_admin_email, "other_admin": org_admin(live, other_name, other_admin_email),
        "outsider_email": outsider_email, "outsider": person(live, outsider_email, other_id),
        "log": f"/admin/orgs/{org_id}/audit-log",
    }
    world["b"] = signed_in(live, admin_email)
    signed_in(live, member_email)  # the member signs in: their org's log shows it
    signed_in(live, outsider_email)  # another org's member: never in this log
    bad = Browser(live.issuer)
    bad.sign_in(bad.get(f"{live.issuer}/account"), member_email, "not the password")
    # the admin acts on the member, and changes the sign-in options
    b = world["b"]
    page = b.get(f"{live.issuer}/admin/orgs/{org_id}/users/{world['member']}")
    confirm = b.submit(page, {}, action=f"/admin/orgs/{org_id}/users/{world['member']}/sign-out")
    b.submit(confirm, {"confirmed": "yes"})
    options = b.get(f"{live.issuer}/admin/orgs/{org_id}/sign-in-options")
    b.submit(options, {"allow_social": "on", "allow_passkeys": "on"})
    return world


def _rows(html: str) -> list[dict]:
    """The log's table: one dict per event, as shown."""
    rows = []
    for event_id, kind, cells in re.findall(r'<tr data-event-id="(\d+)" data-kind="([^"]+)">(.*?)</tr>', html, re.S):
        when, who, what, whom, ip = [c.strip() for c in re.findall(r"<td>(.*?)</td>", cells, re.S)]
        rows.append({"id": int(event_id), "kind": kind, "when": when, "who": who, "what": what, "whom": whom,
                     "ip": ip})
    return rows


def test_the_log_shows_who_did_what_to_whom_when_and_from_where(live, world):
    page = get(world["b"], world["log"])
    assert page.status_code == 200
    for label in ("Person (email)", "Event", "From", "To", "Export CSV"):
        assert label in page.text
    rows = _rows(page.text)
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)  # newest first
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    member, admin = world["member_email"], world["admin_email"]
    # the admin's actions: by the admin, to the member (or to nobody: an org-wide setting)
    assert by_kind["admin.signed_out"][0] | {"id": 0, "when": ""} == {
        "id": 0, "when": "", "kind": "admin.signed_out", "who": admin, "what": "Signed out of all sessions by an "
        "administrator", "whom": member, "ip": "127.0.0.1"}
    options = by_kind["org.options_changed"][0]
    assert (options["who"], options["whom"], options["what"]) == (admin, "", "Sign-in options changed")
    # the members' own sign-ins land in their org's log: by themselves, to themselves
    signins = [(r["who"], r["whom"]) for r in by_kind["signin.success"]]
    assert (member, member) in signins and (admin, admin) in signins
    assert (member, member) in [(r["who"], r["whom"]) for r in by_kind["signin.failure"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", rows[0]["when"])
    # never another org's
    assert world["outsider_email"] not in page.text and world["other_admin_email"] not in page.text


def test_an_org_admin_sees_only_their_own_orgs_log(live, world):
    other = signed_in(live, world["other_admin_email"])
    for path in (world["log"], world["log"] + ".csv", world["log"] + "?kind=signin.success"):
        resp = get(other, path)
        assert resp.status_code == 403 and world["member_email"] not in resp.text
    # their own log has their org's events only
    page = get(other, f"/admin/orgs/{world['other']}/audit-log")
    assert page.status_code == 200 and world["outsider_email"] in page.text
    assert world["member_email"] not in page.text and world["admin_email"] not in page.text
    from idp.store import SecurityEvent, db

    with live.db():
        shown = {r["id"] for r in _rows(page.text)}
        orgs = {e.org_id for e in db.session.query(SecurityEvent).filter(SecurityEvent.id.in_(shown))}
    assert orgs == {world["other"]}
    # a member is no admin at all
    member = Browser(live.issuer)
    member.sign_in(member.get(f"{live.issuer}/account"), world["member_email"], PASSWORD)
    assert get(member, world["log"]).status_code == 403
    assert get(Browser(live.issuer), world["log"] + ".csv").headers["Location"].endswith("/signin")


def test_filters_by_person_kind_and_dates(live, world):
    b = world["b"]
    rows = _rows(get(b, world["log"], person=world["member_email"].upper()).text)
    assert rows and all(world["member_email"] in (r["who"], r["whom"]) for r in rows)
    assert {r["kind"] for r in rows} >= {"signin.success", "signin.failure", "admin.signed_out"}
    # what the admin did counts as theirs too
    rows = _rows(get(b, world["log"], person=world["admin_email"]).text)
    assert {"admin.signed_out", "org.options_changed"} <= {r["kind"] for r in rows}
    assert _rows(get(b, world["log"], person="nobody@nowhere.example").text) == []
    # an outsider's address finds nothing here
    assert _rows(get(b, world["log"], person=world["outsider_email"]).text) == []

    rows = _rows(get(b, world["log"], kind="signin.success").text)
    assert rows and {r["kind"] for r in rows} == {"signin.success"}
    page = get(b, world["log"], kind="signin.success", person=world["member_email"])
    assert {r["whom"] for r in _rows(page.text)} == {world["member_email"]}
    assert 'value="signin.success" selected' in page.text

    today = datetime.utcnow().date()
    assert len(_rows(get(b, world["log"], **{"from": today.isoformat(), "to": today.isoformat()}).text)) >= 5
    assert _rows(get(b, world["log"], **{"to": (today - timedelta(days=1)).isoformat()}).text) == []
    assert _rows(get(b, world["log"], **{"from": (today + timedelta(days=1)).isoformat()}).text) == []

    for bad in ({"from": "yesterday"}, {"to": "2026-13-01"}, {"kind": "no.such"}):
        resp = get(b, world["log"], **bad)
        assert resp.status_code == 400 and 'role="alert"' in resp.text, bad
        assert get(b, world["log"] + ".csv", **bad).status_code == 400


def _add_events(live, org_id: str, user_id: str, count: int, start: datetime, kind: str = "signin.success",
                ip: str = "192.0.2.1") -> None:
    from idp.store import SecurityEvent, db

    with live.db():
        db.session.add_all([SecurityEvent(user_id=user_id, kind=kind, org_id=org_id, ip=ip, detail={},
                                          created_at=start + timedelta(seconds=i // 3)) for i in range(count)])
        db.session.commit()


def test_pages_walk_every_event_once_newest_first_and_stay_fast(live):
    org_id, name, domain = new_org(live, "log-pages")
    email = f"boss-{uuid.uuid4().hex[:6]}@{domain}"
    org_admin(live, name, email)
    member = person(live, f"m-{uuid.uuid4().hex[:6]}@{domain}", org_id)
    # a few thousand events, three per second (ties on the time), and as many in another org
    _add_events(live, org_id, member, 3000, datetime(2026, 1, 1))
    other_id, _, other_domain = new_org(live, "log-noise")
    _add_events(live, other_id, person(live, f"n-{uuid.uuid4().hex[:6]}@{other_domain}", other_id), 3000,
                datetime(2026, 1, 1))
    b = signed_in(live, email)
    path = f"/admin/orgs/{org_id}/audit-log"
    seen, times = [], []
    params = {"kind": "signin.success", "to": "2026-01-31"}
    while True:
        started = time.perf_counter()
        page = get(b, path, **params)
        times.append(time.perf_counter() - started)
        assert page.status_code == 200
        rows = _rows(page.text)
        assert len(rows) <= 50
        seen += [r["id"] for r in rows]
        nxt = re.search(r'rel="next" href="[^"]*before=(\d+)', page.text)
        if not nxt:
            break
        assert "kind=signin.success" in re.search(r'rel="next" href="([^"]+)"', page.text).group(1)
        params["before"] = nxt.group(1)
    assert len(seen) == 3000 and len(set(seen)) == 3000 and seen == sorted(seen, reverse=True)
    times.sort()
    print(f"audit log page, 3000 events in the org and 3000 elsewhere: median {times[len(times) // 2] * 1000:.1f} "
          f"ms, slowest {times[-1] * 1000:.1f} ms over {len(times)} pages")
    assert times[len(times) // 2] < 0.25
    # a cursor that is not a number starts at the top
    assert _rows(get(b, path, kind="signin.success", to="2026-01-31", before="x").text)[0]["id"] == seen[0]


def test_export_csv_same_filters_streamed_and_formula_safe(live, world):
    b = world["b"]
    nasty = person(live, f"=1+2-x@{world['domain']}", world["org"])
    plus = person(live, f"+sum@{world['domain']}", world["org"])
    _add_events(live, world["org"], nasty, 2, datetime.utcnow(), ip="-1")
    _add_events(live, world["org"], plus, 1, datetime.utcnow())
    resp = get(b, world["log"] + ".csv")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    assert resp.headers.get("Transfer-Encoding") == "chunked" or "Content-Length" not in resp.headers
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["time_utc", "actor", "event", "kind", "person", "ip"]
    body = rows[1:]
    assert world["outsider_email"] not in resp.text
    mine = [r for r in body if r[4] == f"'=1+2-x@{world['domain']}"]
    assert len(mine) == 2 and mine[0][1] == mine[0][4] and mine[0][5] == "'-1"
    assert [r for r in body if r[4] == f"'+sum@{world['domain']}"]
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    # the page's filters, applied to the export
    page = get(b, world["log"], kind="admin.signed_out", person=world["member_email"])
    export = re.search(r'href="([^"]+\.csv[^"]*)"', page.text).group(1).replace("&amp;", "&")
    assert "kind=admin.signed_out" in export
    rows = list(csv.reader(io.StringIO(b.http.get(live.issuer + export, timeout=30).text)))[1:]
    assert rows and {r[3] for r in rows} == {"admin.signed_out"} and {r[4] for r in rows} == {world["member_email"]}
    assert {r[1] for r in rows} == {world["admin_email"]}


def test_spreadsheet_safe():
    from idp.admin.audit_log import spreadsheet_safe

    for cell in ("=HYPERLINK(1)", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(cell) == "'" + cell
    for cell in ("alice@example.com", "192.0.2.1", "", "Signed in"):
        assert spreadsheet_safe(cell) == cell


def test_sign_in_events_of_members_land_in_their_orgs_log(live, world):
    from idp.store import SecurityEvent, db

    with live.db():
        kinds = {(e.kind, e.org_id) for e in db.session.query(SecurityEvent).filter_by(user_id=world["member"])}
    assert ("signin.success", world["org"]) in kinds and ("signin.failure", world["org"]) in kinds
    assert all(org == world["org"] for _, org in kinds)
