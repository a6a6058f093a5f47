"""Self-test of tests/saml_idp.py: the test IdP speaks real SAML.

pysaml2 plays the Service Provider here ONLY, to prove the IdP's requests/responses/tampering are what
they claim to be; the product's own SP is tested elsewhere against the same TestIdP.
"""

from __future__ import annotations

import base64
import re
import subprocess
import xml.dom.minidom
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS
from saml2.sigver import get_xmlsec_binary
from saml2.xmldsig import DIGEST_SHA1, SIG_RSA_SHA1

from tests.saml_idp import (
    TestIdP,
    decode,
    make_key_and_cert,
    name_id_of,
    oversized,
    replace_text,
    sp_metadata_for,
    unsigned,
    with_comment_in_name_id,
    with_dtd,
    wrapped,
)

SP_ENTITY = "https://sp.example.test/saml/metadata"
ACS = "https://sp.example.test/saml/acs"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ASSERTION_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
PROTOCOL_NS = "urn:oasis:names:tc:SAML:2.0:protocol"


def make_sp(workdir, idp_metadata: str, *, sign_requests: bool = True, **sp_options) -> Saml2Client:
    workdir.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = workdir / "sp-key.pem", workdir / "sp-cert.pem"
    if not key_file.exists():
        key, cert = make_key_and_cert("sp.example.test")
        key_file.write_bytes(key)
        cert_file.write_bytes(cert)
    sp = {
        "endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]},
        "want_assertions_signed": True,
        "want_response_signed": False,
        "authn_requests_signed": sign_requests,
        "allow_unsolicited": False,
        "name_id_format": NAMEID_FORMAT_EMAILADDRESS,
    }
    sp.update(sp_options)
    conf = {
        "entityid": SP_ENTITY,
        "service": {"sp": sp},
        "key_file": str(key_file),
        "cert_file": str(cert_file),
        "xmlsec_binary": get_xmlsec_binary(),
        "metadata": {"inline": [idp_metadata]},
        "allow_unknown_attributes": True,
        "accepted_time_diff": 60,
    }
    return Saml2Client(config=SPConfig().load(conf))


def sp_metadata(sp: Saml2Client) -> str:
    md = create_metadata_string(None, config=sp.config)
    return md.decode() if isinstance(md, bytes) else md


def start_login(sp: Saml2Client, idp: TestIdP, relay_state: str = "rs-123") -> tuple[str, str]:
    """The SP's AuthnRequest over HTTP-Redirect: (request id, the URL the browser is sent to)."""
    req_id, info = sp.prepare_for_authenticate(
        entityid=idp.entity_id,
        relay_state=relay_state,
        binding=BINDING_HTTP_REDIRECT,
        sigalg=RSA_SHA256,
    )
    return req_id, dict(info["headers"])["Location"]


def sp_accepts(sp: Saml2Client, b64: str, req_id: str):
    """pysaml2's SP verdict: the AuthnResponse, or raises."""
    return sp.parse_authn_request_response(b64, BINDING_HTTP_POST, outstanding={req_id: "/"})


def xmlsec_verify(tmp_path, xml: str, cert_file, node_id: str) -> subprocess.CompletedProcess:
    """Verify the signature of the element with ID `node_id` with xmlsec1 against `cert_file` only
    (embedded KeyInfo certificates are not trusted), as pysaml2 does."""
    doc = tmp_path / f"verify-{node_id}.xml"
    doc.write_text(xml)
    cmd = [
        get_xmlsec_binary(),
        "--verify",
        "--enabled-reference-uris",
        "empty,same-doc",
        "--enabled-key-data",
        "raw-x509-cert",
        "--pubkey-cert-pem",
        str(cert_file),
        "--id-attr:ID",
        f"{ASSERTION_NS}:Assertion",
        "--id-attr:ID",
        f"{PROTOCOL_NS}:Response",
        "--node-id",
        node_id,
        str(doc),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def ids(xml_text: str, tag: str) -> list[str]:
    return re.findall(rf'<(?:[\w.-]+:)?{tag}\b[^>]*?\bID="([^"]+)"', xml_text)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("saml")
    idp = TestIdP(base / "idp")
    other = TestIdP(base / "other", entity_id="https://other-idp.example.test/saml")
    sp = make_sp(base / "sp", idp.metadata_xml())
    idp.trust_sp(sp_metadata(sp))
    other.trust_sp(sp_metadata(sp))
    return {"idp": idp, "other": other, "sp": sp, "base": base}


# --------------------------------------------------------------------------- metadata & AuthnRequest


def test_metadata_has_signing_certificate_and_sso_endpoint(env):
    idp = env["idp"]
    md = idp.metadata_xml()
    assert f'entityID="{idp.entity_id}"' in md
    assert idp.cert_der_b64 in md
    assert re.search(r'<(?:\w+:)?KeyDescriptor use="signing"', md)
    sso = re.findall(r'<(?:\w+:)?SingleSignOnService Binding="([^"]+)" Location="([^"]+)"', md)
    assert (BINDING_HTTP_REDIRECT, "https://idp.example.test/saml/sso") in sso
    assert idp.sso_url == "https://idp.example.test/saml/sso"


def test_parse_signed_authn_request(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp, relay_state="state/with?odd=chars&x")
    assert url.startswith(idp.sso_url + "?")
    req = idp.parse_authn_request(url)
    assert req["id"] == req_id
    assert req["issuer"] == SP_ENTITY
    assert req["acs_url"] == ACS
    assert req["relay_state"] == "state/with?odd=chars&x"
    assert req["destination"] == idp.sso_url
    assert req["sig_alg"] == RSA_SHA256
    assert req["signed"] is True, req["signature_error"]
    assert "AuthnRequest" in req["xml"]


def test_unsigned_or_tampered_authn_request_is_reported_unsigned(env, tmp_path):
    idp = env["idp"]
    plain_sp = make_sp(tmp_path / "plain-sp", idp.metadata_xml(), sign_requests=False)
    _, url = start_login(plain_sp, idp)
    req = idp.parse_authn_request(url)
    assert req["signed"] is False and "no Signature" in req["signature_error"]

    _, url = start_login(env["sp"], idp, relay_state="original")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["RelayState"] = "changed"  # no longer what was signed
    req = idp.parse_authn_request(urlunsplit(parts._replace(query=urlencode(query))))
    assert req["relay_state"] == "changed"
    assert req["signed"] is False


# --------------------------------------------------------------------------- responses


def test_response_is_accepted_by_a_real_sp(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    req = idp.parse_authn_request(url)
    b64, acs_url = idp.response(req, email="alice@corp.example", attributes={"givenName": "Alicia"})
    assert acs_url == ACS
    text = decode(b64)
    assert "rsa-sha256" in text and "xml-exc-c14n" in text
    assert len(re.findall(r"<(?:\w+:)?Signature\b", text)) == 2  # Response + Assertion
    resp = sp_accepts(sp, b64, req_id)
    assert resp.ava["email"] == ["alice@corp.example"]
    assert resp.ava["givenName"] == ["Alicia"]
    assert resp.ava["sn"] == ["Example"]
    assert resp.ava["displayName"] == ["Alice Example"]
    assert resp.name_id.text == "alice@corp.example"
    assert resp.name_id.format == NAMEID_FORMAT_EMAILADDRESS
    assert resp.in_response_to == req_id


def test_assertion_only_signature_and_custom_name_id(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    req = idp.parse_authn_request(url)
    b64, _ = idp.response(
        req,
        email="bob@corp.example",
        name_id="opaque-bob-123",
        attributes={"sn": None, "urn:oid:2.5.4.10": "Corp"},
        sign_response=False,
    )
    assert len(re.findall(r"<(?:\w+:)?Signature\b", decode(b64))) == 1
    resp = sp_accepts(sp, b64, req_id)
    assert resp.name_id.text == "opaque-bob-123"
    assert resp.ava["email"] == ["bob@corp.example"]
    assert "sn" not in resp.ava
    assert 'Name="urn:oid:2.5.4.10" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"' in decode(b64)


def test_response_signed_by_another_key_is_refused(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    req = idp.parse_authn_request(url)
    b64, _ = idp.response(req, email="alice@corp.example", signer=env["other"])
    assert f">{idp.entity_id}<" in decode(b64)  # still claims to come from our IdP
    assert env["other"].cert_der_b64 in decode(b64)  # but carries (and is signed by) the other key
    with pytest.raises(Exception, match="(?i)signature"):
        sp_accepts(sp, b64, req_id)


def test_unsigned_response_is_refused_when_assertions_must_be_signed(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(idp.parse_authn_request(url), email="alice@corp.example")
    stripped = unsigned(b64)
    assert "Signature" not in decode(stripped)
    with pytest.raises(Exception, match="(?i)signature missing"):
        sp_accepts(sp, stripped, req_id)


def test_modified_after_signing_is_refused(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(idp.parse_authn_request(url), email="alice@corp.example")
    evil = replace_text(b64, "alice@corp.example", "mallory@corp.example")
    assert "mallory@corp.example" in decode(evil)
    with pytest.raises(Exception, match="(?i)signature"):
        sp_accepts(sp, evil, req_id)
    with pytest.raises(ValueError):
        replace_text(b64, "not-in-there", "x")


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"not_on_or_after_minutes": -10}, "(?i)condition"),
        ({"not_before_minutes": 30}, "(?i)condition|not yet valid|too early"),
        ({"audience": "https://someone-else.example/sp"}, "(?i)audience"),
        ({"in_response_to": "id-never-sent"}, "(?i)unsolicited|in_response_to|inresponseto"),
    ],
)
def test_invalid_conditions_are_refused(env, kwargs, error):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(idp.parse_authn_request(url), email="alice@corp.example", **kwargs)
    with pytest.raises(Exception, match=error):
        sp_accepts(sp, b64, req_id)


def test_sha1_signatures_can_be_produced(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(
        idp.parse_authn_request(url), email="alice@corp.example", sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1
    )
    assert "xmldsig#rsa-sha1" in decode(b64) and "rsa-sha256" not in decode(b64)
    assert sp_accepts(sp, b64, req_id).ava["email"] == ["alice@corp.example"]  # pysaml2 still takes SHA-1


def test_idp_initiated_response_and_hand_made_sp_metadata(env, tmp_path):
    """An IdP that only knows the SP from sp_metadata_for() (entityID, ACS, cert) still verifies the SP's
    signed request and answers; and request=None builds an unsolicited (IdP-initiated) response."""
    idp2 = TestIdP(tmp_path / "idp2")
    cert_pem = (env["base"] / "sp" / "sp-cert.pem").read_bytes()
    idp2.trust_sp(sp_metadata_for(SP_ENTITY, ACS, cert_pem))
    sp2 = make_sp(env["base"] / "sp", idp2.metadata_xml(), allow_unsolicited=True)  # same key/cert as env["sp"]
    req_id, url = start_login(sp2, idp2)
    req = idp2.parse_authn_request(url)
    assert req["signed"] is True, req["signature_error"]
    b64, _ = idp2.response(req, email="carol@corp.example")
    assert sp_accepts(sp2, b64, req_id).ava["email"] == ["carol@corp.example"]

    b64, acs_url = idp2.response(None, email="dave@corp.example")
    assert acs_url == ACS and "InResponseTo" not in decode(b64)
    resp = sp2.parse_authn_request_response(b64, BINDING_HTTP_POST, outstanding={})
    assert resp.ava["email"] == ["dave@corp.example"]


# --------------------------------------------------------------------------- attacks


def test_comment_in_name_id_keeps_a_valid_signature(env, tmp_path):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    req = idp.parse_authn_request(url)
    # The attacker legitimately owns alice@corp.example.evil.example at this IdP ...
    b64, _ = idp.response(req, email="alice@corp.example.evil.example")
    attack = with_comment_in_name_id(b64, inject="evil.example")
    text = decode(attack)
    assert "<!---->" in text
    assert re.search(r"<(?:\w+:)?NameID\b[^>]*>alice@corp\.example<!---->\.evil\.example</", text)
    assert re.search(r"<(?:\w+:)?AttributeValue\b[^>]*>alice@corp\.example<!---->\.evil\.example</", text)

    # ... a naive reader (first text node of NameID) sees alice@corp.example ...
    dom = xml.dom.minidom.parseString(text)
    name_id = dom.getElementsByTagNameNS(ASSERTION_NS, "NameID")[0]
    assert name_id.firstChild.data == "alice@corp.example"
    assert name_id_of(attack) == "alice@corp.example.evil.example"  # the signed value

    # ... while BOTH signatures still verify (xmlsec1, only the IdP's certificate trusted) ...
    (assertion_id,) = ids(text, "Assertion")
    (response_id,) = ids(text, "Response")
    for node_id in (assertion_id, response_id):
        result = xmlsec_verify(tmp_path, text, idp.cert_file, node_id)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stderr
    # ... and a control: the same check does fail on a really modified document.
    broken = decode(replace_text(b64, ".evil.example<", "<"))
    assert xmlsec_verify(tmp_path, broken, idp.cert_file, assertion_id).returncode != 0

    # pysaml2 (ElementTree drops comments and joins the text) accepts it and reads the full, signed value.
    resp = sp_accepts(sp, attack, req_id)
    assert resp.name_id.text == "alice@corp.example.evil.example"
    assert resp.ava["email"] == ["alice@corp.example.evil.example"]

    with pytest.raises(ValueError):
        with_comment_in_name_id(b64, inject="other.example")


@pytest.mark.parametrize("mode", ["sibling", "extensions", "advice"])
@pytest.mark.parametrize("same_id", [False, True])
def test_signature_wrapping_structure(env, tmp_path, mode, same_id):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(idp.parse_authn_request(url), email="alice@corp.example")
    (original_id,) = ids(decode(b64), "Assertion")
    attack = wrapped(b64, "mallory@corp.example", mode=mode, same_id=same_id)
    text = decode(attack)

    assertion_ids = ids(text, "Assertion")
    assert len(assertion_ids) == 2
    assert original_id in assertion_ids
    assert (assertion_ids.count(original_id) == 2) is same_id
    # Only the original carries a signature (the Response-level one was removed) ...
    assert len(re.findall(r"<(?:\w+:)?Signature\b", text)) == 1
    # ... and what a naive parser reads - the first Response/Assertion child, and (except for "extensions",
    # where the original was moved up into <Extensions>) the first NameID in document order - is the evil one.
    dom = xml.dom.minidom.parseString(text)
    root_elements = [n for n in dom.documentElement.childNodes if n.nodeType == n.ELEMENT_NODE]
    first = next(n for n in root_elements if n.localName == "Assertion")
    assert first.getElementsByTagNameNS(ASSERTION_NS, "NameID")[0].firstChild.data == "mallory@corp.example"
    (statement,) = [n for n in first.childNodes if n.nodeType == n.ELEMENT_NODE and n.localName == "AttributeStatement"]
    assert statement.getElementsByTagNameNS(ASSERTION_NS, "AttributeValue")[0].firstChild.data == "mallory@corp.example"
    own_signatures = [n for n in first.childNodes if n.nodeType == n.ELEMENT_NODE and n.localName == "Signature"]
    assert not own_signatures
    first_name_id = dom.getElementsByTagNameNS(ASSERTION_NS, "NameID")[0].firstChild.data
    assert first_name_id == ("alice@corp.example" if mode == "extensions" else "mallory@corp.example")
    root_children = [n.localName for n in root_elements]
    if mode == "sibling":
        assert root_children == ["Issuer", "Status", "Assertion", "Assertion"]
    elif mode == "extensions":
        assert root_children == ["Issuer", "Extensions", "Status", "Assertion"]
    else:
        assert root_children == ["Issuer", "Status", "Assertion"]
        advice = first.getElementsByTagNameNS(ASSERTION_NS, "Advice")[0]
        assert advice.getElementsByTagNameNS(ASSERTION_NS, "Assertion")[0].getAttribute("ID") == original_id

    if not same_id:  # the original's signature is untouched and still verifies by its ID
        result = xmlsec_verify(tmp_path, text, idp.cert_file, original_id)
        assert result.returncode == 0, result.stderr

    # pysaml2 itself refuses every variant.
    with pytest.raises(Exception) as refused:
        sp_accepts(sp, attack, req_id)
    print(f"pysaml2 refuses wrapped(mode={mode}, same_id={same_id}): {refused.type.__name__}: {refused.value}")


def test_with_dtd(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(idp.parse_authn_request(url), email="alice@corp.example")
    text = decode(with_dtd(b64))
    assert re.match(r'(<\?xml[^>]*\?>\s*)?<!DOCTYPE Response \[<!ENTITY xxe "expanded">\]>', text)
    used = decode(with_dtd(b64, use_entity=True))
    assert '<!ENTITY xxe "alice">' in used and ">&xxe;@corp.example<" in used
    for attack in (with_dtd(b64), with_dtd(b64, use_entity=True)):
        with pytest.raises(Exception, match="(?i)entit|dtd"):  # defusedxml in pysaml2
            sp_accepts(sp, attack, req_id)


def test_oversized_keeps_signatures_valid(env):
    idp, sp = env["idp"], env["sp"]
    req_id, url = start_login(sp, idp)
    b64, _ = idp.response(idp.parse_authn_request(url), email="alice@corp.example")
    big = oversized(b64, 300_000)
    assert len(base64.b64decode(big)) == 300_000
    assert sp_accepts(sp, big, req_id).ava["email"] == ["alice@corp.example"]  # only the size is wrong


def test_helpers_are_reachable_from_the_idp(env):
    idp = env["idp"]
    assert idp.unsigned is unsigned
    assert TestIdP.with_dtd.__name__ == "with_dtd"
    assert TestIdP.__test__ is False
