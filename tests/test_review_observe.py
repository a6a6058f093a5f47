"""Review of what an operator runs and sees: the server's log, /metrics, /healthz and
/readyz, housekeeping, key rotation and throttling keys."""

from __future__ import annotations

import base64
import secrets
import time

import pytest
import requests

from tests.conftest import Browser, separate_live

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    yield from separate_live(tmp_path_factory, "review-observe-log",
                             extra_env={"IDP_LOG_LEVEL": "DEBUG", "IDP_LOG_FORMAT": "text"})


def test_secrets_sent_on_error_paths_are_not_logged(logged):
    """Regression (High if broken): SPEC §2, OWASP ASVS 7.1.1 - no credential of a refused request in the log."""
    iss = logged.issuer
    cc_id, cc_secret = logged.create_client(grant_types=["client_credentials"], redirect_uris=[])
    auth = (cc_id, cc_secret)
    cc = {"grant_type": "client_credentials"}
    device = "urn:ietf:params:oauth:grant-type:device_code"
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    # (method, path, what to send): {w} is a fresh secret value
    probes = [
        ("post", "/token", {"data": cc, "auth": (cc_id, "{w}")}),
        ("post", "/token", {"data": {**cc, "client_id": cc_id, "client_secret": "{w}"}}),
        ("post", "/token", {"json": {**cc, "client_id": cc_id, "client_secret": "{w}"}}),
        ("post", "/token", {"data": cc, "headers": {"Authorization": "Basic {b64}"}}),
        ("post", "/token", {"data": "grant_type=client_credentials&client_secret={w}&x=\xe9", "auth": auth,
                            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("get", "/scim/v2/Users", {"headers": {"Authorization": "Bearer {w}"}}),
        ("post", "/token", {"data": {"grant_type": "refresh_token", "refresh_token": "{w}"}, "auth": auth}),
        ("post", "/token", {"data": {"grant_type": "authorization_code", "code": "{w}", "redirect_uri": "x"},
                            "auth": auth}),
        ("post", "/revoke", {"data": {"token": "{w}"}, "auth": auth}),
        ("post", "/introspect", {"data": {"token": "{w}", "token_type_hint": "refresh_token"}, "auth": auth}),
        ("post", "/userinfo", {"data": {"access_token": "{w}"}}),
        ("post", "/token", {"data": cc, "auth": auth, "headers": {"DPoP": "{w}"}}),
        ("get", "/password/reset/{w}", {}),
        ("post", "/password/reset/{w}", {"data": {"password": "x"}}),
        ("get", "/invite/{w}", {}),
        ("get", "/signup/verify/{w}", {}),
        ("post", "/saml/nope/acs", {"data": {"SAMLResponse": "{w}", "RelayState": "x"}}),
        ("get", "/logout", {"params": {"id_token_hint": "{w}"}}),
        ("get", f"/register/{cc_id}", {"headers": {"Authorization": "Bearer {w}"}}),
        ("post", "/register", {"json": {"redirect_uris": ["https://a/c"]}, "headers": {"Authorization": "Bearer {w}"}}),
        ("post", "/token", {"data": {"grant_type": device, "device_code": "{w}"}, "auth": auth}),
        ("post", "/token", {"data": {"grant_type": exchange, "subject_token": "{w}",
                                     "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
                            "auth": auth}),
        ("post", "/token", {"data": {**cc, "client_assertion_type": jwt_bearer, "client_assertion": "{w}",
                                     "client_id": cc_id}}),
        ("post", "/par", {"data": {"client_id": cc_id, "response_type": "code", "request": "{w}"}, "auth": auth}),
    ]
    used = [cc_secret]

    def fill(value, w):
        if isinstance(value, str):
            b64 = base64.b64encode(f"{cc_id}:{w}\xe9".encode("latin-1")).decode()
            filled = value.replace("{w}", w).replace("{b64}", b64)
            return filled.encode("latin-1") if "\xe9" in filled and "&" in filled else filled
        if isinstance(value, dict):
            return {k: fill(v, w) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(fill(v, w) for v in value)
        return value

    for method, path, kwargs in probes:
        w = "s3cr3t-" + secrets.token_urlsafe(12)
        used.append(w)
        getattr(requests, method)(iss + path.replace("{w}", w), timeout=10, **fill(kwargs, w))
    time.sleep(1.5)
    log = logged.log.read_text()
    leaked = [value for value in used if value in log]
    assert not leaked, f"{len(leaked)} secret value(s) in the log, e.g. {leaked[0][:10]}..."
    assert "Traceback" not in log and " 500 " not in log


@pytest.fixture(scope="module")
def proxied_here(tmp_path_factory):
    yield from separate_live(tmp_path_factory, "review-observe-proxied", extra_env={"IDP_TRUSTED_PROXIES": "1"})


def test_odd_forwarded_headers_from_a_trusted_proxy_are_never_a_500(proxied_here):
    """Regression: Low - malformed X-Forwarded-* through a trusted proxy get a 2xx-4xx answer."""
    iss = proxied_here.issuer
    out = []
    for h in ({"X-Forwarded-For": "garbage"}, {"X-Forwarded-For": "fe80::1%eth0"}, {"X-Forwarded-For": ", ,"},
              {"X-Forwarded-For": "1.2.3.4:5555"}, {"X-Forwarded-For": "[::1]:80"},
              {"X-Forwarded-Host": "a b"}, {"X-Forwarded-Host": "ex\u00e9.com".encode().decode("latin-1")},
              {"X-Forwarded-Host": "a:notaport"}, {"X-Forwarded-Proto": "gopher"}, {"X-Forwarded-Proto": "https, http"},
              {"X-Forwarded-Host": ""}, {"X-Forwarded-Port": "x"}, {"X-Forwarded-Prefix": "/../x"}):
        for path in ("/healthz", "/readyz", "/signin", "/.well-known/openid-configuration", "/account"):
            r = requests.get(iss + path, headers=h, timeout=10, allow_redirects=False)
            out.append((h, path, r.status_code))
        r = requests.post(iss + "/signin", headers=h, data={"email": "a@b.example"}, timeout=10, allow_redirects=False)
        out.append((h, "POST /signin", r.status_code))
        r = requests.post(iss + "/token", headers=h, data={"grant_type": "client_credentials"}, auth=("x", "y"),
                          timeout=10)
        out.append((h, "POST /token", r.status_code))
    assert not [o for o in out if o[2] >= 500]


def test_a_device_code_guesser_cannot_reset_the_count_with_a_code_of_their_own_is_refused(logged):
    """Medium - RFC 8628 §5.1 (user code brute force), OWASP ASVS 2.2.1: a signed-in attacker who
    enters a user code of a device flow they started themselves must not wipe their count of
    wrong guesses, or they guess other people's codes at full speed."""
    email = f"guesser-{secrets.token_hex(4)}@example.com"
    logged.create_user(email, "guesser-password-1")
    client_id, _ = logged.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE_GRANT],
                                        redirect_uris=[])
    own = requests.post(logged.meta["device_authorization_endpoint"], data={"client_id": client_id},
                        timeout=10).json()["user_code"]
    browser = Browser(logged.issuer)
    page = browser.sign_in(browser.get(f"{logged.issuer}/device"), email, "guesser-password-1")
    assert 'name="user_code"' in page.text
    answers = []
    for _round in range(3):
        for _ in range(8):  # under the 10 free attempts of an hour
            resp = browser.submit(browser.get(f"{logged.issuer}/device"), {"user_code": "BCDF-GHJK"})
            answers.append(resp.status_code)
        # the attacker's own, valid code: found, never confirmed, usable again
        resp = browser.submit(browser.get(f"{logged.issuer}/device"), {"user_code": own})
        assert resp.status_code in (200, 429), resp.status_code
    assert 429 in answers, f"{len(answers)} wrong user codes in a row, none throttled"
