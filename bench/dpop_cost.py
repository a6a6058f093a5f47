"""CPU cost of DPoP at the token endpoint: a client_credentials grant, a refresh grant and
a code exchange (a confidential client's, and a public client's, whose new refresh-token
family the proof binds) with an ES256 proof (signature check, nonce, jti marker insert, cnf.jkt) against the same
grant without. The issue's budget: at most 0.3 ms more per grant.

Run with the project's venv: `.venv/bin/python bench/dpop_cost.py` (a fresh SQLite
instance; set BENCH_DATABASE_URL to measure on another database). CPU time of this
process (not wall time, and not a database server's), requests in-process through
Flask's test client; the client's own work (signing the proofs, seeding the refresh
tokens and codes each batch uses) is not counted. Each figure is the best round's mean: other
processes on the machine only ever add. BENCH_PROFILE=1 prints instead which functions the
proof adds CPU to, per grant (cProfile on process time, so Python code looks dearer).
"""

import base64
import hashlib
import os
import secrets
import sys
import tempfile
import time
from datetime import timedelta

ROUNDS = 20  # rounds of BATCH grants each way, interleaved so drift hits both alike
BATCH = 50

os.environ["IDP_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="idp-bench-")
os.environ.pop("IDP_DATABASE_URL", None)
if os.environ.get("BENCH_DATABASE_URL"):
    os.environ["IDP_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
os.environ["IDP_LOG_LEVEL"] = "WARNING"

from joserfc import jwt  # noqa: E402
from joserfc.jwk import ECKey  # noqa: E402

from idp import create_app  # noqa: E402
from idp.cli import initialize  # noqa: E402
from idp.server import keep_for_good  # noqa: E402
from idp.clients import create_client  # noqa: E402
from idp.store import AuthorizationCode, Grant, RefreshToken, User, db, digest, new_id, utcnow  # noqa: E402


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


app = create_app()
initialize(app)
keep_for_good()  # as each `idp serve` worker does once its app is built (`server.worker_app`)
with app.app_context():
    client, secret = create_client({"client_name": "bench", "grant_types": ["client_credentials"],
                                    "redirect_uris": []})
    service_auth = basic(client.client_id, secret)
    # A confidential web app: its refresh tokens are not bound (it authenticates anyway,
    # RFC 9449 §5), so both ways run the very same grant and only the proof differs.
    client, secret = create_client({"client_name": "bench web", "grant_types": ["authorization_code", "refresh_token"],
                                    "redirect_uris": ["https://app.example/cb"], "scope": "openid profile"})
    web_client_id, web_auth = client.client_id, basic(client.client_id, secret)
    client, _ = create_client({"client_name": "bench spa", "grant_types": ["authorization_code", "refresh_token"],
                               "redirect_uris": ["https://spa.example/cb"], "scope": "openid profile",
                               "token_endpoint_auth_method": "none"})
    spa_client_id = client.client_id
    user = User(email="bench@example.com", password_hash="-", email_verified=True)
    db.session.add(user)
    db.session.commit()
    family = Grant(client_id=web_client_id, user_id=user.id, scope="profile")
    db.session.add(family)
    db.session.commit()
    family_id, user_id = family.id, user.id

issuer = app.extensions["idp.settings"].issuer
key = ECKey.generate_key("P-256")
jwk = key.as_dict(private=False)
http = app.test_client()


def proof(nonce: str | None) -> str:
    claims = {"jti": secrets.token_urlsafe(12), "htm": "POST", "htu": f"{issuer}/token", "iat": int(time.time())}
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}, claims, key, algorithms=["ES256"])


def refresh_tokens(count: int) -> list[str]:
    """Fresh refresh tokens of the bench family, as a code exchange would have stored them."""
    values = [secrets.token_urlsafe(32) for _ in range(count)]
    with app.app_context():
        db.session.add_all(RefreshToken(token_hash=digest(v), grant_id=family_id, client_id=web_client_id,
                                        scope="profile", expires_at=utcnow() + timedelta(days=1)) for v in values)
        db.session.commit()
    return values


def client_credentials_requests(count: int) -> list[tuple[dict, dict]]:
    return [({"grant_type": "client_credentials"}, service_auth)] * count


def refresh_requests(count: int) -> list[tuple[dict, dict]]:
    return [({"grant_type": "refresh_token", "refresh_token": v}, web_auth) for v in refresh_tokens(count)]


def codes(client_id: str, redirect_uri: str, count: int) -> list[tuple[str, str]]:
    """(code, PKCE verifier) pairs, each code in a family of its own, as the authorization
    endpoint stores them after a sign-in."""
    made = [(secrets.token_urlsafe(36), secrets.token_urlsafe(48), new_id()) for _ in range(count)]
    now = utcnow()
    with app.app_context():
        db.session.execute(Grant.__table__.insert(), [
            {"id": family, "client_id": client_id, "user_id": user_id, "scope": "openid profile", "amr": ["pwd"],
             "auth_time": int(time.time()), "created_at": now} for _, _, family in made])
        db.session.execute(AuthorizationCode.__table__.insert(), [
            {"code_hash": digest(code), "grant_id": family, "client_id": client_id, "user_id": user_id,
             "redirect_uri": redirect_uri, "scope": "openid profile", "nonce": "n",
             "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
             .rstrip(b"=").decode(), "code_challenge_method": "S256", "auth_time": int(time.time()),
             "amr": ["pwd"], "expires_at": now + timedelta(minutes=5)} for code, verifier, family in made])
        db.session.commit()
    return [(code, verifier) for code, verifier, _ in made]


def code_requests(count: int) -> list[tuple[dict, dict]]:
    return [({"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example/cb",
              "code_verifier": verifier}, web_auth)
            for code, verifier in codes(web_client_id, "https://app.example/cb", count)]


def public_code_requests(count: int) -> list[tuple[dict, dict]]:
    return [({"grant_type": "authorization_code", "code": code, "redirect_uri": "https://spa.example/cb",
              "code_verifier": verifier, "client_id": spa_client_id}, {})
            for code, verifier in codes(spa_client_id, "https://spa.example/cb", count)]


GRANTS = {"client_credentials": client_credentials_requests, "refresh_token": refresh_requests,
          "authorization_code": code_requests, "authorization_code (public client)": public_code_requests}
nonce = http.post("/token", data={"grant_type": "client_credentials"},
                  headers={**service_auth, "DPoP": proof(None)}).headers["DPoP-Nonce"]


def run(grant: str, with_dpop: bool, profiler=None) -> float:
    global nonce
    requests = [(form, {**auth, "DPoP": proof(nonce)} if with_dpop else auth) for form, auth in GRANTS[grant](BATCH)]
    if profiler:
        profiler.enable()
    start = time.process_time()
    for form, headers in requests:
        resp = http.post("/token", data=form, headers=headers)
        if resp.status_code != 200 or resp.json["token_type"] != ("DPoP" if with_dpop else "Bearer"):
            print(f"error: {grant} grant failed: {resp.status_code} {resp.get_data(as_text=True)[:200]}",
                  file=sys.stderr)
            sys.exit(1)
    spent = time.process_time() - start
    if profiler:
        profiler.disable()
    nonce = resp.headers["DPoP-Nonce"]
    return spent


for grant in GRANTS:  # warm-up: imports, caches, connection pool
    run(grant, False), run(grant, True)

if os.environ.get("BENCH_PROFILE"):
    import cProfile
    import pstats

    def profile(grant: str, with_dpop: bool) -> dict:
        profiler = cProfile.Profile(time.process_time)
        for _ in range(5):
            run(grant, with_dpop, profiler)
        return pstats.Stats(profiler).stats  # {function: (calls, primitive calls, tottime, cumtime, callers)}

    for grant in GRANTS:
        plain, bound = profile(grant, False), profile(grant, True)
        grants = 5 * BATCH
        print(f"=== {grant}: own CPU per grant (us) of the functions the proof adds most to, under cProfile")
        extra = {f: bound[f][2] - (plain[f][2] if f in plain else 0) for f in bound}
        for f, spent in sorted(extra.items(), key=lambda item: -item[1])[:25]:
            calls = bound[f][0] - (plain[f][0] if f in plain else 0)
            print(f"{spent / grants * 1e6:8.1f} {calls / grants:6.1f} calls  {pstats.func_std_string(f)}")
        print(f"total: {sum(extra.values()) / grants * 1e6:.1f} us more per grant")
    sys.exit(0)

for grant in GRANTS:
    plain, bound = [], []
    for _ in range(ROUNDS):
        plain.append(run(grant, False) / BATCH * 1000)
        bound.append(run(grant, True) / BATCH * 1000)
    plain_ms, bound_ms = min(plain), min(bound)
    print(f"{grant} grant: {plain_ms:.2f} ms CPU plain, {bound_ms:.2f} ms with a DPoP proof (ES256) "
          f"({bound_ms - plain_ms:+.2f} ms; budget +0.3 ms)")
