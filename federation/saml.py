"""The SAML 2.0 service provider (on pysaml2): AuthnRequests out, validated responses in.

Signatures are checked in this process (`saml_signatures`, signxml) against the IdP
certificates from the org's metadata (nothing from KeyInfo is trusted), and pysaml2 gets
only the parts they cover, with no signature left for it to check (it would run xmlsec1
once per signature). pysaml2 then checks InResponseTo against the outstanding request, the
audience, Destination and the time conditions. The checks it does not make are made
here, before and after it: size, no DTD, exactly one assertion (no signature wrapping),
SubjectConfirmationData's Recipient, every AudienceRestriction (not just any one), a replay
cache for assertion ids, and the email read from the signed XML whole (comments cannot cut
it) and within the org's domains.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import logging
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from typing import TYPE_CHECKING

from idp.emails import normalize

from .social import UpstreamIdentity, profile_text

# pysaml2 (with xmlschema) is imported where it is used, not here: it takes most of a
# second, and every `idp` command and every worker that never sees a SAML response would
# pay for it (`python -X importtime`).
if TYPE_CHECKING:
    from saml2.client import Saml2Client
    from saml2.config import SPConfig

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 256 * 1024
_BASE64_SPACE = str.maketrans("", "", " \t\r\n")
CLOCK_SKEW = 60
MAX_REASON = 300

# SPEC §5: the attribute names the common IdPs send.
EMAIL = ("email", "mail", "urn:oid:0.9.2342.19200300.100.1.3",
         "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress")
GIVEN_NAME = ("givenName", "firstName", "urn:oid:2.5.4.42",
              "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname")
FAMILY_NAME = ("sn", "surname", "lastName", "urn:oid:2.5.4.4",
               "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname")
DISPLAY_NAME = ("displayName", "urn:oid:2.16.840.1.113730.3.1.241",
                "http://schemas.microsoft.com/identity/claims/displayname")
# The NameID formats whose value may be the person's address. The others (persistent,
# transient, kerberos, entity, X.509, Windows) are identifiers that can hold an "@" without
# being anyone's mailbox: jsmith@REALM is not the colleague at jsmith@ (SAML core §8.3).
ADDRESS_NAME_IDS = (None, "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")


class SamlError(Exception):
    """A response refused; `reason` is logged and audited, the person sees a generic page."""

    def __init__(self, reason: str):
        # cut: pysaml2's refusals quote what the sender wrote (an unsigned InResponseTo or
        # Destination, as long as the response), and the reason goes whole into the audit trail
        reason = reason[:MAX_REASON]
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ServiceProvider:
    """Our SP for one org: its entity id and ACS, its key files, the IdP's metadata."""

    entity_id: str
    acs_url: str
    key_file: Path
    cert_file: Path
    idp_metadata: str
    allow_idp_initiated: bool = False

    def _config(self, with_idp: bool) -> SPConfig:
        from saml2 import BINDING_HTTP_POST
        from saml2.config import SPConfig
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
        from saml2.sigver import get_xmlsec_binary

        settings = {
            "entityid": self.entity_id,
            "service": {"sp": {
                "endpoints": {"assertion_consumer_service": [(self.acs_url, BINDING_HTTP_POST)]},
                "authn_requests_signed": True,
                "want_assertions_signed": True,
                "want_response_signed": False,
                "allow_unsolicited": self.allow_idp_initiated,
                "name_id_format": NAMEID_FORMAT_EMAILADDRESS,
            }},
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "xmlsec_binary": get_xmlsec_binary(),
            "accepted_time_diff": CLOCK_SKEW,
        }
        if with_idp:
            settings["metadata"] = [{"class": "federation.saml_metadata.StoredMetadata",
                                     "metadata": [(self.idp_metadata,)]}]
        config = SPConfig()
        config.load(settings)
        return config

    @cached_property
    def client(self) -> Saml2Client:
        """pysaml2's client for this SP, built once: loading the config and parsing the
        IdP's metadata costs more than checking a response."""
        return self.new_client()

    def new_client(self) -> Saml2Client:
        from saml2.client import Saml2Client

        client = Saml2Client(config=self._config(with_idp=True))
        # `validate` hands pysaml2 a document whose signatures were verified in-process and
        # removed; pysaml2 reads these two per call. Any signature that reached it anyway
        # would meet a backend that refuses it, never an xmlsec1 process.
        client.want_assertions_signed = client.want_response_signed = False
        client.sec.crypto = _signatures_checked_beforehand()
        return client

    @cached_property
    def idp_certificates(self) -> list:
        """The IdP's signing certificates from the org's metadata (X.509, parsed once)."""
        from cryptography import x509

        client = self.client
        ders = {cert for _name, cert in client.metadata.certs(self.idp_entity_id(client), "any", "signing")}
        try:
            return [x509.load_der_x509_certificate(base64.b64decode(der)) for der in sorted(ders)]
        except ValueError:
            raise SamlError("the org's metadata carries an unreadable signing certificate") from None

    def metadata_xml(self) -> str:
        """Our SP metadata for the org's IdP (entity id, ACS, signing certificate)."""
        from saml2.metadata import entity_descriptor

        return str(entity_descriptor(self._config(with_idp=False)))

    def idp_entity_id(self, client: Saml2Client | None = None) -> str:
        client = client or self.client
        idps = list(client.metadata.identity_providers())
        if len(idps) != 1:
            raise SamlError(f"the org's metadata names {len(idps)} identity providers, expected one")
        return idps[0]

    def authn_request(self, relay_state: str, force_authn: bool = False) -> tuple[str, str]:
        """(request id, the IdP URL to redirect to: signed AuthnRequest, HTTP-Redirect).
        `force_authn`: the IdP must authenticate the person anew, not answer from its session."""
        from saml2 import BINDING_HTTP_REDIRECT

        client = self.client
        request_id, info = client.prepare_for_authenticate(
            entityid=self.idp_entity_id(client), relay_state=relay_state, binding=BINDING_HTTP_REDIRECT,
            sign=True, **({"force_authn": "true"} if force_authn else {}))
        location = dict(info["headers"])["Location"]
        return request_id, location

    def validate(self, saml_response: str, outstanding_id: str | None,
                 authenticated_since: float | None = None) -> tuple[UpstreamIdentity, str, float]:
        """(identity, assertion id, assertion's NotOnOrAfter as epoch) of a valid response.
        `authenticated_since`: the request said ForceAuthn at that time; an IdP that answered
        from an older authentication (its AuthnInstant) is refused, as if it had ignored it."""
        response = self.verified_response(saml_response, outstanding_id)
        identity = self.identity_of(response)
        if authenticated_since is not None and (identity.auth_time or float("-inf")) < authenticated_since - CLOCK_SKEW:
            raise SamlError("ForceAuthn asked, but the IdP's AuthnInstant is older than the request")
        return identity, response.assertion.id, _not_on_or_after(response.assertion)

    def verified_response(self, saml_response: str, outstanding_id: str | None):
        """pysaml2's response, once it passed every acceptance check (a real sign-in and
        the Admin Center's Test connection accept exactly the same responses)."""
        if len(saml_response) > MAX_RESPONSE_BYTES * 2:  # before any work on it
            raise SamlError("response too large")
        # Line breaks (and the odd space) are allowed in it: the POST binding's base64 is MIME's
        # (saml-bindings §3.5.4, RFC 2045 lines of 76), which some IdPs still send.
        compact = saml_response.translate(_BASE64_SPACE)
        if len(compact) > MAX_RESPONSE_BYTES * 4 // 3 + 4:
            raise SamlError("response too large")
        try:
            xml = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise SamlError("response is not base64") from None
        if len(xml) > MAX_RESPONSE_BYTES:
            raise SamlError("response too large")
        if re.search(rb"<!DOCTYPE|<!ENTITY", xml, re.IGNORECASE):
            raise SamlError("response carries a DTD")
        # Signature wrapping puts a second assertion where a careless reader looks first:
        # accept exactly one, and it must be the signed one pysaml2 verified.
        if len(re.findall(rb"<(?:[A-Za-z0-9_-]+:)?Assertion[\s>]", xml)) != 1:
            raise SamlError("response must carry exactly one assertion")
        from .saml_signatures import UnverifiedResponse, verified_response

        client = self.client
        try:
            signed_only = verified_response(xml, self.idp_entity_id(client), self.idp_certificates)
        except UnverifiedResponse as err:
            raise SamlError(err.reason) from None
        try:
            response = _checked_by_pysaml2(client, signed_only, outstanding_id)
        except Exception as err:  # noqa: BLE001 - pysaml2 raises many types; every one is a refusal
            raise SamlError(f"pysaml2 refused the response: {type(err).__name__}: {err}") from None
        if response is None:
            raise SamlError("no response")
        assertion = response.assertion
        if assertion is None:  # the one assertion, verified above: pysaml2 saw no other
            raise SamlError("assertion is not signed")
        if outstanding_id is None and not self.allow_idp_initiated:
            raise SamlError("IdP-initiated sign-in is not enabled for this org")
        if outstanding_id is None and (response.in_response_to or _answers_a_request(assertion)):
            # an answer to someone else's request (a sign-in, an admin's test) is never unsolicited;
            # the Response's InResponseTo is unsigned when only the assertion is, so the
            # assertion's own (signed) one is asked too: pysaml2 reads it only for a solicited one
            raise SamlError("InResponseTo names a request this browser did not send")
        if outstanding_id is not None and response.in_response_to != outstanding_id:
            raise SamlError("InResponseTo does not answer this browser's request")
        self._check_recipient(assertion)
        self._check_audiences(assertion)
        return response

    def identity_of(self, response) -> UpstreamIdentity:
        """The person a verified response names (SPEC §5's attributes)."""
        email = self._email(response)
        return UpstreamIdentity(
            provider="saml", subject=email, email=email, email_verified=True,
            name=_first(response, DISPLAY_NAME, 200), given_name=_first(response, GIVEN_NAME),
            family_name=_first(response, FAMILY_NAME), auth_time=_authn_instant(response.assertion),
            session_ends=_session_not_on_or_after(response.assertion))

    def _check_recipient(self, assertion) -> None:
        confirmations = assertion.subject.subject_confirmation if assertion.subject else []
        recipients = [c.subject_confirmation_data.recipient for c in confirmations
                      if c.subject_confirmation_data is not None]
        if not recipients or any(r != self.acs_url for r in recipients):
            raise SamlError("SubjectConfirmationData Recipient is not our ACS")

    def _check_audiences(self, assertion) -> None:
        # Several AudienceRestrictions must each be met (SAML core §2.5.1.4); pysaml2 took any
        # one naming us as enough.
        for restriction in assertion.conditions.audience_restriction:
            if not any((a.text or "").strip() == self.entity_id for a in restriction.audience):
                raise SamlError("an AudienceRestriction does not name this service")

    @staticmethod
    def _email(response) -> str:
        name_id = response.assertion.subject.name_id if response.assertion.subject else None
        # pysaml2's parser drops XML comments and joins the text around them, so a comment
        # inside the NameID cannot shorten the address (it reads the whole signed text).
        candidates = []
        if name_id is not None and name_id.text and "@" in name_id.text and name_id.format in ADDRESS_NAME_IDS:
            candidates.append(name_id.text)
        candidates += [v for v in _values(response, EMAIL)]
        if not candidates:
            raise SamlError("no email in NameID or attributes")
        email = normalize(candidates[0])
        if email is None:  # one addr-spec only: never a list, a display name or a quoted part
            raise SamlError("email is malformed")
        return email


def assertion_expiry(response) -> float:
    """The verified response's assertion's NotOnOrAfter, as epoch (how long to remember its id)."""
    return _not_on_or_after(response.assertion)


def received(response) -> tuple[str | None, list[tuple[str, str | None, list[str]]]]:
    """(NameID, [(name, friendly name, values)]) of a verified response, as the IdP sent them."""
    subject = response.assertion.subject
    name_id = subject.name_id.text if subject is not None and subject.name_id is not None else None
    attributes = [(a.name, a.friendly_name, [v.text or "" for v in a.attribute_value])
                  for statement in response.assertion.attribute_statement or [] for a in statement.attribute]
    return name_id, attributes
def _checked_by_pysaml2(client: Saml2Client, signed_only: bytes, outstanding_id: str | None):
    """pysaml2's AuthnResponse for the verified document, read once and verified once.

    What `Saml2Client.parse_authn_request_response` does, with the same arguments, minus
    two things: it reads the document twice and verifies its assertion twice (first
    demanding a signature, to learn whether there is one: there never is, they were
    checked and removed beforehand), and it keeps every person's attributes in the
    client's in-memory cache (`client.users`), which we never read and which grows with
    every sign-in. Every check it makes (InResponseTo, Destination, audience, time
    conditions, SubjectConfirmation, status) is made here the same way."""
    from saml2 import BINDING_HTTP_POST

    response = _verified_authn_response_class()(
        client.sec,
        outstanding_queries={outstanding_id: "/"} if outstanding_id else {},
        outstanding_certs=None,
        allow_unsolicited=client.allow_unsolicited,
        want_assertions_signed=False,
        want_assertions_or_response_signed=False,
        want_response_signed=False,
        return_addrs=client.service_urls(binding=BINDING_HTTP_POST),
        entity_id=client.config.entityid,
        attribute_converters=client.config.attribute_converters,
        allow_unknown_attributes=client.config.allow_unknown_attributes,
        conv_info=None,
        timeslack=client.config.accepted_time_diff,
        asynchop=True,
    )
    # pysaml2 would first try the document as a bare StatusResponse (a whole parse, thrown
    # away); it is a Response, and it carries no signature any more.
    response.signature_check = _parsed_unsigned_response
    xml = signed_only.decode()
    response = response.loads(xml, False, origxml=xml)
    if response is None or response.verify(None) is None:
        return None
    return response


@cache
def _verified_authn_response_class():
    from saml2.response import AuthnResponse, IncorrectlySigned

    class VerifiedAuthnResponse(AuthnResponse):
        """pysaml2's AuthnResponse minus two things we never use, each costing about as much
        as verifying a signature: the re-validation of every object against pysaml2's own
        reading of the schema (the document was validated against the SAML schemas by
        `saml_signatures`, which also holds the few rules the schema cannot say), and the
        attribute map (`ava`: the attributes are read from the assertion by `identity_of`;
        the one refusal building it made, encrypted attributes, is made beforehand too)."""

        def _postamble(self):
            if not self.response:
                raise IncorrectlySigned()
            self.in_response_to = self.response.in_response_to
            return self

        def get_identity(self):
            return {}

    return VerifiedAuthnResponse


def _parsed_unsigned_response(xml: str, **_kwargs):
    """pysaml2's Response for the verified document (its `correctly_signed_response` without
    the guessing of the message type): a signature in it was never verified, so none may be."""
    from xml.etree import ElementTree

    from saml2 import create_class_from_element_tree, samlp
    from saml2.sigver import SignatureError

    # ElementTree's C parser, not defusedxml's pure-Python one (`samlp.response_from_string`),
    # about a fifth of the cost: `xml` is our own serialization of a tree lxml parsed with no
    # DTD (a DTD was refused), so it declares no entity for defusedxml to guard against.
    response = create_class_from_element_tree(samlp.Response, ElementTree.fromstring(xml))
    if response is None:
        raise TypeError("Not a Response")
    if response.signature:
        raise SignatureError("signatures are verified before pysaml2 reads a response")
    return response


def _signatures_checked_beforehand():
    """A pysaml2 crypto backend that verifies nothing and refuses every signature."""
    from saml2.sigver import CryptoBackend, SignatureError

    class SignaturesCheckedBeforehand(CryptoBackend):
        def validate_signature(self, signedtext, cert_file, cert_type, node_name, node_id):
            raise SignatureError("signatures are verified before pysaml2 reads a response")

    return SignaturesCheckedBeforehand()


def _answers_a_request(assertion) -> bool:
    confirmations = assertion.subject.subject_confirmation if assertion.subject else []
    return any(c.subject_confirmation_data is not None and c.subject_confirmation_data.in_response_to
               for c in confirmations)


def _values(response, names: tuple[str, ...]) -> list[str]:
    found = []
    for statement in response.assertion.attribute_statement or []:
        for attribute in statement.attribute:
            if attribute.name in names or attribute.friendly_name in names:
                found += [v.text.strip() for v in attribute.attribute_value if v.text and v.text.strip()]
    return found


def _first(response, names: tuple[str, ...], limit: int = 100) -> str | None:
    values = _values(response, names)
    return profile_text(values[0], limit) if values else None


def _authn_instant(assertion) -> float | None:
    """When the IdP last authenticated the person, as epoch: the latest AuthnInstant of the
    assertion's AuthnStatements (the Web SSO profile asks for at least one), or None."""
    from saml2.time_util import str_to_time

    instants = [s.authn_instant for s in assertion.authn_statement if s.authn_instant]
    try:
        return max((calendar.timegm(str_to_time(t)) for t in instants), default=None)
    # str_to_time fails with an AttributeError on a time it cannot match ("+00:00" for "Z")
    except (ValueError, TypeError, AttributeError):
        raise SamlError("AuthnInstant is not a time") from None


def _session_not_on_or_after(assertion) -> float | None:
    """When the IdP says the person's session ends (the earliest SessionNotOnOrAfter of the
    AuthnStatements, SAML core §2.7.2), as epoch; None when it does not say. pysaml2 refuses
    one already past."""
    from saml2.time_util import str_to_time

    ends = [s.session_not_on_or_after for s in assertion.authn_statement if s.session_not_on_or_after]
    try:
        return min((calendar.timegm(str_to_time(t)) for t in ends), default=None)
    except (ValueError, TypeError, AttributeError):  # as `_authn_instant`
        raise SamlError("SessionNotOnOrAfter is not a time") from None


def _not_on_or_after(assertion) -> float:
    from saml2.time_util import str_to_time

    times = []
    if assertion.conditions is not None and assertion.conditions.not_on_or_after:
        times.append(assertion.conditions.not_on_or_after)
    for c in assertion.subject.subject_confirmation if assertion.subject else []:
        data = c.subject_confirmation_data
        if data is not None and data.not_on_or_after:
            times.append(data.not_on_or_after)
    if not times:
        raise SamlError("assertion has no NotOnOrAfter")
    return max(calendar.timegm(str_to_time(t)) for t in times)
