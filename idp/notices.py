"""The owner is told by mail when the ways into their account change (OWASP ASVS 4.0 2.2.3,
5.0 6.3.7): whoever made the change (someone holding an open session, an administrator) may
not be them, and an added way in outlives a password reset unless the owner removes it. A
password change has its own mail ("password_changed").

Such changes have an hour's budget per account (`refused`). Only a change made, and so
told, spends it: an attempt that changes nothing (a wrong code at the authenticator set-up,
a passkey that fails verification, a link that does not complete, a removal of something
already gone) gives its charge back (`unchanged`). Else whoever holds a session could spend
the budget untold, and the owner's Revoke or Unlink would be refused for the hour."""

from __future__ import annotations

from flask import g, jsonify, render_template

from . import audit, mail_tokens
from .i18n import current_language
from .mail import link_to, stage_mail
from .ratelimit import throttle
from .store import User

# The audit events that change how the account signs in; the mail names the change with the
# event's label, as "Recent activity" on the account page does.
TOLD = frozenset({
    "totp.enabled", "totp.disabled", "recovery.generated", "passkey.added", "passkey.removed",
    "social.linked", "social.unlinked", "admin.second_factor_reset", "device.trusted",
})

# The changes that add a way in: their mail carries a link that removes it and signs out
# everywhere (idp/account/not_me.py). Whoever added it from an open session may hold the
# account's only second factor, which the account page asks for before removing anything.
ADDED = frozenset({"totp.enabled", "passkey.added", "social.linked"})

# Where `refused` keeps the request's charge until `record` spends it or `unchanged` gives
# it back (a request makes one change at most).
_CHARGE = "change_charge"


def record(kind: str, user: User, *, added: str | None = None, **detail) -> None:
    """`audit.record(kind, user, **detail)` and the owner's mail, committed with the change
    itself, which the caller has written but not committed: a process that dies before
    this commit leaves no change untold, nor a notice of a change that was not made.
    `added` (a kind in ADDED, and only then): what the mail's "Not you?" link removes,
    "passkey:<id>", "totp:<enrolment>" or "link:<id>"."""
    if kind not in TOLD or (kind in ADDED) != (added is not None):  # a mail without its link, or a link without a mail
        raise ValueError(f"notice {kind!r} with added={added!r}")
    remove = None
    if added is not None:
        remove = link_to("not_me.confirm", token=mail_tokens.issue(user, "undo", commit=False, target=added,
                                                                   proof=user.password_hash))
    sent = stage_mail(user.email, "sign_in_changed", user.locale or current_language(),
                      change=audit.LABELS[kind], link=link_to("password.forgot"), account=link_to("account.home"),
                      remove=remove, days=mail_tokens.LIFETIMES["undo"].days)
    audit.record(kind, user, **detail)
    sent()
    g.pop(_CHARGE, None)  # spent: this change was made and told


def refused(user: User, *, json: bool = False):
    """Count one change of the ways into `user`'s account against its hour's budget
    ("change:account"); the 429 answer when it is spent, else None. The change is refused,
    never its notice: a notice dropped past a budget would let whoever holds a session spend
    it, then add a way in untold. Counted before the change is tried, in the one statement
    that decides (`Throttle.attempt`), so racing requests never make more than the budget;
    a caller whose attempt then changes nothing calls `unchanged`."""
    from .signin.throttling import wait_message

    decision = throttle().attempt("change:account", user.id)
    if decision.allowed:
        setattr(g, _CHARGE, decision)
        return None
    retry = {"Retry-After": str(max(1, decision.retry_after))}
    if json:
        return jsonify(error=wait_message(decision.retry_after)), 429, retry
    return render_template("error.html", message=wait_message(decision.retry_after)), 429, retry


def unchanged() -> None:
    """The change `refused` let go ahead in this request was not made: give its charge back
    (`Throttle.refund`, which commits the session). A request that dies before keeps it
    counted: one change at most."""
    decision = g.pop(_CHARGE, None)
    if decision is not None:
        throttle().refund(decision)
