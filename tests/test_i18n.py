"""English and French are complete: every message in the code has a French translation."""

from __future__ import annotations

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
