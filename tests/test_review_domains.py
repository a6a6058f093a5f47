"""Security review of an org's email domains and its enterprise IdP set-up: how a domain is
proven and matched, and what the Admin Center does with an admin-given URL. Live servers on
SQLite and PostgreSQL; the DNS proof asks a real DNS server on loopback (tests/dns_server.py)."""

from __future__ import annotations

import secrets

import idna
import pytest

from tests.conftest import Browser
from tests.saml_idp import TestIdP


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("review-domains-idp"))


def _org_enforcing_sso(live, idp, tmp_path, domain: str) -> str:
    """An org owning `domain` (as stored: A-labels), its SAML IdP attached and Enterprise
    Sign-In enforced, all through the CLI; returns the org's name."""
    name = "idn-" + secrets.token_hex(3)
    assert live.idp("orgs", "create", name, "--domain", domain).returncode == 0
    idp.trust_sp(live.idp("orgs", "sp-metadata", name).stdout)
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    out = live.idp("orgs", "saml", name, "--metadata", str(path))
    assert out.returncode == 0, out.stderr
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
