"""Admin Center, Domains: the org's proven domains and pending claims; claim a domain
(an operator may add one without proof), prove a claim by its DNS record, remove either."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from .. import audit, domain_claims
from ..domain_claims import DomainError, challenge_name, challenge_value
from ..i18n import gettext as _
from ..ratelimit import throttle
from . import bp
from .access import Acting, admin_view, forbidden

# DomainError reasons, worded for the page (`name`: where the TXT record goes)
REASONS = {
    "invalid": lambda name: _("Enter a domain name, like example.com."),
    "yours": lambda name: _("This domain is already one of this organization's domains."),
    domain_claims.TAKEN: lambda name: _("This domain belongs to another organization."),
    "claimed": lambda name: _("This domain is already waiting for its DNS record below."),
    "too_many": lambda name: _("Too many domains are waiting for their DNS record: remove one first."),
    domain_claims.NO_RECORD: lambda name: _(
        "No TXT record was found at %(name)s. A new record can take a while to show up: "
        "try again in a few minutes.", name=name),
    domain_claims.MISMATCH: lambda name: _(
        "The TXT records at %(name)s do not hold the value shown here. Check that it was copied whole.",
        name=name),
    domain_claims.DNS_UNAVAILABLE: lambda name: _("The DNS did not answer. Try again in a few minutes."),
}


def reason_text(reason: str, domain: str = "") -> str:
    word = REASONS.get(reason)
    return word(challenge_name(domain)) if word else reason


def _page(acting: Acting, status: int = 200, **extra):
    proven = domain_claims.domains_of(acting.org)
    done = request.args.get("done", "")
    return render_template(
        "admin/domains.html", acting=acting, org=acting.org, proven=proven, claims=domain_claims.claims_of(acting.org),
        done=done if done in {d.domain for d in proven} else None, checked=request.args.get("checked"),
        challenge_name=challenge_name, challenge_value=challenge_value, reason_text=reason_text, **extra), status


def _back(acting: Acting, **args):
    return redirect(url_for("admin.domains", org_id=acting.org.id, **args))


@bp.get("/admin/orgs/<org_id>/domains")
@admin_view
def domains(acting: Acting):
    return _page(acting)


@bp.post("/admin/orgs/<org_id>/domains")
@admin_view
def add_domain(acting: Acting):
    typed = request.form.get("domain", "")[:300]
    proven = request.form.get("proven") == "yes"
    if proven and not acting.operator:
        return forbidden()  # only operators skip the proof
    form = {"domain": typed, "proven": proven}
    try:
        domain = domain_claims.normalize_domain(typed)
        if proven:
            domain_claims.add_proven(acting.org, domain)
        else:
            claim = domain_claims.claim(acting.org, domain)
    except DomainError as err:
        return _page(acting, err.status, form=form, error=reason_text(err.reason))
    if proven:
        audit.record("domain.added", org=acting.org, actor=acting.admin, domain=domain)
        return _back(acting, done=domain)
    audit.record("domain.claimed", org=acting.org, actor=acting.admin, domain=domain)
    return _back(acting, _anchor=f"claim-{claim.id}")


@bp.post("/admin/orgs/<org_id>/domains/claims/<claim_id>/verify")
@admin_view
def verify_domain(acting: Acting, claim_id: str):
    claim = domain_claims.claim_of(acting.org, claim_id)
    decision = throttle().attempt("domain-check:org", acting.org.id)
    if not decision.allowed:
        return _page(acting, 429, error=_("Too many checks for this organization: try again in %(seconds)d seconds.",
                                          seconds=decision.retry_after))
    domain = claim.domain
    try:
        domain_claims.verify(claim)
    except DomainError as err:
        # the claim keeps why it failed; the page shows it beside the record to publish
        audit.record("domain.check_failed", org=acting.org, actor=acting.admin, domain=domain, reason=err.reason)
        return _back(acting, checked=claim_id, _anchor=f"claim-{claim_id}")
    audit.record("domain.verified", org=acting.org, actor=acting.admin, domain=domain)
    return _back(acting, done=domain)


def _confirm(acting: Acting, action: str, question: str):
    return render_template("admin/confirm_action.html", action=action, question=question, label=_("Remove"),
                           back=url_for("admin.domains", org_id=acting.org.id), fields={})


@bp.post("/admin/orgs/<org_id>/domains/claims/<claim_id>/remove")
@admin_view
def withdraw_claim(acting: Acting, claim_id: str):
    claim = domain_claims.claim_of(acting.org, claim_id)
    if request.form.get("confirmed") != "yes":
        return _confirm(acting, url_for("admin.withdraw_claim", org_id=acting.org.id, claim_id=claim.id),
                        _("Stop waiting for the DNS record of %(domain)s?", domain=claim.domain))
    domain = claim.domain
    domain_claims.withdraw(claim)
    audit.record("domain.claim_withdrawn", org=acting.org, actor=acting.admin, domain=domain)
    return _back(acting)


@bp.post("/admin/orgs/<org_id>/domains/<domain>/remove")
@admin_view
def remove_domain(acting: Acting, domain: str):
    row = domain_claims.proven_of(acting.org, domain)
    if request.form.get("confirmed") != "yes":
        return _confirm(acting, url_for("admin.remove_domain", org_id=acting.org.id, domain=row.domain), _(
            "Remove %(domain)s? Addresses at this domain will no longer lead to this organization's sign-in, "
            "and people can no longer be added with them.", domain=row.domain))
    name = row.domain
    domain_claims.remove(row)
    audit.record("domain.removed", org=acting.org, actor=acting.admin, domain=name)
    return _back(acting)
