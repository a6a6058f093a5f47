"""XML signatures of a SAML Response, checked in this process (signxml on lxml) before pysaml2 reads it.

pysaml2's own check runs the xmlsec1 program for every signature (tens of ms of CPU each);
signxml costs well under a millisecond. `verified_response` returns a new document built only
from what the signatures cover: the assertion as signxml returns it (re-parsed from its
canonical form, so an unsigned element or a comment cannot ride along), inside the Response
envelope (itself the signed copy when the Response is signed). pysaml2 then gets that
document, with no signature left in it, for every other check (InResponseTo, Destination,
audience, time conditions, SubjectConfirmation).

The rules are the ones the xmlsec1 path applied, no more, no less: the assertion must be signed,
a Response signature is optional but must verify when present, each signature is enveloped
in the element it covers (one Reference, URI = that element's ID, exclusive c14n, no
ds:Object) and verifies against a certificate from the org's metadata (nothing in KeyInfo is
used), and the document is valid against the SAML 2.0 schemas pysaml2 ships. Beyond them, the
signed assertion is held to what the Web Browser SSO Profile requires of it and pysaml2 does
not (`_check_web_sso_profile`).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

from cryptography import x509
from lxml import etree
from saml2.validate import valid_domain_name, valid_ipv4, valid_ipv6
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import SignXMLException

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
RESPONSE, ASSERTION, ISSUER = f"{{{SAMLP}}}Response", f"{{{SAML}}}Assertion", f"{{{SAML}}}Issuer"
ENCRYPTED_ASSERTION = f"{{{SAML}}}EncryptedAssertion"
SIGNATURE = f"{{{DS}}}Signature"
SUBJECT, CONDITIONS = f"{{{SAML}}}Subject", f"{{{SAML}}}Conditions"
AUTHN_STATEMENT = f"{{{SAML}}}AuthnStatement"
STATEMENTS = (AUTHN_STATEMENT, f"{{{SAML}}}AttributeStatement", f"{{{SAML}}}AuthzDecisionStatement",
              f"{{{SAML}}}Statement")
ONE_TIME_USE, PROXY_RESTRICTION = f"{{{SAML}}}OneTimeUse", f"{{{SAML}}}ProxyRestriction"
ATTRIBUTE_VALUE, SUBJECT_LOCALITY = f"{{{SAML}}}AttributeValue", f"{{{SAML}}}SubjectLocality"
ENCRYPTED_ID, ENCRYPTED_ATTRIBUTE = f"{{{SAML}}}EncryptedID", f"{{{SAML}}}EncryptedAttribute"
AUDIENCE_RESTRICTION = f"{{{SAML}}}AudienceRestriction"
SUBJECT_CONFIRMATION = f"{{{SAML}}}SubjectConfirmation"
SUBJECT_CONFIRMATION_DATA = f"{{{SAML}}}SubjectConfirmationData"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N = {"http://www.w3.org/2001/10/xml-exc-c14n#", "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"}

# What xmlsec1 accepted with a certificate as the key: every public-key method, SHA-1 included
# (refusing it would turn away IdPs that sign today; that is a policy change to make on purpose,
# in this one place). HMAC never: its key would have to come from the document.
SIGNATURE_METHODS = frozenset(m for m in SignatureMethod if not m.name.startswith("HMAC"))
DIGEST_ALGORITHMS = frozenset(DigestAlgorithm)
_BASE_CONFIG = SignatureConfiguration(
    require_x509=True, expect_references=1, signature_methods=SIGNATURE_METHODS,
    digest_algorithms=DIGEST_ALGORITHMS,
    # KeyInfo is never trusted: the key is the metadata's certificate, whatever KeyInfo says.
    ignore_ambiguous_key_info=True)


class UnverifiedResponse(Exception):
    """The response's signatures do not make it trustworthy; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def verified_response(xml: bytes, idp_entity_id: str, certificates: list[x509.Certificate]) -> bytes:
    """The Response rebuilt from its verified parts only, with no signature left in it.

    Raises UnverifiedResponse when the assertion is unsigned, a signature does not verify
    against one of `certificates`, a signature covers anything but its enclosing element,
    or the document is not the one-assertion Response we accept.
    """
    root = _parse(xml)
    if root.tag != RESPONSE:
        raise UnverifiedResponse("not a SAML Response")
    invalid = _schema_error(root)
    if invalid:
        raise UnverifiedResponse(f"response is not valid SAML 2.0: {invalid}")
    # Counted by qualified name over the whole tree, whatever the prefix: an assertion in
    # Extensions, Advice or a ds:Object is one too many.
    assertions = list(root.iter(ASSERTION))
    if len(assertions) != 1 or assertions[0].getparent() is not root:
        raise UnverifiedResponse("response must carry exactly one assertion, as its child")
    # Never decrypted, and outside every signature: left in, it would reach pysaml2, which
    # puts what it decrypts ahead of the signed assertion. Refused here, on the parsed tree:
    # a scan of the bytes misses it in another encoding (UTF-16).
    if next(root.iter(ENCRYPTED_ASSERTION), None) is not None:
        raise UnverifiedResponse("encrypted assertions are not supported")

    envelope = root
    if _enveloped_signature(root) is not None:
        envelope = _verify(root, "./", root, certificates)
    assertion = envelope.find(ASSERTION)
    if assertion is None or _enveloped_signature(assertion) is None:
        raise UnverifiedResponse("assertion is not signed")
    signed_assertion = _verify(envelope, f"./{{{SAML}}}Assertion/", assertion, certificates)
    _check_core_rules(signed_assertion)
    _check_web_sso_profile(signed_assertion)

    _check_issuer(signed_assertion, idp_entity_id, required=True)
    _check_issuer(envelope, idp_entity_id, required=envelope is not root)
    # The signed form may carry comments (…#WithComments); text joined across them is what was signed.
    etree.strip_tags(signed_assertion, etree.Comment)
    etree.strip_tags(envelope, etree.Comment)
    for signature in envelope.findall(SIGNATURE):
        envelope.remove(signature)
    # Spliced in as bytes: moving the element into the envelope's tree would let lxml rename
    # its namespace prefixes, and a prefix named inside a value (xsi:type="xs:string") would
    # then point nowhere.
    slot = f"verified-assertion-{secrets.token_hex(8)}"
    envelope.replace(envelope.find(ASSERTION), etree.Element(slot))
    head, tail = etree.tostring(envelope).split(f"<{slot}/>".encode())
    return head + etree.tostring(signed_assertion) + tail


def _parse(xml: bytes) -> etree._Element:
    # A parser per call: lxml parsers are not to be shared between threads.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError:
        raise UnverifiedResponse("response is not well-formed XML") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise UnverifiedResponse("response carries a DTD")
    return root


def _enveloped_signature(element: etree._Element) -> etree._Element | None:
    """The element's own ds:Signature child, held to SAML core 5.4 (as pysaml2 does)."""
    signatures = element.findall(SIGNATURE)
    if not signatures:
        return None
    if len(signatures) > 1:
        raise UnverifiedResponse(f"{etree.QName(element).localname} carries {len(signatures)} signatures")
    signature = signatures[0]
    references = signature.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    element_id = element.get("ID")
    if len(references) != 1 or not element_id or references[0].get("URI") != f"#{element_id}":
        raise UnverifiedResponse("signature does not cover the element that carries it")
    c14n = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod")
    transforms = [t.get("Algorithm") for t in references[0].iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform")]
    if (c14n is None or c14n.get("Algorithm") not in EXC_C14N or not 1 <= len(transforms) <= 2
            or ENVELOPED not in transforms or not set(transforms) <= EXC_C14N | {ENVELOPED}):
        raise UnverifiedResponse("signature uses a canonicalization or transform SAML does not allow")
    if signature.find(f"{{{DS}}}Object") is not None:
        raise UnverifiedResponse("signature carries a ds:Object")
    # The schema lets it be empty (xs:base64Binary), and signxml then fails with a TypeError.
    if not (signature.findtext(f"{{{DS}}}SignatureValue") or "").strip():
        raise UnverifiedResponse("signature has no SignatureValue")
    return signature


def _verify(document: etree._Element, location: str, element: etree._Element,
            certificates: list[x509.Certificate]) -> etree._Element:
    """The signed copy of `element`, whose signature is at `location` in `document`."""
    if not certificates:
        raise UnverifiedResponse("the org's metadata has no signing certificate")
    failures = []
    for certificate in certificates:
        config = replace(_BASE_CONFIG, location=location, verification_time=_within_validity(certificate))
        try:
            # The ds:Signature was validated with the whole document against the SAML schema.
            result = XMLVerifier().verify(document, x509_cert=certificate, expect_config=config, validate_schema=False)
        except (SignXMLException, ValueError) as err:  # signxml's InvalidInput is a ValueError too
            failures.append(f"{type(err).__name__}: {err}")
            continue
        signed = result.signed_xml
        # The reference was checked against the ID above; the returned node must be that element.
        if signed is None or signed.tag != element.tag or signed.get("ID") != element.get("ID"):
            raise UnverifiedResponse("signature does not cover the element that carries it")
        return signed
    raise UnverifiedResponse(f"signature does not verify: {'; '.join(failures)[:300]}")


def _within_validity(certificate: x509.Certificate) -> datetime:
    # The org's metadata is the trust anchor, not a CA: xmlsec1 used the certificate's key
    # whatever its dates (many IdPs sign with long-expired self-signed certificates), and so
    # do we. Replacing the certificate is done by updating the metadata.
    return min(max(datetime.now(UTC), certificate.not_valid_before_utc), certificate.not_valid_after_utc)


def _check_issuer(element: etree._Element, idp_entity_id: str, *, required: bool) -> None:
    issuer = element.find(ISSUER)
    if issuer is None:
        if required:
            raise UnverifiedResponse(f"{etree.QName(element).localname} names no Issuer")
        return
    if (issuer.text or "").strip() != idp_entity_id:
        raise UnverifiedResponse(f"{etree.QName(element).localname} is issued by another entity than the org's IdP")


def _check_core_rules(assertion: etree._Element) -> None:
    """The SAML core rules the schema cannot say, as pysaml2's own validation of its objects
    held them (`saml2.saml` *.verify). pysaml2 no longer validates its objects after us: the
    schema check covers the rest of what it did, at a fraction of the cost."""
    if assertion.find(SUBJECT) is None and (
            assertion.find(AUTHN_STATEMENT) is not None
            or not any(assertion.iterchildren(*STATEMENTS))):
        raise UnverifiedResponse("assertion names no Subject")
    for conditions in assertion.iterchildren(CONDITIONS):
        for once in (ONE_TIME_USE, PROXY_RESTRICTION):
            if len(conditions.findall(once)) > 1:
                raise UnverifiedResponse(f"Conditions carries {etree.QName(once).localname} more than once")
    for value in assertion.iter(ATTRIBUTE_VALUE):
        if not value.text and len(value) == 0 and value.get(XSI_NIL) != "true":
            raise UnverifiedResponse("an empty AttributeValue is not marked xsi:nil")
    for locality in assertion.iter(SUBJECT_LOCALITY):
        address, dns_name = locality.get("Address"), locality.get("DNSName")
        if address and not (valid_ipv4(address) or valid_ipv6(address)):
            raise UnverifiedResponse("SubjectLocality Address is not an IP address")
        if not address and dns_name:
            try:
                valid_domain_name(dns_name)
            except ValueError:
                raise UnverifiedResponse("SubjectLocality DNSName is not a domain name") from None
    # Never decrypted (no key is offered for it): refused whole rather than read without the
    # encrypted parts.
    if next(assertion.iter(ENCRYPTED_ID, ENCRYPTED_ATTRIBUTE), None) is not None:
        raise UnverifiedResponse("encrypted identifiers and attributes are not supported")


def _check_web_sso_profile(assertion: etree._Element) -> None:
    """What the Web Browser SSO Profile (saml-profiles-2.0-os §4.1.4.2-3) asks of the assertion
    and pysaml2 lets pass: it takes an assertion with no AudienceRestriction as meant for
    everyone, confirms a subject by sender-vouches unchecked (and holder-of-key without proof
    of possession), and reads a bearer's missing NotOnOrAfter as "valid for ever". The values
    (our Audience, our ACS as Recipient, the times) are pysaml2's to check, and `_check_recipient`'s."""
    if assertion.find(f"{CONDITIONS}/{AUDIENCE_RESTRICTION}") is None:
        raise UnverifiedResponse("assertion has no AudienceRestriction")
    subject = assertion.find(SUBJECT)
    confirmations = subject.findall(SUBJECT_CONFIRMATION) if subject is not None else []
    if not confirmations:
        raise UnverifiedResponse("assertion has no bearer SubjectConfirmation")
    for confirmation in confirmations:
        # A bearer assertion is all a browser can bring: one confirmed by another method is
        # refused whole rather than confirmed by the bearer beside it or by nothing.
        if confirmation.get("Method") != BEARER:
            raise UnverifiedResponse("SubjectConfirmation method is not bearer")
        data = confirmation.find(SUBJECT_CONFIRMATION_DATA)
        for needed in ("Recipient", "NotOnOrAfter"):
            if data is None or not data.get(needed):
                raise UnverifiedResponse(f"bearer SubjectConfirmationData has no {needed}")


_schema_lock = threading.Lock()

# The W3C's schema of Exclusive XML Canonicalization's one element (its exc-c14n.xsd).
# xmldsig lets any element into a CanonicalizationMethod but validates it strictly, and
# IdPs name their InclusiveNamespaces there (Shibboleth, and signxml's signer): without
# this declaration a valid response was refused as "not valid SAML 2.0".
EXC_C14N_XSD = b"""<?xml version="1.0" encoding="utf-8"?>
<schema xmlns="http://www.w3.org/2001/XMLSchema" xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#"
        targetNamespace="http://www.w3.org/2001/10/xml-exc-c14n#" elementFormDefault="qualified">
  <element name="InclusiveNamespaces" type="ec:InclusiveNamespaces"/>
  <complexType name="InclusiveNamespaces">
    <attribute name="PrefixList" type="string"/>
  </complexType>
</schema>"""
# What a response is validated against: the protocol schema (with assertion, xmldsig, xenc)
# and exc-c14n's.
ROOT_XSD = b"""<schema xmlns="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:myaccount:saml-response">
  <import namespace="urn:oasis:names:tc:SAML:2.0:protocol" schemaLocation="saml-schema-protocol-2.0.xsd"/>
  <import namespace="http://www.w3.org/2001/10/xml-exc-c14n#" schemaLocation="exc-c14n.xsd"/>
</schema>"""


@cache
def _schema() -> etree.XMLSchema:
    """The SAML 2.0 protocol schema, built once per process from pysaml2's copies (the check
    pysaml2 made with xmlschema, at a hundredth of the cost), plus exc-c14n's."""
    schemas = files("saml2.data.schemas")

    class LocalSchemas(etree.Resolver):
        """The imports (xmldsig, xenc, …) from pysaml2's copies and ours, never from the network."""

        def resolve(self, url, pubid, context):
            name = url.rsplit("/", 1)[-1]
            if name == "exc-c14n.xsd":
                return self.resolve_string(EXC_C14N_XSD, context)
            local = schemas.joinpath(name)
            return self.resolve_filename(str(local), context) if local.is_file() else None

    parser = etree.XMLParser(no_network=True, load_dtd=False)
    parser.resolvers.add(LocalSchemas())
    root = etree.fromstring(ROOT_XSD, parser, base_url=str(schemas.joinpath("root.xsd")))
    return etree.XMLSchema(etree.ElementTree(root))


def _schema_error(root: etree._Element) -> str | None:
    """Why `root` is not valid SAML 2.0, or None. One validation at a time: the schema keeps
    its error log on itself."""
    with _schema_lock:
        schema = _schema()
        if schema.validate(root):
            return None
        error = schema.error_log.last_error
        return error.message[:200] if error is not None else "invalid"
