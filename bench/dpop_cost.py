"""CPU cost of DPoP at the token endpoint: a client_credentials grant with an ES256 proof
(signature check, nonce, jti marker insert, cnf.jkt) against the same grant without.
The issue's budget: at most 0.3 ms more per grant.

Run with the project's venv: `.venv/bin/python bench/dpop_cost.py` (a fresh SQLite
instance; set BENCH_DATABASE_URL to measure on another database). CPU time of this
process (not wall time, and not a database server's), requests in-process through
Flask's test client; the client's own work (signing the proofs) is not counted.
Each figure is the best round's mean: other processes on the machine only ever add.
"""

import base64
import os
import secrets
import sys
import tempfile
import time

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
from idp.clients import create_client  # noqa: E402

app = create_app()
initialize(app)
with app.app_context():
    client, secret = create_client({"client_name": "bench", "grant_types": ["client_credentials"],
                                    "redirect_uris": []})
    auth = {"Authorization": "Basic " + base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()}

issuer = app.extensions["idp.settings"].issuer
key = ECKey.generate_key("P-256")
jwk = key.as_dict(private=False)
http = app.test_client()
form = {"grant_type": "client_credentials"}


def proof(nonce: str | None) -> str:
    claims = {"jti": secrets.token_urlsafe(12), "htm": "POST", "htu": f"{issuer}/token", "iat": int(time.time())}
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}, claims, key, algorithms=["ES256"])


nonce = http.post("/token", data=form, headers={**auth, "DPoP": proof(None)}).headers["DPoP-Nonce"]


def run(with_dpop: bool) -> float:
    global nonce
    headers = [{**auth, "DPoP": proof(nonce)} if with_dpop else auth for _ in range(BATCH)]
    start = time.process_time()
    for h in headers:
        resp = http.post("/token", data=form, headers=h)
        if resp.status_code != 200 or resp.json["token_type"] != ("DPoP" if with_dpop else "Bearer"):
            print(f"error: grant failed: {resp.status_code} {resp.get_data(as_text=True)[:200]}", file=sys.stderr)
            sys.exit(1)
    spent = time.process_time() - start
    nonce = resp.headers["DPoP-Nonce"]
    return spent


run(False), run(True)  # warm-up: imports, caches, connection pool
plain, bound = [], []
for _ in range(ROUNDS):
    plain.append(run(False) / BATCH * 1000)
    bound.append(run(True) / BATCH * 1000)
plain_ms, bound_ms = min(plain), min(bound)
print(f"client_credentials grant: {plain_ms:.2f} ms CPU plain, {bound_ms:.2f} ms with a DPoP proof (ES256) "
      f"({bound_ms - plain_ms:+.2f} ms; budget +0.3 ms)")
