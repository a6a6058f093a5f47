"""Admin Center, Enterprise Sign-In: the org's SAML IdP (metadata by file or URL), our SP
metadata to give it, "Test connection", the enterprise OpenID alternative, and enforcing
Enterprise Sign-In. The rules live in `idp.orgs`, shared with `idp orgs ...`.

Test connection runs a real SAML sign-in at the org's IdP, bound to this admin's browser
session: the answer gets every check a sign-in gets (`ServiceProvider.verified_response`,
the assertion replay cache) and then only shows what the IdP sent. Nobody is signed in,
no account is made, and the admin stays who they are.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

from flask import make_response, redirect, render_template, request, session, url_for

from federation import saml
from federation.discovery import domain_of

from .. import audit, orgs, sessions
from ..i18n import gettext as _
from ..social import enterprise_provider, enterprise_provider_name, redirect_uri
from ..signin.enterprise import spend_assertion
from ..signin.views import signed_in_recently
from ..single_use import claim
from ..store import Org, new_secret, utcnow
from . import bp
from .access import RECENT_ADMIN_SIGN_IN, Acting, admin_view, is_admin

log = logging.getLogger(__name__)

# In the flow cookie while a test runs: the request, its RelayState, and the admin's
# browser session and org it belongs to.
TEST_STATE = "saml_test"
TEST_TTL = 600  # seconds to come back from the IdP


def _page(acting: Acting, status: int = 200, **extra):
    org = acting.org
    provider = enterprise_provider(org.id)
    return render_template(
        "admin/enterprise.html", acting=acting, org=org, idp=orgs.idp_metadata(org), provider=provider,
        origin=_origin(org), sp=orgs.service_provider(org),
        oidc_redirect_uri=redirect_uri(enterprise_provider_name(org.id)),
        saved=request.args.get("saved"), **extra), status


def _origin(org: Org) -> tuple[str, str] | None:
    """Where the metadata came from: ("url" | "upload" | "file", the URL, file name or path)."""
    source = org.saml_metadata_source
    if not source:
        return None
    if source.startswith(orgs.UPLOADED):
        return "upload", source[len(orgs.UPLOADED):]
    return ("url" if orgs.is_url(source) else "file"), source


@bp.get("/admin/orgs/<org_id>/enterprise-sign-in")
@admin_view
def enterprise(acting: Acting):
    return _page(acting)


@bp.post("/admin/orgs/<org_id>/enterprise-sign-in/metadata")
@admin_view
def enterprise_metadata(acting: Acting):
    """Save the IdP's metadata, uploaded or fetched from its URL (checked as `idp orgs saml`
    checks it; a refused document leaves the old set-up as it was)."""
    upload = request.files.get("metadata_file")
    url = request.form.get("metadata_url", "").strip()[:2000]
    has_file = upload is not None and bool(upload.filename)
    if has_file and url:
        return _metadata_error(acting, _("Choose a metadata file or enter its URL, not both."))
    if not has_file and not url:
        return _metadata_error(acting, _("Choose a metadata file or enter its URL."))
    try:
        if has_file:
            content = upload.read(orgs.METADATA_LIMIT + 1)
            try:
                xml = content.decode("utf-8")
            except UnicodeDecodeError:
                return _metadata_error(acting, _("The metadata file is not UTF-8 text."))
            name = re.sub(r"[^\w. -]", "_", upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])[:100]
            found = orgs.attach_saml(acting.org, orgs.UPLOADED + name, xml=xml)
        else:
            # only a URL: a path typed here must never make the server read one of its files
            if not orgs.is_url(url):
                return _metadata_error(acting, _("Enter the metadata's https:// URL."))
            found = orgs.attach_saml(acting.org, url)
    except orgs.OrgError as err:
        return _metadata_error(acting, _("The IdP metadata was not saved: %(reason)s", reason=str(err)))
    audit.record("admin.idp_metadata_saved", org=acting.org, actor=acting.admin,
                 source=orgs.shown_source(acting.org.saml_metadata_source), entity_id=found.entity_id)
    return redirect(url_for("admin.enterprise", org_id=acting.org.id, saved="metadata"))


def _metadata_error(acting: Acting, message: str):
    return _page(acting, 400, metadata_error=message, metadata_url=request.form.get("metadata_url", "")[:2000])


@bp.get("/admin/orgs/<org_id>/enterprise-sign-in/sp-metadata")
@admin_view
def enterprise_sp_metadata(acting: Acting):
    """Our SP metadata for the org's IdP: what `idp orgs sp-metadata` prints, as a file."""
    response = make_response(orgs.sp_metadata(acting.org))
    response.mimetype = "application/samlmetadata+xml"
    name = re.sub(r"[^A-Za-z0-9_-]", "-", acting.org.name)[:60] or acting.org.id
    response.headers["Content-Disposition"] = f'attachment; filename="sp-metadata-{name}.xml"'
    return response


@bp.post("/admin/orgs/<org_id>/enterprise-sign-in/enforce")
@admin_view
def enterprise_enforce(acting: Acting):
    """Enforce Enterprise Sign-In (after a confirmation: it stops passwords for every
    member), or stop enforcing it."""
    on = request.form.get("enforce") != "off"
    if on and not orgs.has_idp(acting.org):
        return _page(acting, 409, enforce_error=_(
            "Enterprise Sign-In cannot be enforced before the organization has an IdP: save its IdP metadata "
            "or set up an enterprise OpenID provider first."))
    if on and request.form.get("confirmed") != "yes":
        label = _("Enforce Enterprise Sign-In")
        return render_template(
            "admin/confirm.html", org=acting.org, label=label, fields={"enforce": "on"},
            action_url=url_for("admin.enterprise_enforce", org_id=acting.org.id),
            cancel_url=url_for("admin.enterprise", org_id=acting.org.id),
            question=_("Enforce Enterprise Sign-In for %(org)s? Passwords and connected accounts will no longer "
                       "sign in any member, you included; open sessions stay.", org=acting.org.name))
    orgs.enforce_sso(acting.org, on=on)
    audit.record("admin.sso_enforced" if on else "admin.sso_optional", org=acting.org, actor=acting.admin)
    return redirect(url_for("admin.enterprise", org_id=acting.org.id, saved="enforce"))


@bp.post("/admin/orgs/<org_id>/enterprise-sign-in/oidc")
@admin_view
def enterprise_oidc(acting: Acting):
    """Set the org's enterprise OpenID provider (issuer, client id and secret)."""
    issuer = request.form.get("issuer", "").strip()[:500]
    client_id = request.form.get("client_id", "").strip()[:200]
    secret = request.form.get("client_secret", "")[:500]
    try:
        orgs.attach_oidc(acting.org, issuer, client_id, secret)
    except orgs.OrgError as err:
        return _page(acting, 400, oidc_error=_("The enterprise OpenID provider was not saved: %(reason)s",
                                               reason=str(err)), oidc_form={"issuer": issuer, "client_id": client_id})
    audit.record("admin.oidc_saved", org=acting.org, actor=acting.admin, issuer=issuer, client_id=client_id)
    return redirect(url_for("admin.enterprise", org_id=acting.org.id, saved="oidc"))


@bp.post("/admin/orgs/<org_id>/enterprise-sign-in/test")
@admin_view
def enterprise_test(acting: Acting):
    """Send this browser to the org's IdP with a signed AuthnRequest for a test."""
    if not acting.org.saml_metadata:
        return _page(acting, 409, test_error=_("Save the IdP metadata before testing the connection."))
    relay = new_secret(16)
    try:
        request_id, location = orgs.service_provider(acting.org).authn_request(relay_state=relay)
    except Exception as err:  # noqa: BLE001 - a broken configuration is a readable answer
        reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
        return _page(acting, 409, test_error=_("The test could not start: %(reason)s", reason=reason))
    session[TEST_STATE] = {"org": acting.org.id, "request_id": request_id, "relay": relay,
                           "browser": acting.browser.id, "admin": acting.admin.id, "at": int(time.time())}
    return render_template("signin/sso_redirect.html", location=location, org=acting.org)


def is_test_answer(org: Org, relay_state: str | None) -> bool:
    """The response parked for `org` answers this browser's Test connection."""
    import hmac

    state = session.get(TEST_STATE)
    return (state is not None and state.get("org") == org.id and relay_state is not None
            and hmac.compare_digest(state.get("relay", "").encode(), relay_state.encode()))


def finish_test(org: Org, saml_response: str):
    """The IdP's answer to a Test connection (called by the ACS once `is_test_answer`):
    checked as a sign-in is, then shown; nobody is signed in."""
    state = session.pop(TEST_STATE)
    browser = sessions.current()
    admin = browser.user if browser is not None else None
    if (browser is None or browser.id != state.get("browser") or admin.id != state.get("admin")
            or not is_admin(admin) or not (admin.is_admin or admin.org_id == org.id)
            or not signed_in_recently(browser, max_age=RECENT_ADMIN_SIGN_IN)):
        log.warning("connection test for org %s came back to another session", org.id)
        return render_template("error.html", message=_(
            "This connection test was started in another session. Start it again from the Admin Center.")), 403
    if time.time() - state.get("at", 0) > TEST_TTL or not claim("saml-test", state["request_id"],
                                                                 utcnow() + timedelta(seconds=TEST_TTL)):
        return _test_result(org, admin, reason=_("This test has expired or was already completed. "
                                                 "Start it again."))
    sp = orgs.service_provider(org)
    try:
        response = sp.verified_response(saml_response, state["request_id"])
    except saml.SamlError as err:
        return _test_result(org, admin, reason=err.reason)
    if not spend_assertion(org, response.assertion.id, saml.assertion_expiry(response)):
        return _test_result(org, admin, reason="assertion replayed")
    name_id, attributes = saml.received(response)
    problems, identity = [], None
    try:
        identity = sp.identity_of(response)
    except saml.SamlError as err:
        problems.append(err.reason)
    if identity is not None and domain_of(identity.email) not in orgs.domains_of(org):
        problems.append(_("%(email)s is outside the organization's domains: a sign-in would be refused.",
                          email=identity.email))
    roles = {name: label for names, label in ((saml.EMAIL, _("Email")), (saml.GIVEN_NAME, _("Given name")),
                                              (saml.FAMILY_NAME, _("Family name")),
                                              (saml.DISPLAY_NAME, _("Display name"))) for name in names}
    rows = [(name, friendly, values, roles.get(name) or roles.get(friendly or ""))
            for name, friendly, values in attributes]
    return _test_result(org, admin, name_id=name_id, attributes=rows, identity=identity, problems=problems)


def _test_result(org: Org, admin, reason: str | None = None, **shown):
    audit.record("admin.sso_tested", org=org, actor=admin, outcome="failed" if reason else "passed",
                 **({"reason": reason} if reason else {}))
    return render_template("admin/enterprise_test.html", org=org, reason=reason,
                           **shown), 400 if reason else 200

