"""Security review, fifth round, of client registration (RFC 7591/7592) and the developer
portal: each test names a finding, with its severity and the rule it comes from."""

from __future__ import annotations

import secrets
import time

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.oidc import authorize_url, pkce, token
from tests.test_developer_portal import new_app, signed_in
from tests.test_registration import _initial_token

PASSWORD = "portal-password"
# "аpple.example" with a Cyrillic "а" (U+0430): the browser goes to xn--pple-43d.example
LOOKALIKE = "https://\u0430pple.example/cb"


def _register(live, **meta) -> requests.Response:
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    return requests.post(f"{live.issuer}/register", json={"redirect_uris": ["https://rp.example/cb"], **meta},
                         headers=auth, timeout=10)


def test_the_consent_page_never_shows_a_lookalike_or_user_info_host(live):
    """Medium, RFC 3986 §2 / RFC 9700 §4.11 (phishing) / OWASP ASVS 5.1.4: a redirect URI
    is a URI, all ASCII, yet "https://аpple.example/cb" (Cyrillic а) and
    "https://apple.example@evil.example/cb" were registered. The consent page of an
    unverified app shows the host people are sent back to as the one clue beyond the name
    the app chose; it read "You will be sent back to аpple.example" (the browser goes to
    xn--pple-43d.example) or "apple.example@evil.example". Both are now refused, by dynamic
    registration and in the portal; an IDN host is registered in its A-label form."""
    user_info = "https://apple.example@evil.example/cb"
    for uri in (LOOKALIKE, user_info, "https://apple.example:secret@evil.example/cb",
                "https://rp.example/caf\u00e9", "com.example.\u0430pp:/cb"):
        resp = _register(live, client_name="Apple", redirect_uris=[uri])
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri", (uri, resp.text[:300])
        resp = _register(live, client_name="Apple", post_logout_redirect_uris=[uri])
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (uri, resp.text[:300])
    b = signed_in(live, "review-reg5-idn@example.com", PASSWORD)
    for uri in (LOOKALIKE, user_info):
        resp = new_app(live, b, name="Apple", redirects=uri)
        assert resp.status_code == 400 and "data-client-id" not in resp.text, uri
    # the same hosts in the form browsers go to are fine, and the page names that host
    ok = _register(live, client_name="Apple", redirect_uris=["https://xn--pple-43d.example/cb"])
    assert ok.status_code == 201, ok.text
    _, challenge = pkce()
    page = b.get(authorize_url(live.issuer, ok.json()["client_id"], redirect_uri="https://xn--pple-43d.example/cb",
                               code_challenge=challenge, code_challenge_method="S256"))
    assert ">Allow<" in page.text and "sent back to xn--pple-43d.example." in page.text


def test_grant_and_response_types_are_stored_once_each(live):
    """Low, OWASP ASVS 5.1.4 / 12.1.1: grant_types and response_types were stored as sent,
    each repetition of a known value passing: a 1 MB registration made a client whose row
    held 65,000 "refresh_token" (4.6 MB in each server process's client cache, 22 ms of CPU
    to decode at each load, answered again on every RFC 7592 read). The scope was
    de-duplicated already; the lists now are too (RFC 7591 §2: each is a set of values)."""
    from tests.test_developer_portal import client_row

    many = ["authorization_code"] + ["refresh_token"] * 20_000
    resp = _register(live, grant_types=many, response_types=["code"] * 20_000)
    assert resp.status_code == 201, resp.text[:300]
    reg = resp.json()
    assert reg["grant_types"] == ["authorization_code", "refresh_token"] and reg["response_types"] == ["code"]
    row = client_row(live, reg["client_id"])
    assert row.grant_types == ["authorization_code", "refresh_token"] and row.response_types == ["code"]
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    update = requests.put(reg["registration_client_uri"], headers=mgmt, timeout=10,
                          json={"client_id": reg["client_id"], "redirect_uris": ["https://rp.example/cb"],
                                "grant_types": many})
    assert update.status_code == 200 and update.json()["grant_types"] == ["authorization_code", "refresh_token"]


def test_a_registration_access_token_alone_cannot_drop_a_clients_keys(live):
    """Medium, RFC 7592 §2.2 / RFC 6749 §2.3 / RFC 9700 §2.5: a confidential client's
    registration access token cannot move it off its secret without the secret (an earlier
    finding), but a private_key_jwt client's token alone makes it public (or swaps its keys
    for the caller's) and points it at another redirect URI: whoever holds that bearer token
    then redeems codes of people who consented to the client, without its private key."""
    from joserfc.jwk import ECKey

    keys = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
    reg = _register(live, client_name="Keyed RP", token_endpoint_auth_method="private_key_jwt", jwks=keys).json()
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    attacker = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
    for change in ({"token_endpoint_auth_method": "none"},
                   {"token_endpoint_auth_method": "private_key_jwt", "jwks": attacker}):
        update = {"client_id": reg["client_id"], "redirect_uris": ["https://attacker.example/cb"], **change}
        resp = requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (change, resp.text)


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _signed(key: ECKey, client_id: str, aud: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60,
            "jti": secrets.token_hex(8), **claims}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, body, key)


def _keyed_client(live, key: ECKey) -> dict:
    """A private_key_jwt client (client_credentials, so /token shows which key it holds)."""
    resp = _register(live, client_name="Keyed RP", token_endpoint_auth_method="private_key_jwt",
                     grant_types=["client_credentials"], jwks={"keys": [key.as_dict(private=False)]})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _update(reg: dict, **changes) -> requests.Response:
    """An RFC 7592 update sending the client's metadata as registered, with `changes`."""
    meta = {name: reg[name] for name in ("client_id", "client_name", "redirect_uris", "grant_types",
                                         "token_endpoint_auth_method", "jwks") if name in reg}
    return requests.put(reg["registration_client_uri"], json={**meta, **changes}, timeout=10,
                        headers={"Authorization": f"Bearer {reg['registration_access_token']}"})


def _client_credentials(live, key: ECKey, client_id: str) -> requests.Response:
    return token(live.issuer, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                               "client_assertion": _signed(key, client_id, live.issuer)})


def test_a_private_key_jwt_client_rotates_its_keys_with_an_assertion_of_a_current_one(live):
    """The rule the finding above led to: a change of a private_key_jwt client's keys or
    method is made with a client assertion (RFC 7523) signed by one of its current keys,
    for the issuer or the registration client URI; the assertion is not stored."""
    from tests.test_developer_portal import client_row

    old, new, newer = (ECKey.generate_key("P-256", parameters={"kid": kid}) for kid in ("old", "new", "newer"))
    reg = _keyed_client(live, old)
    alone = _update(reg, jwks={"keys": [new.as_dict(private=False)]})
    assert alone.status_code == 400 and "client_assertion" in alone.json()["error_description"], alone.text
    rotated = _update(reg, jwks={"keys": [new.as_dict(private=False)]}, client_assertion_type=ASSERTION_TYPE,
                      client_assertion=_signed(old, reg["client_id"], live.issuer))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["jwks"]["keys"][0]["kid"] == "new"
    assert not {"client_assertion", "client_assertion_type"} & rotated.json().keys()
    row = client_row(live, reg["client_id"])
    assert not {"client_assertion", "client_assertion_type"} & (row.metadata_extra or {}).keys()
    refused = _client_credentials(live, old, reg["client_id"])
    assert refused.status_code in (400, 401) and refused.json()["error"] == "invalid_client", refused.text
    assert _client_credentials(live, new, reg["client_id"]).status_code == 200
    # the registration client URI is an audience too
    reg = {**reg, "jwks": rotated.json()["jwks"]}
    again = _update(reg, jwks={"keys": [newer.as_dict(private=False)]}, client_assertion_type=ASSERTION_TYPE,
                    client_assertion=_signed(new, reg["client_id"], reg["registration_client_uri"]))
    assert again.status_code == 200, again.text
    assert _client_credentials(live, newer, reg["client_id"]).status_code == 200


def test_a_key_change_needs_a_fresh_assertion_of_a_current_key(live):
    """Signed by another key, expired, replayed, by another client, for another audience,
    or of another type: each is refused, and the client's keys stay as they were."""
    key, attacker, other_key = (ECKey.generate_key("P-256", parameters={"kid": "k1"}) for _ in range(3))
    reg = _keyed_client(live, key)
    other = _keyed_client(live, other_key)
    client_id = reg["client_id"]
    keys = {"keys": [attacker.as_dict(private=False)]}
    # spent once at /token: a single use wherever it is presented
    spent = _signed(key, client_id, live.issuer)
    assert token(live.issuer, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                               "client_assertion": spent}).status_code == 200
    for proof in ({"client_assertion": _signed(attacker, client_id, live.issuer)},
                  {"client_assertion": _signed(key, client_id, live.issuer, iat=int(time.time()) - 400,
                                               exp=int(time.time()) - 300)},
                  {"client_assertion": spent},
                  {"client_assertion": _signed(key, other["client_id"], live.issuer)},
                  {"client_assertion": _signed(other_key, other["client_id"], live.issuer)},
                  {"client_assertion": _signed(key, client_id, "https://elsewhere.example")},
                  {"client_assertion": _signed(key, client_id, live.issuer, exp=int(time.time()) + 3600)},
                  {"client_assertion": "not-a-jwt"},
                  {"client_assertion": {"iss": client_id}},
                  {"client_assertion": _signed(key, client_id, live.issuer), "client_assertion_type": "other"},
                  {"client_assertion_type": ASSERTION_TYPE}):
        proof = {"client_assertion_type": ASSERTION_TYPE, **proof}
        resp = _update(reg, jwks=keys, **proof)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (proof, resp.text)
        assert resp.json()["error_description"]
    # the same assertion twice: the first makes the change, the second is refused
    twice = _signed(key, client_id, live.issuer)
    both = {"keys": [key.as_dict(private=False), other_key.as_dict(private=False)]}
    assert _update(reg, jwks=both, client_assertion_type=ASSERTION_TYPE, client_assertion=twice).status_code == 200
    replayed = _update({**reg, "jwks": both}, jwks=keys, client_assertion_type=ASSERTION_TYPE, client_assertion=twice)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_client_metadata", replayed.text
    current = requests.get(reg["registration_client_uri"], timeout=10,
                           headers={"Authorization": f"Bearer {reg['registration_access_token']}"})
    assert current.json()["jwks"] == both


def test_a_private_key_jwt_clients_other_metadata_changes_with_the_token_alone(live):
    """RFC 7592 §2.2: what does not touch the keys or the method needs no more than the
    registration access token (the client's keys sent again as they are)."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    reg = _keyed_client(live, key)
    resp = _update(reg, redirect_uris=["https://rp.example/elsewhere"], client_name="Renamed RP")
    assert resp.status_code == 200, resp.text
    changed = resp.json()
    assert changed["redirect_uris"] == ["https://rp.example/elsewhere"] and changed["client_name"] == "Renamed RP"
    assert _client_credentials(live, key, reg["client_id"]).status_code == 200


def test_a_client_name_holds_no_control_or_direction_characters(live):
    """Low, OWASP ASVS 5.1.4 / 5.3.1 (output encoding for the terminal): a self-registered
    client_name may hold any character, and `idp clients list` writes names as they are to
    the operator's terminal: "\\x1b[2K\\x1b[1A" erased lines of the listing, a newline forged
    a line of its own, and a right-to-left override (U+202E) reversed the text after the
    name on the consent page. Control, format and line-separator characters are now
    refused (the zero-width joiners some scripts need stay)."""
    for name in ("Evil\x1b[2K\x1b[1A", "RP\nabcdef0123456789abcdef0123456789  Trusted  client_credentials",
                 "\u202etnuocca", "RP\u2028", "RP\x7f"):
        resp = _register(live, client_name=name)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata", (name, resp.text[:300])
    b = signed_in(live, "review-reg5-name@example.com", PASSWORD)
    resp = new_app(live, b, name="Evil\x1b[2K")
    assert resp.status_code == 400 and "data-client-id" not in resp.text
    # names in any script, emoji sequences included, are fine, and listed as they are
    for name in ("Caf\u00e9 \u2713 \u0645\u062b\u0627\u0644", "\u0646\u0627\u0645\u200c\u0647\u0627",
                 "\U0001F468\u200d\U0001F4BB app"):
        resp = _register(live, client_name=name)
        assert resp.status_code == 201 and resp.json()["client_name"] == name, resp.text[:300]
    listing = live.idp("clients", "list")
    assert listing.returncode == 0 and "\x1b" not in listing.stdout and "Caf\u00e9 \u2713" in listing.stdout
