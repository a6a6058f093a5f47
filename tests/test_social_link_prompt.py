"""What a link asks of each provider (idp/signin/social.py `_start`): a fresh sign-in where
the provider can give one, its account chooser where it cannot. Google refuses a request with
prompt=login outright ("Invalid prompt"), so asking it for one would make every Google link
fail at Google."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from federation.social import BUILT_IN, Provider, authorization_url, can_ask_fresh_sign_in


def _provider(issuer: str | None) -> Provider:
    return Provider(name="p", label="P", client_id="c", client_secret="s", issuer=issuer,
                    metadata={"authorization_endpoint": "https://provider.example/authorize"}, scope="openid")


def _asked(provider: Provider) -> dict:
    fresh = can_ask_fresh_sign_in(provider)
    url = authorization_url(provider, "https://idp.example/cb", "st", "no", "v" * 43, fresh=fresh, choose=not fresh)
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_google_and_microsoft_are_asked_for_their_account_chooser_never_prompt_login():
    for issuer in (BUILT_IN["google"].issuer, BUILT_IN["microsoft"].issuer,
                   "https://login.microsoftonline.com/0b1c2d3e-0000-4000-8000-000000000000/v2.0"):
        asked = _asked(_provider(issuer))
        assert asked["prompt"] == "select_account" and "max_age" not in asked, (issuer, asked)


def test_any_other_openid_provider_is_asked_for_a_fresh_sign_in():
    asked = _asked(_provider("https://keycloak.example/realms/corp"))
    assert (asked["prompt"], asked["max_age"]) == ("login", "0")


def test_facebook_is_asked_for_neither():
    asked = _asked(_provider(None))
    assert "prompt" not in asked and "max_age" not in asked
