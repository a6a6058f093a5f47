"""Review of SCIM 2.0 provisioning (RFC 7643/7644) as an attacker and a standards auditor:
each test names a behaviour that was wrong, against the live server on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.test_scim import PATCH_OP, Directory, scim_error


def test_a_deeply_nested_json_body_is_refused_with_a_scim_error(live):
    """Medium: a deeply nested body (1 MB of "[" or a few hundred levels) was a 500 from a
    RecursionError; now 400 (RFC 7644 §3.12, OWASP ASVS 5.1.4 / 13.1.x input limits)."""
    d = Directory(live, "rv-deep")
    user = d.create(d.email("deep"))
    scim_error(d.call("POST", "/Users", "[" * 100_000), 400, "invalidSyntax")
    deep_700 = "[" * 700 + "]" * 700
    scim_error(d.call("POST", "/Users", f'{{"userName": "{d.email()}", "x": {deep_700}}}'), 400, "invalidValue")
    deep_900 = "[" * 900 + "]" * 900
    body = f'{{"schemas": ["{PATCH_OP}"], "Operations": [{{"op": "add", "path": "x", "value": {deep_900}}}]}}'
    scim_error(d.call("PATCH", f"/Users/{user['id']}", body), 400, "invalidValue")
    scim_error(d.call("POST", "/Groups/.search", '{"filter": ' + "{" * 50_000), 400, "invalidSyntax")
    # a directory's real documents (an extension's manager is 3 levels down) still go through
    ok = d.patch(f"/Users/{user['id']}", {"op": "add", "value": {
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m-1"}}}})
    assert ok.status_code == 200, ok.text
    assert "Traceback" not in live.log.read_text() and "RecursionError" not in live.log.read_text()
