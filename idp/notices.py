"""The owner is told by mail when the ways into their account change (OWASP ASVS 4.0 2.2.3,
5.0 6.3.7): whoever made the change (someone holding an open session, an administrator) may
not be them, and an added way in outlives a password reset unless the owner removes it. A
password change has its own mail ("password_changed")."""

from __future__ import annotations

from . import audit
from .i18n import current_language
from .mail import link_to, stage_mail
from .store import User

# The audit events that change how the account signs in; the mail names the change with the
# event's label, as "Recent activity" on the account page does.
TOLD = frozenset({
    "totp.enabled", "totp.disabled", "recovery.generated", "passkey.added", "passkey.removed",
    "social.linked", "social.unlinked", "admin.second_factor_reset",
})


def record(kind: str, user: User, **detail) -> None:
    """`audit.record(kind, user, **detail)`, and the owner's mail, in one commit: the
    caller has committed (or leaves to this commit) the change itself."""
    assert kind in TOLD, kind
    sent = stage_mail(user.email, "sign_in_changed", user.locale or current_language(),
                      change=audit.LABELS[kind], link=link_to("password.forgot"), account=link_to("account.home"))
    audit.record(kind, user, **detail)
    sent()
