"""DPoP (RFC 9449): proofs of possession, server nonces, and the key bindings they make.

A proof is a JWS the client signs with its own key for one request. The token
endpoint checks it before any grant runs and puts the result on the OAuth2 request
(`request.dpop`); the grants then bind what they issue to the key's thumbprint:
the access token gets `cnf.jkt`, a public client's refresh-token family gets
`Grant.dpop_jkt`, and a code asked for with `dpop_jkt` can only be exchanged with
a proof of that key. Userinfo checks the proof again, with `ath`.

Verification is done here with `cryptography` directly: the JOSE libraries cost
about three times as much CPU for the same check, and it runs on every bound grant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, OAuth2Error
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, utils
from flask import current_app
from flask import request as http_request
from sqlalchemy import bindparam, update

from .. import rsa_bounds, single_use
from ..security import app_key
from ..store import Grant, db

# alg -> what the key must be. Never `none`, never a MAC (RFC 9449 §4.3 step 5).
ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
_EC = {"ES256": ("P-256", ec.SECP256R1, 32), "ES384": ("P-384", ec.SECP384R1, 48)}
# The verify arguments of each alg, made once: they are immutable, and building them per
# proof was a noticeable part of the check's Python time.
_VERIFY_ARGS = {
    "ES256": (ec.ECDSA(hashes.SHA256()),),
    "ES384": (ec.ECDSA(hashes.SHA384()),),
    "RS256": (padding.PKCS1v15(), hashes.SHA256()),
    "PS256": (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()),
    "EdDSA": (),
}
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

PROOF_TYP = "dpop+jwt"
IAT_WINDOW = 60  # seconds either side of now a proof's `iat` may be
NONCE_SLOT = 120  # a nonce lives for this slot and the next one
MAX_PROOF_LENGTH = 8192  # an RSA-4096 proof is about 1.5 KB


class InvalidDPoPProofError(OAuth2Error):
    error = "invalid_dpop_proof"
    status_code = 400


class UseDPoPNonceError(OAuth2Error):
    """The proof lacks the server's current nonce: retry with the one in `DPoP-Nonce` (§8)."""

    error = "use_dpop_nonce"
    status_code = 400

    def get_headers(self):
        return [*super().get_headers(), ("DPoP-Nonce", current_nonce())]


class InvalidTokenError(OAuth2Error):
    error = "invalid_token"
    status_code = 401


@dataclass(frozen=True, slots=True)
class Proof:
    """A checked proof: the thumbprint (RFC 7638) of the key that signed it."""

    jkt: str


MARKER_KIND = "dpop"  # the single_use kind of a proof's jti


@dataclass(frozen=True, slots=True)
class Unspent:
    """A proof that passed every check but its single use: its thumbprint, and the marker
    (`single_use`, kind MARKER_KIND) whose claim spends it, kept until `expires`."""

    jkt: str
    marker: str
    expires: datetime
    nonced: bool = False  # it carried a nonce of ours (checked), so `spend` need not sync its marker


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings, whatever characters a client sent."""
    return hmac.compare_digest(a.encode(), b.encode())


# --- nonces -----------------------------------------------------------------------

def _nonce_setup() -> tuple[bytes, bool]:
    """(the nonce secret, whether it changes with each boot of the host), made once per app."""
    setup = current_app.extensions.get("idp.dpop_nonces")
    if setup is None:
        # Every process of the deployment makes and accepts the same nonces. On SQLite, only
        # within one boot of the host: a nonced proof's marker is claimed unsynced (`spend`),
        # an OS crash may take it back, and this makes the proof's nonce stale with it.
        boot = single_use.host_boot()
        setup = current_app.extensions["idp.dpop_nonces"] = (
            app_key(b"dpop nonce" + (b" boot " + boot if boot else b"")), boot is not None)
    return setup


def _nonce_secret() -> bytes:
    return _nonce_setup()[0]


@lru_cache(maxsize=8)
def _nonce_for(secret: bytes, slot: int) -> str:
    mac = hmac.new(secret, slot.to_bytes(8, "big"), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode()


def current_nonce() -> str:
    """The nonce every response of the token endpoint and userinfo hands out."""
    return _nonce_for(_nonce_secret(), int(time.time()) // NONCE_SLOT)


def nonce_is_valid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    secret, slot = _nonce_secret(), int(time.time()) // NONCE_SLOT
    # Both compared, so the time taken says nothing about which slot matched.
    current = same(value, _nonce_for(secret, slot))
    previous = same(value, _nonce_for(secret, slot - 1))
    return current or previous


# --- keys ---------------------------------------------------------------------------

_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64decode(value: object) -> bytes:
    """`base64.urlsafe_b64decode` with the padding added, without its Python layers."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    # Non-ASCII raises UnicodeEncodeError, a ValueError; bad base64 raises binascii.Error.
    return binascii.a2b_base64(value.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(value) % 4))


def b64_sha256(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    """RFC 7638 thumbprint (SHA-256) of a public JWK: its required members, sorted, no spaces."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    members = {name: jwk[name] for name in required}
    return b64_sha256(json.dumps(members, separators=(",", ":"), sort_keys=True))


# What decoding a proof's part may raise: bad base64 or JSON, or JSON nested past the
# parser's depth (a few KB of "[" is a RecursionError, not a ValueError).
_UNPARSABLE = (ValueError, UnicodeError, RecursionError)


@dataclass(frozen=True, slots=True)
class _ProofHeader:
    alg: str
    key: object  # a `cryptography` public key
    jkt: str


@lru_cache(maxsize=1024)
def _checked_header(encoded: str) -> _ProofHeader:
    """The proof's JOSE header, checked, with its key and thumbprint (§4.3 steps 4-6).

    Cached by its encoded form: a client sends the same header with every proof, and
    this is most of the work beside the signature. Refusals raise, and are not cached.
    """
    try:
        header = json.loads(_b64decode(encoded))
    except _UNPARSABLE:
        raise InvalidDPoPProofError("the DPoP proof is not a compact JWS") from None
    if not isinstance(header, dict):
        raise InvalidDPoPProofError("the DPoP proof is not a JWT")
    if header.get("typ") != PROOF_TYP:
        raise InvalidDPoPProofError(f"the DPoP proof must have typ {PROOF_TYP}")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidDPoPProofError(f"alg must be one of {', '.join(ALGORITHMS)}")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidDPoPProofError("the DPoP proof must carry its public key in jwk")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise InvalidDPoPProofError("the jwk of a DPoP proof must not contain a private key")
    if "crit" in header:
        raise InvalidDPoPProofError("no crit extensions are understood")
    try:
        return _ProofHeader(alg, _public_key(alg, jwk), thumbprint(jwk))
    except (ValueError, TypeError, KeyError, UnicodeError):
        raise InvalidDPoPProofError("the jwk of the DPoP proof is not a usable public key for its alg") from None


def _public_key(alg: str, jwk: dict):
    kty = jwk.get("kty")
    if alg in _EC:
        crv, curve, size = _EC[alg]
        x, y = _b64decode(jwk.get("x")), _b64decode(jwk.get("y"))
        if kty != "EC" or jwk.get("crv") != crv or len(x) != size or len(y) != size:
            raise ValueError(f"{alg} needs an EC key on {crv}")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve(), b"\x04" + x + y)
    if alg in ("RS256", "PS256"):
        if kty != "RSA":
            raise ValueError(f"{alg} needs an RSA key")
        n = int.from_bytes(_b64decode(jwk.get("n")), "big")
        e = int.from_bytes(_b64decode(jwk.get("e")), "big")
        refused = rsa_bounds.refusal(n, e)  # anyone may send a proof, with a key of their making
        if refused:
            raise ValueError(refused)
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty != "OKP":
        raise ValueError("EdDSA needs an OKP key")
    x = _b64decode(jwk.get("x"))
    if jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(x)
    if jwk.get("crv") == "Ed448":
        return ed448.Ed448PublicKey.from_public_bytes(x)
    raise ValueError("EdDSA needs an Ed25519 or Ed448 key")


def _verify_signature(alg: str, key, signature: bytes, signed: bytes) -> None:
    if alg in _EC:
        # JWS carries r || s (RFC 7518 §3.4); `cryptography` verifies DER.
        size = _EC[alg][2]
        if len(signature) != 2 * size:
            raise InvalidSignature()
        signature = utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                               int.from_bytes(signature[size:], "big"))
    key.verify(signature, signed, *_VERIFY_ARGS[alg])


# --- proofs -------------------------------------------------------------------------

def _same_url(presented: str, expected: str) -> bool:
    """`htu` names the endpoint: compared without query and fragment, scheme and host
    case-insensitively, default ports dropped (RFC 9449 §4.3 step 9, RFC 3986 §6.2.3). The
    userinfo is part of the URI: kept (None when there is no "@" at all)."""
    def normal(url: str) -> tuple:
        parts = urlsplit(url)
        port = parts.port
        if (parts.scheme.lower(), port) in (("http", 80), ("https", 443)):
            port = None
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None
        return parts.scheme.lower(), userinfo, (parts.hostname or "").lower(), port, parts.path or "/"

    if presented == expected:
        return True
    try:
        return normal(presented) == normal(expected)
    except ValueError:  # a port out of range
        return False


def token_endpoint_url() -> str:
    """The token endpoint's URL as the issuer names it, where no Flask request is at hand."""
    return current_app.extensions["idp.settings"].issuer.rstrip("/") + "/token"


def endpoint_url() -> str:
    """This endpoint's URL as the issuer names it: right behind proxies, whatever Host says."""
    return current_app.extensions["idp.settings"].issuer.rstrip("/") + http_request.path


def presented_proof() -> str | None:
    """The one `DPoP` header of this request, None if there is none."""
    # Read from the WSGI environ, as `request.headers` does, without its walk over every
    # header: the server has already folded repeated headers into one, comma-joined.
    value = http_request.environ.get("HTTP_DPOP")
    if value is None:
        return None
    # Two headers (or two proofs folded into one by a proxy) are refused (§4.3 step 1).
    if "," in value:
        raise InvalidDPoPProofError("send exactly one DPoP proof")
    return value.strip()


def verify_proof(value: str, *, method: str, url: str, nonce: str = "optional",
                 access_token: str | None = None) -> Proof:
    """Check a proof (RFC 9449 §4.3) and return its key's thumbprint.

    `nonce`: "required" (the token endpoint), or "optional" (one, if present, must be
    current). `access_token`: the token the proof must name in `ath` (resource calls).
    The `jti` is claimed last, so a proof refused for any other reason can be fixed
    and retried.
    """
    checked = check_proof(value, method=method, url=url, nonce=nonce, access_token=access_token)
    if not spend(checked):
        raise InvalidDPoPProofError("this DPoP proof was already used")
    return Proof(jkt=checked.jkt)


def spend(proof: Unspent, connection=None) -> bool:
    """Claim the proof's `jti`: at once, or in the transaction of `connection` (a
    store.driver.DriverConnection), spent only if it commits. False: it was spent before."""
    if connection is None:
        # A nonced proof's marker need not wait for the disk where nonces die with the boot
        # (`_nonce_setup`): a marker an OS crash takes back is of a proof refused after it.
        synced = not (proof.nonced and _nonce_setup()[1])
        return single_use.claim_at_once(MARKER_KIND, proof.marker, proof.expires, synced=synced)
    return single_use.claim_in(connection, MARKER_KIND, proof.marker, proof.expires)


def marker_id(proof: Unspent) -> str:
    """The key of the marker row that `spend` writes (for a statement that writes it itself)."""
    return single_use.marker_id(MARKER_KIND, proof.marker)


def check_proof(value: str, *, method: str, url: str, nonce: str = "optional",
                access_token: str | None = None) -> Unspent:
    """`verify_proof`'s every check but the single use of its `jti`, which is left to the
    caller: the proof's thumbprint and its marker, unclaimed."""
    if len(value) > MAX_PROOF_LENGTH:
        raise InvalidDPoPProofError("the DPoP proof is too long")
    try:
        head, body, sig = value.split(".")
        claims = json.loads(_b64decode(body))
        signature = _b64decode(sig)
    except _UNPARSABLE:
        raise InvalidDPoPProofError("the DPoP proof is not a compact JWS") from None
    if not isinstance(claims, dict):
        raise InvalidDPoPProofError("the DPoP proof is not a JWT")
    header = _checked_header(head)
    try:
        # The signing input is the proof up to its last dot (ASCII: _b64decode checked it).
        _verify_signature(header.alg, header.key, signature, value[:len(head) + 1 + len(body)].encode())
    except (InvalidSignature, ValueError):
        raise InvalidDPoPProofError("the DPoP proof's signature does not verify with its jwk") from None
    jkt = header.jkt

    if claims.get("htm") != method:
        raise InvalidDPoPProofError("htm does not match the request method")
    htu = claims.get("htu")
    if not isinstance(htu, str) or not _same_url(htu, url):
        raise InvalidDPoPProofError("htu does not match the endpoint URL")
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool) or not math.isfinite(iat) \
            or abs(time.time() - iat) > IAT_WINDOW:
        raise InvalidDPoPProofError("iat is missing or too far from now")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise InvalidDPoPProofError("jti is missing")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not same(ath, b64_sha256(access_token)):
            raise InvalidDPoPProofError("ath does not match the access token")
    nonced = "nonce" in claims
    if nonced or nonce == "required":
        if not nonce_is_valid(claims.get("nonce")):
            raise UseDPoPNonceError("send the proof again with the nonce in the DPoP-Nonce header")
    # A proof outlives its use by at most the iat window: the marker is kept that long.
    expires = datetime.fromtimestamp(iat + IAT_WINDOW + 1, UTC).replace(tzinfo=None)
    return Unspent(jkt, f"{jkt}:{jti}", expires, nonced)


# --- the token endpoint ---------------------------------------------------------------

def token_endpoint_response(server):
    """The token endpoint with DPoP: the proof is checked before any grant runs (a nonce
    retry must not cost the client its code), and every answer carries a fresh nonce."""
    oauth_request = server.create_oauth2_request(None)
    try:
        value = presented_proof()
        oauth_request.dpop = None if value is None else verify_proof(
            value, method=http_request.method, url=endpoint_url(), nonce="required")
    except OAuth2Error as error:
        response = server.handle_error_response(oauth_request, error)
    else:
        response = server.create_token_response(oauth_request)
    response.headers["DPoP-Nonce"] = current_nonce()
    return response


def unspent_token_proof(value: str, url: str) -> Unspent | None:
    """A token request's `DPoP` header (`value`), checked as `token_endpoint_response`
    checks it but with its `jti` unspent; None when it is refused (a token endpoint's plain
    path then leaves the request to that function, which gives the error)."""
    if "," in value:  # two proofs: presented_proof's refusal
        return None
    try:
        return check_proof(value.strip(), method="POST", url=url, nonce="required")
    except OAuth2Error:
        return None


def proof_of(oauth_request) -> Proof | None:
    return getattr(oauth_request, "dpop", None)


def check_client_policy(client, oauth_request) -> None:
    """A `--require-dpop` client gets DPoP-bound tokens only (SPEC §1)."""
    if client.require_dpop and proof_of(oauth_request) is None:
        raise InvalidDPoPProofError("this client must send a DPoP proof")


class DPoPCodeBinding:
    """Authlib grant extension: a code asked for with `dpop_jkt` is exchanged only with a
    proof of that key (RFC 9449 §10)."""

    def __call__(self, grant):
        grant.register_hook("after_validate_token_request", self.validate)

    def validate(self, grant, _result=None):
        proof = proof_of(grant.request)
        if not key_fits(grant.request.authorization_code, proof.jkt if proof else None):
            raise InvalidGrantError("the code is bound to another DPoP key (dpop_jkt)")


def key_fits(bound, jkt: str | None) -> bool:
    """A code asked for with `dpop_jkt` (RFC 9449 §10) or a bound refresh-token family (§5),
    `bound`, is used only with a proof of its key; `jkt`: the thumbprint of the request's
    proof, None without one."""
    return not bound.dpop_jkt or (jkt is not None and same(jkt, bound.dpop_jkt))


def check_refresh_binding(family, oauth_request) -> None:
    proof = proof_of(oauth_request)
    if not key_fits(family, proof.jkt if proof else None):
        raise InvalidGrantError("the refresh token is bound to another DPoP key")


def binds_refresh_family(family, client, jkt: str | None) -> bool:
    """Whether a refresh grant with a proof of key `jkt` (None: without a proof) binds the
    family to it: public clients' refresh tokens are bound to the proof's key; confidential
    clients' are not, as they authenticate anyway (RFC 9449 §5)."""
    return jkt is not None and client.is_public and family.dpop_jkt is None


def bind_refresh_family(family, client, oauth_request) -> None:
    """`binds_refresh_family`, done. The caller commits."""
    proof = proof_of(oauth_request)
    if binds_refresh_family(family, client, proof.jkt if proof else None):
        bind_family(db.session.connection(), family, proof.jkt)


_GRANTS = Grant.__table__
_BIND_FAMILY = (
    update(_GRANTS)
    .where(_GRANTS.c.id == bindparam("b_id"), _GRANTS.c.dpop_jkt.is_(None))
    .values(dpop_jkt=bindparam("b_jkt"))
)


def bind_family(connection, family, jkt: str) -> None:
    """Bind the family to the key `jkt`, in the transaction of `connection` (the session's,
    or a store.driver.DriverConnection); the caller commits. A statement: `family` is the
    request's plain copy of the row (grants.Family)."""
    connection.execute(_BIND_FAMILY, {"b_id": family.id, "b_jkt": jkt})
    family.dpop_jkt = jkt


def bind_pushed_request(params: dict) -> None:
    """A DPoP proof sent with a pushed request binds its code like `dpop_jkt` (RFC 9449 §10.1)."""
    value = presented_proof()
    if value is None:
        return
    proof = verify_proof(value, method=http_request.method, url=endpoint_url())
    if params.setdefault("dpop_jkt", proof.jkt) != proof.jkt:
        raise InvalidRequestError("dpop_jkt does not match the key of the DPoP proof")


def check_dpop_jkt(params: dict) -> None:
    """`dpop_jkt` on an authorization request is a SHA-256 JWK thumbprint (RFC 9449 §10)."""
    value = params.get("dpop_jkt")
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{43}", value):
        raise InvalidRequestError("dpop_jkt must be a base64url SHA-256 JWK thumbprint")


# --- protected resources ----------------------------------------------------------

def check_resource_request(scheme: str, access_token: str, claims: dict) -> None:
    """A DPoP-bound access token is good only with the DPoP scheme and a proof of its key
    that names it in `ath` (RFC 9449 §7); an unbound one only as a Bearer token.

    Raises `InvalidTokenError` (a scheme that does not fit the token) or the proof's error.
    """
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not jkt:
        if scheme == "dpop":
            raise InvalidTokenError("this access token is not DPoP-bound: send it as a Bearer token")
        return
    if scheme != "dpop":
        raise InvalidTokenError("this access token is DPoP-bound: send it with the DPoP scheme and a proof")
    value = presented_proof()
    if value is None:
        raise InvalidDPoPProofError("a DPoP-bound access token needs a DPoP proof")
    proof = verify_proof(value, method=http_request.method, url=endpoint_url(), access_token=access_token)
    if not same(proof.jkt, jkt):
        raise InvalidDPoPProofError("the DPoP proof is signed by another key than the token is bound to")


def challenge(error: OAuth2Error) -> str:
    """The `WWW-Authenticate` value for a DPoP error at a resource (RFC 9449 §7.1)."""
    description = (error.description or "").replace('"', "'")
    return f'DPoP algs="{" ".join(ALGORITHMS)}", error="{error.error}", error_description="{description}"'
