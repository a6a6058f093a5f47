"""Admin Center, Domains: a claimed domain becomes the org's only once its DNS TXT record
is there, looked up at a real DNS server on loopback (tests/dns_server.py) that the
server under test asks through IDP_DNS_RESOLVER. Runs on SQLite and PostgreSQL.

Who may reach these routes at all is in tests/test_admin_access.py (its TABLE).
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

from tests.admin_world import get, new_org, org_admin, person, post, signed_in
from tests.conftest import start_live
from tests.dns_server import LoopbackDNS


@pytest.fixture(scope="module")
def dns():
    server = LoopbackDNS().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(database_url, mailbox, tmp_path_factory, dns):
    """A server of its own on the session's database (SQLite, then PostgreSQL) that asks
    the loopback DNS server; several threads per worker, so that a request waiting for the
    DNS does not hold up the next one (the race test needs that); its log at INFO, where a
    failed check's reason is written."""
    yield from start_live(database_url, tmp_path_factory.mktemp("domains"), mailbox,
                          extra_env={"IDP_DNS_RESOLVER": dns.address, "IDP_THREADS": "4", "IDP_LOG_LEVEL": "INFO"})


def _org_with_admin(site, tag: str):
    org_id, name, domain = new_org(site, tag)
    email = f"admin-{uuid.uuid4().hex[:6]}@{domain}"
    admin_id = org_admin(site, name, email)
    return {"id": org_id, "name": name, "domain": domain, "admin": admin_id, "browser": signed_in(site, email)}


def _page(b, org) -> str:
    resp = get(b, f"/admin/orgs/{org['id']}/domains")
    assert resp.status_code == 200, resp.status_code
    return resp.text


def _claims(site, org_id: str) -> dict:
    from idp.store import DomainClaim, db

    with site.db():
        return {c.domain: (c.id, c.token, c.checked_at, c.last_error)
                for c in db.session.query(DomainClaim).filter_by(org_id=org_id)}


def _owner(site, domain: str) -> str | None:
    from idp.store import OrgDomain, db

    with site.db():
        row = db.session.get(OrgDomain, domain)
        return row.org_id if row else None


def _events(site, org_id: str) -> list:
    from idp.store import SecurityEvent, db

    with site.db():
        return [(e.kind, e.actor_id, e.detail.get("domain"), e.detail.get("reason"))
                for e in db.session.query(SecurityEvent).order_by(SecurityEvent.created_at, SecurityEvent.id)
                .filter(SecurityEvent.org_id == org_id, SecurityEvent.kind.like("domain.%"))]


def _claim(site, org, typed: str) -> tuple[str, str]:
    """Claim `typed` as the org's admin; (claim id, token) of the new claim."""
    resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": typed})
    assert resp.status_code == 302, resp.text[:500]
    domain = typed.strip().lower().rstrip(".")
    claim_id, token, _, _ = _claims(site, org["id"])[domain]
    return claim_id, token


def _verify(org, claim_id: str):
    return post(org["browser"], f"/admin/orgs/{org['id']}/domains/claims/{claim_id}/verify")


def _article(page: str, claim_id: str) -> str:
    m = re.search(rf'<article id="claim-{claim_id}".*?</article>', page, re.S)
    assert m, f"no claim {claim_id} on the page"
    return m.group(0)


def test_a_claimed_domain_is_the_orgs_once_its_txt_record_is_published(site, dns):
    from federation.discovery import home_realm_for

    org = _org_with_admin(site, "dns")
    domain = f"mail-{uuid.uuid4().hex[:8]}.example"
    claim_id, token = _claim(site, org, f"  Mail{domain[4:].upper()}. ")  # typed loosely: normalised
    record = f"_myaccount-challenge.{domain}"

    # the page says exactly what to publish
    article = _article(_page(org["browser"], org), claim_id)
    assert f"<code data-record-name>{record}</code>" in article
    assert f"<code data-record-value>myaccount-verification={token}</code>" in article
    assert ">Verify</button>" in article

    # nothing published yet: a readable reason, and the claim stays a claim
    resp = _verify(org, claim_id)
    assert resp.status_code == 302
    page = org["browser"].get(f"{site.issuer}{resp.headers['Location']}").text
    assert f"No TXT record was found at {record}." in _article(page, claim_id)
    assert 'role="alert"' in _article(page, claim_id)
    _, _, checked_at, last_error = _claims(site, org["id"])[domain]
    assert checked_at is not None and last_error == "no_record"
    assert _owner(site, domain) is None
    with site.db():
        assert home_realm_for(f"someone@{domain}").org is None
    assert dns.asked.count(record) == 1

    # published (beside an unrelated TXT record): the domain is the org's, the claim gone
    dns.txt[record] = ["v=spf1 -all", f"myaccount-verification={token}"]
    resp = _verify(org, claim_id)
    assert resp.status_code == 302
    page = org["browser"].get(f"{site.issuer}{resp.headers['Location']}").text
    assert f"{domain} is now one of this organization's domains." in page, page[page.find("<h2>"):][:1500]
    assert f'data-domain="{domain}"' in page and f'id="claim-{claim_id}"' not in page
    assert _owner(site, domain) == org["id"] and domain not in _claims(site, org["id"])

    # home-realm discovery knows it now, and the admin may add people there
    with site.db():
        assert home_realm_for(f"someone@{domain}").org.id == org["id"]
    resp = post(org["browser"], f"/admin/orgs/{org['id']}/users", {"email": f"new@{domain}", "name": "New"})
    assert resp.status_code == 302 and "invited=1" in resp.headers["Location"], resp.text[:300]

    assert _events(site, org["id"]) == [
        ("domain.claimed", org["admin"], domain, None),
        ("domain.check_failed", org["admin"], domain, "no_record"),
        ("domain.verified", org["admin"], domain, None),
    ]


def test_a_record_with_another_token_proves_nothing(site, dns):
    org = _org_with_admin(site, "wrong")
    other = _org_with_admin(site, "other")
    domain = f"wrong-{uuid.uuid4().hex[:8]}.example"
    claim_id, token = _claim(site, org, domain)
    _, other_token = _claim(site, other, domain)
    record = f"_myaccount-challenge.{domain}"
    for published in ([f"myaccount-verification={other_token}"], [token], [f"myaccount-verification={token}x"]):
        dns.txt[record] = published
        assert _verify(org, claim_id).status_code == 302
        assert _claims(site, org["id"])[domain][3] == "mismatch"
        assert _owner(site, domain) is None
    page = _page(org["browser"], org)
    assert f"The TXT records at {record} do not hold the value shown here." in _article(page, claim_id)
    # the other org's token proves the domain for the other org only
    dns.txt[record] = [f"myaccount-verification={other_token}"]
    assert _verify(other, _claims(site, other["id"])[domain][0]).status_code == 302
    assert _owner(site, domain) == other["id"]


def test_a_domain_of_another_org_is_refused_without_naming_it(site, dns):
    org = _org_with_admin(site, "refused")
    theirs_name, theirs = f"Theirs {uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}.example"
    out = site.idp("orgs", "create", theirs_name, "--domain", theirs)
    assert out.returncode == 0, out.stderr
    theirs_id = re.search(r"\(([0-9a-f]+)\)", out.stdout).group(1)
    for typed in (theirs, f" {theirs.upper()}. "):
        resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": typed})
        assert resp.status_code == 409
        assert "This domain belongs to another organization." in resp.text
        assert theirs_name not in resp.text and theirs_id not in resp.text
    assert _claims(site, org["id"]) == {} and _owner(site, theirs) == theirs_id
    # a claim made before the other org proved the domain is refused at Verify
    late = f"late-{uuid.uuid4().hex[:8]}.example"
    claim_id, token = _claim(site, org, late)
    assert post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": late}).status_code == 409
    operator = f"operator-{uuid.uuid4().hex[:6]}@ops.example"
    person(site, operator, is_admin=True)
    resp = post(signed_in(site, operator), f"/admin/orgs/{theirs_id}/domains", {"domain": late, "proven": "yes"})
    assert resp.status_code == 302 and _owner(site, late) == theirs_id
    dns.txt[f"_myaccount-challenge.{late}"] = [f"myaccount-verification={token}"]
    resp = _verify(org, claim_id)
    assert resp.status_code == 302
    article = _article(org["browser"].get(f"{site.issuer}{resp.headers['Location']}").text, claim_id)
    assert "This domain belongs to another organization." in article and theirs_name not in article
    assert _owner(site, late) == theirs_id


def test_what_is_not_a_domain_is_refused_readably(site):
    org = _org_with_admin(site, "typos")
    for typed in ("", "  ", "example", "localhost.", "192.0.2.1", "alice@example.com", "https://example.com",
                  "-bad.example", "bad-.example", "a..example", "*.example.com", "under_score.example",
                  "x" * 64 + ".example", ("a" * 60 + ".") * 5 + "example"):
        resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": typed})
        assert resp.status_code == 400, typed
        assert "Enter a domain name, like example.com." in resp.text
    assert _claims(site, org["id"]) == {}
    # an internationalised name is kept in its ASCII form; the org's own domain is already there
    tag = uuid.uuid4().hex[:6]
    resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": f"Bücher-{tag}.Example"})
    assert resp.status_code == 302
    assert f"xn--bcher-{tag}-" in "".join(_claims(site, org["id"]))
    resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": org["domain"].upper()})
    assert resp.status_code == 409 and "already one of this organization&#39;s domains" in resp.text
    resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": f"bücher-{tag}.example."})
    assert resp.status_code == 409 and "already waiting for its DNS record" in resp.text
    assert len(_claims(site, org["id"])) == 1


def test_an_operator_adds_a_domain_without_proof_and_an_org_admin_cannot(site, dns):
    org = _org_with_admin(site, "direct")
    operator = f"operator-{uuid.uuid4().hex[:6]}@ops.example"
    operator_id = person(site, operator, is_admin=True)
    domain = f"direct-{uuid.uuid4().hex[:8]}.example"
    asked = len(dns.asked)

    resp = post(org["browser"], f"/admin/orgs/{org['id']}/domains", {"domain": domain, "proven": "yes"})
    assert resp.status_code == 403
    assert _owner(site, domain) is None and _claims(site, org["id"]) == {}

    ops = signed_in(site, operator)
    assert 'name="proven"' in _page(ops, org) and 'name="proven"' not in _page(org["browser"], org)
    resp = post(ops, f"/admin/orgs/{org['id']}/domains", {"domain": domain, "proven": "yes"})
    assert resp.status_code == 302
    assert _owner(site, domain) == org["id"] and _claims(site, org["id"]) == {}
    assert len(dns.asked) == asked  # no DNS involved
    assert ("domain.added", operator_id, domain, None) in _events(site, org["id"])
    # without the box, an operator's domain waits for its record like anyone's
    other = f"claimed-{uuid.uuid4().hex[:8]}.example"
    assert post(ops, f"/admin/orgs/{org['id']}/domains", {"domain": other}).status_code == 302
    assert other in _claims(site, org["id"]) and _owner(site, other) is None


def test_removing_a_domain_or_a_claim_asks_first(site):
    from federation.discovery import home_realm_for

    org = _org_with_admin(site, "remove")
    domain = org["domain"]
    claim_id, _ = _claim(site, org, f"pending-{uuid.uuid4().hex[:8]}.example")
    base = f"/admin/orgs/{org['id']}/domains"

    resp = post(org["browser"], f"{base}/{domain}/remove")
    assert resp.status_code == 200
    assert f"Remove {domain}?" in resp.text and 'name="confirmed" value="yes"' in resp.text
    assert f'action="{base}/{domain}/remove"' in resp.text
    assert _owner(site, domain) == org["id"]
    resp = post(org["browser"], f"{base}/{domain}/remove", {"confirmed": "yes"})
    assert resp.status_code == 302 and _owner(site, domain) is None
    with site.db():
        assert home_realm_for(f"someone@{domain}").org is None

    resp = post(org["browser"], f"{base}/claims/{claim_id}/remove")
    assert resp.status_code == 200 and "Stop waiting for the DNS record of pending-" in resp.text
    assert _claims(site, org["id"])
    resp = post(org["browser"], f"{base}/claims/{claim_id}/remove", {"confirmed": "yes"})
    assert resp.status_code == 302 and _claims(site, org["id"]) == {}

    kinds = [(k, actor) for k, actor, _, _ in _events(site, org["id"])]
    assert ("domain.removed", org["admin"]) in kinds and ("domain.claim_withdrawn", org["admin"]) in kinds
    # gone is gone: a second removal, or another org's domain through this org's URL, is a 404
    assert post(org["browser"], f"{base}/{domain}/remove", {"confirmed": "yes"}).status_code == 404
    assert post(org["browser"], f"{base}/claims/{claim_id}/remove", {"confirmed": "yes"}).status_code == 404


def test_another_orgs_domain_and_claim_are_not_found_through_your_org(site):
    mine = _org_with_admin(site, "mine")
    theirs = _org_with_admin(site, "theirs")
    claim_id, _ = _claim(site, theirs, f"their-{uuid.uuid4().hex[:8]}.example")
    base = f"/admin/orgs/{mine['id']}/domains"
    assert post(mine["browser"], f"{base}/{theirs['domain']}/remove", {"confirmed": "yes"}).status_code == 404
    assert post(mine["browser"], f"{base}/claims/{claim_id}/remove", {"confirmed": "yes"}).status_code == 404
    assert post(mine["browser"], f"{base}/claims/{claim_id}/verify").status_code == 404
    assert _owner(site, theirs["domain"]) == theirs["id"]
    assert [c[0] for c in _claims(site, theirs["id"]).values()] == [claim_id]
    assert theirs["domain"] not in _page(mine["browser"], mine)


def test_when_two_orgs_prove_a_domain_at_once_the_first_wins_and_the_other_is_told(site, dns):
    a = _org_with_admin(site, "race-a")
    b = _org_with_admin(site, "race-b")
    domain = f"race-{uuid.uuid4().hex[:8]}.example"
    record = f"_myaccount-challenge.{domain}"
    claim_a, token_a = _claim(site, a, domain)
    claim_b, token_b = _claim(site, b, domain)
    dns.txt[record] = [f"myaccount-verification={token_a}", f"myaccount-verification={token_b}"]
    dns.delay_once[record] = 2.0  # A's lookup is answered late: B proves the domain meanwhile

    answers = {}
    slow = threading.Thread(target=lambda: answers.setdefault("a", _verify(a, claim_a)))
    slow.start()
    deadline = time.monotonic() + 5
    while record not in dns.asked and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record in dns.asked
    assert _verify(b, claim_b).status_code == 302
    assert _owner(site, domain) == b["id"]
    slow.join(10)

    resp = answers["a"]
    assert resp.status_code == 302, resp.text[:300]  # not a 500: the primary key decided
    article = _article(a["browser"].get(f"{site.issuer}{resp.headers['Location']}").text, claim_a)
    assert "This domain belongs to another organization." in article and b["name"] not in article
    assert _owner(site, domain) == b["id"] and _claims(site, a["id"])[domain][3] == "taken"
    assert ("domain.check_failed", a["admin"], domain, "taken") in _events(site, a["id"])
    assert "Traceback" not in site.log.read_text()


@pytest.mark.parametrize("mode", ["servfail", "yxdomain", "silent"])
def test_a_dns_that_does_not_answer_is_a_readable_error(site, dns, mode):
    log_start = site.log_size()
    org = _org_with_admin(site, "down")
    domain = f"down-{uuid.uuid4().hex[:8]}.example"
    claim_id, token = _claim(site, org, domain)
    dns.txt[f"_myaccount-challenge.{domain}"] = [f"myaccount-verification={token}"]
    dns.set_mode(mode)
    try:
        started = time.monotonic()
        resp = _verify(org, claim_id)
        took = time.monotonic() - started
    finally:
        dns.set_mode("answer")
    assert resp.status_code == 302 and took < 6, (resp.status_code, took)
    article = _article(org["browser"].get(f"{site.issuer}{resp.headers['Location']}").text, claim_id)
    assert "The DNS did not answer. Try again in a few minutes." in article
    assert _claims(site, org["id"])[domain][3] == "dns_unavailable" and _owner(site, domain) is None
    # the log names the failure, also where dnspython's only words are its docstring (-OO)
    logged = [line for line in site.log_since(log_start).splitlines() if "no DNS answer" in line]
    assert logged and not any("(None)" in line for line in logged), logged
    # once it answers again, the same claim goes through
    assert _verify(org, claim_id).status_code == 302 and _owner(site, domain) == org["id"]


def test_checks_are_throttled_per_org(site, dns):
    org = _org_with_admin(site, "busy")
    claim_id, _ = _claim(site, org, f"busy-{uuid.uuid4().hex[:8]}.example")
    statuses = [_verify(org, claim_id).status_code for _ in range(11)]
    assert statuses == [302] * 10 + [429]
    resp = _verify(org, claim_id)
    assert resp.status_code == 429 and "Too many checks for this organization: try again in" in resp.text
    # another org is not slowed down by it
    other = _org_with_admin(site, "calm")
    other_claim, _ = _claim(site, other, f"calm-{uuid.uuid4().hex[:8]}.example")
    assert _verify(other, other_claim).status_code == 302


def test_every_form_needs_its_csrf_token(site):
    org = _org_with_admin(site, "csrf")
    claim_id, _ = _claim(site, org, f"csrf-{uuid.uuid4().hex[:8]}.example")
    base = f"/admin/orgs/{org['id']}/domains"
    for path, form in ((base, {"domain": f"x-{uuid.uuid4().hex[:6]}.example"}),
                       (f"{base}/claims/{claim_id}/verify", {}),
                       (f"{base}/claims/{claim_id}/remove", {"confirmed": "yes"}),
                       (f"{base}/{org['domain']}/remove", {"confirmed": "yes"})):
        assert post(org["browser"], path, form, csrf=False).status_code == 400, path
    assert [c[0] for c in _claims(site, org["id"]).values()] == [claim_id]
    assert _owner(site, org["domain"]) == org["id"]
    page = _page(org["browser"], org)
    assert page.count('name="csrf_token"') >= 4


def test_the_resolver_setting_is_an_address_and_a_port():
    from idp.config import ConfigError, Settings

    assert Settings.from_env({}).dns_resolver is None
    assert Settings.from_env({"IDP_DNS_RESOLVER": "127.0.0.1:5353"}).dns_resolver == ("127.0.0.1", 5353)
    assert Settings.from_env({"IDP_DNS_RESOLVER": "[::1]:53"}).dns_resolver == ("::1", 53)
    for bad in ("localhost:53", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:53", "300.0.0.1:53"):
        with pytest.raises(ConfigError, match="IDP_DNS_RESOLVER"):
            Settings.from_env({"IDP_DNS_RESOLVER": bad})


def test_the_page_in_french(site):
    org_id, name, domain = new_org(site, "fr")
    email = f"admin-{uuid.uuid4().hex[:6]}@{domain}"
    org_admin(site, name, email)
    b = signed_in(site, email, lang="fr")
    claim = post(b, f"/admin/orgs/{org_id}/domains", {"domain": f"fr-{uuid.uuid4().hex[:6]}.example"})
    assert claim.status_code == 302
    page = _page(b, {"id": org_id})
    for label in ("Domaines", "Ajouter un domaine", "Vérifier", "Retirer", "En attente de leur enregistrement DNS"):
        assert label in page, label
    refused = post(b, f"/admin/orgs/{org_id}/domains", {"domain": "pas un domaine"})
    assert refused.status_code == 400 and "Saisissez un nom de domaine" in refused.text
