"""XML signatures of a SAML Response, checked in this process (lxml and cryptography) before pysaml2 reads it.

pysaml2's own check runs the xmlsec1 program for every signature (tens of ms of CPU each).
`_verify_enveloped` does what signxml's XMLVerifier does for SAML's signature profile, without
its six copies of the document per signature (tests/federation/test_saml_signatures.py holds
the two to the same answers); the rare signature with no exclusive c14n transform still goes
through signxml. `verified_response` returns a new document built only
from what the signatures cover: the assertion as verified (re-parsed from its
canonical form, so an unsigned element or a comment cannot ride along), inside the Response
envelope (itself the signed copy when the Response is signed). pysaml2 then gets that
document, with no signature left in it, for every other check (InResponseTo, Destination,
audience, time conditions, SubjectConfirmation).

The rules are the ones the xmlsec1 path applied, no more, no less: the assertion must be signed,
a Response signature is optional but must verify when present, each signature is enveloped
in the element it covers (one Reference, URI = that element's ID, exclusive c14n, no
ds:Object) and verifies against a certificate from the org's metadata (nothing in KeyInfo is
used), and the document is valid against the SAML 2.0 schemas pysaml2 ships.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.algorithms import digest_algorithm_implementations
from signxml.exceptions import SignXMLException

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
RESPONSE, ASSERTION, ISSUER = f"{{{SAMLP}}}Response", f"{{{SAML}}}Assertion", f"{{{SAML}}}Issuer"
SIGNATURE = f"{{{DS}}}Signature"

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N = {EXC_C14N_NS, "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"}

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

    envelope = root
    if _enveloped_signature(root) is not None:
        envelope = _verify(root, "./", root, certificates)
    assertion = envelope.find(ASSERTION)
    if assertion is None or _enveloped_signature(assertion) is None:
        raise UnverifiedResponse("assertion is not signed")
    signed_assertion = _verify(envelope, f"./{{{SAML}}}Assertion/", assertion, certificates)

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
    return signature


def _verify(document: etree._Element, location: str, element: etree._Element,
            certificates: list[x509.Certificate]) -> etree._Element:
    """The signed copy of `element`, whose signature is at `location` in `document`."""
    if not certificates:
        raise UnverifiedResponse("the org's metadata has no signing certificate")
    transforms = {t.get("Algorithm") for t in element.find(SIGNATURE).iterfind(
        f"{{{DS}}}SignedInfo/{{{DS}}}Reference/{{{DS}}}Transforms/{{{DS}}}Transform")}
    if transforms & EXC_C14N:
        signed = _verify_enveloped(document, element, certificates)
    else:
        # Enveloped transform alone: signxml canonicalizes with C14N 1.1, which lxml does
        # not offer; rare enough to take the slower road.
        signed = _verify_with_signxml(document, location, certificates)
    # The reference was checked against the ID above; the returned node must be that element.
    if signed is None or signed.tag != element.tag or signed.get("ID") != element.get("ID"):
        raise UnverifiedResponse("signature does not cover the element that carries it")
    return signed


def _verify_enveloped(document: etree._Element, element: etree._Element,
                      certificates: list[x509.Certificate]) -> etree._Element:
    """What signxml's `XMLVerifier.verify` does for SAML's one signature profile (enveloped,
    exclusive c14n, one same-document reference; the shape `_enveloped_signature` enforced),
    without its copies of the whole document (six parses per signature, most of the cost).

    As signxml: SignedInfo is canonicalized and its signature checked with the metadata's
    key; the reference is read from the verified SignedInfo re-parsed, never from the tree;
    the referenced ID must name exactly one element of the document; the digest is over the
    element without its signature, canonicalized as the transform says; and what is returned
    is parsed from those very canonical bytes, so nothing unsigned can be read from it."""
    signature = element.find(SIGNATURE)
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    c14n = signed_info.find(f"{{{DS}}}CanonicalizationMethod")
    signed_info_c14n = _c14n(signed_info, c14n)
    method = _algorithm(SignatureMethod, signed_info.find(f"{{{DS}}}SignatureMethod"), SIGNATURE_METHODS)
    try:
        raw_signature = base64.b64decode(signature.findtext(f"{{{DS}}}SignatureValue") or "")
    except (binascii.Error, ValueError):
        raise UnverifiedResponse("signature does not verify: SignatureValue is not base64") from None
    failures = []
    for certificate in certificates:
        try:
            _check_signature_value(certificate, method, signed_info_c14n, raw_signature)
            break
        except (InvalidSignature, ValueError, TypeError) as err:
            failures.append(f"{type(err).__name__}: {err}".rstrip(": "))
    else:
        raise UnverifiedResponse(f"signature does not verify: {'; '.join(failures)[:300]}")

    verified_info = _reparse(signed_info_c14n)
    references = verified_info.findall(f"{{{DS}}}Reference")
    element_id = element.get("ID")
    if len(references) != 1 or not element_id or references[0].get("URI") != f"#{element_id}":
        raise UnverifiedResponse("signature does not cover the element that carries it")
    reference = references[0]
    named = _elements_with_id(document, element_id)
    if len(named) != 1 or named[0] is not element:
        raise UnverifiedResponse(f"signature does not verify: ambiguous reference URI #{element_id}")
    transforms = reference.findall(f"{{{DS}}}Transforms/{{{DS}}}Transform")
    c14n_transforms = [t for t in transforms if t.get("Algorithm") in EXC_C14N]
    algorithms = {t.get("Algorithm") for t in transforms}
    if len(c14n_transforms) != 1 or ENVELOPED not in algorithms or not algorithms <= EXC_C14N | {ENVELOPED}:
        raise UnverifiedResponse("signature uses a canonicalization or transform SAML does not allow")
    digest = _algorithm(DigestAlgorithm, reference.find(f"{{{DS}}}DigestMethod"), DIGEST_ALGORITHMS)

    # The element alone (its in-scope namespaces declared on it), then the enveloped transform.
    payload = _reparse(etree.tostring(element, with_tail=False))
    _remove_keeping_tail(payload.find(SIGNATURE))
    payload_c14n = _c14n(payload, c14n_transforms[0])
    hasher = hashes.Hash(digest_algorithm_implementations[digest]())
    hasher.update(payload_c14n)
    try:
        expected = base64.b64decode(reference.findtext(f"{{{DS}}}DigestValue") or "")
    except (binascii.Error, ValueError):
        expected = b""
    if not hmac.compare_digest(hasher.finalize(), expected):
        raise UnverifiedResponse(f"signature does not verify: digest mismatch for reference #{element_id}")
    return _reparse(payload_c14n)


_per_thread = threading.local()


def _elements_with_id(document: etree._Element, value: str) -> list:
    """Every element with an ID-like attribute (any prefix: Id, ID, id, xml:id) equal to `value`,
    as signxml resolves a reference. The expression is compiled once per thread (an lxml XPath
    object is not to be shared between threads): half the cost of `document.xpath`."""
    finder = getattr(_per_thread, "id_finder", None)
    if finder is None:
        finder = _per_thread.id_finder = etree.XPath(
            "//*[@*[local-name() = 'Id' or local-name() = 'ID' or local-name() = 'id'] = $id]")
    return finder(document, id=value)


def _c14n(element: etree._Element, method: etree._Element) -> bytes:
    """Exclusive c14n as `method` (a CanonicalizationMethod or Transform) names it, with its
    InclusiveNamespaces PrefixList."""
    algorithm = method.get("Algorithm")
    if algorithm not in EXC_C14N:
        raise UnverifiedResponse("signature uses a canonicalization or transform SAML does not allow")
    inclusive = method.find(f"{{{EXC_C14N_NS}}}InclusiveNamespaces[@PrefixList]")
    prefixes = inclusive.get("PrefixList").split(" ") if inclusive is not None else None
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=algorithm.endswith("#WithComments"),
                          inclusive_ns_prefixes=prefixes)


def _algorithm(kind, node: etree._Element | None, allowed: frozenset):
    try:
        algorithm = kind(node.get("Algorithm") if node is not None else None)
    except ValueError:
        algorithm = None
    if algorithm not in allowed:
        raise UnverifiedResponse(f"signature does not verify: {kind.__name__} not allowed")
    return algorithm


def _check_signature_value(certificate: x509.Certificate, method: SignatureMethod, data: bytes,
                           raw_signature: bytes) -> None:
    """Raises unless `raw_signature` is `method`'s signature of `data` by the certificate's key
    (signxml's `_verify_signature_with_pubkey` for a certificate's key)."""
    key = certificate.public_key()
    digest = digest_algorithm_implementations[method]()
    if method.name.startswith("ECDSA_"):
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature("the certificate's key is not an EC key")
        key.verify(_dss_signature(raw_signature, key.key_size), data, ec.ECDSA(digest))
    elif method.name.startswith("DSA_"):
        if not isinstance(key, dsa.DSAPublicKey):
            raise InvalidSignature("the certificate's key is not a DSA key")
        key.verify(_dss_signature(raw_signature, len(raw_signature) * 8 // 2), data, digest)
    elif method.name.startswith("RSA_") or method.name.startswith("SHA"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature("the certificate's key is not an RSA key")
        padding = (PKCS1v15() if method.name.startswith("RSA_")
                   else PSS(mgf=MGF1(algorithm=digest), salt_length=digest.digest_size))
        key.verify(raw_signature, data, padding, digest)
    else:
        raise InvalidSignature(f"unsupported signature method {method.name}")


def _dss_signature(raw_signature: bytes, key_size_bits: int) -> bytes:
    length = (key_size_bits + 7) // 8
    if len(raw_signature) != length * 2:
        raise InvalidSignature(f"expected a {length * 2} byte SignatureValue, got {len(raw_signature)}")
    return encode_dss_signature(int.from_bytes(raw_signature[:length], "big"),
                                int.from_bytes(raw_signature[length:], "big"))


def _remove_keeping_tail(node: etree._Element) -> None:
    """Detach `node`; the text after it stays where it was (the enveloped transform removes
    the signature, not the document's text)."""
    parent = node.getparent()
    if node.tail:
        previous = node.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + node.tail
        else:
            previous.tail = (previous.tail or "") + node.tail
    parent.remove(node)


def _reparse(xml: bytes) -> etree._Element:
    """A canonical form (or a serialized subtree) parsed back: no DTD can be in it."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    return etree.fromstring(xml, parser)


def _verify_with_signxml(document: etree._Element, location: str,
                         certificates: list[x509.Certificate]) -> etree._Element | None:
    failures = []
    for certificate in certificates:
        config = replace(_BASE_CONFIG, location=location, verification_time=_within_validity(certificate))
        try:
            # The ds:Signature was validated with the whole document against the SAML schema.
            result = XMLVerifier().verify(document, x509_cert=certificate, expect_config=config, validate_schema=False)
        except (SignXMLException, ValueError) as err:  # signxml's InvalidInput is a ValueError too
            failures.append(f"{type(err).__name__}: {err}")
            continue
        return result.signed_xml
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


_schema_lock = threading.Lock()


@cache
def _schema() -> etree.XMLSchema:
    """The SAML 2.0 protocol schema (with assertion, xmldsig, xenc), built once per process
    from pysaml2's copies (the check pysaml2 made with xmlschema, at a hundredth of the cost)."""
    schemas = files("saml2.data.schemas")

    class LocalSchemas(etree.Resolver):
        """The imports (xmldsig, xenc, …) from pysaml2's copies, never from the network."""

        def resolve(self, url, pubid, context):
            local = schemas.joinpath(url.rsplit("/", 1)[-1])
            return self.resolve_filename(str(local), context) if local.is_file() else None

    parser = etree.XMLParser(no_network=True, load_dtd=False)
    parser.resolvers.add(LocalSchemas())
    return etree.XMLSchema(etree.parse(str(schemas.joinpath("saml-schema-protocol-2.0.xsd")), parser))


def _schema_error(root: etree._Element) -> str | None:
    """Why `root` is not valid SAML 2.0, or None. One validation at a time: the schema keeps
    its error log on itself."""
    with _schema_lock:
        schema = _schema()
        if schema.validate(root):
            return None
        error = schema.error_log.last_error
        return error.message[:200] if error is not None else "invalid"
