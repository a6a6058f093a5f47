"""Admin Center, the operator's pages: every client, social provider and signing key of
the deployment (what `idp clients`, `idp social` and `idp keys` show), with the same
actions as those commands. Org admins never see these (`operator_view`)."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import audit, keystore
from ..i18n import gettext as _
from ..social import redirect_uri as social_redirect_uri
from ..store import Client, SigningKey, SocialProvider, User, db
from . import bp
from .access import operator_view

PAGE_SIZE = 100
ALGS = ("ES256", "RS256", "EdDSA")


def _confirm(label: str, question: str, action: str, back: str, **fields):
    """The confirmation page of a destructive action: the same button text, posted again
    with `confirmed=yes` (and the form's other fields)."""
    return render_template("admin/confirm_action.html", label=label, question=question, action=action,
                           back=back, fields=fields)


@bp.get("/admin/clients")
@operator_view
def clients(admin: User):
    after = request.args.get("after", "")[:64]
    query = select(Client).where(Client.client_id > after).order_by(Client.client_id).limit(PAGE_SIZE + 1)
    rows = db.session.execute(query).scalars().all()
    owners = dict(db.session.execute(
        select(User.id, User.email).where(User.id.in_({c.owner_id for c in rows if c.owner_id}))).all())
    next_after = rows[PAGE_SIZE - 1].client_id if len(rows) > PAGE_SIZE else None
    return render_template("admin/clients.html", clients=rows[:PAGE_SIZE], owners=owners, after=after,
                           next_after=next_after)


@bp.post("/admin/clients/<client_id>/delete")
@operator_view
def delete_client(admin: User, client_id: str):
    client = db.session.get(Client, client_id[:64])
    if client is None:
        return render_template("error.html", message=_("There is no such client.")), 404
    if request.form.get("confirmed") != "yes":
        return _confirm(_("Delete"), _("Delete the client %(name)s (%(id)s)? Its tokens stop working.",
                                       name=client.name, id=client.client_id),
                        url_for("admin.delete_client", client_id=client.client_id), url_for("admin.clients"))
    db.session.delete(client)  # grants, codes and refresh tokens go with it (foreign keys)
    db.session.commit()
    audit.record("client.deleted", actor=admin, client_id=client_id)
    return redirect(url_for("admin.clients"))


@bp.get("/admin/social")
@operator_view
def social(admin: User):
    # An org's enterprise OpenID provider is that org's business (its Enterprise Sign-In page).
    rows = db.session.execute(select(SocialProvider).where(SocialProvider.org_id.is_(None))
                              .order_by(SocialProvider.name)).scalars().all()
    return render_template("admin/social.html", providers=rows, redirect_uri=social_redirect_uri)


@bp.post("/admin/social/<name>/delete")
@operator_view
def delete_social(admin: User, name: str):
    provider = db.session.get(SocialProvider, name[:40])
    if provider is None or provider.org_id is not None:
        return render_template("error.html", message=_("There is no such provider.")), 404
    if request.form.get("confirmed") != "yes":
        return _confirm(_("Remove"), _("Remove %(name)s? Nobody can sign in with it any more, and every account "
                                       "linked to it is unlinked.", name=provider.name),
                        url_for("admin.delete_social", name=provider.name), url_for("admin.social"))
    db.session.delete(provider)  # linked identities go with it (foreign key)
    db.session.commit()
    audit.record("social.provider_removed", actor=admin, provider=name)
    return redirect(url_for("admin.social"))


@bp.get("/admin/keys")
@operator_view
def keys(admin: User):
    rows = db.session.execute(select(SigningKey).order_by(SigningKey.created_at.desc())).scalars().all()
    return render_template("admin/keys.html", keys=rows, algs=ALGS)


@bp.post("/admin/keys/rotate")
@operator_view
def rotate_key(admin: User):
    alg = request.form.get("alg", "ES256")
    if alg not in ALGS:
        return render_template("error.html", message=_("Choose one of the listed algorithms.")), 400
    if request.form.get("confirmed") != "yes":
        return _confirm(_("Rotate"), _("Make a new %(alg)s signing key? Older keys stay published until their "
                                       "tokens expire.", alg=alg),
                        url_for("admin.rotate_key"), url_for("admin.keys"), alg=alg)
    row = keystore.rotate(current_app.extensions["idp.settings"], alg)
    audit.record("signing_key.rotated", actor=admin, kid=row.kid, alg=alg)
    return redirect(url_for("admin.keys"))


@bp.post("/admin/keys/<kid>/revoke")
@operator_view
def revoke_key(admin: User, kid: str):
    row = db.session.get(SigningKey, kid[:64])
    if row is None:
        return render_template("error.html", message=_("There is no such key.")), 404
    if request.form.get("confirmed") != "yes":
        return _confirm(_("Revoke"), _("Revoke the key %(kid)s now? Every token it signed stops working.",
                                       kid=row.kid),
                        url_for("admin.revoke_key", kid=row.kid), url_for("admin.keys"))
    successor = keystore.revoke(current_app.extensions["idp.settings"], row.kid)
    audit.record("signing_key.revoked", actor=admin, kid=kid, successor=successor.kid if successor else None)
    return redirect(url_for("admin.keys"))
