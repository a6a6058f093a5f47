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
