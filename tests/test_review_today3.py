"""Review of the day's changes (review-today3): passwords in NFKC form, sign-in change notices."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Browser, csrf_of
from tests.processes import worker_pids
from tests.test_second_factor import _enrol


def _cpu_seconds(live) -> float:
    """User and system CPU time the server's workers have spent so far."""
    total = 0
    for pid in worker_pids(live.proc.pid):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / 100


def _signup_cpu(live, b: Browser, password: str, times: int) -> float:
    page = b.get(f"{live.issuer}/signup")
    # As multipart/form-data (any form may be sent so): the field's 500 kB are its UTF-8
    # bytes, not their percent-encoding.
    fields = {"csrf_token": csrf_of(page.text), "email": "nfkc-bomb@example.com", "name": "N", "password": password}
    before = _cpu_seconds(live)
    for _ in range(times):
        answer = b.http.post(f"{live.issuer}/signup", files={k: (None, v.encode()) for k, v in fields.items()},
                             allow_redirects=False, timeout=60)
        assert answer.status_code == 400  # too long: refused before any throttle
    return _cpu_seconds(live) - before


def test_a_long_password_that_nfkc_expands_costs_no_more_than_any_long_one(live):
    """U+FDFA is one character that NFKC writes as 18: a 500 kB form field of it (the form
    parser's limit) became 3 million characters to normalize before "too long" was said,
    ~0.16 s of CPU per sign-up request, asked by anyone and before the sign-up throttle
    (sign-in spent it too, twice the argon2 input besides)."""
    b = Browser(live.issuer)
    plain = _signup_cpu(live, b, "x" * 499_000, 8)
    expanding = _signup_cpu(live, b, "\ufdfa" * 166_000, 8)
    assert expanding < plain + 0.4, (expanding, plain)


def test_new_recovery_codes_in_a_loop_do_not_mail_without_bound(live):
    """"New recovery codes" needs only a recent sign-in and one POST, and each one now mails
    the owner: a script holding a session sent the deployment's mail without bound (its
    SMTP quota, the outbox every reset and verification mail waits in). The changes are
    now counted ("change:account", ten an hour): past them the change is refused (429),
    and every change made is still told. A failed attempt is not a change: the wrong code
    typed at the set-up is given back, and ten changes made still refuse the eleventh."""
    email = "told-loop@example.com"
    # one of the hour's ten: the app set up (its wrong code first changed nothing: not counted)
    b, _secret, _codes = _enrol(live, email)
    live.mailbox.wait_for(email, 1)
    answers = [b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/account/recovery-codes")
               for _ in range(12)]
    assert [r.status_code for r in answers] == [200] * 9 + [429] * 3
    assert "Too many attempts" in answers[-1].text and int(answers[-1].headers["Retry-After"]) > 0
    time.sleep(3)
    assert len(live.mailbox.to(email)) == 10  # each change made, told; none refused, none untold
