"""Page language: `ui_locales` of the authorization request, else Accept-Language (English, French)."""

from __future__ import annotations

from babel import Locale
from flask import Flask, g, has_app_context, request, session
from flask_babel import Babel, get_locale, get_translations
from jinja2 import pass_eval_context
from markupsafe import Markup
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

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


# Parsed once: Flask-Babel parses the selector's answer again on every request otherwise.
_LOCALES = {lang: Locale.parse(lang) for lang in LANGUAGES}
# Accept-Language header -> our language. Parsing the header and matching it cost more than
# the rest of a page's translation; browsers send a handful of distinct values. Bounded, and
# long values (no browser sends them) are matched each time rather than kept.
_ACCEPTED: dict[str, str] = {}
KEPT_HEADER_LENGTH = 200


def select_locale() -> Locale:
    lang = pick_language(request.args.get("ui_locales")) or session.get("lang")
    if lang not in LANGUAGES:
        lang = _accepted_language(request.headers.get("Accept-Language"))
    return _LOCALES[lang]


def _accepted_language(header: str | None) -> str:
    """Werkzeug's best match of the Accept-Language header among ours, else English."""
    lang = _ACCEPTED.get(header or "")
    if lang is None:
        lang = parse_accept_header(header, LanguageAccept).best_match(LANGUAGES) or "en"
        if header and len(header) <= KEPT_HEADER_LENGTH:
            if len(_ACCEPTED) >= 256:
                _ACCEPTED.clear()
            _ACCEPTED[header] = lang
    return lang


def page_translations():
    """Flask-Babel's translations for this request, found once per request and locale.

    Flask-Babel resolves its context, domain and locale again for every string (a page has
    a dozen). The answer is kept beside the locale object it was found for: `force_locale`
    (mail in the reader's language) and `refresh` replace that object, so a change of
    language is never missed."""
    if not has_app_context():
        return get_translations()
    # The request's `g` itself, resolved once: each attribute read through the proxy costs
    # a context lookup, and a page asks for a dozen strings.
    request_g = g._get_current_object()
    locale = getattr(getattr(request_g, "_flask_babel", None), "babel_locale", None)
    cached = getattr(request_g, "idp_translations", None)
    if cached is not None and locale is not None and cached[0] is locale:
        return cached[1]
    translations = get_translations()
    request_g.idp_translations = (getattr(getattr(request_g, "_flask_babel", None), "babel_locale", None),
                                  translations)
    return translations


def gettext(string: str, **variables) -> str:
    """Flask-Babel's `gettext`, through the request's translations found once (`page_translations`):
    Flask-Babel's own resolves its context, domain and locale for every string (about 15 µs)."""
    s = page_translations().ugettext(string)
    return s % variables if variables else s


def ngettext(singular: str, plural: str, num: int, **variables) -> str:
    """Flask-Babel's `ngettext` (`num` is a format variable too), as `gettext` above."""
    variables.setdefault("num", num)
    return page_translations().ungettext(singular, plural, num) % variables


@pass_eval_context
def _template_gettext(eval_ctx, string: str, **variables) -> str:
    """Jinja's newstyle `gettext` (a Markup when autoescaping, always a format string), called
    directly: through `_` Jinja's own goes by three `Context.call`s to reach the translation."""
    rv = page_translations().ugettext(string)
    if eval_ctx.autoescape:
        rv = Markup(rv)
    return rv % variables


@pass_eval_context
def _template_ngettext(eval_ctx, singular: str, plural: str, num: int, **variables) -> str:
    """Jinja's newstyle `ngettext`, called directly as `_template_gettext`."""
    variables.setdefault("num", num)
    rv = page_translations().ungettext(singular, plural, num)
    if eval_ctx.autoescape:
        rv = Markup(rv)
    return rv % variables


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories="translations")
    app.jinja_env.globals["get_locale"] = get_locale
    # Flask-Babel's own callables, through the per-request lookup above; `_`, `gettext` and
    # `ngettext` (nearly every string of a page) then in place of Jinja's wrappers of them.
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: page_translations().ugettext(s),
        ngettext=lambda s, p, n: page_translations().ungettext(s, p, n),
        pgettext=lambda c, s: page_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: page_translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
    app.jinja_env.globals.update(_=_template_gettext, gettext=_template_gettext, ngettext=_template_ngettext)


def current_language() -> str:
    """The language of the page being served (for mail sent from it)."""
    return str(get_locale() or "en")
