"""Telling an account's owner that its second factor was locked out by wrong codes.

Only codes typed after the account's password count towards it (a step-up's, which no
password preceded, are its session's: idp.signin.step_up), so a lock-out means the password
is most likely known to someone else: the mail says so and links to a reset.
"""

from __future__ import annotations

from .. import audit
from ..i18n import current_language
from ..mail import link_to, send_mail
from ..ratelimit import POLICIES
from ..store import User


def second_factor_locked(user: User) -> None:
    """Record the lock-out in the account's activity and mail the owner, in their language."""
    policy = POLICIES["code:account"]
    audit.record("mfa.locked", user, failures=policy.lockout_after)
    send_mail(user.email, "second_factor_locked", user.locale or current_language(),
              failures=policy.lockout_after, hours=policy.lockout // 3600,
              link=link_to("password.forgot"))
