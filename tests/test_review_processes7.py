"""Review round 13 (one deployment, many processes): the double submits the round 12 note
left open. Two `idp serve` of one deployment (`live` and `second`, two workers each) answer
the same form sent four times at once; each test asserts a readable answer for every copy
(never a 500) and one row."""

from __future__ import annotations

import requests

from tests.admin_world import new_org, org_admin, signed_in
from tests.conftest import Browser, csrf_of
from tests.test_review_processes4 import _raced
from tests.test_review_processes6 import second  # noqa: F401 - a fixture: the deployment's second server


def _copy(b: Browser) -> requests.Session:
    """A connection of its own carrying the browser's cookies (one per raced request)."""
    http = requests.Session()
    http.headers.update(b.http.headers)
    http.cookies.update(b.http.cookies)
    return http


def test_add_user_sent_four_times_at_once_adds_one_person(live, second):  # noqa: F811
    """Low: "Add user" looked the address up, then inserted it (admin.users.add_user): the
    form sent twice at once (a double click, a retry of a slow answer) reaching two servers
    had both find no account, and the later insert broke the unique address: a 500 and a
    traceback. Now the later one is the page's "already exists" answer."""
    from idp.store import User, db

    org_id, name, domain = new_org(live, "twice-add")
    org_admin(live, name, f"admin@{domain}")
    b = signed_in(live, f"admin@{domain}")
    page = b.get(f"{live.issuer}/admin/orgs/{org_id}/users")
    token = csrf_of(page.text)
    for round_ in range(4):
        email = f"new-{round_}@{domain}"

        def add(i: int, email: str = email):
            http, base = _copy(b), (live.issuer, second)[i % 2]
            return lambda: http.post(f"{base}/admin/orgs/{org_id}/users",
                                     data={"csrf_token": token, "email": email, "name": "New Person"},
                                     allow_redirects=False, timeout=60).status_code

        statuses = _raced([add(i) for i in range(4)])
        assert 500 not in statuses and all(s in (302, 303, 409) for s in statuses), (round_, statuses)
        assert sum(1 for s in statuses if s in (302, 303)) >= 1, statuses
        with live.db():
            assert db.session.query(User).filter_by(email=email).count() == 1


def test_the_authenticator_set_up_page_loaded_four_times_at_once_answers_each(live, second):  # noqa: F811
    """Low: the set-up page of an authenticator app looked the account's pending factor up,
    then inserted one (mfa.totp.start_enrolment): the page loaded twice at once (a double
    click on "Set up", two tabs) reaching two servers had both find none, and the later
    insert broke the row's key: a 500 and a traceback. Now each load answers the page and
    the account holds one pending factor, whose secret the set-up confirms."""
    from idp.store import TotpFactor, db

    for round_ in range(4):
        email = f"twice-totp-{round_}@example.com"
        user_id = live.create_user(email, "twice totp password")
        b = Browser(live.issuer)
        assert "Your account" in b.sign_in(b.get(f"{live.issuer}/account"), email, "twice totp password").text

        def load(i: int, b: Browser = b):
            http, base = _copy(b), (live.issuer, second)[i % 2]
            return lambda: http.get(f"{base}/account/totp", allow_redirects=False, timeout=60).status_code

        statuses = _raced([load(i) for i in range(4)])
        assert statuses == [200] * 4, (round_, statuses)
        with live.db():
            assert db.session.query(TotpFactor).filter_by(user_id=user_id).count() == 1
