"""SAML response signatures checked in-process (federation/saml_signatures.py, signxml), through
`ServiceProvider.validate` against the tests' real pysaml2 IdP (its own key, responses signed
by xmlsec1). The acceptance matrix is the one the xmlsec1 path had: assertion signed (Response
signature optional, checked when present), nothing from KeyInfo, SAML core 5.4 signature shape,
one assertion; and no subprocess per response."""

from __future__ import annotations

import base64
import copy
import datetime
import os
import re
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from signxml import XMLSigner

from federation.saml import SamlError, ServiceProvider
from keys.saml import new_sp_credential
from tests.saml_idp import TestIdP, unsigned, with_comment_in_name_id

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ACS = "https://sp.example.test/saml/org/acs"
# The pre-check in validate counts assertions with this pattern; a dotted prefix slips past it,
# so the documents below that use one reach the signature checks themselves.
ASSERTION_TAG = re.compile(rb"<(?:[A-Za-z0-9_-]+:)?Assertion[\s>]")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("saml-sig")
    key_pem, cert_pem = new_sp_credential("sig-tests")
    (root / "sp.key").write_bytes(key_pem)
    (root / "sp.crt").write_text(cert_pem)
    idp = TestIdP(root / "idp")
    other = TestIdP(root / "other", entity_id="https://other-idp.example.test/saml")
    sp = ServiceProvider(entity_id="https://sp.example.test/saml/org/metadata", acs_url=ACS,
                         key_file=root / "sp.key", cert_file=root / "sp.crt", idp_metadata=idp.metadata_xml())
    metadata = sp.metadata_xml()
    idp.trust_sp(metadata)
    other.trust_sp(metadata)
    return sp, idp, other


def _issue(world, email="alice@corp.example", **kwargs) -> tuple[str, str]:
    """(request id, base64 response) for a fresh AuthnRequest of our SP."""
    sp, idp, _ = world
    request_id, location = sp.authn_request(relay_state="r")
    response, _ = idp.response(idp.parse_authn_request(location), email=email, **kwargs)
    return request_id, response


def _refused(world, request_id, response, reason: str | None = None) -> str:
    sp = world[0]
    with pytest.raises(SamlError) as refused:
        sp.validate(response, request_id)
    if reason is not None:
        assert reason in refused.value.reason, refused.value.reason
    return refused.value.reason


def _doc(b64: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(b64))


def _b64(root: etree._Element) -> str:
    return base64.b64encode(etree.tostring(root)).decode()


def _assertion(root: etree._Element) -> etree._Element:
    return root.find("saml:Assertion", NS)


def _evil_copy(signed: etree._Element, evil_email: str, *, prefix: str | None = None,
               same_id: bool = False) -> etree._Element:
    """An unsigned copy of the assertion naming `evil_email`, optionally under another prefix."""
    evil = copy.deepcopy(signed)
    for signature in evil.findall("ds:Signature", NS):
        evil.remove(signature)
    for node in evil.iterfind(".//saml:NameID", NS):
        node.text = evil_email
    for node in evil.iterfind(".//saml:AttributeValue", NS):
        if node.text and "@" in node.text:
            node.text = evil_email
    if not same_id:
        evil.set("ID", "_evil" + os.urandom(8).hex())
    if prefix is None:
        return evil
    renamed = etree.Element(f"{{{SAML}}}Assertion", nsmap={prefix: SAML})
    for name, value in evil.attrib.items():
        renamed.set(name, value)
    renamed.extend(list(evil))
    return renamed


def _with_assertion(root: etree._Element, assertion: etree._Element) -> str:
    """The response (base64) with its assertion replaced by `assertion`, byte for byte: moving
    an element between lxml trees may rename its prefixes, which a signature notices."""
    root.replace(_assertion(root), etree.Element("slot"))
    head, tail = etree.tostring(root).split(b"<slot/>")
    return base64.b64encode(head + etree.tostring(assertion) + tail).decode()


def _sign(element: etree._Element, idp: TestIdP) -> etree._Element:
    """`element` signed the way an IdP signs (enveloped, after its Issuer, exclusive c14n, RSA-SHA256)."""
    element = copy.deepcopy(element)
    for signature in element.findall("ds:Signature", NS):
        element.remove(signature)
    element.find("saml:Issuer", NS).addnext(etree.Element(f"{{{DS}}}Signature", Id="placeholder"))
    signer = XMLSigner(c14n_algorithm=EXC_C14N, signature_algorithm="rsa-sha256", digest_algorithm="sha256")
    return signer.sign(element, key=idp.key_pem, cert=idp.cert_pem.decode(), reference_uri="#" + element.get("ID"))


# --------------------------------------------------------------------------- what is accepted


@pytest.mark.parametrize("sign_response, sign_assertion, accepted", [
    (True, True, True), (False, True, True), (True, False, False), (False, False, False)])
def test_the_assertion_must_be_signed_and_a_response_signature_is_optional(world, sign_response, sign_assertion,
                                                                           accepted):
    request_id, response = _issue(world, sign_response=sign_response, sign_assertion=sign_assertion)
    if accepted:
        identity, assertion_id, _ = world[0].validate(response, request_id)
        assert identity.email == "alice@corp.example" and assertion_id
    else:
        _refused(world, request_id, response, "assertion is not signed")


@pytest.mark.parametrize("sign_alg, digest_alg", [
    (SIG_RSA_SHA256, DIGEST_SHA256), (SIG_RSA_SHA1, DIGEST_SHA1), (SIG_RSA_SHA256, DIGEST_SHA1),
    (SIG_RSA_SHA1, DIGEST_SHA256)])
def test_sha1_is_accepted_as_the_xmlsec1_path_accepted_it(world, sign_alg, digest_alg):
    """Unchanged policy, pinned: refusing SHA-1 would turn away IdPs that sign in SHA-1 today
    (federation/saml_signatures.py SIGNATURE_METHODS is where to change it on purpose)."""
    request_id, response = _issue(world, sign_alg=sign_alg, digest_alg=digest_alg)
    assert world[0].validate(response, request_id)[0].email == "alice@corp.example"


def test_a_comment_inside_the_name_id_does_not_shorten_the_address(world):
    # the attacker's own, legitimately signed account is dave@corp.example.evil.example
    request_id, response = _issue(world, email="dave@corp.example.evil.example")
    commented = with_comment_in_name_id(response, inject="evil.example")
    assert b"dave@corp.example<!---->.evil.example" in base64.b64decode(commented)
    identity, _, _ = world[0].validate(commented, request_id)
    assert identity.email == "dave@corp.example.evil.example"


def test_an_expired_certificate_in_the_metadata_still_verifies(tmp_path):
    """The org's metadata is the trust anchor, not a CA: xmlsec1 took the key from the
    certificate whatever its dates, and so does the in-process check (signxml alone would refuse)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired-idp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now - datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    idp = TestIdP(tmp_path / "idp", entity_id="https://expired-idp.example.test/saml")
    idp.key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    idp.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    idp.key_file.write_bytes(idp.key_pem)
    idp.cert_file.write_bytes(idp.cert_pem)
    sp_key, sp_cert = new_sp_credential("expired-tests")
    (tmp_path / "sp.key").write_bytes(sp_key)
    (tmp_path / "sp.crt").write_text(sp_cert)
    sp = ServiceProvider(entity_id="https://sp.example.test/saml/org/metadata", acs_url=ACS,
                         key_file=tmp_path / "sp.key", cert_file=tmp_path / "sp.crt", idp_metadata=idp.metadata_xml())
    idp.trust_sp(sp.metadata_xml())
    request_id, location = sp.authn_request(relay_state="r")
    response, _ = idp.response(idp.parse_authn_request(location), email="alice@corp.example")
    assert sp.validate(response, request_id)[0].email == "alice@corp.example"


# --------------------------------------------------------------------------- signatures


def test_unsigned_modified_and_foreign_key_responses_are_refused(world):
    _, idp, other = world
    request_id, response = _issue(world)
    _refused(world, request_id, unsigned(response), "assertion is not signed")
    request_id, response = _issue(world)
    tampered = TestIdP.replace_text(response, "alice@corp.example", "ceo@corp.example")
    _refused(world, request_id, tampered, "signature does not verify")
    # signed by another key that brings its own certificate in KeyInfo: KeyInfo is not trusted
    request_id, response = _issue(world, signer=other)
    assert other.cert_der_b64 in base64.b64decode(response).decode()
    _refused(world, request_id, response, "signature does not verify")


def test_a_signature_must_cover_the_element_that_carries_it(world):
    """The IdP's valid Response signature moved into the Assertion: its digest still matches
    (the enveloped transform drops it wherever it sits), but it covers the Response, not the
    assertion that carries it."""
    _, idp, _ = world
    request_id, response = _issue(world, sign_response=False, sign_assertion=False)
    root = _sign(_doc(response), idp)
    signature = root.find("ds:Signature", NS)
    root.remove(signature)
    _assertion(root).find("saml:Issuer", NS).addnext(signature)
    _refused(world, request_id, _b64(root), "signature does not cover the element that carries it")


def test_an_assertion_signed_with_the_org_key_but_issued_by_another_entity_is_refused(world):
    _, idp, _ = world
    request_id, response = _issue(world, sign_response=False)
    root = _doc(response)
    assertion = _assertion(root)
    assertion.find("saml:Issuer", NS).text = "https://other-idp.example.test/saml"
    _refused(world, request_id, _with_assertion(root, _sign(assertion, idp)), "issued by another entity")


# --------------------------------------------------------------------------- signature wrapping


def _wrapped(response: str, layout: str, prefix: str | None, same_id: bool) -> str:
    """XSW: the IdP's signed assertion kept byte for byte (its signature still verifies by ID)
    and an unsigned copy naming ceo@ put where a careless reader looks. Both are spliced in as
    bytes, so that lxml keeps every prefix as written."""
    root = _doc(response)
    for signature in root.findall("ds:Signature", NS):  # cannot survive the rearrangement
        root.remove(signature)
    signed = _assertion(root)
    signed_bytes = etree.tostring(signed)
    evil = _evil_copy(signed, "ceo@corp.example", prefix=prefix, same_id=same_id)
    slot = etree.Element("signed-slot")
    if layout == "signed-in-advice":
        advice = etree.Element(f"{{{SAML}}}Advice")
        advice.append(slot)
        evil.find("saml:Conditions", NS).addnext(advice)
        root.replace(signed, etree.Element("evil-slot"))
    else:
        root.replace(signed, etree.Element("evil-slot"))
        evil_slot = root.find("evil-slot")
        if layout == "evil-before":
            evil_slot.addnext(slot)
        elif layout == "evil-after":
            evil_slot.addprevious(slot)
        elif layout == "signed-in-extensions":
            extensions = etree.Element(f"{{{SAMLP}}}Extensions")
            extensions.append(slot)
            root.find("saml:Issuer", NS).addnext(extensions)
        elif layout == "signed-in-object":  # inside a ds:Object of a Response signature
            signature = etree.Element(f"{{{DS}}}Signature")
            etree.SubElement(signature, f"{{{DS}}}Object").append(slot)
            root.find("saml:Issuer", NS).addnext(signature)
        else:
            raise ValueError(layout)
    xml = etree.tostring(root).replace(b"<evil-slot/>", etree.tostring(evil))
    return base64.b64encode(xml.replace(b"<signed-slot/>", signed_bytes)).decode()


@pytest.mark.parametrize("prefix", [None, "x.y"])
@pytest.mark.parametrize("same_id", [False, True])
@pytest.mark.parametrize("layout", ["evil-before", "evil-after", "signed-in-extensions", "signed-in-object",
                                    "signed-in-advice"])
def test_signature_wrapping_is_refused(world, layout, same_id, prefix):
    request_id, response = _issue(world)
    wrapped = _wrapped(response, layout, prefix, same_id)
    assert b"ceo@corp.example" in base64.b64decode(wrapped)
    if prefix is not None:  # the textual pre-check sees one assertion: the signature checks must refuse
        assert len(ASSERTION_TAG.findall(base64.b64decode(wrapped))) == 1
    _refused(world, request_id, wrapped)


# --------------------------------------------------------------------------- cost


def test_validation_spawns_no_process(world, monkeypatch):
    """No xmlsec1 (nor anything else) per response: every way Python starts a process is counted."""
    sp, _, _ = world
    request_id, response = _issue(world)
    foreign = _issue(world, signer=world[2])  # the test IdP signs with xmlsec1: before counting
    sp.validate(*_issue(world)[::-1])  # the SP's one-time set-up (client, certificates, schema) is done
    started = []
    original = subprocess.Popen._execute_child

    def counting(self, args, *rest, **kwargs):
        started.append(args)
        return original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", counting)
    for name in ("fork", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            real = getattr(os, name)
            monkeypatch.setattr(os, name,
                                lambda *a, _real=real, _name=name, **k: started.append(_name) or _real(*a, **k))
    assert sp.validate(response, request_id)[0].email == "alice@corp.example"
    _refused(world, *foreign, "signature does not verify")
    assert started == []


# --------------------------------------------------------------------------- signature shapes
# Every signature shape an IdP sends verifies, hands back the signed assertion, and is refused
# once tampered with.


def _signed_variant(world, variant: str) -> tuple[str, str]:
    """(request id, base64 response) whose assertion (only) is signed in the shape `variant` names."""
    _, idp, _ = world
    request_id, response = _issue(world, sign_response=False, sign_assertion=False)
    root = _doc(response)
    assertion = copy.deepcopy(_assertion(root))
    placeholder = etree.Element(f"{{{DS}}}Signature", Id="placeholder")
    assertion.find("saml:Issuer", NS).addnext(placeholder)
    c14n, sign_alg, digest_alg, prefixes = EXC_C14N, "rsa-sha256", "sha256", None
    if variant == "prefix-list":  # InclusiveNamespaces PrefixList on both c14n steps
        prefixes = ["xsi", "xs"]
    elif variant == "with-comments":
        c14n = EXC_C14N + "WithComments"
    elif variant == "sha512":
        sign_alg, digest_alg = "rsa-sha512", "sha512"
    elif variant == "pretty-printed":  # text after the Signature: the enveloped transform keeps it
        etree.indent(assertion)
        placeholder.tail = "\n  "
    signer = XMLSigner(c14n_algorithm=c14n, signature_algorithm=sign_alg, digest_algorithm=digest_alg)
    signed = signer.sign(assertion, key=idp.key_pem, cert=idp.cert_pem.decode(),
                         reference_uri="#" + assertion.get("ID"), inclusive_ns_prefixes=prefixes)
    if prefixes:
        # signxml's signer digests with the prefixes but names them on CanonicalizationMethod
        # only: name them on the reference's c14n Transform too, and sign SignedInfo again.
        transform = signed.find(f"ds:Signature/ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform"
                                f"[@Algorithm='{EXC_C14N}']", NS)
        etree.SubElement(transform, f"{{{EXC_C14N}}}InclusiveNamespaces", PrefixList=" ".join(prefixes))
        signed_info = signed.find("ds:Signature/ds:SignedInfo", NS)
        key = serialization.load_pem_private_key(idp.key_pem, None)
        value = key.sign(etree.tostring(signed_info, method="c14n", exclusive=True, inclusive_ns_prefixes=prefixes),
                         padding.PKCS1v15(), hashes.SHA256())
        signed.find("ds:Signature/ds:SignatureValue", NS).text = base64.b64encode(value).decode()
    return request_id, _with_assertion(root, signed)


def _verified(world, response: str):
    """The signed assertion's bytes as the verifier returns them, or "refused"."""
    from federation.saml_signatures import UnverifiedResponse, _verify

    sp = world[0]
    root = _doc(response)
    try:
        return etree.tostring(_verify(root, f"./{{{SAML}}}Assertion/", _assertion(root), sp.idp_certificates))
    except UnverifiedResponse:
        return "refused"


@pytest.mark.parametrize("variant", ["plain", "prefix-list", "with-comments", "sha512", "pretty-printed"])
def test_every_signature_shape_verifies(world, variant):
    request_id, response = _signed_variant(world, variant)
    signed = _verified(world, response)
    assert signed != "refused" and b"alice@corp.example" in signed
    assert world[0].validate(response, request_id)[0].email == "alice@corp.example"
    # the same shape, tampered after signing: both refuse, and so does the SP
    tampered = TestIdP.replace_text(response, "alice@corp.example", "ceo@corp.example")
    assert _verified(world, tampered) == "refused"
    _refused(world, request_id, tampered, "signature does not verify")


def test_a_second_element_with_the_signed_id_is_refused(world):
    """A reference must name one element: another element with the signed assertion's ID (here
    in the Response's Extensions, where the schema lets anything in) makes it ambiguous."""
    request_id, response = _issue(world, sign_response=False)
    root = _doc(response)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    etree.SubElement(extensions, "{urn:example:other}Decoy", ID=_assertion(root).get("ID"))
    root.find("saml:Issuer", NS).addnext(extensions)
    ambiguous = _with_assertion(root, _assertion(_doc(response)))
    assert _verified(world, ambiguous) == "refused"
    _refused(world, request_id, ambiguous, "Ambiguous reference")


# --------------------------------------------------------------------------- SAML core beyond the schema


def _with_changed_assertion(world, change) -> tuple[str, str]:
    """(request id, response) whose assertion `change(assertion)` altered, then signed again by the IdP."""
    _, idp, _ = world
    request_id, response = _issue(world, sign_response=False)
    root = _doc(response)
    assertion = copy.deepcopy(_assertion(root))
    change(assertion)
    return request_id, _with_assertion(root, _sign(assertion, idp))


def _add_value(assertion, value: etree._Element) -> None:
    assertion.find(".//saml:Attribute", NS).append(value)


def _empty_value(nil: bool):
    value = etree.Element(f"{{{SAML}}}AttributeValue")
    if nil:
        value.set("{http://www.w3.org/2001/XMLSchema-instance}nil", "true")
    return lambda assertion: _add_value(assertion, value)


def _conditions_twice(name: str, times: int):
    def change(assertion):
        conditions = assertion.find("saml:Conditions", NS)
        for _ in range(times):
            element = etree.SubElement(conditions, f"{{{SAML}}}{name}")
            if name == "ProxyRestriction":
                element.set("Count", "1")
    return change


def _locality(**attributes):
    def change(assertion):
        statement = assertion.find("saml:AuthnStatement", NS)
        statement.insert(0, etree.Element(f"{{{SAML}}}SubjectLocality", **attributes))
    return change


def _encrypted_attribute(assertion):
    encrypted = etree.Element(f"{{{SAML}}}EncryptedAttribute")
    etree.SubElement(encrypted, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData").append(
        etree.Element("{http://www.w3.org/2001/04/xmlenc#}CipherData"))
    encrypted[0][0].append(etree.Element("{http://www.w3.org/2001/04/xmlenc#}CipherValue"))
    encrypted[0][0][0].text = "AAAA"
    assertion.find("saml:AttributeStatement", NS).append(encrypted)


@pytest.mark.parametrize("change, reason", [
    (_empty_value(nil=False), "empty AttributeValue"),
    (_conditions_twice("OneTimeUse", 2), "OneTimeUse more than once"),
    (_conditions_twice("ProxyRestriction", 2), "ProxyRestriction more than once"),
    (_locality(Address="not-an-address"), "SubjectLocality Address"),
    # pysaml2's domain-name pattern matches no real name, so a DNSName was always refused; it still is.
    (_locality(DNSName="host.corp.example"), "SubjectLocality DNSName"),
    (_encrypted_attribute, "encrypted"),
], ids=["empty-value", "one-time-use-twice", "proxy-restriction-twice", "bad-address", "bad-dns-name",
        "encrypted-attribute"])
def test_the_saml_core_rules_the_schema_cannot_say_are_held(world, change, reason):
    request_id, response = _with_changed_assertion(world, change)
    _refused(world, request_id, response, reason)


@pytest.mark.parametrize("change", [
    _empty_value(nil=True), _conditions_twice("OneTimeUse", 1), _conditions_twice("ProxyRestriction", 1),
    _locality(Address="192.0.2.7"), _locality(Address="2001:db8::7"),
    _locality(Address="192.0.2.7", DNSName="host.corp.example"),
], ids=["nil-value", "one-time-use", "proxy-restriction", "ipv4", "ipv6", "address-and-dns-name"])
def test_what_those_rules_allow_is_accepted(world, change):
    request_id, response = _with_changed_assertion(world, change)
    identity, _, _ = world[0].validate(response, request_id)
    assert identity.email == "alice@corp.example"


def test_an_assertion_with_an_authn_statement_and_no_subject_is_refused(world):
    request_id, response = _with_changed_assertion(
        world, lambda assertion: assertion.remove(assertion.find("saml:Subject", NS)))
    _refused(world, request_id, response, "names no Subject")
