"""Review round 12 (one deployment, many processes): two `idp serve` of our own on the
session's database, one instance directory (secret) and issuer, as behind one load balancer:
`live` and a second server (`second`), each with two workers. Each test races the two, or has
one change what the other keeps."""

from __future__ import annotations


import pytest

from tests.conftest import Browser, csrf_of, start_live
from tests.saml_idp import TestIdP
from tests.test_review_processes4 import _raced, pair  # noqa: F401 - pair is a fixture: two servers behind one proxy
from tests.test_saml import attached_org, idp_initiated


@pytest.fixture(scope="module")
def second(live, tmp_path_factory):
    """The base URL of a second server of `live`'s deployment (its database, instance and
    issuer: a request to either is a request to the deployment)."""
    shared = {"IDP_INSTANCE_DIR": live.env["IDP_INSTANCE_DIR"], "IDP_ISSUER": live.issuer}
    for server in start_live(live.env["IDP_DATABASE_URL"], tmp_path_factory.mktemp("second"), live.mailbox,
                             extra_env=shared):
        port = server.proc.args[server.proc.args.index("--port") + 1]
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp6"))


def test_a_first_enterprise_sign_in_raced_on_two_servers_makes_one_account(live, second, idp, tmp_path):
    """Low: the just-in-time account of a first SAML sign-in was looked up, then inserted
    (accounts.just_in_time): two first sign-ins of one person at once (a double click on the
    IdP's app tile, two tabs), each with its own assertion, answered by two servers, both
    found no account, and the later insert broke the unique address: a 500 and a traceback
    (on PostgreSQL, in one round of four or so). Now the later finds the account the first
    made and signs in to it."""
    from idp.store import User, db

    name, domain = attached_org(live, idp, tmp_path, "twice")
    acs, ours = idp_initiated(live, idp, name, tmp_path)
    path = acs[len(live.issuer):]
    for round_ in range(6):
        email = f"first-{round_}@{domain}"
        parked = []
        for base in (live.issuer, second, live.issuer, second):  # each server's two workers
            response, _ = idp.response(ours, email=email, acs_url=acs, in_response_to=None)
            b = Browser(live.issuer)
            answer = b.http.post(base + path, data={"SAMLResponse": response}, allow_redirects=False, timeout=30)
            assert answer.status_code == 303, answer.text[:300]
            parked.append((b, base + answer.headers["Location"]))

        def consume(one):
            b, location = one
            return lambda: b.http.get(location, allow_redirects=False, timeout=60).status_code

        statuses = _raced([consume(one) for one in parked])
        assert all(300 <= s < 400 for s in statuses), (round_, statuses)  # both signed in
        with live.db():
            assert db.session.query(User).filter_by(email=email).count() == 1


def test_a_first_consent_raced_from_two_tabs_on_two_servers_is_given_once(live, second):
    """Low: the consent screen's answer looked the (account, product) consent row up and
    added one when there was none (endpoints.authorize.consent): a person answering "Allow"
    in two tabs of a product they never used before, the answers reaching two servers at
    once, had both find no row; the later insert broke the row's key, a 500 and a traceback
    instead of the product's sign-in. Now the later answer adds its scopes to the row the
    first made, and both tabs go back to the product with a code."""
    import requests

    from idp.store import Consent, db
    from tests.oidc import authorize_url

    email = "two-tabs@example.com"
    user_id = live.create_user(email, "two-tabs-password")
    b = Browser(live.issuer)
    assert "Your account" in b.sign_in(b.get(f"{live.issuer}/account"), email, "two-tabs-password").text
    for round_ in range(6):
        client_id, _ = live.create_client(first_party=False)
        pages = [b.get(authorize_url(live.issuer, client_id)) for _ in range(4)]  # four tabs
        assert all(">Allow<" in page.text for page in pages)

        def allow(i: int, page):
            action = page.text.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            http = requests.Session()
            http.headers.update(b.http.headers)
            http.cookies.update(b.http.cookies)
            url = (live.issuer, second)[i % 2] + action
            return lambda: http.post(url, data={"csrf_token": csrf_of(page.text), "decision": "allow"},
                                     allow_redirects=False, timeout=60)

        answers = _raced([allow(i, page) for i, page in enumerate(pages)])
        assert [a.status_code for a in answers] == [302] * 4, (round_, [a.status_code for a in answers])
        assert all("code=" in a.headers["Location"] for a in answers)
        with live.db():
            assert db.session.query(Consent).filter_by(user_id=user_id, client_id=client_id).count() == 1


def test_password_guesses_at_many_accounts_raced_from_one_address_stay_within_its_budget(pair):  # noqa: F811
    """Medium (ASVS 2.2.1, password spraying): the per-address budget is what stops one
    address trying one password at many accounts (each account's own budget sees one guess).
    Once the address has used its free failures, every further failure blocks it, but guesses
    sent at once to every worker of the deployment (here two servers of two workers) all read
    the address as free before the first is counted: one guess per worker each time the block
    ends, instead of one. More servers, more guesses. Now each guess is charged to the
    address before its password is checked, in the statement that decides."""
    from idp.ratelimit import POLICIES
    from tests.test_review_processes4 import _at_password_step

    first, second_url = pair
    address = "203.0.113.91"
    for i in range(POLICIES["password:ip"].free):  # the address's free failures, one after the other
        b, page = _at_password_step(first, address, f"spray-{i}@example.com")
        assert b.submit(page, {"password": "Winter2026!"}).status_code == 401
    steps = [_at_password_step(first, address, f"sprayed-{i}@example.com") for i in range(8)]
    guesses = [_password_post(step, (first.issuer, second_url)[i % 2], "Winter2026!") for i, step in enumerate(steps)]
    statuses = _raced(guesses)
    assert sorted(set(statuses)) <= [401, 429], statuses
    assert statuses.count(401) == 1, statuses  # one guess checked, as when sent one by one


def test_right_passwords_from_one_address_never_spend_its_budget(pair):  # noqa: F811
    """The address's budget is charged before the password is checked (the test above), and
    a right password gives its charge back: an office signing in behind its one address, many
    more times than the budget's free failures, some of them at once, is never refused (a
    person with a second factor too, whose password step commits no sign-in); and a right
    password does not wipe the wrong ones counted before it."""
    import pyotp

    from idp.mfa import totp
    from idp.ratelimit import POLICIES
    from idp.store import User, db
    from tests.test_review_processes4 import _at_password_step

    first, second_url = pair
    address, email, password = "203.0.113.92", "office@example.com", "office-password-2026"
    servers = (first.issuer, second_url)
    free = POLICIES["password:ip"].free
    first.create_user(email, password)
    with first.db():
        user = db.session.get(User, first.create_user("office-mfa@example.com", password))
        assert totp.confirm_enrolment(user, pyotp.TOTP(totp.start_enrolment(user)).now())
        db.session.commit()
    at_once = [_at_password_step(first, address, email) for _ in range(4)]  # nine o'clock
    assert _raced([_password_post(step, servers[i % 2], password) for i, step in enumerate(at_once)]) == [302] * 4
    for i in range(free - 1):  # wrong ones, at other accounts (their own budgets stay free)
        assert _password_post(_at_password_step(first, address, f"typo-{i}@example.com"), servers[i % 2],
                              password)() == 401
    for i in range(free + 5):  # one short of the budget, every right one leaves it so
        person = (email, "office-mfa@example.com")[i // 2 % 2]
        assert _password_post(_at_password_step(first, address, person), servers[i % 2], password)() == 302, i
    # the wrong ones still count: the 30th is free, the 31st blocks the address
    for i in range(2):
        assert _password_post(_at_password_step(first, address, f"late-{i}@example.com"), servers[i],
                              password)() == 401
    assert _password_post(_at_password_step(first, address, email), first.issuer, password)() == 429


def _password_post(step, base: str, password: str):
    """The password of the browser at its password `step`, posted to the server at `base`
    (another server of the deployment, with the browser's cookies): a call giving the status."""
    import requests

    b, page = step
    http = requests.Session()
    http.headers.update(b.http.headers)
    http.cookies.update(b.http.cookies)
    return lambda: http.post(f"{base}/signin/password", data={"csrf_token": csrf_of(page.text), "password": password},
                             allow_redirects=False, timeout=60).status_code
