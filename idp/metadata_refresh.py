"""Orgs' SAML IdP metadata read again from where it came from (a URL, or a file on the
server), when due: at the metadata's cacheDuration, before its validUntil, at least daily
(`orgs.next_refresh`). Uploaded metadata has nowhere to be read from and is left alone.

A new copy passes every check an admin's would (`orgs.check_new_metadata`) before it
replaces the stored one. When reading or checking fails, the last good copy stays in use
untouched, the org's audit log says so, a warning is logged, and the source is tried again
an hour later (not every round).

When the stored copy's validUntil has passed and it could not be replaced, sign-in keeps
using it (`federation.saml_metadata`): the IdP's responses are still verified against the
certificate that copy pins, so a stale copy lets in nobody its IdP did not sign for, while
refusing it would lock every member of an org that enforces Enterprise Sign-In (its admins
included) out over an outage of a metadata URL. The failure is audited hourly with
`expired: true` and logged as a warning until a good copy arrives or an admin acts.

One process of the deployment runs each round: the one that takes the `saml-metadata`
lease (`housekeeping.take_lease`), from the housekeeping thread every ten minutes.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from . import audit, orgs
from .housekeeping import LEASE_SECONDS, take_lease
from .store import Org, db, utcnow

log = logging.getLogger(__name__)
LEASE = "saml-metadata"
RETRY = timedelta(hours=1)


def due(now: datetime | None = None) -> list[Org]:
    """Orgs whose metadata comes from a URL or a file and is due to be read again."""
    now = now or utcnow()
    return list(db.session.execute(
        select(Org).where(
            Org.saml_metadata.is_not(None), Org.saml_metadata_source.is_not(None),
            Org.saml_metadata_source.not_like(orgs.UPLOADED + "%"),
            or_(Org.saml_metadata_valid_until.is_(None), Org.saml_metadata_valid_until <= now))
        .order_by(Org.saml_metadata_valid_until)
    ).scalars())


def refresh(org: Org, now: datetime | None = None) -> orgs.IdpMetadata:
    """Read the org's metadata again and store it when it passes every check; returns what
    it says. On failure the stored copy is kept, the failure audited and logged, the next
    try set an hour later, and OrgError raised."""
    now = now or utcnow()
    source = org.saml_metadata_source
    if not source or source.startswith(orgs.UPLOADED) or not org.saml_metadata:
        raise orgs.OrgError(f"{org.name} has no IdP metadata to read again (uploaded metadata is uploaded again)")
    seen = (source, org.saml_metadata_fetched_at)
    try:
        xml = orgs.read_metadata(source)
        found = orgs.check_new_metadata(org, xml, org.allow_idp_initiated, now)
    except orgs.OrgError as err:
        _failed(org, seen, str(err), now)
        raise
    except Exception as err:  # noqa: BLE001 - whatever broke, the stored copy must stay
        _failed(org, seen, f"{type(err).__name__}", now)
        raise orgs.OrgError(f"cannot read the metadata again: {type(err).__name__}") from None
    changed = xml != org.saml_metadata
    values = {"saml_metadata_fetched_at": now, "saml_metadata_valid_until": orgs.next_refresh(found, now)}
    if changed:
        values["saml_metadata"] = xml
    if _store(org, seen, values) and changed:
        # a new copy may carry a new signing certificate: who is trusted changed
        audit.record("org.idp_metadata_refreshed", org=org, source=orgs.shown_source(source), entity_id=found.entity_id)
    return found


def refresh_due(now: datetime | None = None, budget: float = LEASE_SECONDS - 2 * orgs.METADATA_DEADLINE) -> int:
    """Refresh every due org (see `refresh`); returns how many were read successfully.
    Stops after `budget` seconds so that a round ends within its lease; the rest stay due."""
    now = now or utcnow()
    stop_at = time.monotonic() + budget
    done = 0
    for org_id in [o.id for o in due(now)]:
        if time.monotonic() > stop_at:
            break
        org = db.session.get(Org, org_id)
        if org is None:
            continue
        try:
            refresh(org, now)
            done += 1
        except orgs.OrgError:
            pass  # audited and logged by refresh
        finally:
            db.session.rollback()
    return done


def run_round(holder: str, now: datetime | None = None) -> int | None:
    """One refresh round if this process takes the lease: orgs refreshed, or None (skipped)."""
    if not take_lease(LEASE, holder, LEASE_SECONDS, now):
        return None
    return refresh_due(now)


def _store(org: Org, seen: tuple, values: dict) -> bool:
    """Write `values` unless an admin attached other metadata meanwhile (a fetch takes up to
    15 s): theirs wins. True when written."""
    source, fetched_at = seen
    written = db.session.execute(
        update(Org).where(Org.id == org.id, Org.saml_metadata_source == source,
                          Org.saml_metadata_fetched_at.is_(None) if fetched_at is None
                          else Org.saml_metadata_fetched_at == fetched_at)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    db.session.expire(org)
    return written == 1


def _failed(org: Org, seen: tuple, reason: str, now: datetime) -> None:
    stored = orgs.idp_metadata(org)
    valid_until = stored.valid_until if stored else None
    expired = valid_until is not None and valid_until <= now
    if not _store(org, seen, {"saml_metadata_valid_until": now + RETRY}):
        return
    source = seen[0]
    shown = orgs.shown_source(source)
    reason = reason.replace(source, shown)[:500]
    audit.record("org.idp_metadata_refresh_failed", org=org, source=shown, reason=reason, expired=expired,
                 valid_until=valid_until.isoformat() + "Z" if valid_until else None)
    log.warning("SAML metadata of org %s not refreshed from %s: %s; %s", org.id, shown, reason,
                "its validUntil has passed, sign-in goes on with the last good copy" if expired
                else "the last good copy stays in use")
