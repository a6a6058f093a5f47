"""Security review of offboarding (branch rev10-k): when a person must lose access, every way
in stops at once, and bringing the account back brings back nothing that was cut off. Each
test shows one finding through the real server."""

from __future__ import annotations

import pytest

from tests.conftest import Browser
from tests.smtp import link_in


def _links_mailed_before(live, d, email: str) -> tuple[str, str]:
    """(invitation, reset link) mailed to `email`, a person the directory `d` just made."""
    invite = link_in(live.mailbox.wait_for(email)[0], live.issuer)
    b = Browser(live.issuer)
    b.submit(b.get(f"{live.issuer}/password/forgot"), {"email": email})
    (reset,) = {link_in(m, live.issuer) for m in live.mailbox.wait_for(email, 2)} - {invite}
    return invite, reset


@pytest.mark.parametrize("cut_off", ["deactivate", "delete"])
def test_links_mailed_before_a_deprovisioning_stay_dead_once_the_account_is_back(live, cut_off):
    """Medium: a deactivation (SCIM active=false, the Admin Center's Disable) or a SCIM DELETE
    only made the mailed invitation and reset links wait: they were refused while the account
    was disabled, and set its password again once it was reactivated or provisioned back (the
    invitation for a week). Whoever held a copy (the mailbox a leaver forwarded, an intruder an
    incident response disabled the account against) chose the password of the account the
    directory brought back."""
    from tests.test_scim import Directory

    d = Directory(live, f"rv-off-{cut_off}")
    email = d.email("leaver")
    uid = d.create(email)["id"]
    invite, reset = _links_mailed_before(live, d, email)
    if cut_off == "deactivate":
        resp = d.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False})
        assert resp.status_code == 200 and resp.json()["active"] is False, resp.text
        resp = d.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": True})
        assert resp.status_code == 200 and resp.json()["active"] is True, resp.text
    else:
        assert d.call("DELETE", f"/Users/{uid}").status_code == 204
        assert d.create(email)["id"] == uid  # provisioned back: the same account
    for link in (invite, reset):
        page = Browser(live.issuer).get(link)
        assert page.status_code == 400, f"{link} opens again after the account was cut off and brought back"

