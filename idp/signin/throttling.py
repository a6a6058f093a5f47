"""The page a person sees when an attempt is throttled: readable, in their language, no 500."""

from __future__ import annotations

from math import ceil

from flask import render_template

from ..i18n import ngettext


def wait_message(seconds: int) -> str:
    if seconds < 60:
        return ngettext("Too many attempts. Try again in %(num)d second.",
                        "Too many attempts. Try again in %(num)d seconds.", max(1, seconds))
    minutes = ceil(seconds / 60)
    return ngettext("Too many attempts. Try again in %(num)d minute.",
                    "Too many attempts. Try again in %(num)d minutes.", minutes)


def too_many_attempts(template: str, decision, **context):
    resp = render_template(template, error=wait_message(decision.retry_after), **context), 429
    return resp[0], resp[1], {"Retry-After": str(max(1, decision.retry_after))}
