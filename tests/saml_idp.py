"""A real SAML 2.0 Identity Provider for the tests, built with pysaml2.

It has its own RSA key and self-signed certificate (made with `cryptography`), publishes real metadata,
reads the HTTP-Redirect AuthnRequests our Service Provider sends, and answers with real, signed
SAML Responses (signed by xmlsec1 through pysaml2). The module-level tamper helpers turn a valid
base64 SAMLResponse into the classic attacks (comment truncation, signature wrapping, DTD, oversize,
unsigned, modified after signing) so the SP can be tested against them.

Typical use::

    idp = TestIdP(tmp_path / "idp")
    idp.trust_sp(sp_metadata_xml)                 # the SP's metadata (entityID, ACS, optional signing cert)
    url = <the Location our SP redirects the browser to>
    req = idp.parse_authn_request(url)            # {"id", "issuer", "acs_url", "relay_state", "signed", ...}
    saml_response, acs_url = idp.response(req, email="alice@corp.example")
    browser.post(acs_url, data={"SAMLResponse": saml_response, "RelayState": req["relay_state"]})
"""

from __future__ import annotations

import base64
import datetime
import re
import uuid
import zlib
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.assertion import Policy
from saml2.attribute_converter import AttributeConverter, do_ava
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_BASIC, NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary
from saml2.time_util import in_a_while
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

FROM_REQUEST = "from-request"

# Redirect-binding signature algorithms (SigAlg query parameter) -> hash.
SIG_ALGS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512,
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": hashes.SHA1,
}


# --------------------------------------------------------------------------- key material


def make_key_and_cert(common_name: str, *, days: int = 3650) -> tuple[bytes, bytes]:
    """An RSA-2048 private key (PKCS#8 PEM) and a self-signed X.509 certificate (PEM) for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- attributes


class _VerbatimAttributes(AttributeConverter):
    """Emit attributes under exactly the names the test gives (pysaml2's own maps would rename
    `email` & co. to OIDs, or drop them). URI-looking names get NameFormat uri, the rest basic."""

    def __init__(self):
        super().__init__(NAME_FORMAT_BASIC)
        self._to = {}
        self._fro = {}

    def to_(self, attrvals):
        attributes = []
        for key, value in attrvals.items():
            fmt = NAME_FORMAT_URI if re.match(r"^(urn:|https?://)", key) else NAME_FORMAT_BASIC
            attributes.append(saml.Attribute(name=key, name_format=fmt, attribute_value=do_ava(value)))
        return attributes


class _TestPolicy(Policy):
    """A release policy that releases everything, with a per-response lifetime and NotBefore."""

    def __init__(self, mds, *, minutes: float, not_before_minutes: float | None, audience: str | None):
        super().__init__({"default": {"lifetime": {"minutes": minutes}, "name_form": NAME_FORMAT_BASIC}}, mds=mds)
        self._minutes = minutes
        self._not_before_minutes = not_before_minutes
        self._audience = audience

    def restrict(self, ava, sp_entity_id, metadata=None):  # release all attributes, whatever metadata says
        return dict(ava)

    def not_on_or_after(self, sp_entity_id):
        return in_a_while(minutes=self._minutes)

    def conditions(self, sp_entity_id):
        conds = super().conditions(self._audience or sp_entity_id)
        if self._not_before_minutes is not None:
            conds.not_before = in_a_while(minutes=self._not_before_minutes)
        return conds


# --------------------------------------------------------------------------- the IdP


class TestIdP:
    """A pysaml2 IdP with its own key. `trust_sp()` before `response()`."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        workdir: Path,
        entity_id: str = "https://idp.example.test/saml",
        *,
        sign_response: bool = True,
        sign_assertion: bool = True,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.entity_id = entity_id
        self.sso_url = f"{entity_id}/sso"
        self.sign_response = sign_response
        self.sign_assertion = sign_assertion
        host = urlsplit(entity_id).hostname or "idp.example.test"
        self.key_pem, self.cert_pem = make_key_and_cert(host)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", entity_id).strip("_")  # several IdPs may share a workdir
        self.key_file = self.workdir / f"{slug}-key.pem"
        self.cert_file = self.workdir / f"{slug}-cert.pem"
        self.key_file.write_bytes(self.key_pem)
        self.cert_file.write_bytes(self.cert_pem)
        self.xmlsec_binary = get_xmlsec_binary(["/usr/bin", "/usr/local/bin"])
        self.sp_metadata: list[str] = []
        self._servers: dict[tuple[str, str], Server] = {}

    # ---- key material, for configuring the SP by hand rather than through metadata

    @property
    def cert_der_b64(self) -> str:
        """The certificate as one line of base64 DER (what goes in <ds:X509Certificate>)."""
        return "".join(self.cert_pem.decode().strip().splitlines()[1:-1])

    @property
    def cert_sha256_fingerprint(self) -> str:
        return x509.load_pem_x509_certificate(self.cert_pem).fingerprint(hashes.SHA256()).hex(":").upper()

    # ---- pysaml2 plumbing

    def config_dict(self, key_file: Path | None = None, cert_file: Path | None = None) -> dict:
        conf = {
            "entityid": self.entity_id,
            "description": "test IdP",
            "service": {
                "idp": {
                    "name": "Test IdP",
                    "endpoints": {
                        "single_sign_on_service": [
                            (self.sso_url, BINDING_HTTP_REDIRECT),
                            (self.sso_url, BINDING_HTTP_POST),
                        ],
                    },
                    "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_BASIC}},
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "sign_response": self.sign_response,
                    "sign_assertion": self.sign_assertion,
                    "want_authn_requests_signed": False,  # checked by parse_authn_request itself
                },
            },
            "key_file": str(key_file or self.key_file),
            "cert_file": str(cert_file or self.cert_file),
            "xmlsec_binary": self.xmlsec_binary,
            "accepted_time_diff": 120,
            "allow_unknown_attributes": True,
        }
        if self.sp_metadata:
            conf["metadata"] = {"inline": list(self.sp_metadata)}
        return conf

    def _server_for(self, key_file: Path, cert_file: Path) -> Server:
        k = (str(key_file), str(cert_file))
        if k not in self._servers:
            config = IdPConfig().load(self.config_dict(key_file, cert_file))
            server = Server(config=config)
            server.config.attribute_converters = [_VerbatimAttributes()]
            self._servers[k] = server
        return self._servers[k]

    @property
    def server(self) -> Server:
        return self._server_for(self.key_file, self.cert_file)

    def metadata_xml(self) -> str:
        """The IdP's metadata: entityID, signing certificate, SSO endpoints (Redirect and POST)."""
        config = IdPConfig().load(self.config_dict())
        xml = create_metadata_string(None, config=config, sign=False)
        return xml.decode() if isinstance(xml, bytes) else xml

    def trust_sp(self, sp_metadata_xml: str | bytes) -> None:
        """Load an SP's metadata (EntityDescriptor XML); the pysaml2 Server is rebuilt."""
        if isinstance(sp_metadata_xml, bytes):
            sp_metadata_xml = sp_metadata_xml.decode()
        self.sp_metadata.append(sp_metadata_xml)
        self._servers.clear()

    def sp_entity_ids(self) -> list[str]:
        if self.server.metadata is None:
            return []
        return [eid for eid, ent in self.server.metadata.items() if "spsso_descriptor" in ent]

    def sp_certs(self, sp_entity_id: str) -> list[str]:
        """Signing certificates (base64 DER) the SP's metadata declares."""
        if sp_entity_id not in self.sp_entity_ids():
            return []
        return [cert for _name, cert in self.server.metadata.certs(sp_entity_id, "spsso", "signing")]

    # ---- AuthnRequest

    def parse_authn_request(self, redirect_url: str) -> dict:
        """Read an HTTP-Redirect AuthnRequest from the full URL the SP sent the browser to.

        Returns id, issuer, acs_url (AssertionConsumerServiceURL, else the SP's first POST ACS from
        metadata), relay_state, destination, protocol_binding, name_id_format, force_authn, is_passive,
        xml, sig_alg, signed (True only if Signature+SigAlg are present AND verify, over the raw query
        string as received, against a signing cert in the SP's metadata), signature_error (why not).
        """
        parts = urlsplit(redirect_url)
        query = parse_qs(parts.query, keep_blank_values=True)
        if "SAMLRequest" not in query:
            raise ValueError(f"no SAMLRequest in {redirect_url!r}")
        saml_request = query["SAMLRequest"][0]
        relay_state = query.get("RelayState", [None])[0]
        sig_alg = query.get("SigAlg", [None])[0]
        signature = query.get("Signature", [None])[0]
        xml = zlib.decompress(base64.b64decode(saml_request), -15).decode()

        parsed = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        msg = parsed.message
        issuer = msg.issuer.text.strip() if msg.issuer is not None else None

        acs_url = msg.assertion_consumer_service_url
        if not acs_url and issuer:
            acs = self.server.metadata.assertion_consumer_service(issuer, BINDING_HTTP_POST)
            acs_url = acs[0]["location"] if acs else None

        signed, signature_error = False, None
        if not (sig_alg and signature):
            signature_error = "no Signature/SigAlg in the query"
        else:
            try:
                signed = self._verify_redirect_signature(parts.query, issuer, sig_alg, signature)
                if not signed:
                    signature_error = "signature does not verify against the SP's metadata certificates"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                signature_error = f"{type(exc).__name__}: {exc}"

        nip = msg.name_id_policy
        return {
            "id": msg.id,
            "issuer": issuer,
            "acs_url": acs_url,
            "relay_state": relay_state,
            "destination": msg.destination,
            "protocol_binding": msg.protocol_binding,
            "name_id_format": nip.format if nip is not None else None,
            "force_authn": msg.force_authn,
            "is_passive": msg.is_passive,
            "issue_instant": msg.issue_instant,
            "xml": xml,
            "sig_alg": sig_alg,
            "signed": signed,
            "signature_error": signature_error,
        }

    def _verify_redirect_signature(self, raw_query: str, issuer: str, sig_alg: str, signature: str) -> bool:
        """SAML bindings 3.4.4.1: the signed octets are `SAMLRequest=..&RelayState=..&SigAlg=..` exactly
        as they appear URL-encoded in the query string (not re-encoded)."""
        if sig_alg not in SIG_ALGS:
            raise ValueError(f"unsupported SigAlg {sig_alg}")
        raw = {}
        for pair in raw_query.split("&"):
            name, _, value = pair.partition("=")
            raw.setdefault(unquote_plus(name), f"{name}={value}")
        signed_octets = "&".join(raw[k] for k in ("SAMLRequest", "RelayState", "SigAlg") if k in raw).encode()
        sig = base64.b64decode(signature)
        certs = self.sp_certs(issuer)
        if not certs:
            raise ValueError(f"no signing certificate for {issuer!r} (not trusted, or its metadata has none)")
        for cert_b64 in certs:
            cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
            try:
                cert.public_key().verify(sig, signed_octets, padding.PKCS1v15(), SIG_ALGS[sig_alg]())
                return True
            except InvalidSignature:
                continue
        return False

    # ---- Response

    def response(
        self,
        request: dict | None,
        *,
        email: str,
        attributes: dict | None = None,
        acs_url: str | None = None,
        audience: str | None = None,
        in_response_to: str | None = FROM_REQUEST,
        name_id: str | None = None,
        name_id_format: str = NAMEID_FORMAT_EMAILADDRESS,
        sign_assertion: bool | None = None,
        sign_response: bool | None = None,
        not_on_or_after_minutes: float = 5,
        not_before_minutes: float | None = None,
        signer: TestIdP | None = None,
        sign_alg: str = SIG_RSA_SHA256,
        digest_alg: str = DIGEST_SHA256,
        authn_instant: float | None = None,
    ) -> tuple[str, str]:
        """A real SAML Response for `request` (a parse_authn_request() dict, or None for IdP-initiated).

        Returns (base64 SAMLResponse, acs_url) for an HTTP-POST to the ACS. The identity holds
        email / givenName / sn / displayName (derived from the email) updated by `attributes`
        (a value of None removes that attribute; values may be str or list). NameID: format
        `name_id_format` (emailAddress), value `name_id or email`. Audience: `audience` or the request's
        issuer. in_response_to: the request's id by default, None to omit it, or any string.
        Negative `not_on_or_after_minutes` gives an expired assertion; `not_before_minutes` moves the
        Conditions' NotBefore (positive = in the future). `signer=other_idp` signs with the other IdP's
        key and certificate while still claiming to be this IdP. sign_assertion / sign_response default to
        the TestIdP's constructor flags (both True). Signatures are RSA-SHA256 with SHA-256
        digests and exclusive c14n (pysaml2's own default would be RSA-SHA1); pass
        sign_alg=saml2.xmldsig.SIG_RSA_SHA1, digest_alg=saml2.xmldsig.DIGEST_SHA1 to test SHA-1 refusal.
        `authn_instant` (epoch) is when the AuthnStatement says the person authenticated (now).
        """
        # pysaml2 needs an SP it has metadata for; `audience` only changes the <Audience> text.
        if not self.sp_metadata:
            raise ValueError("call trust_sp(sp_metadata_xml) first: pysaml2 only answers SPs it has metadata for")
        sp_entity_id = (request or {}).get("issuer")
        if not sp_entity_id:
            sps = self.sp_entity_ids()
            if len(sps) != 1:
                raise ValueError(f"pass audience=: cannot pick an SP among {sps}")
            sp_entity_id = sps[0]
        if acs_url is None:
            acs_url = (request or {}).get("acs_url")
        if acs_url is None:
            acs = self.server.metadata.assertion_consumer_service(sp_entity_id, BINDING_HTTP_POST)
            if not acs:
                raise ValueError(f"no acs_url given and no POST ACS for {sp_entity_id} in metadata")
            acs_url = acs[0]["location"]
        if in_response_to == FROM_REQUEST:
            in_response_to = request["id"] if request else None

        local, _, _domain = email.partition("@")
        given = local.split(".")[0].capitalize() or "Test"
        identity: dict[str, list[str]] = {
            "email": [email],
            "givenName": [given],
            "sn": ["Example"],
            "displayName": [f"{given} Example"],
        }
        for key, value in (attributes or {}).items():
            if value is None:
                identity.pop(key, None)
            else:
                identity[key] = [value] if isinstance(value, str) else list(value)

        server = self.server if signer is None else self._server_for(signer.key_file, signer.cert_file)
        nid = NameID(format=name_id_format, text=name_id or email)
        policy = _TestPolicy(
            server.metadata, minutes=not_on_or_after_minutes, not_before_minutes=not_before_minutes, audience=audience
        )
        resp = server.create_authn_response(
            identity,
            in_response_to,
            acs_url,
            sp_entity_id,
            userid=name_id or email,
            name_id=nid,
            authn={
                "class_ref": saml.AUTHN_PASSWORD_PROTECTED,
                "authn_auth": self.entity_id,
                **({"authn_instant": authn_instant} if authn_instant is not None else {}),
            },
            sign_response=self.sign_response if sign_response is None else sign_response,
            sign_assertion=self.sign_assertion if sign_assertion is None else sign_assertion,
            release_policy=policy,
            sign_alg=sign_alg,
            digest_alg=digest_alg,
        )
        xml = resp if isinstance(resp, str) else resp.to_string().decode() if hasattr(resp, "to_string") else str(resp)
        return encode(xml), acs_url


def sp_metadata_for(entity_id: str, acs_url: str, cert_pem: bytes | str | None = None) -> str:
    """Minimal SP metadata (EntityDescriptor + SPSSODescriptor with one HTTP-POST ACS and, if given,
    a signing certificate), for SPs that are configured by hand rather than by their own metadata."""
    key = ""
    if cert_pem:
        pem = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
        der_b64 = "".join(line for line in pem.strip().splitlines() if "-----" not in line)
        key = (
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
            f"<ds:X509Certificate>{der_b64}</ds:X509Certificate>"
            "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        )
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">'
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'AuthnRequestsSigned="{"true" if cert_pem else "false"}" WantAssertionsSigned="true">{key}'
        f"<md:NameIDFormat>{NAMEID_FORMAT_EMAILADDRESS}</md:NameIDFormat>"
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{acs_url}" index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


# --------------------------------------------------------------------------- encoding


def decode(b64: str) -> str:
    """base64 SAMLResponse (HTTP-POST binding) -> XML text."""
    return base64.b64decode(b64).decode()


def encode(xml: str | bytes) -> str:
    """XML -> base64 SAMLResponse (HTTP-POST binding: plain base64, no deflate)."""
    return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()


# --------------------------------------------------------------------------- tampering
# All string/regex based (lxml is not installed). pysaml2 writes prefixed elements
# (`saml:Assertion`, `samlp:Response`, `ds:Signature`), which the regexes allow for.

_SIG_RE = re.compile(r"<(?:[\w.-]+:)?Signature\b[^>]*>.*?</(?:[\w.-]+:)?Signature>", re.S)
_ASSERTION_RE = re.compile(r"<((?:[\w.-]+:)?)Assertion\b[^>]*>.*?</\1Assertion>", re.S)
_NAMEID_RE = re.compile(r"(<((?:[\w.-]+:)?)NameID\b[^>]*>)(.*?)(</\2NameID>)", re.S)


def _find_assertion(xml: str) -> re.Match:
    m = _ASSERTION_RE.search(xml)
    if not m:
        raise ValueError("no <Assertion> in the response")
    return m


def name_id_of(b64: str) -> str:
    """The first NameID's text content (comments removed, i.e. the signed value)."""
    m = _NAMEID_RE.search(decode(b64))
    if not m:
        raise ValueError("no <NameID> in the response")
    return re.sub(r"<!--.*?-->", "", m.group(3), flags=re.S)


def with_comment_in_name_id(
    b64: str, inject: str = "evil.example", *, comment: str = "<!---->", attributes: bool = True
) -> str:
    """The comment-truncation attack (CVE-2017-11427 & co.), keeping the signature VALID.

    Issue the response for the attacker's own, legitimately signed identity
    `alice@corp.example.evil.example` (i.e. `name_id=...` / `email=...` ending in "." + inject), then
    this inserts an XML comment just before ".evil.example":
    `alice@corp.example<!---->.evil.example`. Exclusive c14n without comments drops the comment, so the
    digest is unchanged and the signature still verifies, while a naive first-text-node read
    (ElementTree `.text`, lxml `.text`) yields `alice@corp.example`.
    With `attributes=True` the same is done in every <AttributeValue> whose text equals that value.
    """
    xml = decode(b64)
    suffix = "." + inject
    m = _NAMEID_RE.search(xml)
    if not m:
        raise ValueError("no <NameID> in the response")
    value = m.group(3)
    if not value.endswith(suffix) or value == suffix:
        raise ValueError(
            f"NameID {value!r} does not end with {suffix!r}: issue the response for e.g. "
            f"name_id='alice@corp.example{suffix}' so that only a comment needs inserting"
        )
    cut = len(value) - len(suffix)
    truncated = value[:cut] + comment + value[cut:]
    for tag in ("NameID", "AttributeValue") if attributes else ("NameID",):
        pattern = rf"(<(?:[\w.-]+:)?{tag}\b[^>]*>)" + re.escape(value) + rf"(</(?:[\w.-]+:)?{tag}>)"
        xml = re.sub(pattern, lambda mm: mm.group(1) + truncated + mm.group(2), xml)
    return encode(xml)


def _evil_copy(assertion_xml: str, original_email: str, evil_email: str, new_id: str | None) -> str:
    evil = _SIG_RE.sub("", assertion_xml)
    evil = evil.replace(f">{original_email}<", f">{evil_email}<")
    if new_id is not None:
        evil = re.sub(r'\bID="[^"]*"', f'ID="{new_id}"', evil, count=1)
    return evil


def wrapped(
    b64: str,
    evil_email: str,
    *,
    mode: str = "sibling",
    same_id: bool = False,
    keep_response_signature: bool = False,
) -> str:
    """XML Signature Wrapping (XSW): the original signed assertion is kept intact (its signature
    still verifies by ID), and an UNSIGNED copy with `evil_email` in NameID/AttributeValues (its
    ds:Signature removed) is put where a naive parser reads first.

    mode="sibling":    <Response> ... <Assertion evil/> <Assertion original signed/> </Response>
    mode="extensions": <Response> <Issuer/> <Extensions><Assertion original signed/></Extensions>
                       <Status/> <Assertion evil/> </Response>   (the original moved out of the way)
    mode="advice":     <Response> ... <Assertion evil> ... <Conditions/>
                       <Advice><Assertion original signed/></Advice> ... </Assertion> </Response>
                       (exactly one top-level assertion; a verifier that looks for "a signed assertion
                       anywhere" (.//Assertion) is satisfied by the nested original)
    same_id=True gives the evil copy the original's ID (targets "find by ID" verifiers), otherwise a
    new ID. The Response-level signature can't survive any of this and is removed unless
    keep_response_signature=True (then it is present but no longer valid).
    """
    xml = decode(b64)
    if not keep_response_signature:
        root_end = xml.index(">", xml.index("Response")) + 1
        first_assertion = _find_assertion(xml).start()
        head = _SIG_RE.sub("", xml[root_end:first_assertion])
        xml = xml[:root_end] + head + xml[first_assertion:]
    m = _find_assertion(xml)
    original = m.group(0)
    original_email = re.sub(r"<!--.*?-->", "", _NAMEID_RE.search(original).group(3))
    new_id = None if same_id else "_evil" + uuid.uuid4().hex
    evil = _evil_copy(original, original_email, evil_email, new_id)
    if mode == "sibling":
        xml = xml[: m.start()] + evil + original + xml[m.end() :]
    elif mode == "extensions":
        rest = xml[: m.start()] + evil + xml[m.end() :]
        pfx = re.search(r"<((?:[\w.-]+:)?)Response\b", rest).group(1)
        status = re.search(r"<(?:[\w.-]+:)?Status\b", rest)
        if not status:
            raise ValueError("no <Status> in the response")
        ns = ' xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"' if not pfx else ""
        ext_tag = f"{pfx or 'samlp:'}Extensions"
        ext = f"<{ext_tag}{ns}>{original}</{ext_tag}>"
        xml = rest[: status.start()] + ext + rest[status.start() :]
    elif mode == "advice":
        cond_end = re.search(r"</(?:[\w.-]+:)?Conditions>", evil)
        if not cond_end:
            raise ValueError("no <Conditions> in the assertion")
        apfx = re.match(r"<((?:[\w.-]+:)?)Assertion\b", evil).group(1)
        advice = f"<{apfx}Advice>{original}</{apfx}Advice>"
        evil = evil[: cond_end.end()] + advice + evil[cond_end.end() :]
        xml = xml[: m.start()] + evil + xml[m.end() :]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return encode(xml)


def with_dtd(b64: str, *, entity_name: str = "xxe", entity_value: str = "expanded", use_entity: bool = False) -> str:
    """Prepend `<!DOCTYPE Response [<!ENTITY xxe "expanded">]>` (after any XML declaration).

    With use_entity=True the NameID text `alice@...` becomes `&xxe;@...` with the entity defined
    as `alice`, so the expanded document is byte-identical to the signed one (the signature would still
    verify after expansion): an SP must refuse DTDs outright, not rely on the signature."""
    xml = decode(b64)
    if use_entity:
        m = _NAMEID_RE.search(xml)
        local, at, domain = m.group(3).partition("@")
        entity_value = local
        xml = xml[: m.start(3)] + f"&{entity_name};{at}{domain}" + xml[m.end(3) :]
    doctype = f'<!DOCTYPE Response [<!ENTITY {entity_name} "{entity_value}">]>'
    decl = re.match(r"<\?xml[^>]*\?>\s*", xml)
    cut = decl.end() if decl else 0
    return encode(xml[:cut] + doctype + "\n" + xml[cut:])


def oversized(b64: str, size_bytes: int) -> str:
    """Pad the XML with an XML comment just inside <Response>, to at least `size_bytes` (decoded XML).
    Comments are outside the canonical form, so the signatures stay valid: only the size is wrong."""
    xml = decode(b64)
    missing = size_bytes - len(xml.encode()) - len("<!---->")
    if missing <= 0:
        return b64
    root_end = xml.index(">", xml.index("Response")) + 1
    return encode(xml[:root_end] + "<!--" + "A" * missing + "-->" + xml[root_end:])


def unsigned(b64: str) -> str:
    """Remove every ds:Signature element (Response and Assertion)."""
    return encode(_SIG_RE.sub("", decode(b64)))


def replace_text(b64: str, old: str, new: str, count: int = 0) -> str:
    """Edit the signed XML without re-signing ("modified after signing"); `old` must occur."""
    xml = decode(b64)
    if old not in xml:
        raise ValueError(f"{old!r} not in the response")
    return encode(xml.replace(old, new, count or -1))


# The helpers are also reachable as TestIdP.unsigned(...), idp.wrapped(...) etc.
_HELPERS = (decode, encode, name_id_of, with_comment_in_name_id, wrapped, with_dtd, oversized, unsigned, replace_text)
for _helper in _HELPERS:
    setattr(TestIdP, _helper.__name__, staticmethod(_helper))
del _helper
