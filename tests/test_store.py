"""Invariants of the data model that a schema change could silently break."""

from idp.store.clients import Client, ClientRecord


def test_client_record_has_every_client_column():
    # The token endpoint builds ClientRecord(**row): a new column must be added to both.
    assert list(ClientRecord.__dataclass_fields__) == [c.name for c in Client.__table__.columns]
