"""Settings from the IDP_* environment (SPEC §2), read and validated once at start."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message is shown to the operator."""


REGISTRATION_MODES = ("token", "open", "off")
LOG_FORMATS = ("text", "json")
# The secret signs the flow cookie and, through HKDF, seals the private signing keys
# at rest: 32 bytes is the least that leaves a brute-force search out of reach.
MIN_SECRET_KEY_BYTES = 32
# Each thread of a worker may hold a database connection: more than the pool gives
# (5 + 10 overflow, `idp._engine_options`) only wait for one; this bound is for typos.
MAX_THREADS = 256
# Days counted back from today (retention, key age): a million reached before year 1, and
# every housekeeping round and key rotation check failed on it. A century is "keep them".
MAX_DAYS = 36500


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
    # `text` or `json` (one object a line, SPEC §2).
    log_format: str = "text"
    # `idp serve` answers GET /metrics on 127.0.0.1 at this port; None: no metrics at all.
    metrics_port: int | None = None
    # Threads answering requests in each `idp serve` worker (IDP_THREADS).
    threads: int = 1
    # Reverse proxies in front of the server (SPEC §2): how many X-Forwarded-* hops to believe.
    trusted_proxies: int = 0
    # How long the audit trail and the back-channel logout outbox keep their rows.
    audit_retention_days: int = 400
    delivery_retention_days: int = 7
    # Rotate the signing key automatically once it is this many days old; None: only by hand.
    key_rotation_days: int | None = None
    # Lifetimes in seconds. Codes are short (RFC 9700 §4.5 / RFC 6749 §4.1.2).
    code_ttl: int = 60
    access_token_ttl: int = 900
    id_token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    session_ttl: int = 12 * 3600
    remember_me_ttl: int = 30 * 24 * 3600
    # How long a session may go unused before it no longer signs the browser in (ASVS 3.3.2,
    # level 2: 30 minutes of inactivity). A remembered one was asked to last: a week.
    session_idle: int = 30 * 60
    remember_me_idle: int = 7 * 24 * 3600
    # How long a process trusts its cached copy of the key ring.
    key_cache_seconds: float = 1.0
    # `idp dev`: mail without an SMTP server is logged whole, links included.
    development: bool = False
    # Non-public networks this server may send requests to (IDP_OUTBOUND_ALLOW);
    # None: loopback when the issuer is on loopback, else none.
    outbound_allow: tuple | None = None
    # The DNS server asked for domain proofs (IDP_DNS_RESOLVER, "host:port"); None: the system's.
    dns_resolver: tuple[str, int] | None = None
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
        issuer = _issuer(env.get("IDP_ISSUER", cls.issuer).rstrip("/"))
        parts = urlsplit(issuer)
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
        log_format = env.get("IDP_LOG_FORMAT", "").strip().lower() or "text"
        if log_format not in LOG_FORMATS:
            raise ConfigError(f"IDP_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        metrics_port = None
        if env.get("IDP_METRICS_PORT", "").strip():
            metrics_port = _count(env, "IDP_METRICS_PORT", "", minimum=1)
            if metrics_port > 65535:
                raise ConfigError(f"IDP_METRICS_PORT must be a TCP port (1-65535): {metrics_port}")
        secret_key = env.get("IDP_SECRET_KEY", "")
        if secret_key and len(secret_key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(f"IDP_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes long "
                              "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
        trusted_proxies = _count(env, "IDP_TRUSTED_PROXIES", "0", minimum=0)
        # 0 served every request a 500 (no thread to run the app), a negative one a crash loop.
        threads = _count(env, "IDP_THREADS", "1", minimum=1, maximum=MAX_THREADS)
        audit_retention_days = _count(env, "IDP_AUDIT_RETENTION_DAYS", "400", minimum=1, maximum=MAX_DAYS)
        delivery_retention_days = _count(env, "IDP_DELIVERY_RETENTION_DAYS", "7", minimum=1, maximum=MAX_DAYS)
        key_rotation_days = None
        if env.get("IDP_KEY_ROTATION_DAYS", "").strip():
            key_rotation_days = _count(env, "IDP_KEY_ROTATION_DAYS", "", minimum=1, maximum=MAX_DAYS)
        outbound_allow = None
        if env.get("IDP_OUTBOUND_ALLOW", "").strip():
            from .outbound import parse_allow_list

            try:
                outbound_allow = parse_allow_list(env["IDP_OUTBOUND_ALLOW"])
            except ValueError as err:
                raise ConfigError(f"IDP_OUTBOUND_ALLOW must be comma-separated CIDRs or none: {err}") from None
        dns_resolver = _resolver(env.get("IDP_DNS_RESOLVER", "").strip())
        values = dict(
            issuer=issuer,
            instance_dir=instance_dir,
            database_url=database_url,
            secret_key=secret_key,
            smtp_host=env.get("IDP_SMTP_HOST") or None,
            smtp_port=smtp_port,
            mail_from=env.get("IDP_MAIL_FROM") or f"no-reply@{parts.hostname}",
            redis_url=env.get("IDP_REDIS_URL") or None,
            registration=registration,
            log_level=log_level,
            log_format=log_format,
            metrics_port=metrics_port,
            threads=threads,
            trusted_proxies=trusted_proxies,
            audit_retention_days=audit_retention_days,
            delivery_retention_days=delivery_retention_days,
            key_rotation_days=key_rotation_days,
            outbound_allow=outbound_allow,
            dns_resolver=dns_resolver,
        )
        values.update(overrides)
        return cls(**values)

    def with_secret_key(self) -> Settings:
        """Return settings whose secret key is set: from the environment, else the
        instance dir's generated one (created once, readable only by its owner)."""
        if self.secret_key:
            return self
        make_instance_dir(self.instance_dir)
        path = self.instance_dir / "secret_key"
        if not path.exists():
            _publish_new_secret(path)
        key = path.read_text().strip()
        if len(key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(f"{path} holds no usable secret key (shorter than {MIN_SECRET_KEY_BYTES} bytes): "
                              "delete it to have a new one generated, or set IDP_SECRET_KEY")
        return Settings(**{**self.__dict__, "secret_key": key})


def make_instance_dir(path: Path) -> None:
    """Create the instance dir readable by its owner only: it holds the secret key and,
    by default, the SQLite database. An existing directory keeps the mode it was given."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _publish_new_secret(path: Path) -> None:
    # Written whole and synced under a temporary name, then hard-linked to the final
    # name, which therefore never exists empty or half-written: a process starting at
    # the same moment reads either nothing (and makes its own attempt) or the whole key.
    # link() fails when the name exists, so of several racing processes exactly one
    # wins and the others read the winner's key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: theirs is the key
            return
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a crash too
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def _issuer(issuer: str) -> str:
    """IDP_ISSUER as it is published (discovery, every token's `iss`, every endpoint's URL):
    an http(s) URL of a host, with no user info, query or fragment (RFC 8414 §2), not even an
    empty "?" or "#" (urlsplit sees none, yet every endpoint would be "<issuer>/token" behind
    it). The scheme in lower case: Secure cookies and HSTS go by `startswith("https://")`."""
    try:
        parts = urlsplit(issuer)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port out of range, an unclosed "[" of an IPv6 address
        parts, port_ok = None, False
    if (not port_ok or not issuer.startswith(("http://", "https://")) or not parts.hostname
            or "@" in parts.netloc or "?" in issuer or "#" in issuer
            or not issuer.isprintable() or any(ch.isspace() for ch in issuer)):
        raise ConfigError(f"IDP_ISSUER must be an http(s) URL of a host, without user info, query or fragment: "
                          f"{issuer!r}")
    return issuer


def _resolver(raw: str) -> tuple[str, int] | None:
    """IDP_DNS_RESOLVER: an IP address and a port ("192.0.2.53:53", "[2001:db8::53]:53"),
    or nothing for the system's resolver."""
    if not raw:
        return None
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:([0-9]{1,5})|([0-9.]+):([0-9]{1,5})", raw)
    host, port = (m.group(1) or m.group(3), int(m.group(2) or m.group(4))) if m else (None, 0)
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        host = None
    if host is None or not 0 < port < 65536:
        raise ConfigError(f"IDP_DNS_RESOLVER must be an IP address and a port, like 192.0.2.53:53 "
                          f"or [2001:db8::53]:53: {raw!r}")
    return host, port


def _count(env: dict[str, str], name: str, default: str, minimum: int, maximum: int | None = None) -> int:
    """A whole number from `minimum` to `maximum` from `env[name]`, else ConfigError naming it."""
    raw = env.get(name, "").strip() or default
    # ASCII digits only: int() would also take "+3", "1_0" and other scripts' digits.
    value = int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) else None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            what = f"a whole number from {minimum} to {maximum}"
        else:
            what = "a non-negative whole number" if minimum == 0 else f"a whole number of at least {minimum}"
        raise ConfigError(f"{name} must be {what}: {raw!r}")
    return value
