"""Password hashing with argon2id (OWASP parameters) and the password policy."""

from __future__ import annotations

import re
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Verified against when the email is unknown, so that an unknown address costs
# the same time as a known one (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("not-a-real-password-just-burning-time")

MIN_LENGTH = 8


def normal(password: str) -> str:
    """The form a password is hashed and checked in (NIST SP 800-63B §5.1.1.2, NFKC): the
    same "é" typed on two keyboards (one code point, or "e" and a combining accent) is
    one password."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    return _hasher.hash(normal(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash still costs the same verifications."""
    return verify_and_rehash(stored_hash, password)[0]


def verify_and_rehash(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """(whether `password` matches, the hash to store in place of `stored_hash` or None).

    A hash made before passwords were normalized holds the password as it was typed: it
    still matches that form, and is then replaced, as is one made with older parameters.
    Checking that second form costs a second verify only for a password that normalization
    changes, with or without an account (no enumeration by timing)."""
    if len(password) > MAX_TYPED:  # never set: refused before the costly normal form
        return False, None
    target = stored_hash or _DUMMY_HASH
    form = normal(password)
    if _matches(target, form):
        matched, typed_form = True, False
    elif form != password and _matches(target, password):
        matched, typed_form = True, True
    else:
        return False, None
    if stored_hash is None:
        return False, None
    return matched, hash_password(password) if typed_form or needs_rehash(stored_hash) else None


def _matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


MAX_LENGTH = 256  # argon2 takes any length; this only keeps requests sane
# The longest password ever accepted, as typed: composition shrinks a character to at most a
# quarter of its typed length (a canonical decomposition holds at most 4 code points).
# Longer input is refused before NFKC, which writes one character as up to 18 (U+FDFA): a
# form field of them costs ~0.15 s of CPU to normalize.
MAX_TYPED = 4 * MAX_LENGTH
# What zxcvbn scores of a longer password: its first characters. zxcvbn 4.5 raises ValueError
# past 72 (its default max_length, which 4.4 does not take), and its cost grows with the length.
ZXCVBN_INPUT = 72


def policy_problem(password: str, context: tuple[str | None, ...] = ()) -> str | None:
    """Why a new password is refused: "too_short", "too_long", "too_common", or None.

    "Too common" is zxcvbn's lowest score (under a thousand guesses: the common
    password lists it ships, keyboard walks, the address and the person's name via `context`).
    """
    if len(password) > MAX_TYPED:
        return "too_long"
    password = normal(password)  # the form that is stored and checked
    if len(password) < MIN_LENGTH:
        return "too_short"
    if len(password) > MAX_LENGTH:
        return "too_long"
    # zxcvbn's word lists are megabytes of dicts: loaded by the first new password a process
    # checks, not by every worker and `idp` command that imports this module (issue 14).
    from zxcvbn import zxcvbn

    if zxcvbn(_scored_part(password), user_inputs=_context_words(context))["score"] == 0:
        return "too_common"
    return None


# zxcvbn's l33t matcher looks every substring up in its word lists once per combination of the
# letters the password's symbols may stand for ("4" or "@" for a; "(", "{", "[" or "<" for c ...):
# 72 such symbols made ~700 combinations, over 2 s of CPU for a sign-up anyone may post, before
# its throttle. Past this many (counted per letter; symbols of two letters make up to twice as
# many: 8, ~30 ms over 72 characters), only the first L33T_PREFIX characters are scored (~20 ms
# at most): a password with that many look-alike symbols is random-looking, not a common one.
L33T_COMBINATIONS = 4
L33T_PREFIX = 12


def _scored_part(password: str) -> str:
    from zxcvbn.matching import L33T_TABLE

    text = password[:ZXCVBN_INPUT]
    combinations = 1
    for symbols in L33T_TABLE.values():
        combinations *= max(1, sum(symbol in text for symbol in symbols))
    return text if combinations <= L33T_COMBINATIONS else text[:L33T_PREFIX]


def _context_words(context: tuple[str | None, ...]) -> list[str]:
    """Each item (the address, the person's name), an address's name, and their pieces, run
    together too: zxcvbn matches its inputs as whole words, so the bare address alone would
    let "jeanne.dupont" through for jeanne.dupont@example.com, and the name "Jeanne Dupont"
    alone "jeannedupont"."""
    words = []
    for item in context:
        if not item:
            continue
        words.append(item)
        name = item.rpartition("@")[0] if "@" in item else item
        pieces = [piece for piece in re.split(r"[^\w]+|_", name) if len(piece) >= 3]
        if name != item:
            words.append(name)
        words.extend(pieces)
        if len(pieces) > 1:
            words.append("".join(pieces))
    return words


def password_columns(password: str) -> dict:
    """An account's columns for a new `password`: its hash, and the moment from which every
    reset link sent before stops working."""
    from .store import utcnow

    return {"password_hash": hash_password(password), "password_changed_at": utcnow()}
