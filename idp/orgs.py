"""Enterprise accounts: orgs, their domains, their SAML IdP, and our SP for them."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from federation.saml import ServiceProvider
from keys import seal, unseal
from keys.saml import new_sp_credential

from . import outbound
from .store import Org, OrgDomain, SpCredential, db, utcnow

PURPOSE = b"saml sp key"
METADATA_LIMIT = 4 * 1024 * 1024  # one IdP's metadata is a few KiB; federation aggregates are not for us
METADATA_DEADLINE = 15.0  # seconds
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class OrgError(ValueError):
    """An operator mistake about orgs; the message is shown as `error: ...`."""


def _settings():
    return current_app.extensions["idp.settings"]


def find(name_or_id: str) -> Org | None:
    return db.session.execute(select(Org).where((Org.name == name_or_id) | (Org.id == name_or_id))).scalar_one_or_none()


def create(name: str, domains: list[str]) -> Org:
    domains = [d.strip().lower().rstrip(".") for d in domains]
    for d in domains:
        if not DOMAIN.fullmatch(d):
            raise OrgError(f"not a domain name: {d}")
    if not name.strip() or len(name) > 100:
        raise OrgError("the org needs a name of at most 100 characters")
    org = Org(name=name.strip())
    try:
        db.session.add(org)
        db.session.flush()
        for d in domains:
            db.session.add(OrgDomain(domain=d, org_id=org.id))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise OrgError("an org with this name exists, or one of the domains belongs to another org") from None
    return org


def domains_of(org: Org) -> list[str]:
    return list(db.session.execute(select(OrgDomain.domain).where(OrgDomain.org_id == org.id)).scalars())


def read_metadata(source: str) -> str:
    """The IdP metadata XML from a file path or an http(s) URL (fetched through the outbound
    guard: https, a public or allow-listed address, a size cap and a deadline)."""
    if source.startswith(("https://", "http://")):
        try:
            resp = outbound.current().get(source, deadline=METADATA_DEADLINE, max_bytes=METADATA_LIMIT)
        except outbound.OutboundError as err:
            raise OrgError(f"cannot fetch metadata: {err}") from None
        if resp.status != 200:
            raise OrgError(f"cannot fetch metadata: HTTP {resp.status}")
        xml = resp.text
    else:
        try:
            xml = Path(source).read_text()
        except OSError as err:
            raise OrgError(f"cannot read metadata: {err.strerror}: {source}") from None
    if "IDPSSODescriptor" not in xml or re.search(r"<!DOCTYPE|<!ENTITY", xml, re.IGNORECASE):
        raise OrgError("this is not SAML IdP metadata (no IDPSSODescriptor, or it carries a DTD)")
    return xml


def attach_saml(org: Org, source: str) -> None:
    xml = read_metadata(source)
    org.saml_metadata = xml
    org.saml_metadata_source = source
    org.saml_metadata_fetched_at = utcnow()
    service_provider(org).idp_entity_id()  # fails now, not at sign-in, when pysaml2 cannot use it
    db.session.commit()


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


def _key_files(row: SpCredential) -> tuple[Path, Path]:
    """pysaml2 (and xmlsec1) read keys from files: written once per process, readable by
    the owner only, in the instance dir."""
    folder = _settings().instance_dir / "saml"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file, cert_file = folder / f"sp-{row.id}.key", folder / f"sp-{row.id}.crt"
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


def service_provider(org: Org) -> ServiceProvider:
    issuer = _settings().issuer
    key_file, cert_file = _key_files(_credential())
    metadata = org.saml_metadata or ""
    key = (issuer, org.id, hashlib.sha256(metadata.encode()).hexdigest(), str(key_file), org.allow_idp_initiated)
    sp = _SERVICE_PROVIDERS.get(key)
    if sp is None:
        if len(_SERVICE_PROVIDERS) > 256:
            _SERVICE_PROVIDERS.clear()
        sp = _SERVICE_PROVIDERS[key] = ServiceProvider(
            entity_id=f"{issuer}/saml/{org.id}/metadata", acs_url=f"{issuer}/saml/{org.id}/acs",
            key_file=key_file, cert_file=cert_file, idp_metadata=metadata,
            allow_idp_initiated=org.allow_idp_initiated)
    return sp


def sp_metadata(org: Org) -> str:
    return service_provider(org).metadata_xml()
