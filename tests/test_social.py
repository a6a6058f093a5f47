"""Social sign-in against a real upstream OpenID provider: another running instance of this product."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Browser, free_port
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The upstream OpenID provider: another running instance of this product."""
    from tests.conftest import separate_live

    # Its metrics (requests by endpoint) show what this server asks of it.
    yield from separate_live(tmp_path_factory, "upstream", extra_env={"IDP_METRICS_PORT": str(free_port())})


@pytest.fixture
def provider(live, upstream):
    """`idp social add upstream ...` on the product's identity provider, registered at the upstream."""
    client_id, secret = upstream.create_client(redirect_uris=[f"{live.issuer}/social/upstream/callback"],
                                               first_party=True)
    out = live.idp("social", "add", "upstream", f"--client-id={client_id}", f"--client-secret={secret}",
                   "--issuer", upstream.issuer, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["redirect_uri"] == f"{live.issuer}/social/upstream/callback"
    return client_id


def _browser(live, upstream) -> Browser:
    return Browser(live.issuer, also=(upstream.issuer,))


def _upstream_sign_in(b: Browser, page, email, password):
    """The upstream's own sign-in pages, reached by redirect."""
    assert page.url.startswith(b.hosts[1]), page.url
    return b.sign_in(page, email, password)


def _link(live, upstream, email, password, upstream_email, upstream_password="upstream-password"):
    b = _browser(live, upstream)
    account = b.sign_in(b.get(f"{live.issuer}/account"), email, password)
    assert "Link Upstream" in account.text
    page = b.submit(account, {}, action=f"{live.issuer}/account/connected/upstream/link")
    done = _upstream_sign_in(b, page, upstream_email, upstream_password)
    return b, done


def test_link_sign_in_and_unlink(live, upstream, provider):
    live.create_user("bob@example.com", "bob-password-1")
    upstream.create_user("bob@upstream.example", "upstream-password")
    b, account = _link(live, upstream, "bob@example.com", "bob-password-1", "bob@upstream.example")
    assert account.url.startswith(f"{live.issuer}/account") and "Unlink" in account.text
    assert "bob@upstream.example" in account.text

    # a product sends a new browser here: the Upstream button signs in without a password
    client_id, secret = live.create_client()
    fresh = _browser(live, upstream)
    verifier, challenge = pkce()
    page = fresh.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    start = re.search(r'href="(/social/upstream/start\?req=[0-9a-f]+)"', page.text).group(1)
    assert ">Upstream</a>" in page.text
    page = fresh.get(live.issuer + start)
    resp = _upstream_sign_in(fresh, page, "bob@upstream.example", "upstream-password")
    params = redirect_params(resp)
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    assert claims["email"] == "bob@example.com" and claims["amr"] == ["fed"]

    # unlink: the identity no longer signs in
    account = b.get(f"{live.issuer}/account")
    link_id = re.search(r"/account/connected/([0-9a-f]{32})/unlink", account.text).group(1)
    b.submit(account, {}, action=f"{live.issuer}/account/connected/{link_id}/unlink")
    again = _browser(live, upstream)
    page = again.get(f"{live.issuer}/social/upstream/start")
    resp = _upstream_sign_in(again, page, "bob@upstream.example", "upstream-password")
    assert resp.status_code == 403 and "not linked" in resp.text


def test_unlinked_identity_is_turned_away_and_nothing_is_created(live, upstream, provider):
    from idp.store import User, db

    upstream.create_user("stranger@upstream.example", "upstream-password")
    with live.db():
        before = db.session.query(User).count()
    b = _browser(live, upstream)
    resp = _upstream_sign_in(b, b.get(f"{live.issuer}/social/upstream/start"), "stranger@upstream.example",
                             "upstream-password")
    assert resp.status_code == 403 and "link" in resp.text.lower() and 'href="/account"' in resp.text
    with live.db():
        assert db.session.query(User).count() == before
        assert db.session.query(User).filter_by(email="stranger@upstream.example").count() == 0


def test_identity_linked_elsewhere_cannot_be_linked_again(live, upstream, provider):
    live.create_user("first@example.com", "first-password-1")
    live.create_user("second@example.com", "second-password-1")
    upstream.create_user("shared@upstream.example", "upstream-password")
    _link(live, upstream, "first@example.com", "first-password-1", "shared@upstream.example")
    _, resp = _link(live, upstream, "second@example.com", "second-password-1", "shared@upstream.example")
    assert resp.status_code == 409 and "already linked" in resp.text


def test_state_mismatch_and_replayed_callback_are_refused(live, upstream, provider):
    upstream.create_user("state@upstream.example", "upstream-password")
    b = _browser(live, upstream)
    page = b.get(f"{live.issuer}/social/upstream/start")
    # stop at the callback instead of following it
    b.hosts = (upstream.issuer,)
    resp = b.sign_in(page, "state@upstream.example", "upstream-password")
    callback = resp.headers["Location"]
    assert callback.startswith(f"{live.issuer}/social/upstream/callback?")
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    assert b.http.get(forged, allow_redirects=False, timeout=10).status_code == 400
    # the flow was spent by the failed attempt: the real callback no longer works either
    assert b.http.get(callback, allow_redirects=False, timeout=10).status_code == 400


def test_cancel_and_unreachable_provider_give_clear_pages(live, upstream):
    client_id, secret = upstream.create_client(redirect_uris=[f"{live.issuer}/social/picky/callback"],
                                               first_party=False)
    out = live.idp("social", "add", "picky", f"--client-id={client_id}", f"--client-secret={secret}",
                   "--issuer", upstream.issuer)
    assert out.returncode == 0, out.stderr
    upstream.create_user("cancel@upstream.example", "upstream-password")
    b = _browser(live, upstream)
    consent = _upstream_sign_in(b, b.get(f"{live.issuer}/social/picky/start"), "cancel@upstream.example",
                                "upstream-password")
    resp = b.submit(consent, {"decision": "deny"})
    assert resp.status_code == 400 and "cancelled" in resp.text
    # a provider that is down: a page, not a 500, and quickly
    closed = f"http://127.0.0.1:{free_port()}"
    assert live.idp("social", "add", "down", "--client-id", "x", "--client-secret", "y",
                    "--issuer", closed).returncode == 0
    resp = b.http.get(f"{live.issuer}/social/down/start", allow_redirects=False, timeout=30)
    assert resp.status_code == 503 and "cannot be reached" in resp.text


def test_social_add_errors_and_buttons(live):
    out = live.idp("social", "add", "myco", "--client-id", "a", "--client-secret", "b")
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "--issuer" in out.stderr
    out = live.idp("social", "add", "google", "--client-id", "g-id", "--client-secret", "g-secret", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["redirect_uri"] == f"{live.issuer}/social/google/callback"
    page = Browser(live.issuer).get(f"{live.issuer}/signin")
    assert ">Google</a>" in page.text
    # the secret is stored sealed, never in clear
    from idp.store import SocialProvider, db

    with live.db():
        row = db.session.get(SocialProvider, "google")
        assert b"g-secret" not in row.sealed_client_secret


def test_second_factor_still_applies_after_a_social_sign_in(live, upstream, provider):
    import pyotp

    live.create_user("carol@example.com", "carol-password-1")
    upstream.create_user("carol@upstream.example", "upstream-password")
    b, account = _link(live, upstream, "carol@example.com", "carol-password-1", "carol@upstream.example")
    page = b.get(f"{live.issuer}/account/totp")
    secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1)
    assert b.submit(page, {"code": pyotp.TOTP(secret).now()}).status_code == 200
    fresh = _browser(live, upstream)
    page = _upstream_sign_in(fresh, fresh.get(f"{live.issuer}/social/upstream/start"), "carol@upstream.example",
                             "upstream-password")
    assert "Confirm your identity" in page.text


def test_link_and_sign_in_in_the_browser(live, upstream, provider, chromium):
    """Through real chromium: link from the account page, sign out, sign in with the button, unlink."""
    live.create_user("dave@example.com", "dave-password-1")
    upstream.create_user("dave@upstream.example", "upstream-password")
    context = chromium.new_context(locale="en-US")
    page = context.new_page()

    def sign_in_at(email, password):
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Next").click()
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

    page.goto(f"{live.issuer}/account")
    sign_in_at("dave@example.com", "dave-password-1")
    page.get_by_role("button", name="Link Upstream").click()
    assert page.url.startswith(upstream.issuer)
    sign_in_at("dave@upstream.example", "upstream-password")
    page.get_by_role("button", name="Unlink").wait_for()
    page.get_by_role("button", name="Sign out").last.click()
    # sign in with the provider's button; the upstream session is still open: no password at all
    page.goto(f"{live.issuer}/signin")
    page.get_by_role("button", name="Upstream").click()
    page.get_by_role("heading", name="Connected accounts").wait_for()
    assert page.url.startswith(f"{live.issuer}/account")
    page.get_by_role("button", name="Unlink").click()
    page.get_by_role("button", name="Link Upstream").wait_for()
    context.close()


@pytest.fixture
def oidc_org(live, upstream):
    """An org whose enterprise OpenID provider is the upstream instance."""
    import secrets

    name = "oidc-" + secrets.token_hex(3)
    domain = f"{name}.example"
    assert live.idp("orgs", "create", name, "--domain", domain).returncode == 0
    out = live.idp("orgs", "oidc", name, "--issuer", upstream.issuer, "--client-id=placeholder",
                   "--client-secret=placeholder", "--json")
    assert out.returncode == 0, out.stderr
    callback = json.loads(out.stdout)["redirect_uri"]
    client_id, secret = upstream.create_client(redirect_uris=[callback], first_party=True)
    out = live.idp("orgs", "oidc", name, "--issuer", upstream.issuer, f"--client-id={client_id}",
                   f"--client-secret={secret}")
    assert out.returncode == 0, out.stderr
    return name, domain


def test_enterprise_openid_provider_signs_in_just_in_time(live, upstream, oidc_org):
    from idp.store import Org, User, db

    name, domain = oidc_org
    upstream.create_user(f"ivy@{domain}", "upstream-password", name="Ivy Ent")
    client_id, secret = live.create_client()
    b = _browser(live, upstream)
    verifier, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    assert ">org-" not in page.text  # the enterprise provider is no social button
    page = b.submit(page, {"email": f"ivy@{domain}"})  # the domain sends the browser to the org's provider
    assert page.url.startswith(upstream.issuer) and f'value="ivy@{domain}"' in page.text  # login_hint
    params = redirect_params(_upstream_sign_in(b, page, f"ivy@{domain}", "upstream-password"))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    assert claims["email"] == f"ivy@{domain}" and claims["amr"] == ["fed"] and claims["name"] == "Ivy Ent"
    with live.db():
        user = db.session.query(User).filter_by(email=f"ivy@{domain}").one()
        assert user.org_id == db.session.query(Org).filter_by(name=name).one().id


def test_enterprise_openid_provider_refuses_addresses_outside_the_org(live, upstream, oidc_org):
    from idp.store import User, db

    _, domain = oidc_org
    upstream.create_user(f"jack@elsewhere-{domain}", "upstream-password")
    b = _browser(live, upstream)
    page = b.submit(b.get(f"{live.issuer}/signin"), {"email": f"jack@{domain}"})
    resp = _upstream_sign_in(b, page, f"jack@elsewhere-{domain}", "upstream-password")  # another account there
    assert resp.status_code == 400 and "could not be completed" in resp.text
    with live.db():
        assert db.session.query(User).filter(User.email.like("jack@%")).count() == 0
    # and it cannot be used as a social button either
    assert b.http.get(f"{live.issuer}/social/org-x/start", timeout=10).status_code == 404


def test_just_in_time_sign_in_adopts_an_unverified_row_and_wipes_what_was_planted(live, upstream, oidc_org):
    """Pre-account takeover: someone signed up with an address of the org's domain before
    the org's IdP was set up; the real person's first enterprise sign-in adopts the row,
    and the planted password and link are gone."""
    from idp.passwords import hash_password
    from idp.store import LinkedIdentity, SocialProvider, User, db

    _, domain = oidc_org
    with live.db():
        row = User(email=f"kim@{domain}", email_verified=False, password_hash=hash_password("planted-password"))
        db.session.add(row)
        if db.session.get(SocialProvider, "planted") is None:
            db.session.add(SocialProvider(name="planted", issuer="https://planted.example", client_id="x",
                                          sealed_client_secret=b"x"))
        db.session.commit()
        db.session.add(LinkedIdentity(user_id=row.id, provider="planted", subject=f"planted-{row.id}"))
        db.session.commit()
        user_id = row.id
    upstream.create_user(f"kim@{domain}", "upstream-password")
    b = _browser(live, upstream)
    page = b.submit(b.get(f"{live.issuer}/signin"), {"email": f"kim@{domain}"})
    done = _upstream_sign_in(b, page, f"kim@{domain}", "upstream-password")
    assert done.status_code == 200 and done.url.startswith(f"{live.issuer}/account")
    with live.db():
        user = db.session.get(User, user_id)
        assert user.email_verified and user.password_hash is None and user.org_id is not None
        assert db.session.query(LinkedIdentity).filter_by(user_id=user_id).count() == 0


def test_the_providers_keys_are_kept_and_fetched_again_when_it_rotates(live, upstream, provider):
    """The upstream's JWKS was fetched on every callback (one more request, and one more
    way for a sign-in to fail, each time); now each server process keeps it, and fetches
    it again when an ID token is signed by a key it does not hold (the provider rotated)."""
    live.create_user("kept-keys@example.com", "kept-keys-password")
    upstream.create_user("kept@upstream.example", "upstream-password")
    _link(live, upstream, "kept-keys@example.com", "kept-keys-password", "kept@upstream.example")

    def jwks_fetches() -> float:
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(f"http://127.0.0.1:{upstream.env['IDP_METRICS_PORT']}/metrics", timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "idp_http_requests_total" and sample.labels.get("endpoint") == "/jwks.json")

    def social_sign_in() -> None:
        b = _browser(live, upstream)
        page = b.get(f"{live.issuer}/social/upstream/start")
        done = _upstream_sign_in(b, page, "kept@upstream.example", "upstream-password")
        assert done.url.startswith(f"{live.issuer}/account") and "Your account" in done.text, done.text[:300]

    before = jwks_fetches()
    for _ in range(6):
        social_sign_in()
    assert jwks_fetches() - before <= 1, "fetched again although kept (at most once more: the other worker)"

    out = upstream.idp("keys", "rotate", "--alg", "ES256")
    assert out.returncode == 0, out.stderr
    import time

    time.sleep(1.5)  # the upstream's own key cache (1 s) takes the new key for its next tokens
    rotated = jwks_fetches()
    for _ in range(2):
        social_sign_in()  # an ID token by the new key: the kept set is fetched again, once
    assert 1 <= jwks_fetches() - rotated <= 2


def test_links_started_and_not_completed_do_not_spend_the_hours_changes(live, upstream, provider):
    """A failed attempt is not a change: a link is counted against the hour's changes
    ("change:account") when it is made, not when the flow to the provider starts, so links
    left unfinished (cancelled, abandoned) do not keep the owner from unlinking."""
    from idp.ratelimit import POLICIES
    from tests.conftest import csrf_of

    live.create_user("unfinished@example.com", "unfinished-password-1")
    upstream.create_user("unfinished@upstream.example", "upstream-password")
    b, account = _link(live, upstream, "unfinished@example.com", "unfinished-password-1",
                       "unfinished@upstream.example")
    for _ in range(POLICIES["change:account"].free + 2):
        started = b.http.post(f"{live.issuer}/account/connected/upstream/link",
                              data={"csrf_token": csrf_of(account.text)}, allow_redirects=False, timeout=10)
        assert started.status_code == 302 and started.headers["Location"].startswith(upstream.issuer)
    link_id = re.search(r"/account/connected/([0-9a-f]{32})/unlink", account.text).group(1)
    done = b.submit(account, {}, action=f"{live.issuer}/account/connected/{link_id}/unlink")
    assert done.status_code == 200 and f"/account/connected/{link_id}/unlink" not in done.text
