"""`make bench`, grant part: the token rows a refresh_token grant and an authorization-code
exchange start from, made in bulk, and a look afterwards at what the server did with them.

A refresh token is single-use (rotated on every use) and so is a code, so each measured
request needs its own. This script writes them straight into the database, shaped as the
server writes them (`AuthorizationCodeGrant.save_authorization_code`,
`AuthorizationServer.save_token`: same columns, same hashes, same lifetimes), and one
form body per line into a file; bench/grant.lua sends each line once.

Run with the server's IDP_* environment (bench/run.sh does):

    grants.py client                       JSON: client_id, secret, basic (for HTTP Basic)
    grants.py seed refresh|code CLIENT_ID COUNT FILE
    grants.py check refresh|code FILE      how many were used (once), families revoked
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import sys
from datetime import timedelta
from urllib.parse import quote

REDIRECT_URI = "http://127.0.0.1:9/cb"
SCOPE = "openid profile email"
CHUNK = 2000


def make_app():
    from idp import create_app

    return create_app()


def create_bench_client(app) -> dict:
    """A first-party confidential web app that may use codes and refresh tokens."""
    from idp.clients import create_client

    with app.app_context():
        client, secret = create_client({
            "client_name": "bench-grants", "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"], "scope": SCOPE,
        }, first_party=True)
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
    pair = quote(client.client_id, safe="") + ":" + quote(secret, safe="")
    return {"client_id": client.client_id, "secret": secret, "basic": base64.b64encode(pair.encode()).decode()}


def family_row(client_id: str, user_id: str, now) -> dict:
    """A `Grant` as `save_authorization_code` makes it after a password sign-in."""
    from idp.assurance import ACR_SINGLE_FACTOR
    from idp.store import new_id

    return {"id": new_id(), "client_id": client_id, "user_id": user_id, "scope": SCOPE, "sid": new_id(),
            "auth_time": int(now.timestamp()), "amr": ["pwd"], "acr": ACR_SINGLE_FACTOR, "dpop_jkt": None,
            "resource": None, "created_at": now, "revoked_at": None}


def refresh_row(family: dict, value: str, now, ttl: int, rotated_at=None) -> dict:
    """A `RefreshToken` as `save_token` stores it: by SHA-256 hash, the family's scope."""
    from idp.store import digest

    return {"token_hash": digest(value), "grant_id": family["id"], "client_id": family["client_id"],
            "scope": family["scope"], "created_at": now, "expires_at": now + timedelta(seconds=ttl),
            "rotated_at": rotated_at, "revoked": False}


def code_row(family: dict, code: str, verifier: str, now, ttl: int) -> dict:
    """An `AuthorizationCode` with an S256 PKCE challenge, as `save_authorization_code` stores it."""
    from idp.store import digest

    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return {"code_hash": digest(code), "grant_id": family["id"], "client_id": family["client_id"],
            "user_id": family["user_id"], "redirect_uri": REDIRECT_URI, "scope": family["scope"],
            "nonce": new_nonce(), "code_challenge": challenge, "code_challenge_method": "S256",
            "auth_time": family["auth_time"], "amr": family["amr"], "acr": family["acr"], "sid": family["sid"],
            "dpop_jkt": None, "resource": None, "expires_at": now + timedelta(seconds=ttl), "used_at": None}


def new_nonce() -> str:
    from idp.store import new_secret

    return new_secret(12)


def insert(table, rows: list[dict]) -> None:
    from idp.store import db

    for start in range(0, len(rows), CHUNK):
        db.session.execute(table.insert(), rows[start:start + CHUNK])


def people(limit: int = 1000) -> list[str]:
    """Up to `limit` enabled people to spread the families over (the large seed's, if any)."""
    from sqlalchemy import select

    from idp.store import User, db

    ids = list(db.session.scalars(select(User.id).where(User.disabled.is_(False)).limit(limit)))
    if not ids:
        user = User(email="bench-grants@example.com", email_verified=True, name="Bench")
        db.session.add(user)
        db.session.flush()
        ids = [user.id]
    return ids


def seed(app, kind: str, client_id: str, count: int, path: str) -> None:
    """`count` fresh refresh tokens (one family each) or codes, and their form bodies in `path`."""
    from idp.store import AuthorizationCode, Grant, RefreshToken, db, new_secret, utcnow

    settings = app.extensions["idp.settings"]
    with app.app_context():
        users = people()
        redirect = quote(REDIRECT_URI, safe="")
        now = utcnow()
        families, tokens, bodies = [], [], []
        for _ in range(count):
            family = family_row(client_id, random.choice(users), now)
            families.append(family)
            if kind == "refresh":
                value = new_secret(32)  # as IssuesSignedTokens.generate_token
                tokens.append(refresh_row(family, value, now, settings.refresh_token_ttl))
                bodies.append(f"grant_type=refresh_token&refresh_token={value}")  # URL-safe already
            else:
                # Authlib's codes are 48 letters and digits; its generator costs 1 ms each.
                code, verifier = secrets.token_hex(24), new_secret(32)
                tokens.append(code_row(family, code, verifier, now, settings.code_ttl))
                bodies.append(f"grant_type=authorization_code&code={code}&redirect_uri={redirect}"
                              f"&code_verifier={verifier}")
        insert(Grant.__table__, families)
        insert((RefreshToken if kind == "refresh" else AuthorizationCode).__table__, tokens)
        db.session.commit()
    with open(path, "w") as out:
        out.write("\n".join(bodies) + "\n")


def check(app, kind: str, path: str) -> dict:
    """Of the tokens in `path`: how many the server spent, and how many families it revoked
    (reuse detection fires only when a spent token comes back, which the bench never does)."""
    from urllib.parse import parse_qs

    from sqlalchemy import func, select

    from idp.store import AuthorizationCode, Grant, RefreshToken, db, digest

    model, key, spent = ((RefreshToken, RefreshToken.token_hash, RefreshToken.rotated_at) if kind == "refresh"
                         else (AuthorizationCode, AuthorizationCode.code_hash, AuthorizationCode.used_at))
    field = "refresh_token" if kind == "refresh" else "code"
    with open(path) as lines:
        hashes = [digest(parse_qs(line.strip())[field][0]) for line in lines if line.strip()]
    used = revoked = 0
    with app.app_context():
        for start in range(0, len(hashes), CHUNK):
            part = hashes[start:start + CHUNK]
            used += db.session.scalar(select(func.count()).select_from(model)
                                      .where(key.in_(part), spent.is_not(None)))
            revoked += db.session.scalar(select(func.count()).select_from(Grant).where(
                Grant.id.in_(select(model.grant_id).where(key.in_(part))), Grant.revoked_at.is_not(None)))
    return {"seeded": len(hashes), "used": used, "revoked_families": revoked}


def main(argv: list[str]) -> int:
    usage = __doc__.split("\n\n")[-1]
    if not argv or argv[0] not in ("client", "seed", "check"):
        print(f"usage:\n{usage}", file=sys.stderr)
        return 2
    app = make_app()
    if argv[0] == "client":
        print(json.dumps(create_bench_client(app)))
        return 0
    kind = argv[1] if len(argv) > 1 else ""
    if kind not in ("refresh", "code"):
        print("error: the kind is refresh or code", file=sys.stderr)
        return 2
    if argv[0] == "seed":
        if len(argv) != 5 or not argv[3].isdigit():
            print(f"usage:\n{usage}", file=sys.stderr)
            return 2
        seed(app, kind, argv[2], int(argv[3]), argv[4])
        return 0
    if len(argv) != 3:
        print(f"usage:\n{usage}", file=sys.stderr)
        return 2
    print(json.dumps(check(app, kind, argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
