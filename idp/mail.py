"""Outgoing mail: SMTP to IDP_SMTP_HOST:IDP_SMTP_PORT. Localized templates.

Without an SMTP server the mail is written to the log only under `idp dev`: its
body holds a reset or verification link, a credential that must not sit in the
logs of a real deployment, where only the failure to send is logged.

Mail leaves on a background thread (`Mailer`), so a page answers in the same time whether
or not it sent one (no account enumeration by timing) and a slow SMTP server
never holds a person's page.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
from email.message import EmailMessage

from flask import Flask, current_app, render_template, url_for
from flask_babel import force_locale

from .i18n import gettext as _

log = logging.getLogger(__name__)


class Mailer:
    """One sender thread a process, fed by a queue, on one SMTP connection kept open while
    mail keeps coming: a burst (SCIM provisioning an org, each new person invited) opens one
    connection instead of one a mail, and leaves one thread behind instead of one a mail
    (each thread's stack and malloc pages stay resident: 1,500 mails grew a process by 2 MB).
    """

    IDLE = 5.0  # seconds an open SMTP connection waits for the next mail before QUIT

    def __init__(self, settings):
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.sender = settings.mail_from
        self.log_bodies = settings.development
        self._queue: queue.SimpleQueue[EmailMessage] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        self._queue.put(msg)
        if self._thread is None or not self._thread.is_alive():  # none yet, or this is a forked child
            with self._starting:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="idp-mail", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        smtp = None
        while True:
            try:
                msg = self._queue.get(timeout=self.IDLE if smtp is not None else None)
            except queue.Empty:
                smtp = _close(smtp)
                continue
            try:
                smtp = self._deliver(msg, smtp)
            except Exception:  # noqa: BLE001 - the thread serves every later mail: log and go on
                log.exception("mail to %s not sent", msg["To"])
                smtp = _close(smtp)

    def _deliver(self, msg: EmailMessage, smtp: smtplib.SMTP | None = None) -> smtplib.SMTP | None:
        """Send `msg` (on `smtp` when open); the connection to send the next one on, or None."""
        if not self.host:
            if self.log_bodies:
                log.info("mail to %s (no IDP_SMTP_HOST set):\nSubject: %s\n\n%s", msg["To"], msg["Subject"],
                         msg.get_content(), extra={"unredacted": True})  # `idp dev`: the link is for its developer
            else:
                log.warning("mail to %s not sent: no SMTP server configured (IDP_SMTP_HOST)", msg["To"])
            return None
        if smtp is not None:
            try:
                smtp.send_message(msg)
                return smtp
            except (OSError, smtplib.SMTPException):
                # Most often the server closed the connection while it idled: once more, afresh.
                _close(smtp)
        fresh = None
        try:
            fresh = smtplib.SMTP(self.host, self.port, timeout=10)
            fresh.send_message(msg)
            return fresh
        except (OSError, smtplib.SMTPException) as err:
            log.warning("mail to %s not sent: %s", msg["To"], err)
            return _close(fresh)


def _close(smtp: smtplib.SMTP | None) -> None:
    """QUIT, or drop the connection when the server no longer answers; always None."""
    if smtp is not None:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
    return None


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
