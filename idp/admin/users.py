"""Admin Center, Users: list and search the org's people, add (invite) one, and act on one."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from federation.discovery import domain_of

from .. import accounts, audit, notices, orgs, sessions
from ..emails import normalize
from ..i18n import gettext as _
from ..mfa import has_second_factor
from ..ratelimit import throttle
from ..signin.throttling import wait_message
from ..store import Org, User, db
from . import bp
from .access import Acting, admin_view, forbidden, member, signed_in_admin
from .invite import send_invitation

PAGE_SIZE = 50


@bp.get("/admin")
def home():
    """An org admin goes to their org; an operator picks one."""
    browser, away = signed_in_admin()
    if away:
        return away
    admin = browser.user
    if not admin.is_admin:
        return redirect(url_for("admin.users", org_id=admin.org_id))
    all_orgs = db.session.execute(select(Org).order_by(Org.name)).scalars().all()
    return render_template("admin/home.html", orgs=all_orgs)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page_of_members(org: Org, search: str = "", after: str = "", size: int = PAGE_SIZE) -> tuple[list[User], bool]:
    """One page of the org's people by email (keyset: after the email `after`), matching
    `search` in the email or the name, case-insensitively; and whether more follow."""
    query = select(User).where(User.org_id == org.id)
    if search:
        pattern = _like(search.lower())
        # emails are stored lower-cased; names are not
        query = query.where(or_(User.email.like(pattern, escape="\\"),
                                func.lower(User.name).like(pattern, escape="\\")))
    if after:
        query = query.where(User.email > after)
    rows = db.session.execute(query.order_by(User.email).limit(size + 1)).scalars().all()
    return rows[:size], len(rows) > size


def _users_page(acting: Acting, status: int = 200, **extra):
    search = request.args.get("q", "").strip()[:200]
    after = request.args.get("after", "")[:320]
    people, more = page_of_members(acting.org, search, after)
    return render_template("admin/users.html", acting=acting, org=acting.org, people=people, search=search,
                           next_after=people[-1].email if more else None, after=after,
                           domains=orgs.domains_of(acting.org), **extra), status


@bp.get("/admin/orgs/<org_id>/users")
@admin_view
def users(acting: Acting):
    return _users_page(acting)


@bp.post("/admin/orgs/<org_id>/users")
@admin_view
def add_user(acting: Acting):
    typed = request.form.get("email", "")[:320]
    name = request.form.get("name", "").strip()[:200] or None
    address = normalize(typed)
    form = {"email": typed, "name": name or ""}
    if address is None:
        return _users_page(acting, 400, form=form, error=_("Enter a valid email address."))
    if domain_of(address) not in orgs.domains_of(acting.org):
        return _users_page(acting, 400, form=form, error=_(
            "Only addresses in this organization's domains can be added."))
    user = accounts.by_email(address)
    if user is not None and (user.email_verified or user.org_id is not None or user.is_admin):
        return _users_page(acting, 409, form=form, error=_("An account with this address already exists."))
    if user is None:
        user = User(email=address, name=name, email_verified=False, org_id=acting.org.id)
        db.session.add(user)
    else:
        # An unverified sign-up at an address of the org's domain proves nothing (anyone may
        # make one): it must not stand in the way of the org's invitation, which adopts it,
        # cleared of all its maker planted, as SCIM's create does.
        accounts.join_org(user, acting.org)  # always wiped: the row is unverified
        user.name = name
    try:
        db.session.commit()
    except IntegrityError:  # the same form, sent twice at once, added the address a moment ago
        db.session.rollback()
        return _users_page(acting, 409, form=form, error=_("An account with this address already exists."))
    send_invitation(user, acting.org)
    audit.record("admin.user_invited", user, actor=acting.admin, org=acting.org)
    return redirect(url_for("admin.person", org_id=acting.org.id, user_id=user.id, invited=1))


@bp.get("/admin/orgs/<org_id>/users/<user_id>")
@admin_view
def person(acting: Acting, user_id: str):
    user = member(acting, user_id)
    return render_template("admin/person.html", acting=acting, org=acting.org, person=user,
                           has_second_factor=has_second_factor(user), invited=request.args.get("invited") == "1",
                           sessions_open=len(sessions.open_sessions(user)))


def _disable(acting: Acting, user: User):
    if user.id == acting.admin.id:
        return render_template("error.html", message=_("You cannot disable your own account.")), 409
    accounts.disable(user)
    audit.record("admin.user_disabled", user, actor=acting.admin)


def _enable(acting: Acting, user: User):
    accounts.enable(user)
    audit.record("admin.user_enabled", user, actor=acting.admin)


def _make_admin(acting: Acting, user: User):
    if not user.email_verified:
        return render_template("error.html", message=_(
            "This person has not accepted their invitation yet.")), 409
    user.org_admin = True
    db.session.commit()
    audit.record("admin.made_admin", user, actor=acting.admin, org=acting.org)


def _remove_admin(acting: Acting, user: User):
    if user.id == acting.admin.id:
        # Another admin (or an operator) takes it back: an org never loses its last admin
        # by a slip of its own.
        return render_template("error.html", message=_("You cannot remove your own administrator rights.")), 409
    user.org_admin = False
    db.session.commit()
    audit.record("admin.removed", user, actor=acting.admin, org=acting.org)


def _resend_invitation(acting: Acting, user: User):
    if user.email_verified:
        return render_template("error.html", message=_("This person has already accepted their invitation.")), 409
    decision = throttle().failure("invite:address", user.email)  # one mailbox is not to be flooded
    if not decision.allowed:
        return (render_template("error.html", message=wait_message(decision.retry_after)), 429,
                {"Retry-After": str(max(1, decision.retry_after))})
    send_invitation(user, acting.org)  # the earlier link dies (mail_tokens.issue)
    audit.record("admin.user_invited", user, actor=acting.admin, org=acting.org, again=True)


def _reset_second_factor(acting: Acting, user: User):
    accounts.reset_second_factor(user)
    notices.record("admin.second_factor_reset", user, actor=acting.admin)


def _sign_out(acting: Acting, user: User):
    sessions.sign_out_everywhere(user)
    audit.record("admin.signed_out", user, actor=acting.admin)


# action in the URL → (button label, destructive: a confirmation page first, what it does)
ACTIONS = {
    "disable": (lambda: _("Disable"), True, _disable),
    "enable": (lambda: _("Enable"), False, _enable),
    "make-admin": (lambda: _("Make admin"), False, _make_admin),
    "remove-admin": (lambda: _("Remove admin"), True, _remove_admin),
    "resend-invitation": (lambda: _("Resend invitation"), False, _resend_invitation),
    "reset-second-factor": (lambda: _("Reset second factor"), True, _reset_second_factor),
    "sign-out": (lambda: _("Sign out of all sessions"), True, _sign_out),
}


def _act(acting: Acting, user_id: str, action: str):
    label, destructive, run = ACTIONS[action]
    user = member(acting, user_id)
    if user.is_admin and not acting.operator:
        return forbidden()  # an org admin never acts on an operator's account
    if destructive and request.form.get("confirmed") != "yes":
        return render_template("admin/confirm.html", org=acting.org, person=user, action=action, label=label())
    answer = run(acting, user)
    if answer is not None:
        return answer
    if sessions.current() is None:  # signed themselves out
        return redirect(url_for("signin.email"))
    invited = 1 if action == "resend-invitation" else None
    return redirect(url_for("admin.person", org_id=acting.org.id, user_id=user.id, invited=invited))


def _register(action: str) -> None:
    def view(acting: Acting, user_id: str):
        return _act(acting, user_id, action)

    endpoint = "person_" + action.replace("-", "_")
    view.__name__ = endpoint
    bp.add_url_rule(f"/admin/orgs/<org_id>/users/<user_id>/{action}", endpoint=endpoint,
                    view_func=admin_view(view), methods=["POST"])


for _name in ACTIONS:
    _register(_name)

