"""Review of SCIM 2.0 provisioning, seventh round: each test names a behaviour that was wrong,
against the live server on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.test_scim import PATCH_OP, Directory, scim_error

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _timed_patch(d: Directory, path: str, operations: list[dict]) -> tuple[requests.Response, float]:
    body = json.dumps({"schemas": [PATCH_OP], "Operations": operations}, separators=(",", ":"))
    assert len(body) < 1024 * 1024
    started = time.monotonic()
    try:
        resp = requests.patch(d.base + path, data=body, headers=d.headers(), timeout=60)
    except requests.exceptions.Timeout:
        pytest.fail(f"a {len(body) // 1024} kB PATCH took more than 60 s")
    return resp, time.monotonic() - started


def test_a_patch_naming_many_attributes_costs_linear_time(live):
    """Medium: each attribute of a path-less PATCH value (and each key of an object merged by
    `add`) was looked up, case-insensitively, among every key before it: one 1 MB request of
    60,000 attributes cost a worker over a minute of CPU (20,000: 9 s). Now each object's keys
    are indexed once (RFC 7644 §3.5.2, ASVS 13.1.x / 11.1.4 resource limits)."""
    d = Directory(live, "rv7-keys")
    user = d.create(d.email("k"), custom={"Kept": 1})
    group = d.call("POST", "/Groups", {"displayName": "keys"}).json()
    n = 60_000
    cases = [
        (f"/Users/{user['id']}", [{"op": "add", "value": {f"a{i}": i for i in range(n)}}]),
        (f"/Users/{user['id']}", [{"op": "add", "path": "custom", "value": {f"b{i}": i for i in range(n)}}]),
        (f"/Users/{user['id']}", [{"op": "add", "value": {ENTERPRISE: {f"c{i}": i for i in range(n)}}}]),
        (f"/Users/{user['id']}", [{"op": "add", "value": {f"custom.d{i}": i for i in range(n // 2)}}]),
        (f"/Groups/{group['id']}", [{"op": "add", "value": {f"e{i}": i for i in range(n)}}]),
    ]
    for path, operations in cases:
        resp, seconds = _timed_patch(d, path, operations)
        assert resp.status_code == 200, resp.text[:300]
        assert seconds < 15, (path, list(operations[0]["value"])[:1], seconds)
    after = d.call("GET", f"/Users/{user['id']}").json()
    # keys keep their spelling, and a key named in another case is the same attribute
    assert after["a0"] == 0 and after["a59999"] == 59_999
    assert after["custom"]["Kept"] == 1 and after["custom"]["b7"] == 7 and after["custom"]["d7"] == 7
    assert after[ENTERPRISE]["c59999"] == 59_999
    resp = d.patch(f"/Users/{user['id']}", {"op": "add", "value": {"A0": "again", "custom.kept": 2}},
                   {"op": "add", "path": "custom", "value": {"KEPT": 3, "B7": 8}})
    assert resp.status_code == 200, resp.text[:300]
    body = resp.json()
    assert body["a0"] == "again" and "A0" not in body
    assert body["custom"]["Kept"] == 3 and body["custom"]["b7"] == 8 and "KEPT" not in body["custom"]
    # an attribute removed, then added again in the same request, is one attribute
    resp = d.patch(f"/Users/{user['id']}", {"op": "remove", "path": "a1"}, {"op": "add", "value": {"A1": "back"}},
                   {"op": "replace", "path": "A1", "value": "twice"}, {"op": "remove", "path": "custom.b8"},
                   {"op": "add", "path": "custom.B8", "value": "again"})
    assert resp.status_code == 200, resp.text[:300]
    body = resp.json()
    assert body["a1"] == "twice" and "A1" not in body and body["custom"]["b8"] == "again", resp.text[:300]
