"""The software authenticator against py_webauthn's own verifier: real keys, real signatures, no server."""

from __future__ import annotations

import json

import pytest
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from tests.webauthn_authenticator import (
    InvalidStateError,
    NotAllowedError,
    NotSupportedError,
    SecurityError,
    SoftwareAuthenticator,
    b64url_decode,
    b64url_encode,
)

RP_ID = "localhost"
ORIGIN = "http://localhost:5000"
USER_ID = b"user-handle-0123456789abcdef"


def registration_options(rp_id=RP_ID, user_id=USER_ID, exclude=(), **kwargs):
    return generate_registration_options(
        rp_id=rp_id,
        rp_name="myaccount",
        user_name="alice@example.com",
        user_id=user_id,
        user_display_name="Alice",
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in exclude],
        **kwargs,
    )


def register(authenticator, rp_id=RP_ID, origin=ORIGIN, user_id=USER_ID):
    options = registration_options(rp_id=rp_id, user_id=user_id)
    response = authenticator.create(json.loads(options_to_json(options)))
    verified = verify_registration_response(
        credential=response,
        expected_challenge=options.challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        require_user_verification=True,
    )
    return verified


def authentication_options(rp_id=RP_ID, allow=(), uv=UserVerificationRequirement.REQUIRED):
    return generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in allow],
        user_verification=uv,
    )


def authenticate(authenticator, registered, sign_count, tamper=None, allow=None, require_uv=True):
    options = authentication_options(allow=[registered.credential_id] if allow is None else allow)
    response = authenticator.get(json.loads(options_to_json(options)), tamper=tamper)
    return response, verify_authentication_response(
        credential=response,
        expected_challenge=options.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=sign_count,
        require_user_verification=require_uv,
    )


# -- registration -------------------------------------------------------------------------------------------------


def test_registration_is_verified_by_the_library():
    authenticator = SoftwareAuthenticator(ORIGIN)
    options = registration_options()
    options_json = json.loads(options_to_json(options))
    response = authenticator.create(options_json)

    assert response["type"] == "public-key"
    assert response["id"] == response["rawId"]
    assert "=" not in response["id"] + response["response"]["clientDataJSON"]
    client_data = json.loads(b64url_decode(response["response"]["clientDataJSON"]))
    assert client_data == {
        "type": "webauthn.create",
        "challenge": options_json["challenge"],
        "origin": ORIGIN,
        "crossOrigin": False,
    }

    verified = verify_registration_response(
        credential=response,
        expected_challenge=options.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
    )
    held = authenticator.credentials[0]
    assert verified.credential_id == held.credential_id == b64url_decode(response["rawId"])
    assert len(verified.credential_id) == 32
    assert verified.credential_public_key == held.public_key_cose
    assert verified.sign_count == 0
    assert verified.user_verified is True
    assert verified.fmt == AttestationFormat.NONE
    assert verified.aaguid == "00000000-0000-0000-0000-000000000000"
    assert verified.credential_device_type == CredentialDeviceType.SINGLE_DEVICE
    assert verified.credential_backed_up is False
    assert held.rp_id == RP_ID and held.user_handle == USER_ID


def test_registration_accepts_and_returns_json_strings():
    authenticator = SoftwareAuthenticator(ORIGIN)
    options = registration_options()
    response = authenticator.create(options_to_json(options))
    verified = verify_registration_response(
        credential=json.dumps(response),
        expected_challenge=options.challenge,
        expected_rp_id=RP_ID,
        expected_origin=[ORIGIN, "http://localhost:5001"],
    )
    assert verified.credential_id == authenticator.credentials[0].credential_id


def test_backup_eligible_authenticator_reports_a_synced_passkey():
    verified = register(SoftwareAuthenticator(ORIGIN, backup_eligible=True))
    assert verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert verified.credential_backed_up is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expected_challenge", b"another challenge, not the one sent"),
        ("expected_origin", "http://localhost:5001"),
        ("expected_origin", "https://localhost:5000"),
        ("expected_rp_id", "example.com"),
    ],
)
def test_registration_with_wrong_expectations_is_refused(field, value):
    authenticator = SoftwareAuthenticator(ORIGIN)
    options = registration_options()
    response = authenticator.create(json.loads(options_to_json(options)))
    expected = {"expected_challenge": options.challenge, "expected_rp_id": RP_ID, "expected_origin": ORIGIN}
    expected[field] = value
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration_response(credential=response, **expected)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("origin", "Unexpected client data origin"),
        ("challenge", "challenge was not expected challenge"),
        ("rp", "Unexpected RP ID hash"),
        ("up", "User presence was required"),
    ],
)
def test_tampered_registration_is_refused(tamper, message):
    authenticator = SoftwareAuthenticator(ORIGIN)
    options = registration_options()
    response = authenticator.create(json.loads(options_to_json(options)), tamper=tamper)
    with pytest.raises(InvalidRegistrationResponse, match=message):
        verify_registration_response(
            credential=response, expected_challenge=options.challenge, expected_rp_id=RP_ID, expected_origin=ORIGIN
        )


def test_registration_without_user_verification_is_refused_when_required():
    authenticator = SoftwareAuthenticator(ORIGIN)
    options = registration_options()
    response = authenticator.create(json.loads(options_to_json(options)), tamper="uv")
    with pytest.raises(InvalidRegistrationResponse, match="User verification is required"):
        verify_registration_response(
            credential=response,
            expected_challenge=options.challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            require_user_verification=True,
        )


def test_exclude_credentials_refuses_a_second_registration():
    authenticator = SoftwareAuthenticator(ORIGIN)
    first = register(authenticator)
    options = json.loads(options_to_json(registration_options(exclude=[b"someone else's key", first.credential_id])))
    with pytest.raises(ValueError) as excinfo:
        authenticator.create(options)
    assert isinstance(excinfo.value, InvalidStateError)
    assert len(authenticator.credentials) == 1
    # Another authenticator (another device) may register for the same account.
    other = SoftwareAuthenticator(ORIGIN)
    other.create(options)
    assert len(other.credentials) == 1


def test_a_new_registration_for_the_same_user_replaces_the_discoverable_credential():
    authenticator = SoftwareAuthenticator(ORIGIN)
    first = register(authenticator)
    second = register(authenticator)
    assert [c.credential_id for c in authenticator.credentials] == [second.credential_id]
    register(authenticator, user_id=b"another user")
    assert len(authenticator.credentials) == 2
    assert first.credential_id != second.credential_id


def test_es256_must_be_allowed():
    options = registration_options(supported_pub_key_algs=[COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256])
    with pytest.raises(NotSupportedError):
        SoftwareAuthenticator(ORIGIN).create(json.loads(options_to_json(options)))


def test_uv_required_but_unavailable_is_refused_by_the_authenticator():
    authenticator = SoftwareAuthenticator(ORIGIN, user_verification=False)
    with pytest.raises(LookupError):
        authenticator.create(json.loads(options_to_json(registration_options())))


@pytest.mark.parametrize(
    ("origin", "rp_id"),
    [
        ("http://localhost:5000", "example.com"),
        ("https://login.example.com", "other.example.com"),
        ("https://login.example.com", "com"),
        ("https://example.com", "login.example.com"),
        ("http://example.com", "example.com"),
    ],
)
def test_rp_id_must_be_valid_for_the_origin(origin, rp_id):
    with pytest.raises(SecurityError):
        SoftwareAuthenticator(origin).create(json.loads(options_to_json(registration_options(rp_id=rp_id))))


def test_rp_id_may_be_a_registrable_suffix_of_the_origin():
    authenticator = SoftwareAuthenticator("https://login.example.com")
    options = registration_options(rp_id="example.com")
    response = authenticator.create(json.loads(options_to_json(options)))
    verified = verify_registration_response(
        credential=response,
        expected_challenge=options.challenge,
        expected_rp_id="example.com",
        expected_origin="https://login.example.com",
    )
    assert verified.credential_id == authenticator.credentials[0].credential_id


# -- IP addresses as RP IDs -----------------------------------------------------------------------------------------


def test_py_webauthn_itself_accepts_an_ip_rp_id():
    """py_webauthn never validates the RP ID: it only hashes it, so "127.0.0.1" verifies like any string."""
    authenticator = SoftwareAuthenticator("http://127.0.0.1:5000", allow_ip_origin=True)
    options = registration_options(rp_id="127.0.0.1")
    response = authenticator.create(json.loads(options_to_json(options)))
    registered = verify_registration_response(
        credential=response,
        expected_challenge=options.challenge,
        expected_rp_id="127.0.0.1",
        expected_origin="http://127.0.0.1:5000",
    )
    auth_options = generate_authentication_options(rp_id="127.0.0.1")
    assertion = authenticator.get(json.loads(options_to_json(auth_options)))
    verified = verify_authentication_response(
        credential=assertion,
        expected_challenge=auth_options.challenge,
        expected_rp_id="127.0.0.1",
        expected_origin="http://127.0.0.1:5000",
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=0,
    )
    assert verified.new_sign_count == 1


@pytest.mark.parametrize("rp_id", ["127.0.0.1", "localhost"])
def test_browsers_refuse_webauthn_on_an_ip_origin(rp_id):
    """Chrome, Firefox and Safari raise SecurityError on http://127.0.0.1:PORT: an IP is not a valid domain."""
    authenticator = SoftwareAuthenticator("http://127.0.0.1:5000")
    with pytest.raises(SecurityError):
        authenticator.create(json.loads(options_to_json(registration_options(rp_id=rp_id))))
    with pytest.raises(SecurityError):
        authenticator.get(json.loads(options_to_json(generate_authentication_options(rp_id=rp_id))))


# -- authentication ---------------------------------------------------------------------------------------------


def test_authentication_is_verified_by_the_library_and_the_counter_advances():
    authenticator = SoftwareAuthenticator(ORIGIN)
    registered = register(authenticator)

    response, verified = authenticate(authenticator, registered, registered.sign_count)
    assert verified.credential_id == registered.credential_id
    assert verified.new_sign_count == 1
    assert verified.user_verified is True
    assert b64url_decode(response["response"]["userHandle"]) == USER_ID
    assert json.loads(b64url_decode(response["response"]["clientDataJSON"]))["type"] == "webauthn.get"

    _, verified = authenticate(authenticator, registered, verified.new_sign_count)
    assert verified.new_sign_count == 2
    assert authenticator.credential(registered.credential_id).sign_count == 2


def test_discoverable_login_with_an_empty_allow_list():
    authenticator = SoftwareAuthenticator(ORIGIN)
    register(authenticator, user_id=b"bob")
    registered = register(authenticator)  # the most recent is chosen by default
    response, verified = authenticate(authenticator, registered, 0, allow=[])
    assert verified.credential_id == registered.credential_id
    assert b64url_decode(response["response"]["userHandle"]) == USER_ID
    bob = authenticator.credentials[0]
    options = json.loads(options_to_json(authentication_options()))
    picked = authenticator.get(options, credential_id=bob.credential_id)
    assert base64url_to_bytes(picked["rawId"]) == bob.credential_id
    assert b64url_decode(picked["response"]["userHandle"]) == b"bob"


def test_allow_list_restricts_the_credentials():
    authenticator = SoftwareAuthenticator(ORIGIN)
    first = register(authenticator)
    register(authenticator, user_id=b"bob")
    response, verified = authenticate(authenticator, first, 0)
    assert verified.credential_id == first.credential_id
    assert response["id"] == b64url_encode(first.credential_id)


@pytest.mark.parametrize(
    ("rp_id", "allow"),
    [("example.com", [b"a credential this authenticator does not hold"]), ("login.example.com", [])],
    ids=["unknown-credential", "other-rp"],
)
def test_no_matching_credential_is_a_lookup_error(rp_id, allow):
    authenticator = SoftwareAuthenticator("https://login.example.com")
    authenticator.create(json.loads(options_to_json(registration_options(rp_id="example.com"))))
    options = generate_authentication_options(
        rp_id=rp_id, allow_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in allow]
    )
    with pytest.raises(LookupError) as excinfo:
        authenticator.get(json.loads(options_to_json(options)))
    assert isinstance(excinfo.value, NotAllowedError)


def test_an_authenticator_without_user_verification():
    authenticator = SoftwareAuthenticator(ORIGIN, user_verification=False)
    options = registration_options()
    options.authenticator_selection.user_verification = UserVerificationRequirement.DISCOURAGED
    registered = verify_registration_response(
        credential=authenticator.create(json.loads(options_to_json(options))),
        expected_challenge=options.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    assert registered.user_verified is False
    options = authentication_options(allow=[registered.credential_id], uv=UserVerificationRequirement.PREFERRED)
    verified = verify_authentication_response(
        credential=authenticator.get(json.loads(options_to_json(options))),
        expected_challenge=options.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=0,
    )
    assert verified.user_verified is False
    with pytest.raises(LookupError):
        authenticator.get(json.loads(options_to_json(authentication_options(allow=[registered.credential_id]))))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("signature", "Could not verify authentication signature"),
        ("origin", "Unexpected client data origin"),
        ("challenge", "challenge was not expected challenge"),
        ("counter", "sign count of 1 was not greater than current count of 1"),
        ("rp", "Unexpected RP ID hash"),
        ("uv", "User verification is required"),
        ("up", "User was not present"),
    ],
)
def test_tampered_assertions_are_refused(tamper, message):
    authenticator = SoftwareAuthenticator(ORIGIN)
    registered = register(authenticator)
    _, verified = authenticate(authenticator, registered, registered.sign_count)  # the counter is now 1
    with pytest.raises(InvalidAuthenticationResponse, match=message):
        authenticate(authenticator, registered, verified.new_sign_count, tamper=tamper)
    # The authenticator is still good afterwards.
    stored = authenticator.credential(registered.credential_id).sign_count
    _, verified = authenticate(authenticator, registered, verified.new_sign_count)
    assert verified.new_sign_count == stored + 1


def test_a_counter_of_zero_is_not_checked_by_the_library():
    """Documented library behaviour: 0 then 0 means "the authenticator has no counter", so a clone is invisible."""
    authenticator = SoftwareAuthenticator(ORIGIN)
    registered = register(authenticator)
    _, verified = authenticate(authenticator, registered, 0, tamper="counter")
    assert verified.new_sign_count == 0


def test_a_replayed_assertion_is_refused_once_the_counter_moved():
    authenticator = SoftwareAuthenticator(ORIGIN)
    registered = register(authenticator)
    options = authentication_options(allow=[registered.credential_id])
    response = authenticator.get(json.loads(options_to_json(options)))
    expected = dict(
        expected_challenge=options.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=registered.credential_public_key,
    )
    verified = verify_authentication_response(credential=response, credential_current_sign_count=0, **expected)
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication_response(
            credential=response, credential_current_sign_count=verified.new_sign_count, **expected
        )


def test_another_credentials_public_key_does_not_verify():
    authenticator = SoftwareAuthenticator(ORIGIN)
    registered = register(authenticator)
    other = register(SoftwareAuthenticator(ORIGIN))
    options = authentication_options(allow=[registered.credential_id])
    with pytest.raises(InvalidAuthenticationResponse, match="signature"):
        verify_authentication_response(
            credential=authenticator.get(json.loads(options_to_json(options))),
            expected_challenge=options.challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=other.credential_public_key,
            credential_current_sign_count=0,
        )


def test_a_wrong_expected_challenge_or_origin_is_refused_at_authentication():
    authenticator = SoftwareAuthenticator(ORIGIN)
    registered = register(authenticator)
    options = authentication_options(allow=[registered.credential_id])
    response = authenticator.get(json.loads(options_to_json(options)))
    common = dict(
        credential=response,
        expected_rp_id=RP_ID,
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=0,
    )
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication_response(expected_challenge=b"not the challenge", expected_origin=ORIGIN, **common)
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication_response(
            expected_challenge=options.challenge, expected_origin="http://localhost:5001", **common
        )


def test_unknown_tamper_modes_are_rejected():
    authenticator = SoftwareAuthenticator(ORIGIN)
    with pytest.raises(ValueError, match="tamper"):
        authenticator.create(json.loads(options_to_json(registration_options())), tamper="signature")
    with pytest.raises(ValueError, match="tamper"):
        authenticator.get(json.loads(options_to_json(authentication_options())), tamper="nonsense")
