"""CPU cost of a password sign-in: the argon2id check alone, and every step of a whole
sign-in as a browser does it, from /authorize to the redirect to the client with the
code, then the code exchange: every redirect on the identity provider is followed and
every page answered through its form (the email, then the password). Issue 14's budget: the whole sign-in costs at most
one argon2id verify plus 5 ms.

Run with the project's venv: `.venv/bin/python bench/password_cost.py` (a fresh SQLite
instance; BENCH_DATABASE_URL to measure on another database, whose server's CPU is then not
counted).
CPU time (not wall time) so a busy machine does not inflate the figure.
`BENCH_PROFILE=1` adds a cProfile (on process time) of each step after the figures;
`BENCH_PROFILE="POST /signin/password (password)"` profiles that step only, `BENCH_PROFILE_LINES`
sets how many lines each profile prints (25), `BENCH_PROFILE_SORT` their order (tottime).
`BENCH_BREAKDOWN=1` adds the CPU of the functions the steps spend it in (each timed alone with
process_time, so without the profiler's inflation of small calls) and the SQL statements each
step sends.
`BENCH_VERIFY_ONCE=1` runs the argon2id verify once and answers later ones from memory: what the
steps cost without the verify sweeping 19 MiB through the caches first (a diagnostic, not the
budget's figure; about 2 ms of it, measured in the closing note of 2026-11-30).
"""

import base64
import cProfile
import hashlib
import os
import pstats
import re
import sys
import tempfile
import time
from urllib.parse import parse_qs, urlsplit

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
PASSWORD = "correct horse battery staple"
EMAIL = f"bench-{os.getpid()}@example.com"  # a new account each run, whatever the database holds

try:
    from idp.passwords import hash_password, verify_and_rehash, verify_password
except ImportError as exc:
    # The benchmark goes on without this figure rather than failing outright.
    print(f"password verify (argon2id): skipped, cannot import idp.passwords ({exc})")
    sys.exit(0)

stored = hash_password(PASSWORD)
if not verify_password(stored, PASSWORD):
    print("error: verify_password rejected the password it just hashed", file=sys.stderr)
    sys.exit(1)

start = time.process_time()
for _ in range(ROUNDS):
    verify_password(stored, PASSWORD)
verify_ms = (time.process_time() - start) / ROUNDS * 1000
print(f"password verify (argon2id): {verify_ms:.1f} ms CPU each")

# The whole request, in-process on its own fresh instance.
os.environ["IDP_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="idp-bench-")
os.environ.pop("IDP_DATABASE_URL", None)
if os.environ.get("BENCH_DATABASE_URL"):  # `make bench` with BENCH_DB=postgres (and BENCH_LARGE)
    os.environ["IDP_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
os.environ["IDP_LOG_LEVEL"] = "WARNING"
from idp import create_app  # noqa: E402
from idp.cli import initialize  # noqa: E402
from idp.server import keep_for_good  # noqa: E402
from idp.clients import create_client  # noqa: E402
from idp.store import User, db  # noqa: E402

app = create_app()
initialize(app)
keep_for_good()  # as each `idp serve` worker does once its app is built (`server.worker_app`)

# The verify the password step runs, timed where it runs: the separate figure above moves
# by a few ms between runs (argon2 touches 19 MiB), which would swamp the few ms beside it.
import idp.signin.views as signin_views  # noqa: E402

in_request_verify = 0.0
measuring = False  # True once the warm-up rounds are done


verified = {}  # BENCH_VERIFY_ONCE: each (hash, password)'s answer


def timed_verify(*args, **kwargs):
    global in_request_verify
    start = time.process_time()
    try:
        if os.environ.get("BENCH_VERIFY_ONCE"):
            if args not in verified:
                verified[args] = verify_and_rehash(*args, **kwargs)
            return verified[args]
        return verify_and_rehash(*args, **kwargs)
    finally:
        if measuring:
            in_request_verify += time.process_time() - start


signin_views.verify_and_rehash = timed_verify

# BENCH_BREAKDOWN: where the steps spend their CPU, one timer around each of these (inclusive:
# a function's figure holds those it calls), and the statements each step sends.
BREAKDOWN = (
    ("flask.ctx", "RequestContext.push"), ("flask.ctx", "RequestContext.pop"),
    ("flask.app", "Flask.preprocess_request"), ("flask_wtf.csrf", "CSRFProtect.protect"),
    ("flask.app", "Flask.process_response"), ("flask.sessions", "SecureCookieSessionInterface.save_session"),
    ("flask.templating", "render_template"), ("sqlalchemy.orm.session", "Session.commit"),
    ("idp.endpoints.authorize", "_process"), ("idp.pending", "save"), ("idp.pending", "find"),
    ("idp.pending", "mark_signed_in"), ("idp.pending", "delete"), ("idp.accounts", "by_email"),
    ("idp.ratelimit", "Throttle.check_all"), ("idp.ratelimit", "Throttle.attempt"),
    ("idp.ratelimit", "Throttle.success"), ("idp.signin.views", "enforced_for"),
    ("idp.mfa", "has_second_factor"), ("idp.accounts", "must_set_up_second_factor"),
    ("idp.sessions", "start"), ("idp.sessions", "recheck_started"), ("idp.audit", "record"),
    ("authlib.oauth2.rfc6749.authorization_server", "AuthorizationServer.get_consent_grant"),
    ("authlib.oauth2.rfc6749.authorization_server", "AuthorizationServer.create_authorization_response"),
    ("idp.oauth.grants", "AuthorizationCodeGrant.save_authorization_code"),
)
breakdown_cpu: dict[str, float] = {}
breakdown_calls: dict[str, int] = {}
statements: dict[str, int] = {}
current_step = None


def _timer(fn, label):
    def timed_call(*args, **kwargs):
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            if measuring:
                breakdown_cpu[label] = breakdown_cpu.get(label, 0.0) + time.process_time() - start
                breakdown_calls[label] = breakdown_calls.get(label, 0) + 1
    return timed_call


def _time_everywhere(module_name: str, attr: str) -> None:
    """Put a timer around `module_name.attr` (a function, or Class.method), and in place of
    every module global bound to that function (`from x import f` copies it)."""
    import importlib

    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    wrapper = _timer(original, f"{module_name.rsplit('.', 1)[-1]}.{attr}")
    setattr(owner, name, wrapper)
    if not path:
        for module in list(sys.modules.values()):
            names = getattr(module, "__dict__", {})
            for key, value in list(names.items()):
                if value is original:
                    names[key] = wrapper


if os.environ.get("BENCH_BREAKDOWN"):
    import idp.endpoints.authorize  # noqa: E402,F401  (so their `from … import` copies exist)
    import idp.oauth.grants  # noqa: E402,F401
    from sqlalchemy import event  # noqa: E402
    from sqlalchemy.engine import Engine  # noqa: E402

    for module_name, attr in BREAKDOWN:
        _time_everywhere(module_name, attr)

    @event.listens_for(Engine, "before_cursor_execute")
    def _count_statement(*_args):
        if measuring:
            statements[current_step] = statements.get(current_step, 0) + 1
with app.app_context():
    db.session.add(User(email=EMAIL, password_hash=stored, email_verified=True))
    db.session.commit()
    client, secret = create_client({"client_name": "bench", "redirect_uris": ["http://127.0.0.1:9/cb"]},
                                   first_party=True)
    client_id = client.client_id


VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
AUTHORIZE = (f"/authorize?response_type=code&client_id={client_id}&redirect_uri=http://127.0.0.1:9/cb"
             f"&scope=openid&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256")
BASIC = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
CODE_STEP = "POST /token (code)"
REDIRECT_URI = "http://127.0.0.1:9/cb"
MAX_STEPS = 12  # a loop between pages is an error, not a hang
# Steps named as they come (ids dropped): a redirect on the issuer is followed with a GET,
# a page is answered through its form (the email, then the password), as a browser does,
# until the redirect to the client with the code.
spent = {}
PROFILE = os.environ.get("BENCH_PROFILE", "")
profiles = {}
routes = set()  # the steps each round took, in order


def timed(step, call, *args, **kwargs):
    global current_step
    current_step = step
    spent.setdefault(step, 0.0)
    if step not in profiles and (PROFILE == "1" or PROFILE == step):
        profiles[step] = cProfile.Profile(time.process_time)
    profile = profiles.get(step) if measuring else None
    start = time.process_time()
    if profile is not None:
        profile.enable()
    resp = call(*args, **kwargs)
    if profile is not None:
        profile.disable()
    spent[step] += time.process_time() - start
    return resp


def path_of(location: str) -> str:
    """The path and query of a redirect (the test client is on the issuer already)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def csrf_of(resp) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True)).group(1)


def fail(step: str, resp) -> None:
    print(f"error: sign-in did not succeed at {step}: HTTP {resp.status_code}", file=sys.stderr)
    sys.exit(1)


def step_name(method: str, path: str, what: str = "") -> str:
    """`GET /authorize/resume` for `/authorize/resume/<id>`: one name for every round."""
    parts = urlsplit(path).path.split("/")
    if parts[1:2] == ["authorize"] and parts[2:3] == ["resume"]:
        parts = parts[:3]
    return f"{method} {'/'.join(parts)}" + (f" ({what})" if what else "")


def form_of(resp) -> tuple[str, str, dict]:
    """(action, what, fields) of the sign-in form on a page: the email or the password step."""
    html = resp.get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    if action is None:
        fail("a page without a form", resp)
    if 'name="password"' in html:
        what, fields = "password", {"password": PASSWORD}
    elif 'name="email"' in html:
        what, fields = "email", {"email": EMAIL}
    else:
        fail("a page that is neither the email nor the password step", resp)
    return action.group(1).replace("&amp;", "&"), what, {"csrf_token": csrf_of(resp), **fields}


def sign_in():
    """From /authorize to the redirect to the client; returns it and the steps taken."""
    taken = ["GET /authorize"]
    resp = timed(taken[0], http.get, AUTHORIZE)
    while len(taken) < MAX_STEPS:
        if resp.status_code == 302:
            location = resp.headers["Location"]
            if location.startswith(REDIRECT_URI):
                return resp, taken
            taken.append(step_name("GET", path_of(location)))
            resp = timed(taken[-1], http.get, path_of(location))
        elif resp.status_code == 200:
            action, what, fields = form_of(resp)
            taken.append(step_name("POST", action, what))
            resp = timed(taken[-1], http.post, action, data=fields)
        else:
            fail(taken[-1], resp)
    fail(taken[-1], resp)


for _ in range(ROUNDS + 2):  # the first two warm up
    http = app.test_client()  # a new browser each time: no session, no cookies
    resp, taken = sign_in()
    routes.add(tuple(taken))
    code = parse_qs(urlsplit(resp.headers.get("Location", "")).query).get("code")
    if not code:
        fail(taken[-1], resp)
    resp = timed(CODE_STEP, http.post, "/token", headers={"Authorization": BASIC}, data={
        "grant_type": "authorization_code", "code": code[0], "redirect_uri": REDIRECT_URI,
        "code_verifier": VERIFIER})
    if resp.status_code != 200:
        fail(CODE_STEP, resp)
    if _ == 1:
        spent = dict.fromkeys(spent, 0.0)
        measuring = True

for taken in sorted(routes):
    print(f"steps ({len(taken) + 1} requests): " + " -> ".join((*taken, CODE_STEP)))
total = 0.0
for step in spent:
    ms = spent[step] / ROUNDS * 1000
    total += ms
    print(f"  {step:34s} {ms:6.1f} ms CPU")
verify_in_request = in_request_verify / ROUNDS * 1000
print(f"whole password sign-in: {total:.1f} ms CPU ({total - verify_in_request:+.1f} ms beside the argon2id verify "
      f"it ran, {verify_in_request:.1f} ms; {total - verify_ms:+.1f} beside the one measured alone; budget +5 ms)")

if breakdown_cpu:
    print(f"\nwhere the CPU goes, per sign-in ({ROUNDS} rounds; inclusive; the verify is inside the password step):")
    for label, seconds in sorted(breakdown_cpu.items(), key=lambda item: -item[1]):
        print(f"  {seconds / ROUNDS * 1000:6.3f} ms  {breakdown_calls[label] / ROUNDS:4.1f} calls  {label}")
    print("SQL statements per step (the code exchange's own connection not counted): " + ", ".join(
        f"{step} {statements.get(step, 0) / ROUNDS:.0f}" for step in spent))

for step, profile in profiles.items():
    print(f"\n=== profile of {step} ({ROUNDS} rounds, process time; the profiler inflates the figures) ===")
    stats = pstats.Stats(profile).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime"))
    stats.print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "25")))
    if os.environ.get("BENCH_PROFILE_DUMP"):  # for pstats or snakeviz: one file per step
        stats.dump_stats(f"{os.environ['BENCH_PROFILE_DUMP']}-{step.replace(' ', '_').replace('/', '')}.prof")
