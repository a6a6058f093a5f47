"""Outgoing mail: SMTP to IDP_SMTP_HOST:IDP_SMTP_PORT. Localized templates.

Without an SMTP server the mail is written to the log only under `idp dev`: its
body holds a reset or verification link, a credential that must not sit in the
logs of a real deployment, where only the failure to send is logged.

With one, a mail is first a row of the `mail_outbox` table (recipient, subject and
body sealed with the instance secret), written in its own transaction, and a
thread in each server worker sends the due rows (`Mailer`), deleting each once the
SMTP server took it. An SMTP outage or a worker stopped with mail still to send
therefore loses nothing: the row is retried with backoff for a day (an address the
server refuses for good, a 5.1.x reply, is given up at once), by whichever
process claims it first (a conditional UPDATE of `claimed_until`, as the
back-channel logout queue does). A page never waits on the SMTP server, and answers
in the same time whether or not it sent a mail (no account enumeration by timing).
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage

from flask import Flask, current_app, render_template, url_for
from flask_babel import force_locale
from sqlalchemy import delete, insert, or_, select, update

from keys import seal, unseal

from .background import WorkerThread
from .i18n import gettext as _
from .org_names import ascii_domain
from .rows import new_id, utcnow
from .store import MailOutbox

log = logging.getLogger(__name__)

OUTBOX = MailOutbox.__table__
PURPOSE = b"mail outbox"
CLAIM_FOR = timedelta(seconds=120)  # how long a process owns a row it is sending (smtplib's timeouts are per step)
FIRST_RETRY = 30.0  # seconds before the second attempt; doubled after each failure
MAX_BACKOFF = 3600.0  # seconds
GIVE_UP_AFTER = timedelta(hours=24)
POLL_INTERVAL = 5.0  # seconds between looks at the outbox (rows of other processes, retries)
BATCH = 20  # rows a round takes at most


class Mailer(WorkerThread):
    """The outbox and its sender: `send` stores a row; one thread a server worker process
    (`start`) sends the due rows on one SMTP connection kept open while mail keeps coming,
    so a burst (SCIM provisioning an org, each new person invited) opens one connection
    instead of one a mail, and leaves one thread behind instead of one a mail (each thread's
    stack and malloc pages stay resident: 1,500 mails grew a process by 2 MB).
    """

    IDLE = 5.0  # seconds an open SMTP connection waits for the next mail before QUIT

    def __init__(self, settings, engine=None):
        super().__init__()
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.sender = settings.mail_from
        self.log_bodies = settings.development
        self.secret_key = getattr(settings, "secret_key", None)
        self.engine = engine
        self.interval = POLL_INTERVAL
        self.first_retry = FIRST_RETRY

    # --- storing ------------------------------------------------------------------------

    def send(self, to: str, subject: str, body: str) -> None:
        """Store the mail in the outbox (its own transaction: the caller's may be committed
        already) and wake this process's sender. Never raises: a page has answered already."""
        if not self.host:
            self._deliver(self._message(to, subject, body))
            return
        try:
            self._store(to, subject, body)
        except Exception:
            log.exception("mail to %s not sent: it could not be stored in the outbox", to)
            return
        self.kick()

    def stage(self, conn, to: str, subject: str, body: str) -> Callable[[], None]:
        """`send` in the transaction of `conn` (the caller's): the mail is stored if and only
        if what it tells of is committed (an account and its invitation's token), in the same
        commit. Returns what to call once that commit is done: it wakes the sender."""
        if not self.host:  # nothing stored: logged (`idp dev`) or warned about, as `send` does
            return lambda: self._deliver(self._message(to, subject, body))
        self._store(to, subject, body, conn)
        return self.kick

    def _store(self, to: str, subject: str, body: str, conn=None) -> str:
        row_id, now = new_id(), utcnow()
        plain = json.dumps({"to": to, "subject": subject, "body": body}).encode()
        row = insert(OUTBOX).values(
            id=row_id, sealed_message=seal(self.secret_key, plain, row_id, PURPOSE), attempts=0,
            next_attempt_at=now, claimed_until=None, last_error=None, created_at=now)
        if conn is not None:
            conn.execute(row)
        else:
            with self.engine.begin() as own:
                own.execute(row)
        return row_id

    def _message(self, to: str, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = _ascii_domain(to)
        msg["Subject"] = subject
        msg.set_content(body)
        return msg

    # --- the sender thread --------------------------------------------------------------

    def start(self) -> None:
        """Run this process's sender (server workers, `idp dev`); nothing to send without
        an SMTP server: no thread then."""
        if self.host:
            self._start_thread("idp-mail")

    def _run(self) -> None:
        smtp = None
        while not self._stop.is_set():
            self._wake.clear()  # a kick during the round below makes the next one start at once
            full = False
            try:
                smtp, full = self._send_due(smtp)
            except Exception:  # noqa: BLE001 - the database may be away: log, keep polling
                log.exception("mail outbox round failed")
                smtp = _close(smtp)
            if full:  # more may be due: go on without waiting
                continue
            if smtp is not None:
                if self._wake.wait(self.IDLE):
                    continue
                smtp = _close(smtp)  # no mail for IDLE seconds
                continue
            self._wake.wait(self.interval)
        _close(smtp)

    def _send_due(self, smtp: smtplib.SMTP | None) -> tuple[smtplib.SMTP | None, bool]:
        """Send the due rows this process can claim, oldest first: (the connection to keep,
        whether the round was full). Stops at a failure to reach the server."""
        now = utcnow()
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(OUTBOX.c.id).where(*_due(now))
                .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.created_at, OUTBOX.c.id).limit(BATCH)
            ).scalars().all()
        for row_id in ids:
            if self._stop.is_set():
                break
            row = self._claim(row_id)
            if row is None:  # another process has it, or sent it
                continue
            try:
                to, subject, body = self._open(row_id, row.sealed_message)
            except Exception:  # noqa: BLE001 - sealed under another IDP_SECRET_KEY, or damaged
                log.error("mail %s in the outbox cannot be opened (was IDP_SECRET_KEY changed?): dropped", row_id)
                self._delete(row_id)
                continue
            try:
                smtp = self._deliver(self._message(to, subject, body), smtp)
            except Exception as err:  # noqa: BLE001 - whatever failed is an attempt: retried, then given up
                smtp = None  # closed by _deliver
                if _refused_for_good(err):
                    log.error("mail to %s given up: refused for good (%s)", to, _reason(err))
                    self._delete(row_id)
                    continue
                self._failed(row_id, to, row.attempts, row.created_at, _reason(err))
                if isinstance(err, (OSError, smtplib.SMTPException)) and not isinstance(err, _THIS_MAIL_ONLY):
                    return None, False  # the server is away: the other rows wait for the next round
                continue
            self._delete(row_id)
        return smtp, len(ids) == BATCH

    def _claim(self, row_id: str):
        """Take the row for this process for CLAIM_FOR; None when it is not due or someone has it."""
        now = utcnow()
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(OUTBOX).where(OUTBOX.c.id == row_id, *_due(now)).values(claimed_until=now + CLAIM_FOR)
            ).rowcount
            if taken != 1:
                return None
            return conn.execute(
                select(OUTBOX.c.sealed_message, OUTBOX.c.attempts, OUTBOX.c.created_at).where(OUTBOX.c.id == row_id)
            ).one()

    def _open(self, row_id: str, sealed: bytes) -> tuple[str, str, str]:
        message = json.loads(unseal(self.secret_key, sealed, row_id, PURPOSE))
        return message["to"], message["subject"], message["body"]

    def _delete(self, row_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(OUTBOX).where(OUTBOX.c.id == row_id))

    def _failed(self, row_id: str, to: str, attempts: int, created_at: datetime, reason: str) -> None:
        attempts += 1
        now = utcnow()
        if now - created_at >= GIVE_UP_AFTER:
            log.error("mail to %s given up: not sent in %d attempts over %d hours (%s)", to, attempts,
                      GIVE_UP_AFTER // timedelta(hours=1), reason)
            self._delete(row_id)
            return
        delay = min(self.first_retry * 2 ** (attempts - 1), MAX_BACKOFF)
        with self.engine.begin() as conn:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id == row_id).values(
                attempts=attempts, next_attempt_at=now + timedelta(seconds=delay), claimed_until=None,
                last_error=reason[:200]))
        log.warning("mail to %s not sent (attempt %d), next attempt in %d s: %s", to, attempts, delay, reason)

    def _deliver(self, msg: EmailMessage, smtp: smtplib.SMTP | None = None) -> smtplib.SMTP | None:
        """Send `msg` (on `smtp` when open); the connection to send the next one on, or None.
        Raises OSError or SMTPException when the mail did not go (the connection is closed then)."""
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
            except Exception as err:
                _close(smtp)
                if isinstance(err, _THIS_MAIL_ONLY) or not isinstance(err, (OSError, smtplib.SMTPException)):
                    raise  # it was this mail (refused, or not sendable at all), not the connection
                # Most often the server closed the connection while it idled: once more, afresh.
        fresh = None
        try:
            fresh = smtplib.SMTP(self.host, self.port, timeout=10)
            fresh.send_message(msg)
            return fresh
        except BaseException:
            _close(fresh)
            raise


def _ascii_domain(address: str) -> str:
    """`address` with its domain as A-labels (xn--): accounts keep an internationalised domain
    in Unicode, which only a relay offering SMTPUTF8 (RFC 6531) takes; the A-label form every
    relay does. (A local part in Unicode still needs SMTPUTF8: it has no other form.)"""
    local, _, domain = address.rpartition("@")
    try:
        return f"{local}@{ascii_domain(domain)}"
    except ValueError:  # not a domain at all (normalize lets none in): the relay says what it thinks
        return address


# The server refused this mail (its sender, recipient or content), on a connection still good
# for the next one; any other error means the server is unreachable or the connection broke.
_THIS_MAIL_ONLY = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def _refused_for_good(err: BaseException) -> bool:
    """The server refused this mail's recipient address for good: a 5yz reply (RFC 5321
    §4.2.1: not to be repeated) whose enhanced status is 5.1.x (RFC 3463, the address: no
    such mailbox or domain). Other permanent refusals (a relay that refuses to relay, a
    quota, a policy) are the deployment's own setting, refused for every mail alike, and
    are retried while the operator fixes it, as a refused sender is."""
    if not isinstance(err, smtplib.SMTPRecipientsRefused):
        return False
    return all(500 <= code < 600 and bytes(reply).startswith(b"5.1.") for code, reply in err.recipients.values())


def _due(now: datetime):
    return (
        OUTBOX.c.next_attempt_at <= now,
        or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now),
    )


def _reason(err: BaseException) -> str:
    """What went wrong, short and stored with the row: an error class and SMTP code, never
    the server's text (which may name the recipient)."""
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        codes = sorted({str(code) for code, _ in err.recipients.values()})
        return f"recipient refused ({', '.join(codes)})"
    if isinstance(err, smtplib.SMTPResponseException):
        return f"{type(err).__name__} {err.smtp_code}"
    return type(err).__name__


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
    current_app.extensions["idp.mailer"].send(to, *_rendered(template, lang, context))


def stage_mail(to: str, template: str, lang: str, **context) -> Callable[[], None]:
    """`send_mail` within the request's database transaction (`Mailer.stage`); call what it
    returns once that transaction is committed."""
    from .store import db

    return current_app.extensions["idp.mailer"].stage(db.session.connection(), to,
                                                      *_rendered(template, lang, context))


def _rendered(template: str, lang: str, context: dict) -> tuple[str, str]:
    """(subject, body) of `templates/mail/<template>.txt` in `lang`."""
    with force_locale(lang):
        return SUBJECTS[template](), render_template(f"mail/{template}.txt", **context)


SUBJECTS = {
    "reset": lambda: _("Reset your password"),
    "verify": lambda: _("Confirm your email address"),
    "signup_exists": lambda: _("You already have an account"),
    "second_factor_locked": lambda: _("Too many wrong verification codes for your account"),
    "invite": lambda: _("You are invited to myaccount"),
    "invite_sso": lambda: _("You are invited to myaccount"),
    "password_changed": lambda: _("The password of your account was changed"),
    "sign_in_changed": lambda: _("The ways into your account changed"),
}


def init_app(app: Flask, run: bool = False) -> Mailer:
    """Attach the mailer to `app`, on the app's database engine; start its sender only when
    `run` (server worker processes): other processes' mail is sent by the servers."""
    from .store import db

    with app.app_context():
        engine = db.engine
    mailer = Mailer(app.extensions["idp.settings"], engine)
    app.extensions["idp.mailer"] = mailer
    if run:
        mailer.start()
    return mailer


def link_to(endpoint: str, **values) -> str:
    """An absolute link for a mail, always on the issuer: never built from the request's
    Host header, which an attacker can set (password-reset poisoning)."""
    return current_app.extensions["idp.settings"].issuer + url_for(endpoint, **values)
