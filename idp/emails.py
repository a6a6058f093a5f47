"""Email addresses as they enter: one addr-spec each, or refused.

Every way an address comes in (sign-up, sign-in, reset, the CLI, SAML, social and
enterprise OpenID providers) passes through `normalize`, so a list such as
"attacker@evil.example,ceo@corp.example" can never be mailed, verified, or put
in an ID token as one person's address.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 254  # RFC 5321 §4.5.3.1.3: a path holds at most 256 octets, brackets included


def normalize(address: str | None) -> str | None:
    """The address lower-cased (as accounts store it), or None when it is not exactly one
    valid address: no display name, no quoting, no IP literal, no list."""
    if not isinstance(address, str):
        return None
    address = address.strip()
    if not address or len(address) > MAX_LENGTH:
        return None
    try:
        # Deliverability (DNS) is not asked: a sign-in page must not wait on DNS, and the
        # mailed link proves the mailbox. `test_environment` admits the reserved `.test` TLD.
        checked = validate_email(address, check_deliverability=False, allow_quoted_local=False,
                                 allow_domain_literal=False, allow_display_name=False, test_environment=True)
    except EmailNotValidError:
        return None
    return checked.normalized.lower()
