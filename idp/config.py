"""Settings from the IDP_* environment (SPEC §2), read and validated once at start."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message is shown to the operator."""


REGISTRATION_MODES = ("token", "open", "off")


@dataclass(frozen=True)
class Settings:
    issuer: str = "http://127.0.0.1:5000"
    instance_dir: Path = Path("instance")
    database_url: str = ""
    secret_key: str = ""
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = ""
    redis_url: str | None = None
    registration: str = "token"
    log_level: str = "INFO"
    # Lifetimes in seconds. Codes are short (RFC 9700 §4.5 / RFC 6749 §4.1.2).
    code_ttl: int = 60
    access_token_ttl: int = 900
    id_token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    session_ttl: int = 12 * 3600
    remember_me_ttl: int = 30 * 24 * 3600
    # How long a process trusts its cached copy of the key ring.
    key_cache_seconds: float = 1.0
    # Non-public networks this server may send requests to (IDP_OUTBOUND_ALLOW);
    # None: loopback when the issuer is on loopback, else none.
    outbound_allow: tuple | None = None
    extra: dict = field(default_factory=dict)

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def outbound_networks(self) -> tuple:
        """The networks outside the public internet that server-initiated requests may reach."""
        from .outbound import default_allow_list

        return default_allow_list(self.issuer) if self.outbound_allow is None else self.outbound_allow

    @property
    def max_token_ttl(self) -> int:
        """The longest any signed token stays valid: how long a retired key stays published."""
        return max(self.access_token_ttl, self.id_token_ttl)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        issuer = env.get("IDP_ISSUER", cls.issuer).rstrip("/")
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"IDP_ISSUER must be an http(s) URL without query or fragment: {issuer!r}")
        instance_dir = Path(env.get("IDP_INSTANCE_DIR", "instance")).resolve()
        database_url = env.get("IDP_DATABASE_URL") or f"sqlite:///{instance_dir / 'idp.db'}"
        registration = env.get("IDP_REGISTRATION", "token")
        if registration not in REGISTRATION_MODES:
            raise ConfigError(f"IDP_REGISTRATION must be one of {', '.join(REGISTRATION_MODES)}")
        try:
            smtp_port = int(env.get("IDP_SMTP_PORT", "25"))
        except ValueError:
            raise ConfigError("IDP_SMTP_PORT must be a number") from None
        log_level = env.get("IDP_LOG_LEVEL", "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("IDP_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        outbound_allow = None
        if env.get("IDP_OUTBOUND_ALLOW", "").strip():
            from .outbound import parse_allow_list

            try:
                outbound_allow = parse_allow_list(env["IDP_OUTBOUND_ALLOW"])
            except ValueError as err:
                raise ConfigError(f"IDP_OUTBOUND_ALLOW must be comma-separated CIDRs or none: {err}") from None
        values = dict(
            issuer=issuer,
            instance_dir=instance_dir,
            database_url=database_url,
            secret_key=env.get("IDP_SECRET_KEY", ""),
            smtp_host=env.get("IDP_SMTP_HOST") or None,
            smtp_port=smtp_port,
            mail_from=env.get("IDP_MAIL_FROM") or f"no-reply@{parts.hostname}",
            redis_url=env.get("IDP_REDIS_URL") or None,
            registration=registration,
            log_level=log_level,
            outbound_allow=outbound_allow,
        )
        values.update(overrides)
        return cls(**values)

    def with_secret_key(self) -> Settings:
        """Return settings whose secret key is set: from the environment, else the
        instance dir's generated one (created once, readable only by its owner)."""
        if self.secret_key:
            return self
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        path = self.instance_dir / "secret_key"
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48))
        key = path.read_text().strip()
        return Settings(**{**self.__dict__, "secret_key": key})
