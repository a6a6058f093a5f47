"""Thin Flask views, one module per protocol endpoint; pages live in signin/ and account/."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from ..account.not_me import bp as not_me
    from ..account.views import bp as account
    from ..admin import bp as admin
    from ..developer.views import bp as developer
    from ..mfa.views import bp as mfa
    from ..security import csrf
    from ..signin.device import bp as device
    from ..signin.enterprise import acs as saml_acs
    from ..signin.enterprise import bp as enterprise
    from ..signin.password_reset import bp as password
    from ..signin.signup import bp as signup
    from ..signin.social import bp as social
    from ..signin.views import bp as signin
    from ..observability import health
    from ..scim import bp as scim
    from . import authorize, cors, discovery, end_session, par, registration, token, userinfo

    for module in (health, discovery, token, userinfo, registration, par):
        csrf.exempt(module.bp)  # machine endpoints: authenticated by client or bearer, not cookies
        app.register_blueprint(module.bp)
    csrf.exempt(end_session.bp)  # checks CSRF itself on the person's confirmation
    csrf.exempt(authorize.authorize)  # products post requests (OIDC Core §3.1.2.1); consent keeps its check
    csrf.exempt(scim)  # authenticated by the org's bearer token, never by cookies
    app.register_blueprint(scim)
    csrf.exempt(saml_acs)  # the IdP posts here; the response is bound to the browser's request instead
    for bp in (authorize.bp, end_session.bp, signin, password, signup, social, enterprise, device, account, not_me, mfa,
               admin, developer):
        app.register_blueprint(bp)
    cors.init_app(app)
