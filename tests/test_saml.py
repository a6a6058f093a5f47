"""Enterprise Sign-In against a real SAML IdP built in the tests (pysaml2, its own key, real signatures)."""

from __future__ import annotations

import html
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify
from tests.saml_idp import TestIdP, unsigned, with_comment_in_name_id, with_dtd, oversized, wrapped


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


@pytest.fixture(scope="module")
def other_idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-other"), entity_id="https://other-idp.example.test/saml")


@pytest.fixture
def org(live, idp, tmp_path):
    return attached_org(live, idp, tmp_path, "corp")


def attached_org(live, idp, tmp_path, tag: str, domain: str | None = None) -> tuple[str, str]:
    """(name, domain) of a new org with its own domain (`domain`, or one of its name), our SP
    trusted by the IdP, the IdP attached to the org (by `idp orgs saml`)."""
    name = f"{tag}-" + secrets.token_hex(3)
    domain = domain or f"{name}.example"
    assert live.idp("orgs", "create", name, "--domain", domain).returncode == 0
    idp.trust_sp(live.idp("orgs", "sp-metadata", name).stdout)
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    out = live.idp("orgs", "saml", name, "--metadata", str(path))
    assert out.returncode == 0, out.stderr
    return name, domain


def idp_initiated(live, idp, name: str, tmp_path) -> tuple[str, dict]:
    """Let org `name` accept IdP-initiated sign-in: (its ACS URL, the `request` argument of
    `idp.response` that answers our SP unasked)."""
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path), "--idp-initiated").returncode == 0
    sp_meta = live.idp("orgs", "sp-metadata", name).stdout
    acs = re.search(r'Location="([^"]+/acs)"', sp_meta).group(1)
    return acs, {"issuer": re.search(r'entityID="([^"]+)"', sp_meta).group(1)}


def _to_idp(live, b: Browser, client_id: str, email: str, **extra):
    """The product sends the browser here; the email sends it on to the IdP. Returns the parsed AuthnRequest."""
    page = b.get(authorize_url(live.issuer, client_id, **extra))
    page = b.submit(page, {"email": email})
    assert page.status_code == 200 and "Continue" in page.text, page.text[:400]
    location = html.unescape(re.search(r'<a class="button" role="button" href="([^"]+)"', page.text).group(1))
    assert f'content="0;url={html.escape(location)}' in page.text or "http-equiv=\"refresh\"" in page.text
    return location


def _post(b: Browser, acs: str, response_b64: str, relay_state: str | None):
    data = {"SAMLResponse": response_b64}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return b.follow(b.http.post(acs, data=data, allow_redirects=False, timeout=30))


def test_enterprise_sign_in_creates_the_account_just_in_time(live, idp, org):
    from idp.store import Org, User, db

    name, domain = org
    client_id, secret = live.create_client()
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    location = _to_idp(live, b, client_id, f"alice@{domain}", code_challenge=challenge, code_challenge_method="S256")
    request = idp.parse_authn_request(location)
    assert request["signed"] is True, request.get("signature_error")
    assert request["acs_url"].startswith(f"{live.issuer}/saml/") and request["acs_url"].endswith("/acs")
    response, acs = idp.response(request, email=f"alice@{domain}", attributes={
        "email": f"alice@{domain}", "givenName": "Alice", "sn": "Liddell", "displayName": "Alice Liddell"})
    params = redirect_params(_post(b, acs, response, request["relay_state"]))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    assert claims["email"] == f"alice@{domain}" and claims["amr"] == ["fed"]
    assert claims["given_name"] == "Alice" and claims["family_name"] == "Liddell" and claims["name"] == "Alice Liddell"
    with live.db():
        user = db.session.query(User).filter_by(email=f"alice@{domain}").one()
        assert user.org_id == db.session.query(Org).filter_by(name=name).one().id and user.password_hash is None


def _refused(live, b, idp, request, response, relay=None):
    acs = request["acs_url"]
    resp = _post(b, acs, response, request["relay_state"] if relay is None else relay)
    assert resp.status_code == 400 and "could not be completed" in resp.text, resp.text[:300]


def _fresh_request(live, idp, domain, email_local="bob"):
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    request = idp.parse_authn_request(_to_idp(live, b, client_id, f"{email_local}@{domain}"))
    return b, request


@pytest.mark.parametrize("attack", ["other-key", "unsigned", "wrap-sibling", "wrap-extensions", "wrap-advice",
                                    "dtd", "oversized", "modified", "expired", "wrong-audience", "unsolicited",
                                    "wrong-destination"])
def test_crafted_responses_are_refused(live, idp, other_idp, org, attack):
    from idp.store import SecurityEvent, db

    _, domain = org
    b, request = _fresh_request(live, idp, domain)
    email = f"bob@{domain}"
    if attack == "other-key":
        response, _ = idp.response(request, email=email, signer=other_idp)
    elif attack == "expired":
        response, _ = idp.response(request, email=email, not_on_or_after_minutes=-10)
    elif attack == "wrong-audience":
        response, _ = idp.response(request, email=email, audience="https://someone-else.example/sp")
    elif attack == "unsolicited":
        response, _ = idp.response(request, email=email, in_response_to=None)
    elif attack == "wrong-destination":  # Destination and Recipient name another service's ACS
        response, _ = idp.response(request, email=email, acs_url="https://elsewhere.example/saml/acs")
    else:
        good, _ = idp.response(request, email=email)
        response = {
            "unsigned": lambda: unsigned(good),
            "wrap-sibling": lambda: wrapped(good, f"ceo@{domain}", mode="sibling"),
            "wrap-extensions": lambda: wrapped(good, f"ceo@{domain}", mode="extensions"),
            "wrap-advice": lambda: wrapped(good, f"ceo@{domain}", mode="advice"),
            "dtd": lambda: with_dtd(good),
            "oversized": lambda: oversized(good, 400_000),
            "modified": lambda: TestIdP.replace_text(good, email, f"ceo@{domain}"),
        }[attack]()
    _refused(live, b, idp, request, response)
    with live.db():
        event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                 .order_by(SecurityEvent.id.desc()).first())
        assert event.detail["method"] == "saml" and event.detail["reason"]


def test_replayed_and_foreign_responses_are_refused(live, idp, org):
    _, domain = org
    b, request = _fresh_request(live, idp, domain, "carol")
    response, acs = idp.response(request, email=f"carol@{domain}")
    # another browser cannot use a response to this browser's request
    stranger = Browser(live.issuer)
    _refused(live, stranger, idp, request, response)
    assert "code" in redirect_params(_post(b, acs, response, request["relay_state"]))
    # the same response again, even from a browser with a fresh request: replay
    b2, request2 = _fresh_request(live, idp, domain, "carol")
    _refused(live, b2, idp, request2, response, relay=request2["relay_state"])


def test_a_non_ascii_relay_state_is_refused_not_a_500(live, idp, org):
    b, request = _fresh_request(live, idp, org[1], "relay")
    response, _ = idp.response(request, email=f"relay@{org[1]}")
    _refused(live, b, idp, request, response, relay="état-ü")


def test_comment_in_name_id_cannot_shorten_the_address(live, idp, org):
    from idp.store import User, db

    _, domain = org
    b, request = _fresh_request(live, idp, domain, "dave")
    # the attacker's real IdP account is dave@<org domain>.evil.example; the comment would make a
    # naive reader see dave@<org domain>
    good, _ = idp.response(request, email=f"dave@{domain}.evil.example")
    _refused(live, b, idp, request, with_comment_in_name_id(good, inject="evil.example"))
    with live.db():
        assert db.session.query(User).filter_by(email=f"dave@{domain}").count() == 0


def test_enforced_sso_refuses_passwords_but_keeps_open_sessions(live, idp, org):
    name, domain = org
    client_id, _ = live.create_client()
    live.create_user(f"erin@{domain}", "erin-password-1")
    live.create_user(f"frank@{domain}", "frank-password-1")
    # Frank signed in by password before enforcement, with Remember me
    frank = Browser(live.issuer)
    # The org has an IdP, so the email step sends to SSO; an account with a password can still
    # reach the password step directly until the org enforces SSO.
    page = frank.get(f"{live.issuer}/signin")
    frank.http.post(f"{live.issuer}/signin", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                                                page.text).group(1),
                                                        "email": f"frank@{domain}"}, allow_redirects=False)
    page = frank.get(f"{live.issuer}/signin/password")
    assert frank.submit(page, {"password": "frank-password-1", "remember": "on"}).status_code == 200
    assert live.idp("orgs", "enforce-sso", name).returncode == 0
    # the open session stays valid
    assert "code" in redirect_params(frank.get(authorize_url(live.issuer, client_id, prompt="none")))
    # a password sign-in is refused with a clear message pointing to SSO
    erin = Browser(live.issuer)
    page = erin.get(f"{live.issuer}/signin")
    erin.http.post(f"{live.issuer}/signin", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                                              page.text).group(1),
                                                      "email": f"erin@{domain}"}, allow_redirects=False)
    page = erin.get(f"{live.issuer}/signin/password")
    resp = erin.submit(page, {"password": "erin-password-1"})
    assert resp.status_code == 403 and "Enterprise Sign-In" in resp.text and "Continue" in resp.text
    assert live.idp("orgs", "enforce-sso", name, "--off").returncode == 0


class _IdPWebServer:
    """The test IdP on loopback HTTP: its SSO URL answers a browser with a form that posts the
    signed response to our ACS (the HTTP-POST binding, as a real IdP's page does)."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.idp: TestIdP | None = None
        self.email = ""

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                request = outer.idp.parse_authn_request(outer.base + self.path)
                response, acs = outer.idp.response(request, email=outer.email)
                body = (f'<html><body><form method="post" action="{html.escape(acs)}">'
                        f'<input type="hidden" name="SAMLResponse" value="{response}">'
                        f'<input type="hidden" name="RelayState" value="{html.escape(request["relay_state"])}">'
                        '<button type="submit">Send to the service</button></form></body></html>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def test_enterprise_sign_in_in_the_browser(live, tmp_path_factory, chromium, product):
    """Chromium: a company email → the company's IdP → back in the product, signed in, new account."""
    web = _IdPWebServer()
    web.idp = TestIdP(tmp_path_factory.mktemp("saml-web"), entity_id=f"{web.base}/saml")
    name = "web-" + secrets.token_hex(3)
    domain = f"{name}.example"
    assert live.idp("orgs", "create", name, "--domain", domain).returncode == 0
    web.idp.trust_sp(live.idp("orgs", "sp-metadata", name).stdout)
    path = tmp_path_factory.mktemp("saml-web-md") / "idp.xml"
    path.write_text(web.idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path)).returncode == 0
    web.email = f"grace@{domain}"
    redirect = f"http://127.0.0.1:{product.server_address[1]}/callback"
    client_id, _ = live.create_client(redirect_uris=[redirect])
    context = chromium.new_context(locale="en-US")
    page = context.new_page()
    page.goto(authorize_url(live.issuer, client_id, redirect_uri=redirect, code_challenge=pkce()[1],
                            code_challenge_method="S256"))
    page.get_by_label("Email").fill(f"grace@{domain}")
    page.get_by_role("button", name="Next").click()
    # the in-between page redirects by itself; its Continue button is there if it does not
    page.get_by_role("button", name="Send to the service").click()
    page.wait_for_url(f"{redirect}*", timeout=15000)
    assert "code=" in page.url
    context.close()
    web.server.shutdown()


def test_idp_initiated_sign_in_only_when_the_org_allows_it(live, idp, org, tmp_path):
    name, domain = org
    b = Browser(live.issuer)
    # refused by default (test_crafted_responses_are_refused[unsolicited] covers a browser with a request)
    sp_meta = live.idp("orgs", "sp-metadata", name).stdout
    acs = re.search(r'Location="([^"]+/acs)"', sp_meta).group(1)
    ours = {"issuer": re.search(r'entityID="([^"]+)"', sp_meta).group(1)}  # which SP to answer, unasked
    response, _ = idp.response(ours, email=f"kim@{domain}", acs_url=acs, in_response_to=None)
    resp = _post(b, acs, response, None)
    assert resp.status_code == 400
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path), "--idp-initiated").returncode == 0
    response, _ = idp.response(ours, email=f"kim@{domain}", acs_url=acs, in_response_to=None)
    page = _post(b, acs, response, None)
    assert page.status_code == 200 and "Your account" in page.text
    assert _post(Browser(live.issuer), acs, response, None).status_code == 400  # and never twice


def test_an_unsolicited_sign_in_dates_from_the_idps_authn_instant(live, idp, tmp_path):
    """Low: an IdP-initiated sign-in (no request here could ask it to be fresh) opened a
    session signed in "now", whatever the assertion's AuthnInstant: from a browser left open,
    the IdP's app portal passed every "sign in again" check (changing factors, the Admin
    Center), and products got auth_time now. The session now dates from the AuthnInstant."""
    name, domain = attached_org(live, idp, tmp_path, "unsolicited")
    acs, ours = idp_initiated(live, idp, name, tmp_path)

    def launched(instant: float | None) -> Browser:
        b = Browser(live.issuer)
        response, _ = idp.response(ours, email=f"kim@{domain}", acs_url=acs, in_response_to=None,
                                   authn_instant=instant)
        assert "Your account" in _post(b, acs, response, None).text
        return b

    stale = launched(time.time() - 3600)  # the IdP's sign-in of an hour ago
    answer = stale.http.get(f"{live.issuer}/account/totp", allow_redirects=False, timeout=30)
    assert answer.status_code == 302 and "/signin" in answer.headers["Location"]
    fresh = launched(None)  # just now
    answer = fresh.http.get(f"{live.issuer}/account/totp", allow_redirects=False, timeout=30)
    assert answer.status_code == 200 and 'name="code"' in answer.text  # the set-up page


def test_a_list_of_addresses_in_the_name_id_is_refused(live, idp, org):
    """One addr-spec only (security review, finding 4): "eve@<domain>,ceo@<domain>" is no address."""
    from idp.store import User, db

    _, domain = org
    b, request = _fresh_request(live, idp, domain, "eve")
    listed = f"eve@{domain},ceo@{domain}"
    response, _ = idp.response(request, email=listed, attributes={"email": None, "mail": None})
    _refused(live, b, idp, request, response)
    with live.db():
        assert db.session.query(User).filter(User.email.like(f"%ceo@{domain}%")).count() == 0
def _parked(server) -> int:
    from idp.store import SamlInbox, db

    with server.db():
        return db.session.query(SamlInbox).count()


def test_acs_refuses_an_oversized_relay_state_or_response_and_stores_nothing(live, idp, org):
    from federation.saml import MAX_RESPONSE_BYTES
    from idp.store import SecurityEvent, db

    _, domain = org
    b, request = _fresh_request(live, idp, domain, "heidi")
    good, acs = idp.response(request, email=f"heidi@{domain}")
    before = _parked(live)
    for data, reason in (
        ({"SAMLResponse": good, "RelayState": "r" * 81}, "RelayState longer than 80 bytes"),
        ({"SAMLResponse": good, "RelayState": "é" * 41}, "RelayState longer than 80 bytes"),  # 82 bytes
        ({"SAMLResponse": oversized(good, MAX_RESPONSE_BYTES + 1000), "RelayState": request["relay_state"]},
         "response too large"),
    ):
        resp = b.http.post(acs, data=data, allow_redirects=False, timeout=30)
        assert resp.status_code == 400 and "could not be completed" in resp.text, resp.text[:300]
        with live.db():
            event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                     .order_by(SecurityEvent.id.desc()).first())
            assert event.detail["reason"] == reason
    assert _parked(live) == before  # refused whole: nothing parked, not even a truncated copy
    # 80 bytes is allowed (parked; this browser's own RelayState would not match it)
    assert b.http.post(acs, data={"SAMLResponse": good, "RelayState": "r" * 80}, allow_redirects=False,
                       timeout=30).status_code == 303
    assert _parked(live) == before + 1
    # and the real answer still signs in
    assert "code" in redirect_params(_post(b, acs, good, request["relay_state"]))


def test_acs_posts_past_the_budget_are_throttled_per_address(proxied, idp, tmp_path):
    from idp.ratelimit import POLICIES, DatabaseCounters, Throttle
    from idp.store import Org, db

    name = "nat-" + secrets.token_hex(3)
    assert proxied.idp("orgs", "create", name, "--domain", f"{name}.example").returncode == 0
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert proxied.idp("orgs", "saml", name, "--metadata", str(path)).returncode == 0
    with proxied.db():
        acs = f"{proxied.issuer}/saml/{db.session.query(Org).filter_by(name=name).one().id}/acs"

    def post(address: str) -> requests.Response:
        return requests.post(acs, data={"SAMLResponse": "PFJlc3BvbnNlLz4=", "RelayState": "r"},
                             headers={"X-Forwarded-For": address, "Accept-Language": "en"},
                             allow_redirects=False, timeout=30)

    # most of the budget spent already (as many posts would), the rest by posting
    budget, last = POLICIES["saml:ip"].free, 40
    with proxied.db():
        t = Throttle(DatabaseCounters())
        assert all(t.failure("saml:ip", "203.0.113.77").allowed for _ in range(budget - last))
    with ThreadPoolExecutor(8) as pool:  # a company's NAT: many people at once
        statuses = list(pool.map(lambda _: post("203.0.113.77").status_code, range(last)))
    assert statuses == [303] * last
    parked = _parked(proxied)
    refused = post("203.0.113.77")
    assert refused.status_code == 429 and "Too many attempts. Try again in" in refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert _parked(proxied) == parked  # a throttled post stores nothing
    assert post("203.0.113.78").status_code == 303  # another address is not slowed down


def test_a_sign_in_going_on_to_a_second_factor_keeps_what_the_idp_said(live, idp, org):
    """The account's update from the IdP (org membership, names) is committed with the sign-in
    itself; when the account has a second factor, no session is opened yet, and the update must
    be kept all the same."""
    from idp.store import Org, TotpFactor, User, db, utcnow

    name, domain = org
    email = f"dora@{domain}"
    user_id = live.create_user(email, given_name="Old")
    with live.db():
        db.session.add(TotpFactor(user_id=user_id, sealed_secret=b"unused here", confirmed_at=utcnow()))
        db.session.commit()
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    request = idp.parse_authn_request(_to_idp(live, b, client_id, email))
    response, acs = idp.response(request, email=email, attributes={"givenName": "Dora", "sn": "Explorer"})
    page = _post(b, acs, response, request["relay_state"])
    assert page.status_code == 200 and "Verification code" in page.text, page.text[:300]
    with live.db():
        user = db.session.get(User, user_id)
        assert (user.given_name, user.family_name) == ("Dora", "Explorer")
        assert user.org_id == db.session.query(Org).filter_by(name=name).one().id


def test_every_acs_post_is_counted_whatever_its_answer(proxied, idp, tmp_path):
    """The ACS's count rides in the commit of what the post leads to: a parked response, a
    refusal, a throttled post and a post that fails on its way (a body past the limit) are
    each counted, once."""
    from idp.ratelimit import RateLimit, throttle_key
    from idp.store import Org, db

    name = "count-" + secrets.token_hex(3)
    assert proxied.idp("orgs", "create", name, "--domain", f"{name}.example").returncode == 0
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert proxied.idp("orgs", "saml", name, "--metadata", str(path)).returncode == 0
    with proxied.db():
        acs = f"{proxied.issuer}/saml/{db.session.query(Org).filter_by(name=name).one().id}/acs"
    # a range no other test posts to the ACS from (test_saml's throttle test uses 203.0.113.77-78)
    address = f"198.51.100.{secrets.randbelow(250) + 1}"

    def post(data) -> int:
        return requests.post(acs, data=data, headers={"X-Forwarded-For": address}, allow_redirects=False,
                             timeout=30).status_code

    def counted() -> int:
        with proxied.db():
            row = db.session.get(RateLimit, throttle_key("saml:ip", address))
            return row.failures if row is not None else 0

    assert post({"SAMLResponse": "PFJlc3BvbnNlLz4=", "RelayState": "r"}) == 303 and counted() == 1
    assert post({"RelayState": "r"}) == 400 and counted() == 2
    assert post({"SAMLResponse": "A" * (1024 * 1024 + 10)}) == 413 and counted() == 3
    assert post({"SAMLResponse": "PFJlc3BvbnNlLz4=", "RelayState": "r" * 81}) == 400 and counted() == 4
    from idp.ratelimit import POLICIES, DatabaseCounters, Throttle

    budget = POLICIES["saml:ip"].free
    with proxied.db():
        t = Throttle(DatabaseCounters())
        assert all(t.failure("saml:ip", address).allowed for _ in range(budget - 4))
    assert post({"SAMLResponse": "PFJlc3BvbnNlLz4=", "RelayState": "r"}) == 429 and counted() == budget + 1


def test_the_sp_credential_is_read_each_time_until_it_is_settled(live):
    """The SP's credential files are kept per app only once the oldest credential is older
    than a racing first insert could be; before, each request reads which one is oldest."""
    from datetime import timedelta

    from sqlalchemy import event, update

    from idp import orgs
    from idp.store import SpCredential, db, utcnow

    app = live.app

    def move_credentials(oldest_at):
        """Every credential moved in time as one, the oldest to `oldest_at`: which one is
        oldest stays as it was (workers racing their first insert may have made two)."""
        created = dict(db.session.query(SpCredential.id, SpCredential.created_at))
        start = min(created.values())
        for credential_id, at in created.items():
            db.session.execute(update(SpCredential).where(SpCredential.id == credential_id)
                               .values(created_at=oldest_at + (at - start)))
        db.session.commit()

    with app.app_context():
        files = orgs._credential_files()  # a credential exists now (made here, or by an earlier test)
        move_credentials(utcnow())
        # Forgotten only now: in a long run the live server's credential may have been settled
        # already at the call above, which then kept it (the full run of 25 min failed so).
        app.extensions.pop("idp.sp_credential_files", None)
        assert orgs._credential_files() == files
        assert "idp.sp_credential_files" not in app.extensions  # young: read again next time
        move_credentials(utcnow() - orgs.CREDENTIAL_SETTLED - timedelta(minutes=1))
        assert orgs._credential_files() == files
        statements = []

        def seen(conn, cursor, statement, *rest):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            assert orgs._credential_files() == files
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        assert statements == []
        app.extensions.pop("idp.sp_credential_files", None)


def test_an_idp_replaced_by_another_process_is_seen_by_every_worker_at_once(live, idp, other_idp, org, tmp_path):
    """The server's workers keep the org's IdP and domains in memory; the command line (a
    process of its own) attaching another IdP makes every worker refuse the old one's
    answers from the next request on, and take the new one's."""
    name, domain = org
    for n in range(4):  # the server's workers each sign someone in: the org is in their memory
        b, request = _fresh_request(live, idp, domain, f"w{n}")
        response, acs = idp.response(request, email=f"w{n}@{domain}")
        assert "code" in redirect_params(_post(b, acs, response, request["relay_state"]))
    other_idp.trust_sp(live.idp("orgs", "sp-metadata", name).stdout)
    path = tmp_path / "other.xml"
    path.write_text(other_idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path)).returncode == 0
    for n in range(4):
        b, request = _fresh_request(live, other_idp, domain, f"x{n}")
        _refused(live, b, idp, request, idp.response(request, email=f"x{n}@{domain}")[0])
    b, request = _fresh_request(live, other_idp, domain, "y")
    response, acs = other_idp.response(request, email=f"y@{domain}")
    assert "code" in redirect_params(_post(b, acs, response, request["relay_state"]))
