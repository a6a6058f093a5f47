"""Security review of an org's email domains and its enterprise IdP set-up: how a domain is
proven and matched, and what the Admin Center does with an admin-given URL. Live servers on
SQLite and PostgreSQL; the DNS proof asks a real DNS server on loopback (tests/dns_server.py)."""

from __future__ import annotations

import re
import secrets
import uuid

import idna
import pytest

from tests.admin_world import get, new_org, org_admin, post, signed_in
from tests.conftest import Browser, csrf_of
from tests.saml_idp import TestIdP
from tests.test_admin_enterprise import MetadataServer


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("review-domains-idp"))


def _org_enforcing_sso(live, idp, tmp_path, domain: str) -> str:
    """An org owning `domain` (as stored: A-labels), its SAML IdP attached and Enterprise
    Sign-In enforced, all through the CLI; returns the org's name."""
    from tests.test_saml import attached_org

    name, _ = attached_org(live, idp, tmp_path, "idn", domain=domain)
    out = live.idp("orgs", "enforce-sso", name)
    assert out.returncode == 0, out.stderr
    return name


def test_an_address_at_an_orgs_internationalised_domain_cannot_escape_its_enforced_sign_in(live, idp, tmp_path):
    """Medium: an org's proven IDN domain (stored as xn--) never matched its people's addresses (kept
    in Unicode), so they signed up and in by password past enforced SSO (ASVS V2.1 / RFC 5891)."""
    unicode_domain = f"bücher-{secrets.token_hex(3)}.example"
    a_label = idna.encode(unicode_domain, uts46=True).decode()
    assert a_label.startswith("xn--")
    _org_enforcing_sso(live, idp, tmp_path, a_label)

    for typed in (f"alice@{unicode_domain}", f"alice@{a_label}", f"alice@{unicode_domain.upper()}"):
        # sign-up by password is refused: the address belongs to an org with its own IdP
        b = Browser(live.issuer)
        page = b.get(f"{live.issuer}/signup")
        resp = b.submit(page, {"email": typed, "name": "Alice", "password": "a long enough pw 1"})
        assert resp.status_code == 403, (typed, resp.status_code, resp.text[:300])
        # the sign-in's email step sends the browser on to the org's IdP, not to a password
        b = Browser(live.issuer)
        page = b.submit(b.get(f"{live.issuer}/signin"), {"email": typed})
        assert page.status_code == 200 and 'name="password"' not in page.text, (typed, page.text[:300])
        assert idp.entity_id.split("/")[2] in page.text or "SAMLRequest" in page.text, page.text[:400]


def test_a_look_alike_of_an_orgs_domain_is_not_the_orgs(live, idp, tmp_path):
    """High (regression pin for the fix above): IDNA 2003 maps straße to strasse; an address at straße must never reach
    the org that proved strasse, nor be bound by it (RFC 5891 §4, UTS 46 non-transitional)."""
    stem = f"stra{secrets.token_hex(2)}"
    _org_enforcing_sso(live, idp, tmp_path, f"{stem}sse.example")
    b = Browser(live.issuer)
    page = b.submit(b.get(f"{live.issuer}/signin"), {"email": f"bob@{stem}ße.example"})
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:400]


@pytest.fixture
def admin(live):
    """A fresh org and its admin (at an address outside the org's domain), signed in."""
    org_id, name, domain = new_org(live, "rev")
    email = f"admin-{uuid.uuid4().hex[:6]}@admins-{name}.example"
    admin_id = org_admin(live, name, email)
    return {"id": org_id, "admin": admin_id, "browser": signed_in(live, email),
            "page": f"/admin/orgs/{org_id}/enterprise-sign-in"}


def _upload(admin, xml: str):
    b = admin["browser"]
    csrf = csrf_of(get(b, admin["page"]).text)
    return b.http.post(f"{b.issuer}{admin['page']}/metadata", data={"csrf_token": csrf, "metadata_url": ""},
                       files={"metadata_file": ("idp.xml", xml, "application/xml")}, allow_redirects=False,
                       timeout=30)


def _saved(live, org_id: str) -> list[dict]:
    from idp.store import SecurityEvent, db

    with live.db():
        return [e.detail for e in db.session.query(SecurityEvent)
                .filter_by(org_id=org_id, kind="admin.idp_metadata_saved").order_by(SecurityEvent.id)]


def test_a_metadata_sending_people_to_a_plain_http_sign_in_page_is_refused(live, idp, admin):
    """Medium: an http:// SingleSignOnService sends every member's IdP password and the AuthnRequest
    in clear text (SAML 2.0 Bindings §3.4.5.2, ASVS V9.1.1)."""
    good = idp.metadata_xml()
    assert idp.sso_url.startswith("https://") and idp.sso_url in good
    plain = good.replace(idp.sso_url, "http://" + idp.sso_url[len("https://"):])
    resp = _upload(admin, plain)
    assert resp.status_code == 400 and "The IdP metadata was not saved:" in resp.text, resp.status_code
    assert "https" in resp.text
    assert _saved(live, admin["id"]) == []
    # the same document with its https:// sign-in page is saved
    assert _upload(admin, good).status_code == 302


@pytest.fixture(scope="module")
def metadata_server():
    server = MetadataServer()
    yield server
    server.server.shutdown()


def test_a_token_in_the_metadata_urls_query_stays_out_of_the_audit_trail(live, idp, admin, metadata_server):
    """Low: the IdP's access token in a metadata URL's query was kept in the audit trail for
    400 days, which the refresh already keeps out (ASVS V7.1.1: no secrets in logs)."""
    metadata_server.body = idp.metadata_xml().encode()
    secret = secrets.token_urlsafe(12)
    url = metadata_server.url(f"/idp.xml?access_token={secret}")
    resp = post(admin["browser"], f"{admin['page']}/metadata", {"metadata_url": url})
    assert resp.status_code == 302, resp.text[:500]
    assert metadata_server.paths[-1].endswith(secret)  # fetched with its token
    [detail] = _saved(live, admin["id"])
    assert detail["source"] == metadata_server.url("/idp.xml"), detail
    assert secret not in str(detail)


def test_a_removed_domains_people_are_not_locked_out_by_the_orgs_enforced_sign_in(live, idp, tmp_path):
    """Medium: after an org removes a domain, its members there stay bound to the org's enforced SSO,
    which their IdP can no longer sign them in to: locked out of a domain the org no longer owns (ASVS V4.1.3)."""
    from tests.admin_world import PASSWORD, person

    org_id, name, domain = new_org(live, "rm")
    admin_email = f"admin-{uuid.uuid4().hex[:6]}@admins-{name}.example"
    org_admin(live, name, admin_email)
    admin_browser = signed_in(live, admin_email)  # before enforcing: an open session stays
    idp.trust_sp(live.idp("orgs", "sp-metadata", name).stdout)
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path)).returncode == 0
    assert live.idp("orgs", "enforce-sso", name).returncode == 0
    member = f"alice-{uuid.uuid4().hex[:6]}@{domain}"
    person(live, member, org_id)

    resp = post(admin_browser, f"/admin/orgs/{org_id}/domains/{domain}/remove", {"confirmed": "yes"})
    assert resp.status_code == 302, resp.text[:300]
    # the page promised: "Addresses at this domain will no longer lead to this organization's sign-in"
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), member, PASSWORD)
    assert page.url.startswith(f"{live.issuer}/account"), (page.status_code, page.text[:300])


def test_a_member_still_at_one_of_the_orgs_domains_stays_bound_when_another_is_removed(live, idp, tmp_path):
    """The decision above binds by the org's current domains, not by membership alone: removing
    one of two domains frees the people at that one only, and proving it again binds them again."""
    from tests.admin_world import PASSWORD, person

    name = f"rm2-{uuid.uuid4().hex[:8]}"
    domain, other = f"{name}.example", f"other-{name}.example"
    out = live.idp("orgs", "create", name, "--domain", domain, "--domain", other)
    assert out.returncode == 0, out.stderr
    org_id = re.search(r"\(([0-9a-f]+)\)", out.stdout).group(1)
    admin_email = f"admin-{uuid.uuid4().hex[:6]}@admins-{name}.example"
    org_admin(live, name, admin_email)
    admin_browser = signed_in(live, admin_email)
    idp.trust_sp(live.idp("orgs", "sp-metadata", name).stdout)
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path)).returncode == 0
    assert live.idp("orgs", "enforce-sso", name).returncode == 0
    staying, leaving = f"stay-{uuid.uuid4().hex[:6]}@{domain}", f"leave-{uuid.uuid4().hex[:6]}@{other}"
    person(live, staying, org_id)
    person(live, leaving, org_id)

    def by_password(email: str):
        """The right password, typed at the password step reached straight (the email step
        would send an address at a domain of the org to its IdP, enforced or not)."""
        b = Browser(live.issuer)
        b.http.post(f"{live.issuer}/signin", data={"csrf_token": csrf_of(b.get(f"{live.issuer}/signin").text),
                                                   "email": email}, allow_redirects=False, timeout=30)
        return b.submit(b.get(f"{live.issuer}/signin/password"), {"password": PASSWORD})

    resp = post(admin_browser, f"/admin/orgs/{org_id}/domains/{other}/remove", {"confirmed": "yes"})
    assert resp.status_code == 302, resp.text[:300]
    page = by_password(staying)  # the org's IdP still signs them in: the only way in
    assert page.status_code == 403 and "requires Enterprise Sign-In" in page.text, (page.status_code, page.text[:300])
    page = by_password(leaving)
    assert page.url.startswith(f"{live.issuer}/account") and "Your account" in page.text, page.text[:300]

    operator = f"operator-{uuid.uuid4().hex[:6]}@ops.example"
    person(live, operator, is_admin=True)
    resp = post(signed_in(live, operator), f"/admin/orgs/{org_id}/domains", {"domain": other, "proven": "yes"})
    assert resp.status_code == 302, resp.text[:300]
    page = by_password(leaving)  # a member again at one of the org's domains: bound again
    assert page.status_code == 403 and "requires Enterprise Sign-In" in page.text, (page.status_code, page.text[:300])


def test_membership_alone_is_not_counted_as_a_way_in_left_by_removing_every_passkey(live, idp, tmp_path):
    """Low: "Sign out of all sessions" refuses to remove the last way in, and counted a member's
    org as one whatever their address; an org's IdP signs in only addresses at the org's domains,
    so a member elsewhere (an outside address, a domain the org removed) was left with none."""
    from tests.test_passkeys import _with_passkey
    from tests.test_saml import attached_org

    from idp.store import Org, User, db

    domain = f"way-{uuid.uuid4().hex[:8]}.example"
    people = {"inside": f"pk-{uuid.uuid4().hex[:6]}@{domain}",
              "outside": f"pk-{uuid.uuid4().hex[:6]}@elsewhere-{domain}"}
    browsers = {who: _with_passkey(live, email)[0] for who, email in people.items()}  # before the org's IdP
    name, _ = attached_org(live, idp, tmp_path, "way", domain=domain)
    answers = {}
    for who, email in people.items():
        b = browsers[who]
        with live.db():  # made a member without a password, as SCIM makes them
            user = db.session.query(User).filter_by(email=email).one()
            user.org_id, user.password_hash = db.session.query(Org).filter_by(name=name).one().id, None
            db.session.commit()
        page = b.get(f"{live.issuer}/account")
        answers[who] = b.submit(page, {"remove_passkeys": "on"}, action=f"{live.issuer}/account/sessions/revoke-all")
    assert answers["inside"].status_code == 200  # the org's IdP is still their way in
    assert answers["outside"].status_code == 409 and "no way into your account" in answers["outside"].text


def test_a_metadata_url_or_issuer_at_an_ipv6_site_local_address_is_refused(live, admin):
    """Low: fec0::/10 (site-local, RFC 3879) passed as public, so an admin could aim the server's
    requests at a private network still using it (OWASP ASVS V12.6.1, SSRF)."""
    resp = post(admin["browser"], f"{admin['page']}/metadata", {"metadata_url": "https://[fec0::1]/metadata"})
    assert resp.status_code == 400 and "non-public" in resp.text, resp.text[:2000]
    resp = post(admin["browser"], f"{admin['page']}/oidc",
                {"issuer": "https://[fec0::1]/", "client_id": "c", "client_secret": "s"})
    assert resp.status_code == 400 and "non-public" in resp.text, resp.text[:2000]
    assert _saved(live, admin["id"]) == []


def test_a_metadata_url_with_an_upper_case_scheme_is_fetched_never_read_as_a_server_file(live, idp, admin,
                                                                                          metadata_server):
    """Low: "HTTPS://..." passed the Admin Center's URL check, then was opened as a path on the server
    (RFC 3986 §3.1: schemes are case-insensitive; ASVS V12.3.1: no file read from user input)."""
    metadata_server.body = idp.metadata_xml().encode()
    path = f"/upper-{uuid.uuid4().hex[:6]}.xml"
    url = metadata_server.url(path).replace("http://", "HTTP://")
    resp = post(admin["browser"], f"{admin['page']}/metadata", {"metadata_url": url})
    assert "cannot read metadata" not in resp.text
    assert resp.status_code == 302, resp.text[:2000]
    assert path in metadata_server.paths
