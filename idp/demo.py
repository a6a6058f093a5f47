"""Demo data for `idp dev`: one person and one confidential client."""

from __future__ import annotations

from sqlalchemy import select

from .passwords import hash_password
from .store import Client, User, db, digest, new_secret

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_CLIENT_ID = "demo-app"
DEMO_REDIRECT = "http://127.0.0.1:8080/callback"


def create_demo_data() -> list[str]:
    """Create (or refresh) the demo user and client; returns lines to print.

    The client's secret is new on every run, since only its hash is stored.
    """
    lines = []
    user = db.session.execute(select(User).where(User.email == DEMO_EMAIL)).scalar_one_or_none()
    if user is None:
        user = User(email=DEMO_EMAIL, name="Demo User", given_name="Demo", family_name="User", email_verified=True)
        db.session.add(user)
    user.password_hash = hash_password(DEMO_PASSWORD)
    lines.append(f"user:          {DEMO_EMAIL} / {DEMO_PASSWORD}")
    client = db.session.get(Client, DEMO_CLIENT_ID)
    if client is None:
        client = Client(
            client_id=DEMO_CLIENT_ID, name="Demo App", redirect_uris=[DEMO_REDIRECT],
            post_logout_redirect_uris=["http://127.0.0.1:8080/"],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            scope="openid profile email offline_access", token_endpoint_auth_method="client_secret_basic",
            verified=True,
        )
        db.session.add(client)
    secret = new_secret(32)
    client.client_secret_hash = digest(secret)
    db.session.commit()
    lines += [
        f"client_id:     {DEMO_CLIENT_ID}",
        f"client_secret: {secret}",
        f"redirect_uri:  {DEMO_REDIRECT}",
    ]
    return lines
