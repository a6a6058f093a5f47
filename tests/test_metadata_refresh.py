"""Orgs' SAML IdP metadata read again from its URL when due (validUntil, cacheDuration, at
least daily), against real metadata of the tests' pysaml2 IdP served on loopback HTTP; a
failed read keeps the last good copy in use (sign-in goes on), is audited and retried an
hour later; one process of the deployment runs a round (the lease)."""

from __future__ import annotations

import html
import logging
import re
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from idp.config import Settings
from tests.conftest import Browser
from tests.oidc import authorize_url, redirect_params
from tests.saml_idp import TestIdP

NO_SIGNING_CERT = re.compile(r"<(?:md:|ns\d:)?KeyDescriptor use=\"signing\">.*?</(?:md:|ns\d:)?KeyDescriptor>", re.S)


class MetadataServer:
    """Serves `body` with `status` at every path on loopback HTTP; counts the requests per path."""

    def __init__(self):
        outer = self
        self.body, self.status = b"", 200
        self.hits: dict[str, int] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, xml: str, status: int = 200) -> None:
        self.body, self.status = xml.encode(), status

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("refresh-idp"))


@pytest.fixture
def server():
    s = MetadataServer()
    yield s
    s.stop()


def _xml(z: datetime) -> str:
    return z.strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata(idp: TestIdP, valid_until: datetime | None = None, cache_duration: str | None = None) -> str:
    """The IdP's real metadata, with validUntil / cacheDuration on its EntityDescriptor."""
    attrs = ""
    if valid_until is not None:
        attrs += f'validUntil="{_xml(valid_until)}" '
    if cache_duration is not None:
        attrs += f'cacheDuration="{cache_duration}" '
    xml, n = re.subn(r"<((?:md:|ns\d:)?)EntityDescriptor ", lambda m: m.group(0) + attrs, idp.metadata_xml(), count=1)
    assert n == 1
    return xml


def _org_with_url(live, idp, server, xml: str, query: str = ""):
    """A new org whose IdP metadata was attached from `server` (serving `xml`); our SP trusted by the IdP."""
    from idp import orgs

    name = "refresh-" + uuid.uuid4().hex[:8]
    path = f"/{name}/metadata.xml"
    server.serve(xml)
    with live.db():
        org = orgs.create(name, [f"{name}.example"])
        orgs.attach_saml(org, server.url(path) + query)
        idp.trust_sp(orgs.sp_metadata(org))
        return {"id": org.id, "name": name, "domain": f"{name}.example", "path": path}


def _row(live, org_id):
    from idp.store import Org, db

    with live.db():
        row = db.session.get(Org, org_id)
        db.session.expunge(row)
        return row


def _events(live, org_id, kind):
    from idp.store import SecurityEvent, db

    with live.db():
        return [e.detail for e in db.session.query(SecurityEvent).filter_by(org_id=org_id, kind=kind)
                .order_by(SecurityEvent.id)]


def _refresh_due(live, now):
    from idp.metadata_refresh import refresh_due

    with live.db():
        return refresh_due(now)


def _signs_in(live, idp, org) -> bool:
    """A whole Enterprise Sign-In at the live server with the org's IdP ends with a code."""
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = b.submit(b.get(authorize_url(live.issuer, client_id)), {"email": f"pat@{org['domain']}"})
    found = re.search(r'<a class="button" role="button" href="([^"]+)"', page.text)
    if page.status_code != 200 or not found:
        return False
    request = idp.parse_authn_request(html.unescape(found.group(1)))
    response, acs = idp.response(request, email=f"pat@{org['domain']}")
    resp = b.follow(b.http.post(acs, data={"SAMLResponse": response, "RelayState": request["relay_state"]},
                                allow_redirects=False, timeout=30))
    return resp.status_code in (302, 303) and "code" in redirect_params(resp)


# --- when a copy is due -----------------------------------------------------------------


def test_next_refresh_follows_valid_until_and_cache_duration(idp):
    from idp.orgs import check_metadata, next_refresh

    t = datetime(2030, 1, 1)
    hour = timedelta(hours=1)

    def due(**kw):
        return next_refresh(check_metadata(metadata(idp, **kw)), t) - t

    assert due() == timedelta(days=1)  # neither attribute: daily
    assert due(cache_duration="PT6H") == 6 * hour
    assert due(cache_duration="P2D") == timedelta(days=1)  # a day at most
    assert due(cache_duration="P1Y2M3DT4H5M6.5S") == timedelta(days=1)
    assert due(valid_until=t + timedelta(days=10)) == timedelta(days=1)
    assert due(valid_until=t + 20 * hour) == 10 * hour  # halfway: time to retry before it runs out
    assert due(valid_until=t + 90 * timedelta(minutes=1)) == 30 * timedelta(minutes=1)  # an hour before
    assert due(valid_until=t + 3 * hour, cache_duration="PT1H") == hour  # the sooner of the two
    assert due(valid_until=t + 30 * timedelta(minutes=1)) == 10 * timedelta(minutes=1)  # not before the next round
    assert due(cache_duration="PT1S") == 10 * timedelta(minutes=1)
    # longer than a date can reach (an OverflowError, a 500 at upload, before): daily
    assert due(cache_duration="P8000Y") == timedelta(days=1)
    assert due(cache_duration="P99999999999Y") == timedelta(days=1)


@pytest.mark.parametrize("bad", ["P", "PT", "P1DT", "forever", "-PT1H", "PT1.5H"])
def test_a_bad_cache_duration_is_refused(idp, bad):
    from idp.orgs import OrgError, check_metadata

    with pytest.raises(OrgError, match="cacheDuration is not a duration"):
        check_metadata(metadata(idp, cache_duration=bad))


def test_expired_metadata_is_refused_when_attached(live, idp, server, tmp_path):
    from idp.orgs import utcnow

    path = tmp_path / "expired.xml"
    path.write_text(metadata(idp, valid_until=utcnow() - timedelta(minutes=5)))
    name = "expired-" + uuid.uuid4().hex[:6]
    assert live.idp("orgs", "create", name, "--domain", f"{name}.example").returncode == 0
    out = live.idp("orgs", "saml", name, "--metadata", str(path))
    assert out.returncode == 1 and out.stderr.startswith("error: the metadata expired on "), out.stderr


# --- refreshing -------------------------------------------------------------------------


def test_refresh_when_due_by_cache_duration_and_not_before(live, idp, server, tmp_path):
    from idp.orgs import utcnow

    org = _org_with_url(live, idp, server, metadata(idp, cache_duration="PT6H"))
    row = _row(live, org["id"])
    fetched = row.saml_metadata_fetched_at
    assert row.saml_metadata_valid_until == fetched + timedelta(hours=6)
    assert server.hits[org["path"]] == 1

    _refresh_due(live, fetched + timedelta(hours=5, minutes=59))
    assert server.hits[org["path"]] == 1  # not due: not asked

    other = TestIdP(tmp_path, entity_id=idp.entity_id)  # the IdP's new signing key
    valid_until = (utcnow() + timedelta(hours=20)).replace(microsecond=0)
    served = metadata(other, valid_until=valid_until)
    server.serve(served)
    now = fetched + timedelta(hours=6)
    assert _refresh_due(live, now) >= 1
    assert server.hits[org["path"]] == 2
    row = _row(live, org["id"])
    assert row.saml_metadata == served
    assert other.cert_der_b64 in row.saml_metadata and idp.cert_der_b64 not in row.saml_metadata
    assert row.saml_metadata_fetched_at == now
    assert row.saml_metadata_valid_until == now + (valid_until - now) / 2  # halfway to validUntil
    assert _events(live, org["id"], "org.idp_metadata_refreshed") == [
        {"source": server.url(org["path"]), "entity_id": idp.entity_id}]

    # the same document again: read, not re-audited
    later = row.saml_metadata_valid_until
    assert _refresh_due(live, later) >= 1 and server.hits[org["path"]] == 3
    assert _row(live, org["id"]).saml_metadata_fetched_at == later
    assert len(_events(live, org["id"], "org.idp_metadata_refreshed")) == 1


def test_refresh_when_due_by_valid_until(live, idp, server):
    from idp.orgs import utcnow

    valid_until = (utcnow() + timedelta(hours=20)).replace(microsecond=0)
    org = _org_with_url(live, idp, server, metadata(idp, valid_until=valid_until))
    row = _row(live, org["id"])
    halfway = row.saml_metadata_fetched_at + (valid_until - row.saml_metadata_fetched_at) / 2
    assert row.saml_metadata_valid_until == halfway
    _refresh_due(live, halfway - timedelta(minutes=1))
    assert server.hits[org["path"]] == 1
    server.serve(metadata(idp, valid_until=valid_until + timedelta(days=7)))
    _refresh_due(live, halfway)
    assert server.hits[org["path"]] == 2
    row = _row(live, org["id"])
    assert _xml(valid_until + timedelta(days=7)) in row.saml_metadata
    assert row.saml_metadata_valid_until == halfway + timedelta(days=1)  # now a day at most


def _bad(idp, server, what: str, now: datetime):
    good = idp.metadata_xml()
    if what == "server down":
        server.stop()
    elif what == "HTTP 500":
        server.serve("oops", status=500)
    elif what == "not XML":
        server.serve("<html>maintenance</html")
    elif what == "not an IdP":
        server.serve(good.replace("IDPSSODescriptor", "SPSSODescriptor"))
    elif what == "broken certificate":
        server.serve(re.sub(r"<(ds:|ns\d:)?X509Certificate>[^<]+<", r"<\1X509Certificate>AAAA<", good))
    elif what == "no signing certificate":
        server.serve(NO_SIGNING_CERT.sub("", good))
    elif what == "expired":
        server.serve(metadata(idp, valid_until=now - timedelta(minutes=1)))
    elif what == "a DTD":
        server.serve('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + good.split("?>", 1)[-1])


@pytest.mark.parametrize("what", ["server down", "HTTP 500", "not XML", "not an IdP", "broken certificate",
                                  "no signing certificate", "expired", "a DTD"])
def test_a_failed_refresh_keeps_the_last_good_copy(live, idp, server, what, caplog):
    org = _org_with_url(live, idp, server, metadata(idp), query="?token=s3cret-metadata-key")
    before = _row(live, org["id"])
    now = before.saml_metadata_valid_until + timedelta(minutes=1)
    _bad(idp, server, what, now)
    caplog.set_level(logging.INFO)  # what a server logs by default (urllib3 names URLs at DEBUG)
    _refresh_due(live, now)
    after = _row(live, org["id"])
    assert (after.saml_metadata, after.saml_metadata_source, after.saml_metadata_fetched_at) == (
        before.saml_metadata, before.saml_metadata_source, before.saml_metadata_fetched_at)
    assert after.saml_metadata_valid_until == now + timedelta(hours=1)  # tried again in an hour
    (event,) = _events(live, org["id"], "org.idp_metadata_refresh_failed")
    assert event["source"] == server.url(org["path"]) and event["reason"] and event["expired"] is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"SAML metadata of org {org['id']} not refreshed" in w and "last good copy" in w for w in warnings)
    assert "s3cret" not in caplog.text  # the URL's query may be a key of the IdP's
    assert _signs_in(live, idp, org)

    hits = server.hits.get(org["path"], 0)
    _refresh_due(live, now + timedelta(minutes=50))  # not every round
    assert server.hits.get(org["path"], 0) == hits
    assert len(_events(live, org["id"], "org.idp_metadata_refresh_failed")) == 1
    if what != "server down":  # the source recovers: the next try an hour later takes it
        server.serve(metadata(idp, cache_duration="PT2H"))
        _refresh_due(live, now + timedelta(hours=1))
        assert server.hits[org["path"]] == hits + 1
        row = _row(live, org["id"])
        assert 'cacheDuration="PT2H"' in row.saml_metadata
        assert row.saml_metadata_valid_until == now + timedelta(hours=3)


def test_an_expired_copy_that_cannot_be_refreshed_still_signs_in(live, idp, server):
    """The choice made (see idp.metadata_refresh): past validUntil and with its source down,
    the last good copy keeps signing people in, and every hourly try is audited as expired."""
    from idp.store import Org, db, utcnow

    org = _org_with_url(live, idp, server, metadata(idp))
    valid_until = (utcnow() - timedelta(hours=2)).replace(microsecond=0)
    with live.db():  # a copy that was good when read, and whose validUntil has passed since
        row = db.session.get(Org, org["id"])
        row.saml_metadata = metadata(idp, valid_until=valid_until)
        row.saml_metadata_valid_until = valid_until - timedelta(hours=1)
        db.session.commit()
    server.stop()
    now = utcnow()
    _refresh_due(live, now)
    (event,) = _events(live, org["id"], "org.idp_metadata_refresh_failed")
    assert event["expired"] is True and event["valid_until"] == valid_until.isoformat() + "Z"
    assert "cannot fetch metadata" in event["reason"]
    assert _signs_in(live, idp, org)


def test_an_uploaded_copy_is_not_read_again(live, idp, server):
    from idp import metadata_refresh, orgs
    from idp.store import utcnow

    name = "upload-" + uuid.uuid4().hex[:8]
    with live.db():
        org = orgs.create(name, [f"{name}.example"])
        orgs.attach_saml(org, orgs.UPLOADED + "idp.xml", xml=metadata(idp))
        assert org.id not in [o.id for o in metadata_refresh.due(utcnow() + timedelta(days=30))]
        with pytest.raises(orgs.OrgError, match="uploaded"):
            metadata_refresh.refresh(org)


def test_an_admin_saving_meanwhile_wins_over_a_refresh(live, idp, server, tmp_path):
    """A refresh reads for up to 15 s; metadata an admin attached in the meantime stays."""
    from idp import create_app, metadata_refresh, orgs
    from idp.store import Org, db

    org = _org_with_url(live, idp, server, metadata(idp))
    other = TestIdP(tmp_path, entity_id="https://newer-idp.example.test/saml")
    admin_app = create_app(Settings.from_env({k: v for k, v in live.env.items() if k.startswith("IDP_")}))
    try:
        with live.db():
            stale = db.session.get(Org, org["id"])
            before = stale.saml_metadata_fetched_at
            with admin_app.app_context():
                orgs.attach_saml(db.session.get(Org, org["id"]), orgs.UPLOADED + "newer.xml", xml=other.metadata_xml())
            assert stale.saml_metadata_fetched_at == before  # this session has not seen it
            metadata_refresh.refresh(stale, before + timedelta(days=1))
        row = _row(live, org["id"])
        assert row.saml_metadata == other.metadata_xml() and row.saml_metadata_source == "upload:newer.xml"
    finally:
        with admin_app.app_context():
            db.engine.dispose()


def test_the_command_line_refreshes_now(live, idp, server):
    org = _org_with_url(live, idp, server, metadata(idp, cache_duration="PT6H"))
    out = live.idp("orgs", "saml-refresh", org["name"])
    assert out.returncode == 0 and f"SAML IdP {idp.entity_id} metadata read again" in out.stdout, out.stderr
    assert server.hits[org["path"]] == 2
    before = _row(live, org["id"])
    server.serve("not metadata")
    out = live.idp("orgs", "saml-refresh", org["name"])
    assert out.returncode == 1 and out.stderr.startswith("error: the metadata is not well-formed XML"), out.stderr
    assert "stays in use" in out.stderr and "Traceback" not in out.stderr
    assert _row(live, org["id"]).saml_metadata == before.saml_metadata
    out = live.idp("orgs", "saml-refresh", "no-such-org-" + uuid.uuid4().hex[:6])
    assert out.returncode == 1 and out.stderr.startswith("error: no org ")
    out = live.idp("orgs", "saml-refresh")
    assert out.returncode == 0 and "org(s) that were due" in out.stdout


def test_one_process_refreshes_at_a_time(live, idp, server):
    from idp import create_app
    from idp.metadata_refresh import LEASE, run_round
    from idp.store import Lease, db

    org = _org_with_url(live, idp, server, metadata(idp))
    now = _row(live, org["id"]).saml_metadata_valid_until + timedelta(minutes=1)
    apps = [live.app] + [create_app(Settings.from_env({k: v for k, v in live.env.items() if k.startswith("IDP_")}))
                         for _ in range(2)]
    with live.db():
        db.session.query(Lease).filter_by(name=LEASE).delete()
        db.session.commit()
    start = threading.Barrier(6)
    results = []

    def attempt(app, holder):
        with app.app_context():
            start.wait()
            results.append(run_round(holder, now))

    threads = [threading.Thread(target=attempt, args=(apps[i % 3], f"worker-{i}")) for i in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(results) == 6 and sum(r is not None for r in results) == 1, results
        assert server.hits[org["path"]] == 2  # attached once, refreshed once
        with live.db():
            assert run_round("worker-late", now + timedelta(minutes=1)) is None  # still held
    finally:
        for app in apps[1:]:
            with app.app_context():
                db.engine.dispose()
