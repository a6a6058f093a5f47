"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

`post_logout_redirect_uri` must match one registered by the client that the
`id_token_hint` names, exactly, and only a valid `id_token_hint` (one we issued to
that client) earns a redirect: with open registration anyone can register a
client whose "post-logout" URI is their own page, so a bare `client_id` would
make /logout an open redirector. Without a hint that proves the request came from
this person's product, the person confirms first, so a third-party page cannot
sign them out.

A self-registered (unverified) app's author holds a valid hint for their own account,
so its URI earns the redirect only when the hint names the person whose session this
request ends; anyone else gets our "signed out" page with a link to it (RFC 9700
§4.11.2). First-party and operator-verified apps are redirected as the spec has it.
"""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from flask import Blueprint, redirect, render_template, request
from flask_wtf.csrf import ValidationError, validate_csrf

from .. import sessions
from ..client_policy import web_host
from ..i18n import gettext as _
from ..oauth.tokens import decode_own_jwt
from ..security import as_get, error_page
from ..store import Client, db

bp = Blueprint("end_session", __name__)


def _csrf_ok() -> bool:
    # The endpoint itself accepts cross-site POSTs from products (the spec allows
    # POST); only the person's own confirmation must come from our page.
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    return True


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    if request.method == "POST" and not _csrf_ok():
        # A product's POST (RP-Initiated Logout 1.0 §2), cross-site: the person's own
        # confirmation below is the one POST that is ours (its CSRF token proves it, not its
        # fields: any page may post `confirm`) and carries the session cookie.
        return as_get()
    params = request.values
    hint = params.get("id_token_hint")
    claims = None
    if hint:
        # An ID token only (typ JWT): an access token (at+jwt) reaches resource servers,
        # and a logout token (logout+jwt) is no proof the request came from the product.
        claims = decode_own_jwt(hint, typ="jwt", allow_expired=True)
        if claims is None:
            return error_page(_("The application sent an invalid sign-out request."))
    client_id = params.get("client_id")
    if claims is not None:
        aud = claims.get("aud")
        hinted = aud if isinstance(aud, str) else (aud[0] if aud else None)
        if client_id and client_id != hinted:
            return error_page(_("The application sent an invalid sign-out request."))
        client_id = hinted
    client = db.session.get(Client, client_id) if client_id else None
    redirect_uri = params.get("post_logout_redirect_uri")
    if redirect_uri and (client is None or redirect_uri not in client.post_logout_redirect_uris):
        return error_page(_("The application sent an invalid sign-out request."))

    # Also a session that no longer signs the browser in (idle): the sign-out still ends it and
    # tells its products, so it is asked about as a live one is.
    browser = sessions.held()
    confirmed = request.method == "POST" and params.get("confirm") == "yes"
    hint_matches = claims is not None and browser is not None and claims.get("sub") == browser.user_id
    if browser is not None and not (confirmed or hint_matches):
        return render_template(
            "signin/logout_confirm.html", client=client, params=params.to_dict(flat=True)
        )
    ended = sessions.end_current()
    if redirect_uri and claims is not None:
        out = [("state", params["state"])] if params.get("state") else []
        target = add_params_to_uri(redirect_uri, out)
        if client.verified or client.first_party or (ended is not None and ended.user_id == claims.get("sub")):
            return redirect(target)
        return render_template("signin/signed_out.html", client=client, continue_to=target,
                               host=web_host(redirect_uri))
    return render_template("signin/signed_out.html")
