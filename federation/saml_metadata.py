"""An org's IdP metadata as pysaml2 is given it: the copy we stored, with no clock check.

pysaml2 silently drops an EntityDescriptor whose validUntil has passed, so sign-in would
stop in whichever process builds its service provider after that moment (and go on in
those that built it before). Expiry is ours to decide, once, when a copy is read
(`idp.orgs.check_new_metadata` refuses an expired document); a stored copy that outlives
its validUntil because refreshing it failed keeps working, loudly (`idp.metadata_refresh`).
Imported by pysaml2 from the class path in `federation.saml`, so only where pysaml2 is.
"""

from __future__ import annotations

from saml2.mdstore import InMemoryMetaData


class StoredMetadata(InMemoryMetaData):
    def __init__(self, attrc, metadata: str, **kwargs):
        kwargs.pop("check_validity", None)
        super().__init__(attrc, metadata=metadata, check_validity=False, **kwargs)
