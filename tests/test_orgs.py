"""Orgs and domains from the command line, and home-realm discovery without an IdP."""

from __future__ import annotations

import json
import re


def test_orgs_commands(live):
    out = live.idp("orgs", "create", "Acme", "--domain", "acme.example", "--domain", "ACME-corp.example")
    assert out.returncode == 0, out.stderr
    # a domain belongs to at most one org; names are unique
    for args in (["orgs", "create", "Other", "--domain", "acme.example"],
                 ["orgs", "create", "Acme", "--domain", "new.example"],
                 ["orgs", "create", "Bad", "--domain", "not a domain"],
                 ["orgs", "saml", "Acme", "--metadata", "/nonexistent.xml"],
                 ["orgs", "sp-metadata", "Nobody"],
                 ["orgs", "enforce-sso", "Acme"]):  # no IdP yet: enforcing would lock everyone out
        res = live.idp(*args)
        assert res.returncode == 1 and res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1, args
    meta = live.idp("orgs", "sp-metadata", "Acme")
    assert meta.returncode == 0, meta.stderr
    assert "SPSSODescriptor" in meta.stdout and "X509Certificate" in meta.stdout
    acs = re.search(r'Location="([^"]+)"', meta.stdout).group(1)
    assert acs.startswith(f"{live.issuer}/saml/") and acs.endswith("/acs")
    out = live.idp("users", "create", "worker@acme.example", "--org", "Acme", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["email"] == "worker@acme.example"


def test_org_without_idp_signs_in_by_password(live, browser):
    live.idp("orgs", "create", "NoIdP", "--domain", "noidp.example")
    live.create_user("someone@noidp.example", "noidp-password")
    page = browser.get(f"{live.issuer}/account")
    assert "Your account" in browser.sign_in(page, "someone@noidp.example", "noidp-password").text
