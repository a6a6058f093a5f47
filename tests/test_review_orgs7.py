"""Review round 13 (orgs): an org's audit log shows each of its admins who stops being one,
however they leave the org."""

from __future__ import annotations

from tests.admin_world import new_org
from tests.test_scim import Directory


def _removed(live, org_id: str, user_id: str) -> list[dict]:
    from idp.store import SecurityEvent, db

    with live.db():
        return [e.detail for e in db.session.query(SecurityEvent).filter_by(
            org_id=org_id, user_id=user_id, kind="admin.removed")]


def _make_admin(live, user_id: str) -> None:
    from idp.store import User, db

    with live.db():
        db.session.get(User, user_id).org_admin = True
        db.session.commit()


def test_an_admin_deleted_by_the_orgs_directory_is_in_its_log_as_removed(live):
    """Low (ASVS 7.2.2, audit of privilege changes): a SCIM DELETE of one of the org's admins
    took the admin role away (accounts.leave_org) and the log said only "scim.user_deleted":
    who reads the org's log for its admins' changes (`admin.made_admin` / `admin.removed`,
    as the Admin Center and `idp orgs admin` write them) saw an admin made and never removed."""
    directory = Directory(live, "rv7-scim-admin")
    person = directory.create()
    _make_admin(live, person["id"])
    assert directory.call("DELETE", f"/Users/{person['id']}").status_code == 204
    assert _removed(live, directory.org_id, person["id"]) == [{"via": "scim"}]


def test_an_admin_moved_to_another_org_by_the_cli_is_in_the_old_orgs_log_as_removed(live):
    """Low, the same through `idp orgs admin B person`, which moves an admin of org A into B
    as B's admin: A's log recorded nothing, B's "admin.made_admin"."""
    from idp.store import User, db

    a_id, a_name, a_domain = new_org(live, "rv7-move-from")
    b_id, b_name, _ = new_org(live, "rv7-move-to")
    email = f"boss@{a_domain}"
    user_id = live.create_user(email, "rv7 move password", org_id=a_id, org_admin=True)
    out = live.idp("orgs", "admin", b_name, email)
    assert out.returncode == 0, out.stderr
    with live.db():
        user = db.session.get(User, user_id)
        assert (user.org_id, user.org_admin) == (b_id, True)
    assert _removed(live, a_id, user_id) == [{"via": "cli", "moved_to": b_id}]
    assert _removed(live, b_id, user_id) == []
