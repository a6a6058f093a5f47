"""Page language: `ui_locales` of the authorization request, else Accept-Language (English, French)."""

from __future__ import annotations

from flask import Flask, request, session
from flask_babel import Babel, get_locale

LANGUAGES = ("en", "fr")


def pick_language(ui_locales: str | None) -> str | None:
    """The first of the space-separated `ui_locales` tags we speak (fr-CA counts as fr)."""
    for tag in (ui_locales or "").split():
        lang = tag.split("-")[0].lower()
        if lang in LANGUAGES:
            return lang
    return None


def remember_ui_locales(ui_locales: str | None) -> None:
    """Keep the product's language choice for the rest of this browser's sign-in."""
    lang = pick_language(ui_locales)
    if lang:
        session["lang"] = lang


def select_locale() -> str:
    lang = pick_language(request.args.get("ui_locales")) or session.get("lang")
    if lang in LANGUAGES:
        return lang
    return request.accept_languages.best_match(LANGUAGES) or "en"


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories="translations")
    app.jinja_env.globals["get_locale"] = get_locale


def current_language() -> str:
    """The language of the page being served (for mail sent from it)."""
    return str(get_locale() or "en")
