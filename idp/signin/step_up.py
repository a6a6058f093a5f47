"""The code step of a step-up: a product (acr_values, max_age) asks an open session for its
second factor, and nobody typed the password.

Whoever holds a session left open reaches this step, so its wrong codes (app codes and
recovery codes alike: both are guesses) are not charged to the account's budget
("code:account"): that budget is the sign-in's, whose lock-out would keep the owner's own
codes out for hours and tell them their password is known. They are charged to the
session's ("code:session"); when it is spent the session ends as "Sign out" ends it, and
only the password (then the code, against the account's budget) opens a new one. The
account's lock-out still holds here: a session is no way around it.
"""

from __future__ import annotations

from flask import render_template, url_for

from .. import audit, sessions
from ..mfa import devices
from ..ratelimit import POLICIES, Decision, throttle
from ..store import BrowserSession, User

SCOPE = "code:session"


def _budget(browser: BrowserSession) -> str:
    """The session's budget; a session a trusted device opened without its second factor
    shares that device's: else whoever knows the password there would sign out one code
    short of the last and back in (no code asked), each session a fresh budget."""
    return browser.trusted_device_id or browser.id


def attempt(browser: BrowserSession) -> Decision:
    """Count this code against the session's budget before it is checked (racing guesses
    stay within it)."""
    return throttle().attempt(SCOPE, _budget(browser))


def passed(browser: BrowserSession) -> None:
    throttle().success(SCOPE, _budget(browser))


def end_session(user: User, browser: BrowserSession, req: str | None):
    """The session's budget is spent: sign it out (its products told), record why, and ask
    the browser to sign in again, to the product's request when there is one.

    A trusted device of this browser dies too: with it the password alone opens a new
    session, and every such session would bring a fresh budget (unending guesses for
    whoever knows the password there); without it the next sign-in's code is the account's.
    So does the one that opened the session, its cookie dropped from the browser or not."""
    if devices.revoke_this_device(user, browser.trusted_device_id):
        audit.record("device.revoked", user, commit=False)
    audit.record("session.ended_wrong_codes", user, commit=False, failures=POLICIES[SCOPE].lockout_after)
    sessions.end_current()  # commits the event with the session's end
    again = url_for("signin.email", req=req) if req else url_for("signin.email")
    return render_template("signin/step_up_ended.html", again=again), 401
