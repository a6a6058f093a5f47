"""The org owning a person's mail domain is asked on every signed-in page; most domains
belong to no org, and that answer is kept per process too (idp/orgs.py `view_of_domain`),
yet a domain an org claims later binds its people on their very next sign-in in every
worker: the `scim` change stamp moves with any change to orgs or their domains."""

from __future__ import annotations

import re
import uuid

from tests.admin_world import PASSWORD, person
from tests.conftest import Browser

WARM = 6  # sign-ins spread over both workers of the live server


def test_no_org_for_a_domain_is_read_once_until_the_stamp_moves(live, monkeypatch):
    from idp import orgs
    from idp.store import Org, OrgDomain, db

    domain = f"nobody-{uuid.uuid4().hex[:8]}.example"
    loads = []
    for name in ("_load_view_of_domain", "_load_view"):
        real = getattr(orgs, name)
        monkeypatch.setattr(orgs, name, lambda key, real=real: loads.append(key) or real(key))
    with live.db():
        assert orgs.view_of_domain(domain) is None
        assert orgs.view_of_domain(domain) is None
        assert loads == ["@" + domain]  # the miss was kept
        org = Org(name=f"claims-{uuid.uuid4().hex[:8]}")
        db.session.add(org)
        db.session.flush()
        db.session.add(OrgDomain(org_id=org.id, domain=domain))
        db.session.commit()
        claimed = orgs.view_of_domain(domain)
        assert claimed is not None and claimed.id == org.id and domain in claimed.domains
        assert len(loads) == 2
        # Orgs looked up by id (ids in a URL can be made up) still never keep a miss.
        assert orgs.view("0" * 32) is None and orgs.view("0" * 32) is None
        assert loads[2:] == ["0" * 32] * 2


def _sign_in(live, email: str):
    b = Browser(live.issuer)
    return b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)


def _known_then_claimed(live, tag: str, **rules) -> str:
    """A person whose domain no org owns, signed in over both workers (each keeps "no org"
    for the domain); then an org claims the domain (`idp orgs create`) and sets `rules`.
    Returns the person's address."""
    from idp.store import Org, db

    domain = f"{tag}-{uuid.uuid4().hex[:8]}.example"
    email = f"p@{domain}"
    person(live, email)
    for _ in range(WARM):
        page = _sign_in(live, email)
        assert page.status_code == 200 and page.url.endswith("/account"), page.url
    out = live.idp("orgs", "create", f"{tag}-{uuid.uuid4().hex[:8]}", "--domain", domain)
    assert out.returncode == 0, out.stderr
    org_id = re.search(r"\(([0-9a-f]+)\)", out.stdout).group(1)
    with live.db():
        org = db.session.get(Org, org_id)
        for name, value in rules.items():
            setattr(org, name, value)
        db.session.commit()
    return email


def test_a_domain_an_org_claims_later_binds_its_people_at_their_next_sign_in(live):
    email = _known_then_claimed(live, "later", require_mfa=True)
    for _ in range(WARM):  # the org's rule holds at once, in every worker
        page = _sign_in(live, email)
        assert page.status_code == 200 and "/signin/set-up-second-factor" in page.url, page.url


def test_a_domain_an_org_claims_later_and_locks_to_its_idp_refuses_the_next_password(live):
    """Home-realm discovery (`federation.discovery.org_for_email`, asked by the email and
    password steps) takes "no org" from the same kept answer: a claim moves it at once."""
    email = _known_then_claimed(live, "locked", enforce_sso=True)
    for _ in range(WARM):  # in every worker, the password no longer lets them in
        page = _sign_in(live, email)
        assert page.status_code == 403 and "requires Enterprise Sign-In" in page.text, (page.status_code, page.url)


def test_sign_in_page_buttons_follow_a_provider_added_and_removed_at_once(live):
    """The provider list is kept per worker (idp/social.py `enabled`): a provider added or
    removed elsewhere shows, or goes, on the very next page of every worker."""
    from idp.store import SocialProvider, db

    name = "linkedin"

    def pages():
        return [Browser(live.issuer).get(f"{live.issuer}/signin").text for _ in range(WARM)]

    assert all(">LinkedIn</a>" not in page for page in pages())  # both workers keep the list now
    out = live.idp("social", "add", name, "--client-id", "li-id", "--client-secret", "li-secret")
    assert out.returncode == 0, out.stderr
    try:
        assert all(">LinkedIn</a>" in page for page in pages())
    finally:
        with live.db():
            db.session.delete(db.session.get(SocialProvider, name))
            db.session.commit()
    assert all(">LinkedIn</a>" not in page for page in pages())
