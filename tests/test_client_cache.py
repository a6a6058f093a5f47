"""Each server process keeps clients in memory (idp/oauth/client_cache.py), yet a client
deleted or changed by any process (the CLI, another server, a cascade in the database)
fails on its very next request to every worker: no time-to-live."""

from __future__ import annotations

import requests

from idp.store import Client, User, db
from idp.store.clients import ClientRecord
from tests.oidc import token

WARM = 12  # requests spread over both workers of the live server


def _cc(live, client_id, secret):
    return token(live.issuer, {"grant_type": "client_credentials"}, auth=(client_id, secret))


def _warm(live, client_id, secret):
    assert all(_cc(live, client_id, secret).status_code == 200 for _ in range(WARM))


def test_a_client_deleted_by_another_process_fails_at_once(live):
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    _warm(live, client_id, secret)
    out = live.idp("clients", "delete", client_id)
    assert out.returncode == 0, out.stderr
    answers = [_cc(live, client_id, secret) for _ in range(WARM)]
    assert [r.status_code for r in answers] == [401] * WARM
    assert answers[0].json()["error"] == "invalid_client"


def test_a_changed_secret_counts_at_once(live):
    from idp.store import digest

    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    _warm(live, client_id, secret)
    with live.db():
        db.session.get(Client, client_id).client_secret_hash = digest("the new secret")
        db.session.commit()
    assert {_cc(live, client_id, secret).status_code for _ in range(WARM)} == {401}
    assert {_cc(live, client_id, "the new secret").status_code for _ in range(WARM)} == {200}


def test_a_cascade_in_the_database_counts_too(live):
    """A portal app dies with its owner's account (foreign key ON DELETE CASCADE): no
    application code touches the client row, the database trigger still moves the stamp."""
    owner = live.create_user("cache-owner@example.org")
    client_id, secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[], )
    with live.db():
        db.session.get(Client, client_id).owner_id = owner
        db.session.commit()
    _warm(live, client_id, secret)
    with live.db():
        db.session.delete(db.session.get(User, owner))
        db.session.commit()
        assert db.session.get(Client, client_id) is None
    assert {_cc(live, client_id, secret).status_code for _ in range(WARM)} == {401}


def test_unknown_clients_are_not_remembered(live):
    from idp.oauth.client_cache import ClientCache

    cache = ClientCache(lambda: db.engine)
    loads = []

    def load(client_id):
        loads.append(client_id)
        return None

    with live.db():
        for _ in range(3):
            assert cache.get("nobody", load) is None
    assert loads == ["nobody"] * 3


def test_the_cache_serves_a_known_client_without_reading_it_again(live):
    from idp.oauth.client_cache import ClientCache
    from idp.oauth.server import _read_client

    client_id, _ = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    cache = ClientCache(lambda: db.engine)
    loads = []

    def load(cid):
        loads.append(cid)
        return _read_client(cid)

    with live.app.test_request_context():
        first = cache.get(client_id, load)
        assert isinstance(first, ClientRecord) and cache.get(client_id, load) is first
        assert loads == [client_id]
        live.create_client(grant_types=["client_credentials"], redirect_uris=[])  # any client change
        assert cache.get(client_id, load) == first and loads == [client_id, client_id]


def test_the_database_going_away_is_not_a_reason_to_trust_the_cache(live):
    """While the stamp cannot be read the cache is bypassed (and emptied)."""
    from idp.oauth.client_cache import ClientCache

    class Gone:
        def raw_connection(self):
            raise requests.ConnectionError("database away")

    cache = ClientCache(lambda: Gone())
    record = object()
    assert cache.get("c", lambda cid: record) is record
    assert cache.get("c", lambda cid: None) is None


def test_an_entry_loaded_under_an_old_stamp_is_never_used_under_a_newer_one():
    """While one thread loads a client under stamp 1, another moves the cache to stamp 2
    (the client changed meanwhile): what the first thread loaded is not filed where stamp 2's
    readers look. The stamp and its entries are replaced as one."""
    from idp.oauth.client_cache import ClientCache

    cache = ClientCache(lambda: None)
    stamps = iter([1, 2, 2])
    cache._read_stamp = lambda: next(stamps)

    def slow_load(_key):
        assert cache.get("other", lambda _k: "other as of 2") == "other as of 2"
        return "client as of 1"

    assert cache.get("client", slow_load) == "client as of 1"
    assert cache.get("client", lambda _k: "client as of 2") == "client as of 2"
