"""Admin Center, Enterprise Sign-In: IdP metadata by file and by URL (from a loopback HTTP
server, through the outbound guard), the SP metadata download, enforcing, and Test connection
against the real pysaml2 IdP of the tests."""

from __future__ import annotations

import html
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.admin_world import get, new_org, org_admin, post, signed_in
from tests.conftest import Browser, csrf_of, free_port
from tests.saml_idp import TestIdP, unsigned

NO_SIGNING_CERT = re.compile(r"<(?:md:|ns\d:)?KeyDescriptor use=\"signing\">.*?</(?:md:|ns\d:)?KeyDescriptor>", re.S)


class MetadataServer:
    """Serves `body` at every path on loopback HTTP and remembers the paths asked for."""

    def __init__(self):
        outer = self
        self.body = b""
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/idp.xml") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("admin-saml-idp"))


@pytest.fixture(scope="module")
def other_idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("admin-saml-other"), entity_id="https://other-idp.example.test/saml")


@pytest.fixture(scope="module")
def metadata_server():
    server = MetadataServer()
    yield server
    server.server.shutdown()


@pytest.fixture
def org(live):
    """A fresh org and its admin (an address outside the org's domain, so the admin's own
    sign-in never goes to the IdP the test attaches), signed in."""
    org_id, name, domain = new_org(live, "ent")
    email = f"admin-{uuid.uuid4().hex[:6]}@admins-{name}.example"
    admin_id = org_admin(live, name, email)
    return {"id": org_id, "name": name, "domain": domain, "admin": admin_id, "email": email,
            "browser": signed_in(live, email), "page": f"/admin/orgs/{org_id}/enterprise-sign-in"}


def _org_row(live, org_id):
    from idp.store import Org, db

    with live.db():
        row = db.session.get(Org, org_id)
        db.session.expunge(row)
        return row


def _events(live, org_id, kind):
    from idp.store import SecurityEvent, db

    with live.db():
        return [(e.actor_id, e.detail) for e in db.session.query(SecurityEvent)
                .filter_by(org_id=org_id, kind=kind).order_by(SecurityEvent.id)]


def _upload(b: Browser, org, xml: str | bytes, name: str = "idp.xml", url: str = ""):
    csrf = csrf_of(get(b, org["page"]).text)
    return b.http.post(f"{b.issuer}{org['page']}/metadata", data={"csrf_token": csrf, "metadata_url": url},
                       files={"metadata_file": (name, xml, "application/xml")}, allow_redirects=False, timeout=30)


def _save_url(b: Browser, org, url: str):
    return post(b, f"{org['page']}/metadata", {"metadata_url": url})


def _attach(live, org, idp):
    """Our SP trusted by the IdP (from the downloaded SP metadata), the IdP's metadata uploaded."""
    resp = _upload(org["browser"], org, idp.metadata_xml())
    assert resp.status_code == 302, resp.text[:500]
    idp.trust_sp(get(org["browser"], f"{org['page']}/sp-metadata").text)


def _user_exists(live, email: str) -> bool:
    from idp.store import User, db

    with live.db():
        return db.session.query(User).filter_by(email=email).first() is not None


def _who(b: Browser) -> str:
    page = b.get(f"{b.issuer}/account")
    return page.text


# --- metadata ---------------------------------------------------------------------------


def test_save_by_file_then_by_url_shows_the_set_up(live, org, idp, metadata_server, tmp_path):
    b = org["browser"]
    page = get(b, org["page"])
    assert page.status_code == 200 and "None yet." in page.text
    for label in ("IdP metadata", "Save", "Download SP metadata", "Enforce Enterprise Sign-In", "Test connection"):
        assert label in page.text, label
    assert 'type="file"' in page.text and 'name="metadata_url"' in page.text

    resp = _upload(b, org, idp.metadata_xml(), name="corp-idp.xml")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("saved=metadata")
    page = get(b, org["page"], saved="metadata")
    assert "IdP metadata saved." in page.text
    assert f"<dd data-idp-entity-id>{idp.entity_id}</dd>" in page.text
    assert f"<dd data-idp-sso-url>{idp.sso_url}</dd>" in page.text
    from cryptography import x509

    expiry = x509.load_pem_x509_certificate(idp.cert_pem).not_valid_after_utc.strftime("%Y-%m-%d %H:%M")
    assert f"<dd data-idp-cert-expires>{expiry} UTC</dd>" in page.text
    assert "uploaded file corp-idp.xml" in page.text and "read on " in page.text
    row = _org_row(live, org["id"])
    assert row.saml_metadata == idp.metadata_xml() and row.saml_metadata_source == "upload:corp-idp.xml"
    assert _events(live, org["id"], "admin.idp_metadata_saved") == [
        (org["admin"], {"source": "upload:corp-idp.xml", "entity_id": idp.entity_id})]

    other = TestIdP(tmp_path, entity_id="https://idp2.example.test/saml")
    metadata_server.body = other.metadata_xml().encode()
    url = metadata_server.url(f"/{org['id']}/metadata.xml")
    resp = _save_url(b, org, url)
    assert resp.status_code == 302, resp.text[:500]
    assert f"/{org['id']}/metadata.xml" in metadata_server.paths  # fetched by the server, from loopback
    page = get(b, org["page"])
    assert f"<dd data-idp-entity-id>{other.entity_id}</dd>" in page.text
    assert f"<dd data-metadata-origin>{url}," in page.text
    row = _org_row(live, org["id"])
    assert row.saml_metadata_source == url and "idp2.example.test" in row.saml_metadata
    # the sign-in uses it: an address of the org goes to the new IdP
    b2 = Browser(live.issuer)
    page = b2.submit(b2.get(f"{live.issuer}/signin"), {"email": f"someone@{org['domain']}"})
    assert "https://idp2.example.test/saml/sso?SAMLRequest=" in html.unescape(page.text)


def _bad_documents(idp: TestIdP) -> dict:
    good = idp.metadata_xml()
    return {
        "not xml": "this is not metadata",
        "not well-formed": good[: len(good) // 2],
        "an SP, not an IdP": re.sub(r"IDPSSODescriptor", "SPSSODescriptor", good),
        "a DTD": '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + good.split("?>", 1)[-1],
        "no signing certificate": NO_SIGNING_CERT.sub("", good),
        "a broken certificate": re.sub(r"<(ds:|ns\d:)?X509Certificate>[^<]+<", r"<\1X509Certificate>AAAA<", good),
    }


def test_bad_metadata_is_refused_and_the_old_set_up_kept(live, org, idp, metadata_server, tmp_path):
    b = org["browser"]
    assert _upload(b, org, idp.metadata_xml()).status_code == 302
    before = _org_row(live, org["id"])
    events = len(_events(live, org["id"], "admin.idp_metadata_saved"))
    assert NO_SIGNING_CERT.search(idp.metadata_xml()), "the test IdP's metadata changed shape"
    for what, xml in _bad_documents(idp).items():
        for how in ("file", "url"):
            if how == "file":
                resp = _upload(b, org, xml)
            else:
                metadata_server.body = xml.encode()
                resp = _save_url(b, org, metadata_server.url(f"/bad-{uuid.uuid4().hex[:6]}.xml"))
            assert resp.status_code == 400, (what, how, resp.status_code)
            assert 'role="alert"' in resp.text and "The IdP metadata was not saved:" in resp.text, (what, how)
            assert "Traceback" not in resp.text
    # the command line refuses the same documents (one check for both)
    for what, xml in _bad_documents(idp).items():
        path = tmp_path / "bad.xml"
        path.write_text(xml)
        out = live.idp("orgs", "saml", org["name"], "--metadata", str(path))
        assert out.returncode == 1 and out.stderr.startswith("error: "), (what, out.stderr)
    # too large: more than the cap, by URL (an upload over 1 MiB is refused whole by the server)
    metadata_server.body = idp.metadata_xml().encode() + b"<!--" + b"A" * (4 * 1024 * 1024) + b"-->"
    resp = _save_url(b, org, metadata_server.url("/huge.xml"))
    assert resp.status_code == 400 and "The IdP metadata was not saved:" in resp.text
    resp = _upload(b, org, idp.metadata_xml().encode() + b" " * (1024 * 1024))
    assert resp.status_code == 413 and "too large" in resp.text
    # The server closes a connection whose body it refused unread; `requests` may still hand
    # it to the next POST (RemoteDisconnected, seen under load), where a browser would open a
    # new one: so do we.
    b.http.close()
    # unreachable, a path instead of a URL, a non-public address, both, neither
    for form, message in (
        ({"metadata_url": f"http://127.0.0.1:{free_port()}/gone.xml"}, "cannot fetch metadata"),
        ({"metadata_url": "/etc/passwd"}, "Enter the metadata&#39;s https:// URL."),
        ({"metadata_url": "file:///etc/passwd"}, "Enter the metadata&#39;s https:// URL."),
        ({"metadata_url": "http://idp.example.com/metadata"}, "http is only for loopback"),
        ({"metadata_url": "https://10.0.0.1/metadata"}, "non-public"),
        ({"metadata_url": ""}, "Choose a metadata file or enter its URL."),
    ):
        resp = post(b, f"{org['page']}/metadata", form)
        assert resp.status_code == 400 and message in resp.text, (form, resp.text[:2000])
    resp = _upload(b, org, idp.metadata_xml(), url=metadata_server.url())
    assert resp.status_code == 400 and "not both" in resp.text
    after = _org_row(live, org["id"])
    assert (after.saml_metadata, after.saml_metadata_source, after.saml_metadata_fetched_at) == (
        before.saml_metadata, before.saml_metadata_source, before.saml_metadata_fetched_at)
    assert len(_events(live, org["id"], "admin.idp_metadata_saved")) == events


def test_metadata_needs_the_csrf_token(live, org, idp):
    resp = post(org["browser"], f"{org['page']}/metadata", {"metadata_url": "https://idp.example.com/x"}, csrf=False)
    assert resp.status_code == 400 and _org_row(live, org["id"]).saml_metadata is None


def test_download_sp_metadata_is_what_the_cli_prints(live, org):
    resp = get(org["browser"], f"{org['page']}/sp-metadata")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/samlmetadata+xml")
    assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
    out = live.idp("orgs", "sp-metadata", org["name"])
    assert out.returncode == 0 and resp.text.strip() == out.stdout.strip()
    assert f"/saml/{org['id']}/acs" in resp.text


# --- enforcing --------------------------------------------------------------------------


def test_enforce_is_refused_without_an_idp_and_asks_before_it_acts(live, org, idp):
    b = org["browser"]
    resp = post(b, f"{org['page']}/enforce", {"enforce": "on", "confirmed": "yes"})
    assert resp.status_code == 409 and "cannot be enforced before the organization has an IdP" in resp.text
    assert not _org_row(live, org["id"]).enforce_sso and _events(live, org["id"], "admin.sso_enforced") == []

    _attach(live, org, idp)
    member = f"member@{org['domain']}"
    live.create_user(member, "member-password-1", org_id=org["id"])
    # a confirmation first, with the same button
    resp = post(b, f"{org['page']}/enforce", {"enforce": "on"})
    assert resp.status_code == 200 and "Enforce Enterprise Sign-In" in resp.text and 'name="confirmed"' in resp.text
    assert not _org_row(live, org["id"]).enforce_sso
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', resp.text))
    assert hidden["confirmed"] == "yes" and hidden["enforce"] == "on"
    resp = b.submit(resp, hidden, action=f"{org['page']}/enforce")
    assert resp.status_code == 200 and 'data-enforced="yes"' in resp.text
    assert _org_row(live, org["id"]).enforce_sso
    assert _events(live, org["id"], "admin.sso_enforced") == [(org["admin"], {})]

    # the member's password no longer signs in: the answer sends them to Enterprise Sign-In
    m = Browser(live.issuer)
    page = m.get(f"{live.issuer}/signin")
    m.http.post(f"{live.issuer}/signin", data={"csrf_token": csrf_of(page.text), "email": member},
                allow_redirects=False, timeout=30)
    resp = m.submit(m.get(f"{live.issuer}/signin/password"), {"password": "member-password-1"})
    assert resp.status_code == 403 and "Enterprise Sign-In" in resp.text and "Continue" in resp.text
    assert "Your account" not in m.get(f"{live.issuer}/account").text

    resp = post(b, f"{org['page']}/enforce", {"enforce": "off"})
    assert resp.status_code == 302 and not _org_row(live, org["id"]).enforce_sso
    assert _events(live, org["id"], "admin.sso_optional") == [(org["admin"], {})]


def test_enforce_with_an_enterprise_openid_provider(live, org):
    b = org["browser"]
    resp = post(b, f"{org['page']}/oidc", {"issuer": "http://idp.example.com", "client_id": "c", "client_secret": "s"})
    assert resp.status_code == 400 and "http is only for loopback" in resp.text
    resp = post(b, f"{org['page']}/oidc", {"issuer": "http://127.0.0.1:8999/corp", "client_id": "corp-app",
                                           "client_secret": "corp-secret"})
    assert resp.status_code == 302
    page = get(b, org["page"])
    assert "http://127.0.0.1:8999/corp" in page.text and "corp-app" in page.text and "corp-secret" not in page.text
    assert _events(live, org["id"], "admin.oidc_saved") == [
        (org["admin"], {"issuer": "http://127.0.0.1:8999/corp", "client_id": "corp-app"})]
    assert post(b, f"{org['page']}/enforce", {"enforce": "on", "confirmed": "yes"}).status_code == 302
    assert _org_row(live, org["id"]).enforce_sso


# --- Test connection ----------------------------------------------------------------------


def _start_test(b: Browser, org, idp: TestIdP) -> dict:
    page = post(b, f"{org['page']}/test")
    assert page.status_code == 200, page.text[:500]
    location = html.unescape(re.search(r'<a class="button" role="button" href="([^"]+)"', page.text).group(1))
    request = idp.parse_authn_request(location)
    assert request["signed"] is True, request["signature_error"]
    return request


def _answer(b: Browser, request: dict, response: str, relay: str | None = None):
    data = {"SAMLResponse": response, "RelayState": request["relay_state"] if relay is None else relay}
    return b.follow(b.http.post(request["acs_url"], data=data, allow_redirects=False, timeout=30))


def _flow_cookie(b: Browser) -> str:
    return next(c.value for c in b.http.cookies if c.name == "idp_flow")


def _set_flow_cookie(b: Browser, value: str) -> None:
    for c in b.http.cookies:
        if c.name == "idp_flow":
            c.value = value
            return
    b.http.cookies.set("idp_flow", value, domain="127.0.0.1", path="/")


def test_connection_shows_what_the_idp_sent_and_signs_nobody_in(live, org, idp):
    _attach(live, org, idp)
    b = org["browser"]
    request = _start_test(b, org, idp)
    tested = f"tester.{uuid.uuid4().hex[:6]}@{org['domain']}"
    response, _ = idp.response(request, email=tested, attributes={
        "givenName": "Tess", "sn": "Tester", "displayName": "Tess Tester", "department": ["R&D", "QA"],
        "http://schemas.microsoft.com/identity/claims/displayname": None})

    # another browser cannot use the answer: neither one without the test, nor one with a copy
    # of the admin's flow cookie (the test is bound to the admin's session)
    stranger = Browser(live.issuer)
    resp = _answer(stranger, request, response)
    assert resp.status_code == 400 and "could not be completed" in resp.text
    thief = Browser(live.issuer)
    thief.get(f"{live.issuer}/signin")
    _set_flow_cookie(thief, _flow_cookie(b))
    resp = _answer(thief, request, response)
    assert resp.status_code == 403 and "started in another session" in resp.text
    assert not _user_exists(live, tested)
    assert "Your account" not in stranger.get(f"{live.issuer}/account").text
    assert "Your account" not in thief.get(f"{live.issuer}/account").text

    flow_before = _flow_cookie(b)
    page = _answer(b, request, response)
    assert page.status_code == 200, page.text[:1000]
    assert 'data-test-result="passed"' in page.text
    assert f"<dd data-name-id>{tested}</dd>" in page.text
    text = html.unescape(page.text)
    assert re.search(r'data-attribute="department">.*?R&D.*?QA', text, re.S)
    for name, role in (("email", "Email"), ("givenName", "Given name"), ("sn", "Family name"),
                       ("displayName", "Display name"), ("department", "")):
        assert re.search(rf'data-attribute="{name}">.*?<td data-role>{role}</td>', text, re.S), name
    for claim, value in (("email", tested), ("given_name", "Tess"), ("family_name", "Tester"),
                         ("name", "Tess Tester")):
        assert f'<dd data-claim="{claim}">{value}</dd>' in text, claim
    # nobody made, nobody signed in: the admin is still the admin
    assert not _user_exists(live, tested)
    account = _who(b)
    assert org["email"] in account and tested not in account
    assert get(b, org["page"]).status_code == 200
    assert _events(live, org["id"], "admin.sso_tested")[-1] == (org["admin"], {"outcome": "passed"})

    # only once: again from the same browser (the test is over), or with the flow cookie of before
    resp = _answer(b, request, response)
    assert resp.status_code == 400 and "could not be completed" in resp.text
    _set_flow_cookie(b, flow_before)
    resp = _answer(b, request, response)
    assert resp.status_code == 400 and "already completed" in resp.text
    # nor as the answer to a new test
    request2 = _start_test(b, org, idp)
    resp = _answer(b, request2, response, relay=request2["relay_state"])
    assert resp.status_code == 400 and 'data-test-result="failed"' in resp.text
    reason = re.search(r"<code data-test-reason>(.*?)</code>", resp.text, re.S).group(1)
    assert "Unsolicited response" in reason, reason  # it answers the first test, not this one
    assert not _user_exists(live, tested) and org["email"] in _who(b)


@pytest.mark.parametrize("attack", ["unsigned", "other-key", "modified", "expired", "wrong-audience"])
def test_a_forged_test_answer_is_refused_with_its_reason(live, org, idp, other_idp, attack):
    _attach(live, org, idp)
    b = org["browser"]
    request = _start_test(b, org, idp)
    email = f"forged.{uuid.uuid4().hex[:6]}@{org['domain']}"
    if attack == "other-key":
        response, _ = idp.response(request, email=email, signer=other_idp)
    elif attack == "expired":
        response, _ = idp.response(request, email=email, not_on_or_after_minutes=-10)
    elif attack == "wrong-audience":
        response, _ = idp.response(request, email=email, audience="https://someone-else.example/sp")
    else:
        good, _ = idp.response(request, email=email)
        response = unsigned(good) if attack == "unsigned" else TestIdP.replace_text(good, email, f"ceo@{org['domain']}")
    resp = _answer(b, request, response)
    assert resp.status_code == 400 and 'data-test-result="failed"' in resp.text, resp.text[:1000]
    reason = html.unescape(re.search(r"<code data-test-reason>(.*?)</code>", resp.text, re.S).group(1))
    assert reason.strip()
    assert 'data-name-id' not in resp.text
    assert not _user_exists(live, email) and not _user_exists(live, f"ceo@{org['domain']}")
    assert org["email"] in _who(b)
    assert _events(live, org["id"], "admin.sso_tested")[-1] == (org["admin"], {"outcome": "failed", "reason": reason})


def test_connection_test_without_an_idp_says_so(live, org):
    resp = post(org["browser"], f"{org['page']}/test")
    assert resp.status_code == 409 and "Save the IdP metadata before testing the connection." in resp.text


def test_a_real_sign_in_is_not_taken_for_a_test(live, org, idp):
    from tests.oidc import authorize_url, redirect_params

    _attach(live, org, idp)
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = b.submit(b.get(authorize_url(live.issuer, client_id)), {"email": f"real@{org['domain']}"})
    location = html.unescape(re.search(r'<a class="button" role="button" href="([^"]+)"', page.text).group(1))
    request = idp.parse_authn_request(location)
    response, _ = idp.response(request, email=f"real@{org['domain']}")
    assert "code" in redirect_params(_answer(b, request, response))
    assert _user_exists(live, f"real@{org['domain']}")


def test_a_test_answer_is_no_unsolicited_sign_in_elsewhere(live, org, idp, tmp_path):
    """An org that accepts IdP-initiated sign-ins still refuses, in another browser, an answer
    to a request (a test's or a sign-in's) that browser never sent."""
    _attach(live, org, idp)
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert live.idp("orgs", "saml", org["name"], "--metadata", str(path), "--idp-initiated").returncode == 0
    b = org["browser"]
    request = _start_test(b, org, idp)
    tested = f"elsewhere.{uuid.uuid4().hex[:6]}@{org['domain']}"
    response, _ = idp.response(request, email=tested)
    stranger = Browser(live.issuer)
    resp = _answer(stranger, request, response, relay="")
    assert resp.status_code == 400 and "could not be completed" in resp.text
    assert not _user_exists(live, tested)
    assert "Your account" not in stranger.get(f"{live.issuer}/account").text
    # the admin's own browser still completes the test
    page = _answer(b, request, response)
    assert page.status_code == 200 and 'data-test-result="passed"' in page.text
    assert not _user_exists(live, tested)
