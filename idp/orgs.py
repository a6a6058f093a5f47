"""Enterprise accounts: orgs, their domains, their SAML IdP, and our SP for them.

The command line (`idp orgs ...`) and the Admin Center's Enterprise Sign-In section both
act through the functions here, so an IdP is checked, attached and enforced one way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from federation.saml import ServiceProvider
from keys import seal, unseal
from keys.saml import new_sp_credential

from . import org_sso, outbound, providers
from .org_names import DOMAIN, TAKEN, OrgError, checked  # noqa: F401 - importable from here too
from .store import Org, OrgDomain, SpCredential, db, utcnow

PURPOSE = b"saml sp key"
METADATA_LIMIT = 4 * 1024 * 1024  # one IdP's metadata is a few KiB; federation aggregates are not for us
METADATA_DEADLINE = 15.0  # seconds


def _settings():
    return current_app.extensions["idp.settings"]


def find(name_or_id: str) -> Org | None:
    return db.session.execute(select(Org).where((Org.name == name_or_id) | (Org.id == name_or_id))).scalar_one_or_none()


def create(name: str, domains: list[str]) -> Org:
    name, domains = checked(name, domains)
    org = Org(name=name)
    try:
        db.session.add(org)
        db.session.flush()
        for d in domains:
            db.session.add(OrgDomain(domain=d, org_id=org.id))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise OrgError(TAKEN) from None
    return org


_DOMAINS = OrgDomain.__table__
# A table statement built once, on the session's connection (no ORM execute layer): every
# SAML sign-in asks.
_DOMAINS_OF = select(_DOMAINS.c.domain).where(_DOMAINS.c.org_id == bindparam("org_id"))


def domains_of(org: Org) -> list[str]:
    return list(db.session.connection().execute(_DOMAINS_OF, {"org_id": org.id}).scalars())


@dataclass(frozen=True)
class OrgView:
    """An org's row and domains as committed, kept per process (`view`): what the ACS and
    the sign-in options ask of an org (`service_provider` takes it as it takes an Org)."""

    id: str
    enforce_sso: bool
    allow_idp_initiated: bool
    saml_metadata: str | None
    require_mfa: bool
    allow_social: bool
    allow_passkeys: bool
    domains: frozenset[str]


_ORGS = Org.__table__
_ORG_VIEW = select(_ORGS.c.enforce_sso, _ORGS.c.allow_idp_initiated, _ORGS.c.saml_metadata, _ORGS.c.require_mfa,
                   _ORGS.c.allow_social, _ORGS.c.allow_passkeys).where(_ORGS.c.id == bindparam("id"))
_ORG_OF_DOMAIN = select(_DOMAINS.c.org_id).where(_DOMAINS.c.domain == bindparam("domain"))


def view(org_id: str) -> OrgView | None:
    """The org as committed, kept per process: the database bumps the `scim` change stamp
    in the transaction of any change to an org or its domains (migration 0012), and an
    entry is used only while this process reads that stamp unchanged (the scheme of
    idp/oauth/client_cache.py), so every process sees a new IdP, option or domain at once."""
    return _view_cache().get(org_id, _load_view)


def view_of_domain(domain: str) -> OrgView | None:
    """`view` of the org owning `domain` (an org id never starts with "@"). Asked of an
    account's own domain on every signed-in page, and most belong to no org: that answer is
    kept too, until the stamp moves (a domain an org claims later moves it, migration 0012)."""
    return _view_cache().get("@" + domain, _load_view_of_domain, keep_miss=True)


# Read on a connection of its own, after the stamp was read: the request's transaction may
# hold an older snapshot (SQLite), which must never be filed under the newer stamp.
def _load_view(org_id: str) -> OrgView | None:
    with db.engine.connect() as conn:
        return _read_view(conn, org_id)


def _load_view_of_domain(key: str) -> OrgView | None:
    with db.engine.connect() as conn:
        org_id = conn.execute(_ORG_OF_DOMAIN, {"domain": key[1:]}).scalar()
        return _read_view(conn, org_id) if org_id is not None else None


def _read_view(conn, org_id: str) -> OrgView | None:
    row = conn.execute(_ORG_VIEW, {"id": org_id}).first()
    if row is None:
        return None
    domains = frozenset(conn.execute(_DOMAINS_OF, {"org_id": org_id}).scalars())
    return OrgView(org_id, bool(row.enforce_sso), bool(row.allow_idp_initiated), row.saml_metadata,
                   bool(row.require_mfa), bool(row.allow_social), bool(row.allow_passkeys), domains)


def _view_cache():
    from .oauth.client_cache import app_cache

    return app_cache("idp.org_view_cache", stamp="scim")


# Where metadata came from when it was uploaded through the Admin Center: not a path and
# not a URL, so nothing ever tries to read it again (an admin must never name a server file).
UPLOADED = "upload:"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
REDIRECT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"


@dataclass(frozen=True)
class IdpMetadata:
    """What an IdP's metadata says that matters to us (and to the admin who attached it)."""

    entity_id: str
    sso_url: str
    certificate_expires: datetime  # the signing certificate that expires last
    valid_until: datetime | None
    cache_duration: timedelta | None = None  # how long the IdP says a copy may be kept


def is_url(source: str) -> bool:
    """`source` names an http(s) URL, not a file: schemes are case-insensitive (RFC 3986
    §3.1), and "HTTPS://..." must never be opened as a path on this server."""
    return source[:8].lower().startswith(("https://", "http://"))


def shown_source(source: str) -> str:
    """The source for the audit trail and logs: a metadata URL's query may carry a token of
    the IdP's."""
    if not is_url(source):
        return source
    try:
        parts = urlsplit(source)
    except ValueError:
        return source.split("?", 1)[0].split("#", 1)[0]
    return parts._replace(query="", fragment="").geturl()


def fetch_metadata(url: str) -> str:
    """The IdP metadata XML at an http(s) URL, fetched through the outbound guard (https, a
    public or allow-listed address, a size cap and a deadline)."""
    try:
        resp = outbound.current().get(url, deadline=METADATA_DEADLINE, max_bytes=METADATA_LIMIT)
    except outbound.OutboundError as err:
        raise OrgError(f"cannot fetch metadata: {err}") from None
    if resp.status != 200:
        raise OrgError(f"cannot fetch metadata: HTTP {resp.status}")
    return resp.text


def read_metadata(source: str) -> str:
    """The IdP metadata XML from a file path or an http(s) URL, checked by `check_metadata`."""
    if is_url(source):
        xml = fetch_metadata(source)
    elif source.startswith(UPLOADED):
        raise OrgError("this metadata was uploaded: upload it again to change it")
    else:
        try:
            with open(source, "rb") as f:
                xml = f.read(METADATA_LIMIT + 1).decode("utf-8", errors="replace")
        except OSError as err:
            raise OrgError(f"cannot read metadata: {err.strerror}: {source}") from None
    check_metadata(xml)
    return xml


def check_metadata(xml: str) -> IdpMetadata:
    """What `xml` says, when it is one IdP's SAML metadata we can use: at most
    METADATA_LIMIT, no DTD, well-formed, one IDPSSODescriptor with an HTTP-Redirect
    SingleSignOnService and a signing certificate. Raises OrgError saying what is wrong."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    if len(xml.encode()) > METADATA_LIMIT:
        raise OrgError(f"the metadata is larger than {METADATA_LIMIT // (1024 * 1024)} MiB")
    if re.search(r"<!DOCTYPE|<!ENTITY", xml, re.IGNORECASE):
        raise OrgError("this is not SAML IdP metadata (it carries a DTD)")
    try:
        root = fromstring(xml.encode(), forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as err:
        raise OrgError(f"the metadata is not well-formed XML ({err})") from None
    entities = [root] if root.tag == f"{{{MD}}}EntityDescriptor" else root.findall(f"{{{MD}}}EntityDescriptor")
    idps = [(e, d) for e in entities for d in e.findall(f"{{{MD}}}IDPSSODescriptor")]
    if len(idps) != 1:
        raise OrgError(f"this is not SAML IdP metadata (expected one IDPSSODescriptor, found {len(idps)})")
    entity, descriptor = idps[0]
    entity_id = (entity.get("entityID") or "").strip()
    if not entity_id:
        raise OrgError("the metadata has no entityID")
    sso = [s.get("Location", "").strip() for s in descriptor.findall(f"{{{MD}}}SingleSignOnService")
           if s.get("Binding") == REDIRECT_BINDING]
    if not sso or not sso[0].startswith(("https://", "http://")):
        raise OrgError("the metadata has no SingleSignOnService for the HTTP-Redirect binding")
    # Members type their IdP password on that page: in clear text only on this machine (a
    # development IdP), as `outbound` allows http only to loopback.
    if sso[0].startswith("http://") and not outbound.is_loopback_host(_host_of(sso[0])):
        raise OrgError(f"the IdP's SingleSignOnService must be an https:// URL, not {sso[0][:200]}")
    expiries = []
    for key in descriptor.findall(f"{{{MD}}}KeyDescriptor"):
        if key.get("use", "signing") != "signing":
            continue
        for cert in key.iter(f"{{{DS}}}X509Certificate"):
            expiries.append(_certificate_expiry(cert.text or ""))
    if not expiries:
        raise OrgError("the metadata has no signing certificate for the IdP")
    durations = [_duration(e.get("cacheDuration")) for e in {entity, root} if e.get("cacheDuration")]
    return IdpMetadata(entity_id=entity_id, sso_url=sso[0], certificate_expires=max(expiries),
                       valid_until=_valid_until(entity.get("validUntil") or root.get("validUntil")),
                       cache_duration=min(durations, default=None))


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # "http://[x": no host that could be loopback
        return None


def _certificate_expiry(text: str) -> datetime:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
    except (binascii.Error, ValueError):
        raise OrgError("the metadata's signing certificate cannot be read") from None
    return cert.not_valid_after_utc.replace(tzinfo=None)


def _valid_until(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise OrgError(f"the metadata's validUntil is not a date: {text[:40]}") from None


# xs:duration (cacheDuration); a month and a year are taken as 30 and 365 days.
DURATION = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def _duration(text: str) -> timedelta:
    text = text.strip()
    m = DURATION.fullmatch(text)
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise OrgError(f"the metadata's cacheDuration is not a duration: {text[:40]}")
    years, months, days, hours, minutes, seconds = (float(g or 0) for g in m.groups())
    try:
        return timedelta(days=365 * years + 30 * months + days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:  # millions of years: "keep it", and the daily refresh comes first anyway
        return timedelta.max


# When to read a copy again (SAML metadata §2.3.1: a consumer keeps a copy at most cacheDuration,
# never past validUntil). Before validUntil, with time to try again should that read fail; at
# least daily, so that an IdP's new signing certificate arrives within a day even when its
# metadata says nothing; never sooner than the next round.
REFRESH_AT_LEAST = timedelta(days=1)
REFRESH_AT_MOST = timedelta(minutes=10)
REFRESH_MARGIN = timedelta(hours=1)


def next_refresh(found: IdpMetadata, fetched_at: datetime) -> datetime:
    """When a copy read at `fetched_at` saying `found` is due to be read again."""
    due = fetched_at + REFRESH_AT_LEAST
    if found.cache_duration is not None:
        due = fetched_at + min(REFRESH_AT_LEAST, found.cache_duration)  # no overflow on a huge one
    if found.valid_until is not None:
        left = found.valid_until - fetched_at
        due = min(due, found.valid_until - REFRESH_MARGIN, fetched_at + left / 2)
    return max(due, fetched_at + REFRESH_AT_MOST)


def check_new_metadata(org: Org, xml: str, allow_idp_initiated: bool, now: datetime | None = None) -> IdpMetadata:
    """Every check a document passes before the org uses it, whether an admin gives it or
    a refresh reads it again: `check_metadata`, not expired, and usable by pysaml2."""
    found = check_metadata(xml)
    if found.valid_until is not None and found.valid_until <= (now or utcnow()):
        raise OrgError(f"the metadata expired on {found.valid_until:%Y-%m-%d %H:%M} UTC (its validUntil)")
    try:  # fails now, not at sign-in, when pysaml2 cannot use it
        _service_provider_for(org.id, xml, allow_idp_initiated).idp_entity_id()
    except Exception as err:  # noqa: BLE001 - pysaml2 raises many types; every one is a refusal
        raise OrgError(f"the metadata cannot be used: {getattr(err, 'reason', err)}") from None
    return found


def attach_saml(org: Org, source: str, xml: str | None = None,
                allow_idp_initiated: bool | None = None) -> IdpMetadata:
    """Make `xml` (read from `source` when not given) the org's IdP. Every check runs
    before the org is touched: a refused document leaves the old set-up as it was."""
    xml = read_metadata(source) if xml is None else xml
    idp_initiated = org.allow_idp_initiated if allow_idp_initiated is None else allow_idp_initiated
    now = utcnow()
    found = check_new_metadata(org, xml, idp_initiated, now)
    org.saml_metadata = xml
    org.saml_metadata_source = source
    org.saml_metadata_fetched_at = now
    # the column says when to read the source again (idp.metadata_refresh), not validUntil itself
    org.saml_metadata_valid_until = next_refresh(found, now)
    org.allow_idp_initiated = idp_initiated
    db.session.commit()
    return found


def idp_metadata(org: Org) -> IdpMetadata | None:
    """What the org's attached metadata says (None without one)."""
    if not org.saml_metadata:
        return None
    try:
        return check_metadata(org.saml_metadata)
    except OrgError:  # attached before today's checks: the page says so instead of failing
        return None


def has_idp(org: Org) -> bool:
    """The org has a SAML IdP or an enterprise OpenID provider to sign its people in."""
    from .store import SocialProvider

    db.session.flush()  # a provider just added in this session counts
    return org_sso.has_idp(db.session.connection(), SocialProvider.__table__, org)


def enforce_sso(org: Org, on: bool = True) -> None:
    """Make (or stop making) Enterprise Sign-In the only way in for the org's people;
    refused while the org has no IdP (it would lock everyone out)."""
    from .store import SocialProvider

    db.session.flush()
    org_sso.check_enforce(db.session.connection(), SocialProvider.__table__, org, on)
    org.enforce_sso = on
    db.session.commit()


def check_issuer(issuer: str) -> None:
    """An OpenID issuer this server may fetch discovery from (`providers.check_issuer`)."""
    providers.check_issuer(issuer, outbound.current())


def attach_oidc(org: Org, issuer: str, client_id: str, client_secret: str) -> str:
    """Make `issuer` the org's enterprise OpenID provider; returns the redirect URI to
    register there. Nothing is fetched now: discovery happens on first use."""
    from .social import add_provider, redirect_uri

    name, client_id, client_secret = providers.enterprise(org.id, issuer, client_id, client_secret,
                                                          outbound.current())
    add_provider(name, client_id, client_secret, issuer, org_id=org.id)
    return redirect_uri(name)


def _credential() -> SpCredential:
    row = db.session.execute(select(SpCredential).order_by(SpCredential.created_at)).scalars().first()
    if row is None:
        key_pem, cert_pem = new_sp_credential(_settings().issuer)
        row = SpCredential(sealed_private_key=b"", certificate_pem=cert_pem)
        db.session.add(row)
        db.session.flush()
        row.sealed_private_key = seal(_settings().secret_key, key_pem, row.id, PURPOSE)
        db.session.commit()
    return row


_CREDENTIALS = SpCredential.__table__
_OLDEST_CREDENTIAL = (select(_CREDENTIALS.c.id, _CREDENTIALS.c.created_at)
                      .order_by(_CREDENTIALS.c.created_at).limit(1))
# No change stamp covers sp_credentials, and none is needed: nothing updates or deletes a
# credential, and one is inserted only when there is none (`_credential`). The oldest can
# then change only while two processes' first inserts race (a transaction of milliseconds);
# once the oldest is older than this, it is the SP's credential for good.
CREDENTIAL_SETTLED = timedelta(minutes=10)


def _credential_files() -> tuple[Path, Path]:
    """`_key_files(_credential())`, reading only the credential's id once its files are
    written (every SAML request asks; the sealed key is needed once per process), and
    nothing once the credential is settled (kept per app)."""
    settled = current_app.extensions.get("idp.sp_credential_files")
    if settled is not None:
        return settled
    found = db.session.connection().execute(_OLDEST_CREDENTIAL).first()
    if found is not None:
        key_file, cert_file = _key_paths(found.id)
        if key_file.exists() and cert_file.exists():
            if found.created_at < utcnow() - CREDENTIAL_SETTLED:
                current_app.extensions["idp.sp_credential_files"] = (key_file, cert_file)
            return key_file, cert_file
    return _key_files(_credential())


def _key_paths(credential_id: str) -> tuple[Path, Path]:
    folder = _settings().instance_dir / "saml"
    return folder / f"sp-{credential_id}.key", folder / f"sp-{credential_id}.crt"


def _key_files(row: SpCredential) -> tuple[Path, Path]:
    """pysaml2 (and xmlsec1) read keys from files: written once per process, readable by
    the owner only, in the instance dir."""
    folder = _settings().instance_dir / "saml"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file, cert_file = _key_paths(row.id)
    if not key_file.exists():
        tmp = folder / f".sp-{row.id}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(unseal(_settings().secret_key, row.sealed_private_key, row.id, PURPOSE))
        os.replace(tmp, key_file)
    if not cert_file.exists():
        cert_file.write_text(row.certificate_pem)
    return key_file, cert_file


# Per process, keyed by everything the SP is built from: a change of metadata or setting
# makes a new key, so a cached SP is never stale (it is derived, not authoritative).
_SERVICE_PROVIDERS: dict[tuple, ServiceProvider] = {}


def service_provider(org: Org | OrgView) -> ServiceProvider:
    return _service_provider_for(org.id, org.saml_metadata or "", org.allow_idp_initiated)


def _service_provider_for(org_id: str, metadata: str, allow_idp_initiated: bool) -> ServiceProvider:
    issuer = _settings().issuer
    key_file, cert_file = _credential_files()
    key = (issuer, org_id, hashlib.sha256(metadata.encode()).hexdigest(), str(key_file), allow_idp_initiated)
    sp = _SERVICE_PROVIDERS.get(key)
    if sp is None:
        if len(_SERVICE_PROVIDERS) > 256:
            _SERVICE_PROVIDERS.clear()
        sp = _SERVICE_PROVIDERS[key] = ServiceProvider(
            entity_id=f"{issuer}/saml/{org_id}/metadata", acs_url=f"{issuer}/saml/{org_id}/acs",
            key_file=key_file, cert_file=cert_file, idp_metadata=metadata,
            allow_idp_initiated=allow_idp_initiated)
    return sp


def sp_metadata(org: Org) -> str:
    return service_provider(org).metadata_xml()
