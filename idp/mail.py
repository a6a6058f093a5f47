"""Outgoing mail: SMTP to IDP_SMTP_HOST:IDP_SMTP_PORT. Localized templates.

Without an SMTP server the mail is written to the log only under `idp dev`: its
body holds a reset or verification link, a credential that must not sit in the
logs of a real deployment, where only the failure to send is logged.

Mail leaves on a background thread, so a page answers in the same time whether
or not it sent one (no account enumeration by timing) and a slow SMTP server
never holds a person's page.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from email.message import EmailMessage

from flask import Flask, current_app, render_template, url_for
from flask_babel import force_locale

from .i18n import gettext as _

log = logging.getLogger(__name__)


class Mailer:
    def __init__(self, settings):
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.sender = settings.mail_from
        self.log_bodies = settings.development

    def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        threading.Thread(target=self._deliver, args=(msg,), daemon=True).start()

    def _deliver(self, msg: EmailMessage) -> None:
        if not self.host:
            if self.log_bodies:
                log.info("mail to %s (no IDP_SMTP_HOST set):\nSubject: %s\n\n%s", msg["To"], msg["Subject"],
                         msg.get_content(), extra={"unredacted": True})  # `idp dev`: the link is for its developer
            else:
                log.warning("mail to %s not sent: no SMTP server configured (IDP_SMTP_HOST)", msg["To"])
            return
        try:
            with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as err:
            log.warning("mail to %s not sent: %s", msg["To"], err)


def send_mail(to: str, template: str, lang: str, **context) -> None:
    """Render `templates/mail/<template>.txt` in `lang` and send it."""
    with force_locale(lang):
        subject = SUBJECTS[template]()
        body = render_template(f"mail/{template}.txt", **context)
    current_app.extensions["idp.mailer"].send(to, subject, body)


SUBJECTS = {
    "reset": lambda: _("Reset your password"),
    "verify": lambda: _("Confirm your email address"),
    "signup_exists": lambda: _("You already have an account"),
    "second_factor_locked": lambda: _("Too many wrong verification codes for your account"),
    "invite": lambda: _("You are invited to myaccount"),
    "invite_sso": lambda: _("You are invited to myaccount"),
}


def init_app(app: Flask) -> None:
    app.extensions["idp.mailer"] = Mailer(app.extensions["idp.settings"])


def link_to(endpoint: str, **values) -> str:
    """An absolute link for a mail, always on the issuer: never built from the request's
    Host header, which an attacker can set (password-reset poisoning)."""
    return current_app.extensions["idp.settings"].issuer + url_for(endpoint, **values)
