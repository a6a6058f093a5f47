"""Security review, mailed links and sign-up (round 6): what a stranger's unverified sign-up
leaves behind for the address's owner."""

from __future__ import annotations

import uuid

from tests.admin_world import new_org, org_admin, post, signed_in
from tests.conftest import Browser
from tests.smtp import link_in


def _sign_up(live, email: str, password: str, name: str, lang: str = "en") -> None:
    """The row /signup writes for an address nobody holds yet (written here: the loopback
    client's sign-up budget, "signup:ip", is the other test files')."""
    from idp.passwords import hash_password
    from idp.store import User, db

    with live.db():
        db.session.add(User(email=email, name=name, password_hash=hash_password(password), email_verified=False,
                            locale=lang))
        db.session.commit()


def _row(live, email: str):
    from idp.store import User, db

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        db.session.expunge(user)
        return user


def test_a_strangers_name_does_not_stay_on_the_account_its_owner_adopts_by_a_reset(live):
    """Low: the sign-up form takes a display name with the password. Whoever signs up with
    someone else's address chooses both; the owner's reset link adopts the row and wipes the
    password nobody proved, but kept the stranger's name (and language): the `name` claim
    every product is given for the owner, and no page lets the owner change it."""
    victim = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    _sign_up(live, victim, "a strangers password 7", "Planted By A Stranger", lang="fr")
    b = Browser(live.issuer)
    b.submit(b.get(f"{live.issuer}/password/forgot"), {"email": victim})
    link = link_in(live.mailbox.wait_for(victim)[-1], live.issuer)
    page = b.get(link)
    done = b.submit(page, {"password": "the owners own pass 42", "sign_out_everywhere": "on"})
    assert done.status_code == 200 and "Password changed" in done.text
    row = _row(live, victim)
    assert row.email_verified
    assert (row.name, row.locale) == (None, None), (row.name, row.locale)


def test_a_strangers_unverified_sign_up_does_not_block_the_org_admins_invitation(live):
    """Medium: anyone may sign up, unverified, with an address in the domain of an org that
    signs its people in with passwords. The org admin's "Add user" then answered 409
    "already exists" for that address, for as long as the stranger liked: the org could not
    invite its own person (SCIM's create adopts such a row; the Admin Center now does too:
    wiped of all it holds, in the org, and invited)."""
    org_id, name, domain = new_org(live, "mail6")
    boss = f"boss-{uuid.uuid4().hex[:6]}@{domain}"
    org_admin(live, name, boss)
    admin = signed_in(live, boss)
    newcomer = f"newcomer-{uuid.uuid4().hex[:6]}@{domain}"
    _sign_up(live, newcomer, "a strangers password 7", "Stranger")
    resp = post(admin, f"/admin/orgs/{org_id}/users", {"email": newcomer, "name": "New Comer"})
    assert resp.status_code == 302, resp.text[:500]
    row = _row(live, newcomer)
    assert (row.org_id, row.email_verified, row.password_hash, row.name) == (org_id, False, None, "New Comer")
    link = link_in(live.mailbox.wait_for(newcomer)[-1], live.issuer)
    assert "/invite/" in link, link
    b = Browser(live.issuer)
    done = b.submit(b.get(link), {"password": "the newcomers pass 42"})
    assert done.status_code == 200 and "Your account is ready" in done.text
    # the stranger's password opens nothing
    sign = Browser(live.issuer)
    resp = sign.sign_in(sign.get(f"{live.issuer}/account"), newcomer, "a strangers password 7")
    assert "Your account" not in resp.text


def test_an_admin_cannot_take_a_verified_account_of_the_domain_by_adding_it(live):
    """The adoption is for rows nobody proved: a verified account stays its owner's (409)."""
    org_id, name, domain = new_org(live, "mail6v")
    boss = f"boss-{uuid.uuid4().hex[:6]}@{domain}"
    org_admin(live, name, boss)
    admin = signed_in(live, boss)
    owner = f"owner-{uuid.uuid4().hex[:6]}@{domain}"
    live.create_user(owner, "the owners own pass 42")
    resp = post(admin, f"/admin/orgs/{org_id}/users", {"email": owner, "name": "X"})
    assert resp.status_code == 409 and "already exists" in resp.text
    assert _row(live, owner).org_id is None
