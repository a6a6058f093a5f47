"""Security review of Enterprise Sign-In by SAML (review-saml4): each test drives the real
server (SQLite and PostgreSQL) with real responses signed by the pysaml2 IdP of
tests/saml_idp.py, and shows a problem found, or pins a defence checked sound."""

from __future__ import annotations

import base64
import re

import pytest

from tests.saml_idp import TestIdP, decode
from tests.test_saml import _fresh_request, _post, attached_org


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


@pytest.fixture
def org(live, idp, tmp_path):
    return attached_org(live, idp, tmp_path, "rev4")


def _last_refusal(live) -> str:
    from idp.store import SecurityEvent, db

    with live.db():
        event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                 .order_by(SecurityEvent.id.desc()).first())
        return event.detail["reason"]


# UTF-16LE code units whose bytes spell `<Assertion N`: text made of them gives a byte-level
# scan of the document the one "<Assertion" it expects, wherever the real one is.
_ASSERTION_TAG_IN_UTF16 = bytes([0x3C, 0x41, 0x73, 0x73, 0x65, 0x72, 0x74, 0x69, 0x6F, 0x6E, 0x20, 0x4E]
                                ).decode("utf-16-le")
_ENCRYPTED_ASSERTION = (
    '<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">'
    '<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:CipherData>'
    "<xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>"
    "</saml:EncryptedAssertion>")


def _in_utf16_with_an_encrypted_assertion(b64: str) -> str:
    """The IdP's response (assertion signed, Response not) re-encoded in UTF-16, as XML allows,
    with an EncryptedAssertion after the signed assertion and a StatusMessage the byte scan
    reads as the one assertion tag. The signed assertion is untouched: c14n is in UTF-8."""
    xml = re.sub(r"^<\?xml[^>]*\?>\s*", "", decode(b64))
    end = re.search(r"</(?:[\w.-]+:)?Assertion>", xml).end()
    xml = xml[:end] + _ENCRYPTED_ASSERTION + xml[end:]
    prefix = re.search(r"<([\w.-]+:)?Status\b", xml).group(1) or ""
    code = re.search(r"<(?:[\w.-]+:)?StatusCode\b[^>]*/>|</(?:[\w.-]+:)?StatusCode>", xml)
    message = f"<{prefix}StatusMessage>{_ASSERTION_TAG_IN_UTF16}</{prefix}StatusMessage>"
    xml = xml[:code.end()] + message + xml[code.end():]
    data = b"\xff\xfe" + ('<?xml version="1.0" encoding="UTF-16"?>' + xml).encode("utf-16-le")
    assert b"EncryptedAssertion" not in data
    assert len(re.findall(rb"<(?:[A-Za-z0-9_-]+:)?Assertion[\s>]", data)) == 1
    return base64.b64encode(data).decode()


def test_an_encrypted_assertion_is_refused_whatever_the_documents_encoding(live, idp, org):
    """Low. Encrypted assertions are refused, but only by a scan of the raw bytes for
    "EncryptedAssertion": the same response in UTF-16 hides it, and the EncryptedAssertion,
    outside every signature, was left in the document handed to pysaml2 (which would put
    what it decrypts first, ahead of the signed assertion, the day it is given a key). The
    refusal belongs with the other structural rules of `saml_signatures`, on the parsed tree."""
    _, domain = org
    b, request = _fresh_request(live, idp, domain, "enc")
    good, acs = idp.response(request, email=f"enc@{domain}", sign_response=False)
    page = _post(b, acs, _in_utf16_with_an_encrypted_assertion(good), request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live) == "encrypted assertions are not supported"


def _re_signed(b64: str, idp: TestIdP, algorithm: str, key: bytes, transform: str | None = None) -> str:
    """The response with its assertion signed again by `algorithm` under `key` (the Response
    unsigned), and `transform` (an Algorithm URI) added to the reference's transforms."""
    from lxml import etree
    from signxml import XMLSigner

    from tests.federation.test_saml_signatures import DS, EXC_C14N, NS, _assertion, _doc, _with_assertion

    root = _doc(b64)
    for signature in root.findall("ds:Signature", NS):
        root.remove(signature)
    assertion = _assertion(root)
    for signature in assertion.findall("ds:Signature", NS):
        assertion.remove(signature)
    assertion.find("saml:Issuer", NS).addnext(etree.Element(f"{{{DS}}}Signature", Id="placeholder"))
    signer = XMLSigner(c14n_algorithm=EXC_C14N, signature_algorithm=algorithm, digest_algorithm="sha256")
    signed = signer.sign(assertion, key=key, cert=None if algorithm.startswith("hmac") else idp.cert_pem.decode(),
                         reference_uri="#" + assertion.get("ID"))
    if transform is not None:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        transforms = signed.find("ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms", NS)
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=transform)
        signed_info = signed.find("ds:Signature/ds:SignedInfo", NS)
        value = serialization.load_pem_private_key(idp.key_pem, None).sign(
            etree.tostring(signed_info, method="c14n", exclusive=True), padding.PKCS1v15(), hashes.SHA256())
        signed.find("ds:Signature/ds:SignatureValue", NS).text = base64.b64encode(value).decode()
    return _with_assertion(root, signed)


@pytest.mark.parametrize("attack", ["hmac-certificate", "hmac-public-key", "xpath-transform", "xslt-transform"])
def test_a_signature_keyed_by_the_certificate_or_transformed_is_refused(live, idp, org, attack):
    """(Checked sound.) HMAC keyed with what an attacker knows of the IdP (its certificate,
    its public key), and a reference run through an XPath or XSLT transform (signed again by
    the IdP's own key, so only the transform is wrong): each refused before it is used."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _, domain = org
    b, request = _fresh_request(live, idp, domain, "sig")
    good, acs = idp.response(request, email=f"sig@{domain}", sign_response=False)
    certificate = x509.load_pem_x509_certificate(idp.cert_pem)
    forged = {
        "hmac-certificate": lambda: _re_signed(good, idp, "hmac-sha256", certificate.public_bytes(
            serialization.Encoding.DER)),
        "hmac-public-key": lambda: _re_signed(good, idp, "hmac-sha256", certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "xpath-transform": lambda: _re_signed(good, idp, "rsa-sha256", idp.key_pem,
                                              "http://www.w3.org/TR/1999/REC-xpath-19991116"),
        "xslt-transform": lambda: _re_signed(good, idp, "rsa-sha256", idp.key_pem,
                                             "http://www.w3.org/TR/1999/REC-xslt-19991116"),
    }[attack]()
    page = _post(b, acs, forged, request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    reason = _last_refusal(live)
    assert ("forbidden by configuration" in reason if attack.startswith("hmac")
            else reason == "signature uses a canonicalization or transform SAML does not allow"), reason


def test_a_response_for_one_org_is_refused_at_another_org_of_the_same_idp(live, idp, tmp_path):
    """(Checked sound.) Two orgs signed in by one IdP (one certificate: a response for either
    verifies under both). The IdP vouches at org A for someone at org B's domain; org A refuses
    (not its domain), and the same response taken to org B, its unsigned Response InResponseTo
    pointed at the attacker's own request there, is refused too: its signed Audience, Recipient
    and InResponseTo name org A's service and request."""
    from idp.store import User, db

    _, domain_a = attached_org(live, idp, tmp_path, "orga")
    _, domain_b = attached_org(live, idp, tmp_path, "orgb")
    victim = f"boss@{domain_b}"
    b_a, request_a = _fresh_request(live, idp, domain_a, "x")
    response, acs_a = idp.response(request_a, email=victim, sign_response=False)
    assert _post(b_a, acs_a, response, request_a["relay_state"]).status_code == 400
    assert _last_refusal(live) == "email outside the org's domains"
    b_b, request_b = _fresh_request(live, idp, domain_b, "y")
    retargeted = base64.b64encode(decode(response).replace(request_a["id"], request_b["id"], 1).encode()).decode()
    page = _post(b_b, request_b["acs_url"], retargeted, request_b["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live).startswith("pysaml2 refused the response"), _last_refusal(live)  # signature fine
    with live.db():
        assert db.session.query(User).filter_by(email=victim).count() == 0
