"""The words of a column header or a value, read the same way everywhere.

CRM exports come in the user's language: 'Date de clôture', 'Étape', 'Société', 'Größe'.
Accents are folded ('clôture' -> 'cloture') and camelCase is split before lowering, so the
vocabularies that recognise roles and leaks (:mod:`abm_ml.data.draft`,
:mod:`abm_ml.data.leakage`) are written once, in plain lowercase letters.
"""

from __future__ import annotations

import re
import unicodedata

_CAMEL = re.compile(r"([a-zß-öø-ÿ])([A-ZÀ-ÖØ-Þ])")


def fold(text: str) -> str:
    """Lower case without accents: 'Clôture' -> 'cloture', 'Größe' -> 'grosse'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def name_words(text: str) -> list[str]:
    """The words of a header or value: 'closeDate' -> ['close', 'date'], 'Étape' -> ['etape']."""
    return re.findall(r"[a-z]+", fold(_CAMEL.sub(r"\1 \2", text)))
