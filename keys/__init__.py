"""The key ring: generating, encrypting at rest, rotating and publishing signing keys.

This package knows keys and nothing about users or clients; where the rows live is
the caller's business (`idp.keystore` keeps them in the database).
"""

from .keyring import ALGORITHMS, KeyRecord, KeyRing, LoadedKey, derive_key, new_key_record, seal, unseal

__all__ = ["ALGORITHMS", "KeyRecord", "KeyRing", "LoadedKey", "derive_key", "new_key_record", "seal", "unseal"]
