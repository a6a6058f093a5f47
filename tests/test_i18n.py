"""English and French are complete: every message in the code has a French translation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent


def test_every_message_is_translated_to_french(tmp_path):
    pot = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run([str(pybabel), "-q", "extract", "-F", "babel.cfg", "-k", "_", "-k", "gettext",
                    "-o", str(pot), "."], cwd=ROOT, check=True)
    extracted = read_po(pot.open("rb"))
    french = read_po((ROOT / "idp/translations/fr/LC_MESSAGES/messages.po").open("rb"))
    def translated(msg) -> bool:
        strings = msg.string if isinstance(msg.string, (list, tuple)) else [msg.string]
        return bool(strings) and all(strings) and not msg.fuzzy

    missing = [m.id for m in extracted if m.id and (m.id not in french or not translated(french[m.id]))]
    assert not missing, f"untranslated: {missing}"
    assert len(list(extracted)) > 30


def test_french_page_by_accept_language(live):
    import requests

    page = requests.get(f"{live.issuer}/signin", headers={"Accept-Language": "fr-FR,fr;q=0.9"}, timeout=10)
    assert 'lang="fr"' in page.text
    for label in ("Adresse e-mail", "Mémoriser mes informations", "Suivant"):
        assert label in page.text


def _bare_app(tmp_path):
    import os

    from idp import create_app
    from idp.config import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "instance"), IDP_LOG_LEVEL="WARNING")
    return create_app(Settings.from_env(env), pages=False)


def test_python_strings_follow_the_page_language_and_forced_locale(tmp_path):
    """`idp.i18n.gettext`/`ngettext` (the `_` of the Python code) pick the same language as
    Flask-Babel would: ui_locales, then Accept-Language; `force_locale` (mail in the reader's
    language) switches them and leaving it switches back."""
    from flask_babel import force_locale

    from idp.i18n import gettext, ngettext

    app = _bare_app(tmp_path)
    wait = ("Too many attempts. Try again in %(num)d second.", "Too many attempts. Try again in %(num)d seconds.")
    with app.test_request_context("/", headers={"Accept-Language": "fr-FR,fr;q=0.9"}):
        assert gettext("This page does not exist.") == "Cette page n'existe pas."
        assert ngettext(*wait, 3) == "Trop de tentatives. Réessayez dans 3 secondes."
        assert ngettext(*wait, 1) == "Trop de tentatives. Réessayez dans 1 seconde."
        with force_locale("en"):
            assert gettext("This page does not exist.") == "This page does not exist."
            assert ngettext(*wait, 3) == "Too many attempts. Try again in 3 seconds."
        assert gettext("This page does not exist.") == "Cette page n'existe pas."
    with app.test_request_context("/", headers={"Accept-Language": "en-GB"}):
        assert gettext("This page does not exist.") == "This page does not exist."
    with app.test_request_context("/?ui_locales=de%20fr-CA", headers={"Accept-Language": "en"}):
        assert gettext("This page does not exist.") == "Cette page n'existe pas."
    with app.test_request_context("/?ui_locales=de", headers={"Accept-Language": "fr"}):
        assert gettext("This page does not exist.") == "Cette page n'existe pas."
    with app.test_request_context("/", headers={"Accept-Language": "de"}):
        assert gettext("This page does not exist.") == "This page does not exist."


def test_template_strings_as_jinja_s_newstyle_gettext(tmp_path):
    """Templates' `_`, `gettext` and `ngettext` (called directly, not through Jinja's wrappers)
    give what Jinja's newstyle callables give: the page's language, a Markup when autoescaping
    (variables escaped, the translation not), plain text otherwise, always a format string."""
    from jinja2 import Environment

    from idp.i18n import page_translations

    app = _bare_app(tmp_path)
    stock = Environment(extensions=["jinja2.ext.i18n"], autoescape=True)  # as Flask's from_string
    stock.install_gettext_callables(gettext=lambda s: page_translations().ugettext(s),
                                    ngettext=lambda s, p, n: page_translations().ungettext(s, p, n),
                                    newstyle=True)
    body = ('{{ _("This page does not exist.") }}|{{ gettext("Something is wrong") }}'
            '|{{ _("100%% <b>%(x)s</b>", x=who) }}'
            '|{{ ngettext("Too many attempts. Try again in %(num)d second.", '
            '"Too many attempts. Try again in %(num)d seconds.", n) }}')
    source = "{% autoescape false %}" + body + "{% endautoescape %}#" + body
    seen = set()
    for language in ("fr", "en"):
        for n in (1, 5):
            with app.test_request_context("/", headers={"Accept-Language": language}):
                ours = app.jinja_env.from_string(source).render(who="<script>", n=n)
                assert ours == stock.from_string(source).render(who="<script>", n=n)
                seen.add(ours)
    assert len(seen) == 4
    french = next(page for page in seen if "Cette page n'existe pas." in page and "5 secondes" in page)
    plain, escaped = french.split("#")
    assert "100% <b><script></b>" in plain and "100% <b>&lt;script&gt;</b>" in escaped


def test_accept_language_kept_per_header_gives_werkzeug_s_best_match(tmp_path):
    """The language picked from Accept-Language, kept per header value, is Werkzeug's best
    match among ours (else English) for every header, the first time and the next; a session
    or ui_locales choice still comes first."""
    from flask import session

    from idp.i18n import LANGUAGES, select_locale

    app = _bare_app(tmp_path)
    headers = ["fr-FR,fr;q=0.9,en;q=0.5", "en;q=0.1, fr;q=0.2", "de", "*", "fr;q=0", "", "FR-ca",
               "en-GB,fr;q=0.8", "de-DE,de;q=0.9", "x" * 300 + ",fr", "fr;q=0.5,en;q=0.5", "en-US, fr;q=1"]
    for _ in range(2):
        for header in headers:
            with app.test_request_context("/", headers={"Accept-Language": header}):
                from flask import request

                expected = request.accept_languages.best_match(LANGUAGES) or "en"
                assert str(select_locale()) == expected, header
    with app.test_request_context("/", headers={"Accept-Language": "fr"}):
        session["lang"] = "en"
        assert str(select_locale()) == "en"
    with app.test_request_context("/?ui_locales=fr", headers={"Accept-Language": "en"}):
        session["lang"] = "en"
        assert str(select_locale()) == "fr"


def test_an_invalid_sign_in_request_is_explained_in_the_page_language(live):
    """The person reads why in their language; what the protocol error says (in English, the
    error code and its description) is there for the app's developer, marked as such. Before,
    Authlib's English sentence stood inside the French one."""
    import requests

    client_id, _ = live.create_client()
    page = requests.get(f"{live.issuer}/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": "https://elsewhere.example/cb",
        "scope": "openid", "ui_locales": "fr"}, timeout=10, allow_redirects=False)
    assert page.status_code == 400 and 'lang="fr"' in page.text
    text = page.text.replace("&#39;", "'")
    assert "L'application a envoyé une demande de connexion non valide." in text
    detail = re.search(r"Pour le développeur de l'application : <code lang=\"en\">([^<]+)</code>", text)
    assert detail and detail.group(1).startswith("invalid_request: "), text
