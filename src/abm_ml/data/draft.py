"""Draft a dataset spec from a CRM export, so a new user edits a draft instead of a blank page.

`draft_spec(path)` reads the file through the same reader as validation, then guesses each
column's role: the label (a column whose values read as won/lost, with its open values), the
row id (unique values, an id-like name), the account id, the created and closed dates with
their formats, the amount, a closing duration, the missing-value placeholders ("Select", "-",
"N/A"...) and the features with their inferred types. Columns that look known only after the
outcome go under ``exclude:`` with the reason: names the leakage guard refuses or finds
suspicious (stage, duration, tags, status, discount, billing...) and columns whose value or
blank-or-not alone separates won from lost. Every guess is a comment away from the user's
decision: the draft says what it guessed and why, and loads with
:func:`~abm_ml.data.spec.load_spec` as it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from abm_ml.data.leakage import (
    filled_for_one_outcome,
    missingness_auc,
    name_sounds_suspicious,
    name_suggests_post_outcome,
    single_feature_auc,
)
from abm_ml.data.parsing import clean_text, infer_type, parse_dates, parse_numbers
from abm_ml.data.readers import SOURCE_ROW, read_table
from abm_ml.data.spec import DEFAULT_MISSING_VALUES, LeakageSpec, SourceSpec, slugify
from abm_ml.data.words import fold, name_words
from abm_ml.errors import AbmInputError
from abm_ml.schema import CANONICAL_COLUMNS

PLACEHOLDERS = (
    "select",
    "--",
    "unknown",
    "not specified",
    "not set",
    "n.a.",
    "?",
    "tbd",
    "(blank)",
    "n.c.",  # French: non communiqué
    "non renseigné",
    "non renseigne",
    "k.a.",  # German: keine Angabe
    "keine angabe",
    "n.d.",  # Spanish, Italian: no disponible, non disponibile
    "n/d",
)
"""Values CRMs write for "nothing chosen", beyond :data:`DEFAULT_MISSING_VALUES`."""
# Vocabularies in folded form (lowercase, no accents: see abm_ml.data.words), in the languages
# CRMs are most often run in: English, French, German, Spanish, Portuguese, Italian, Dutch.
SIGNED_WORDS = frozenset(
    {"signe", "signee", "unterschrieben", "firmado", "firmada", "assinado", "assinada"}
    | {"firmato", "firmata", "getekend", "ondertekend"}
)
"""The word for signed in the other languages: a signed deal is a won one."""
WON_WORDS = frozenset(
    {"won", "win", "yes", "y", "true", "success", "converted", "signed", "1"}
    | {"gagne", "gagnee", "gewonnen", "ganado", "ganada", "ganho", "ganha", "vinto", "vinta"}
    | SIGNED_WORDS
    | {"oui", "ja", "si", "sim"}
)
LOST_WORDS = frozenset(
    {"lost", "loss", "no", "n", "false", "failure", "failed", "rejected", "declined", "0"}
    | {"perdu", "perdue", "verloren", "perdido", "perdida", "perso", "persa"}
    | {"non", "nein", "nao", "nee"}
)
OUTCOME_WORDS = frozenset(
    {"won", "win", "lost", "loss", "success", "failure", "failed", "converted", "signed"}
    | {"gagne", "gagnee", "perdu", "perdue", "gewonnen", "verloren", "ganado", "ganada"}
    | {"perdido", "perdida", "ganho", "ganha", "vinto", "vinta", "perso", "persa"}
    | SIGNED_WORDS
)
"""Values that name an outcome by themselves, unlike yes/no or 0/1."""
LABEL_NAMES = frozenset(
    {"y", "label", "target", "outcome", "result", "won", "win", "stage", "status", "converted"}
    | {"etape", "statut", "resultat", "phase", "stufe", "ergebnis", "etapa", "estado"}
    | {"resultado", "fase", "esito", "stadium", "uitkomst"}
)
ID_WORDS = frozenset(
    {"id", "ids", "number", "key", "uuid", "ref", "code", "no"}
    | {"numero", "nummer", "nr", "num", "identifiant", "reference", "referenz"}
)
ACCOUNT_WORDS = frozenset(
    {"account", "company", "customer", "client", "organisation", "organization", "org"}
    | {"societe", "entreprise", "compte", "firma", "unternehmen", "kunde", "konto", "empresa"}
    | {"cuenta", "cliente", "conta", "azienda", "bedrijf", "klant"}
)
ACCOUNT_QUALIFIERS = frozenset({"associated", "primary", "related", "linked"})
"""Words that still name the deal's own account: HubSpot's 'Associated Company IDs'."""
CREATED_WORDS = frozenset(
    {"created", "create", "creation", "engage", "first", "start", "opened"}
    | {"cree", "creee", "erstellt", "erstelldatum", "erstellungsdatum", "angelegt", "creacion"}
    | {"creado", "creada", "criacao", "criado", "criada", "creazione", "creato", "creata"}
    | {"aangemaakt"}
)
CLOSED_WORDS = frozenset(
    {"closed", "close", "closing", "won", "end", "signed"}
    | {"cloture", "fermeture", "ferme", "fermee", "abschluss", "abschlussdatum", "geschlossen"}
    | {"cierre", "cerrado", "cerrada", "fechamento", "fechado", "fechada", "chiusura", "chiuso"}
    | {"chiusa", "gesloten", "sluiting", "sluitingsdatum"}
)
AMOUNT_WORDS = frozenset(
    {"amount", "acv", "arr", "mrr", "tcv"}
    | {"montant", "betrag", "importe", "monto", "importo", "bedrag"}
)
DEAL_WORDS = frozenset(
    {"deal", "opportunity", "opp", "sales", "contract", "order"}
    | {"affaire", "opportunite", "geschaeft", "verkaufschance", "oportunidad", "negocio"}
    | {"oportunidade", "trattativa", "opportunita", "kans"}
)
VALUE_WORDS = frozenset(
    {"value", "price", "size"}
    | {"valeur", "prix", "wert", "preis", "valor", "precio", "preco", "valore", "prezzo"}
    | {"waarde", "prijs"}
)
"""With a word of :data:`DEAL_WORDS`, these name a deal amount ('Deal Value', 'valeur affaire')."""
DATE_FORMATS = ("ISO", "%m/%d/%Y", "%d/%m/%Y", "%m/%d/%y", "%d/%m/%y", "%d.%m.%Y", "%d-%b-%y")


def _words(column: str) -> set[str]:
    return set(name_words(column))


@dataclass
class Draft:
    """What the draft guessed, role by role, with a comment per guess."""

    source: str
    decimal: str | None = None
    label: dict | None = None
    row_id: str | None = None
    account_id: str | None = None
    created_at: dict | None = None
    closed_at: dict | None = None
    duration: str | None = None
    amount: str | None = None
    missing_values: list[str] = field(default_factory=list)
    features: list[dict] = field(default_factory=list)
    exclude: list[dict] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)
    identical_rows: int = 0


def _placeholders(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Placeholder spellings found in the file, with the columns they appear in."""
    found: dict[str, list[str]] = {}
    for column in frame.columns:
        if column == SOURCE_ROW or not pd.api.types.is_object_dtype(frame[column]):
            continue
        for value in pd.unique(frame[column].dropna()):
            if isinstance(value, str) and value.strip().lower() in PLACEHOLDERS:
                found.setdefault(value.strip(), []).append(column)
    return found


def _label_values(values: pd.Series) -> tuple[list[str], list[str], list[str]] | None:
    """(won, lost, other) values when the column reads as a won/lost outcome, else None."""
    distinct = [str(v) for v in pd.unique(values.dropna())]
    if not 2 <= len(distinct) <= 12:
        return None
    won = [v for v in distinct if _words(v) & WON_WORDS or fold(v.strip()) in WON_WORDS]
    lost = [
        v
        for v in distinct
        if v not in won and (_words(v) & LOST_WORDS or fold(v.strip()) in LOST_WORDS)
    ]
    if not won or not lost:
        return None
    return won, lost, [v for v in distinct if v not in won and v not in lost]


def _guess_label(text: dict[str, pd.Series], forced: str | None) -> tuple[str, dict, str] | None:
    """The label column, its spec entry and a comment; name hints break ties between columns."""
    if forced:
        if forced not in text:
            raise AbmInputError(f"no column {forced!r} in the file", field="--label")
        values = _label_values(text[forced])
        if values is None:
            counts = text[forced].value_counts()
            if len(counts) < 2:
                raise AbmInputError(f"column {forced!r} has fewer than two values", field="--label")
            # Wins are usually the rarer outcome: a guess the comment asks to check.
            values = ([str(counts.index[-1])], [str(counts.index[0])], [])
        candidates = {forced: values}
    else:
        # yes/no and 0/1 columns are often features: they need a label-like name.
        candidates = {
            c: v
            for c, v in ((c, _label_values(s)) for c, s in text.items())
            if v and (_words(c) & LABEL_NAMES or _words(" ".join(v[0] + v[1])) & OUTCOME_WORDS)
        }
    if not candidates:
        return None
    column = min(
        candidates,
        key=lambda c: (not (_words(c) & LABEL_NAMES), len(candidates[c][2]), list(text).index(c)),
    )
    won, lost, other = candidates[column]
    entry: dict = {"column": column, "won": won, "lost": lost}
    comment = f"guessed: {', '.join(won)} = won, {', '.join(lost)} = lost"
    if other:
        entry["open"] = other
        comment += f"; {', '.join(other)} = open deals (scored, not trained on)"
    return column, entry, comment


def _date_format(values: pd.Series) -> tuple[str, float] | None:
    """The format that parses the most present values (at least 95 %), with that share."""
    present = values.dropna()
    if present.empty or pd.api.types.is_numeric_dtype(present):
        return None
    sample = present.drop_duplicates().head(2000)
    if not sample.astype(str).str.contains(r"\d", regex=True).all():
        return None
    best: tuple[str, float] | None = None
    for fmt in DATE_FORMATS:
        _, bad = parse_dates(sample, [fmt])
        share = float(1 - bad.mean())
        if share >= 0.95 and (best is None or share > best[1]):
            best = (fmt, share)
    return best


_POINT_DECIMAL = r"^[+-]?\d*\.(\d{1,2}|\d{4,})$"
"""A point followed by other than three digits: a decimal point, never a thousands separator."""


def _decimal_comma(text: dict[str, pd.Series], taken: set[str]) -> str | None:
    """A comment when the file writes numbers with a decimal comma ('1 234,5'), else None.

    A column votes for the comma when most of its values are numbers only when read with a
    decimal comma, and for the point when it is all numbers with a point and some value has a
    point that cannot separate thousands ('3.5'). One vote for the point keeps the default.
    """
    comma, point = [], []
    for column, values in text.items():
        present = values.dropna()
        if column in taken or present.empty or pd.api.types.is_numeric_dtype(present):
            continue
        sample = present.astype(str).drop_duplicates().head(2000)
        point_bad = float(parse_numbers(sample)[1].mean())
        if point_bad <= 0.02:
            if sample.str.strip().str.fullmatch(_POINT_DECIMAL).any():
                point.append(column)
        elif float(parse_numbers(sample, decimal=",")[1].mean()) <= 0.02:
            comma.append(column)
    if not comma or point:
        return None
    shown = ", ".join(repr(c) for c in comma[:3]) + (" ..." if len(comma) > 3 else "")
    return f"numbers are written with a decimal comma in {shown}"


def _is_identifier(values: pd.Series) -> bool:
    present = values.dropna()
    distinct = present.nunique()
    return distinct > 50 and distinct > 0.9 * len(present)


def _assign_ids(draft: Draft, text: dict[str, pd.Series], taken: set[str]) -> None:
    """Row id (unique values, or 99 % unique with an id-like name) and account id."""
    for column, values in text.items():
        if column in taken or values.isna().any():
            continue
        unique_share = values.nunique() / len(values)
        id_name = bool(_words(column) & ID_WORDS)
        if (
            unique_share == 1.0
            and (id_name or not pd.api.types.is_numeric_dtype(values))
            or (id_name and unique_share >= 0.99)
        ):
            draft.row_id = column
            draft.comments["row_id"] = f"{unique_share:.1%} of rows have their own value"
            taken.add(column)
            break
    # 'Account', 'Account Name', 'Associated Company IDs'; not 'Account Owner' or 'Account
    # Type'. An id column is preferred to a name column (two firms can share a name).
    accounts = []
    for column in text:
        words = _words(column) - ACCOUNT_QUALIFIERS
        if (
            column not in taken
            and words & ACCOUNT_WORDS
            and (len(words) == 1 or words - ACCOUNT_WORDS <= ID_WORDS | {"name"})
        ):
            accounts.append((not words & ID_WORDS, column))
    if not accounts:  # 'Account ID (18 digit)', 'Customer Name Legal'
        for column in text:
            words = _words(column)
            if column not in taken and words & ACCOUNT_WORDS and words & (ID_WORDS | {"name"}):
                accounts.append((True, column))
    if accounts:
        column = min(accounts, key=lambda a: a[0])[1]
        values = text[column]
        share = values.nunique() / max(values.notna().sum(), 1)
        draft.account_id = column
        draft.comments["account_id"] = f"{values.nunique():,} accounts ({share:.0%} distinct)"
        taken.add(column)


def _assign_dates(draft: Draft, text: dict[str, pd.Series], taken: set[str]) -> list[str]:
    """Created and closed dates by name; returns the other date columns (to exclude)."""
    dates = {
        c: f for c, f in ((c, _date_format(v)) for c, v in text.items() if c not in taken) if f
    }
    others = []
    for column, (fmt, share) in dates.items():
        words = _words(column)
        entry = {"column": column, "formats": [fmt]}
        note = f"{share:.0%} of values parse as {fmt}"
        if draft.created_at is None and words & CREATED_WORDS:
            draft.created_at, draft.comments["created_at"] = entry, note
        elif draft.closed_at is None and words & CLOSED_WORDS:
            draft.closed_at, draft.comments["closed_at"] = entry, note
        else:
            others.append(column)
        taken.add(column)
    if draft.closed_at and not draft.created_at:
        others.append(draft.closed_at["column"])
        draft.closed_at = None
    return others


def _assign_amount_and_duration(
    draft: Draft, text: dict[str, pd.Series], kinds: dict[str, str], taken: set[str]
) -> None:
    for column in text:
        words = _words(column)
        if column in taken or kinds[column] != "numeric":
            continue
        amount_like = bool(words & AMOUNT_WORDS) or bool(words & DEAL_WORDS and words & VALUE_WORDS)
        if draft.amount is None and amount_like and not name_suggests_post_outcome(column):
            draft.amount = column
            draft.comments["amount"] = "a numeric column named like a deal amount"
        elif (
            draft.duration is None
            and draft.closed_at is None
            and words & {"days", "duration"}
            and words & {"close", "closing", "closed"}
        ):
            draft.duration = column
            draft.comments["duration"] = "days to close: the deal-velocity target (not a feature)"
            taken.add(column)


def _outcome_separation(
    values: pd.Series, kind: str, won: np.ndarray, closed: np.ndarray, decimal: str = "."
) -> tuple[float, float, str | None]:
    """Single-feature and blank-or-not ROC AUC on closed rows, and a one-sided fill."""
    typed = parse_numbers(values, decimal=decimal)[0] if kind == "numeric" else values
    part = typed[closed].reset_index(drop=True)
    return (
        single_feature_auc(part, won, kind),
        missingness_auc(part, won)[0],
        filled_for_one_outcome(part, won),
    )


def _exclusion_reason(
    column: str,
    values: pd.Series,
    kind: str,
    outcome: tuple[np.ndarray, np.ndarray] | None,
    decimal: str = ".",
) -> str | None:
    """Why a column should not be a feature, or None."""
    if values.nunique(dropna=False) <= 1:
        return "a single value: nothing to learn"
    if kind == "categorical" and _is_identifier(values):
        return "looks like an identifier (almost every value distinct)"
    word = name_suggests_post_outcome(column)
    if word:
        return f"its name ({word!r}) says it describes the deal up to its close (leaks the outcome)"
    word = name_sounds_suspicious(column)
    if word:
        return (
            f"its name ({word!r}) sounds filled in after the outcome; keep it only if it is "
            "known before (check with `abm-ml validate SPEC --leak-check`)"
        )
    if outcome is None:
        return None
    won, closed = outcome
    auc, blank_auc, one_sided = _outcome_separation(values, kind, won, closed, decimal)
    guard = LeakageSpec()
    if one_sided:
        return one_sided
    if blank_auc >= guard.missingness_auc_threshold:
        return f"blank-or-not alone separates won from lost (ROC AUC {blank_auc:.2f}): filled in after the outcome?"
    if auc >= guard.suspicious_auc_threshold:
        return f"alone it separates won from lost with ROC AUC {auc:.2f}: known only after the outcome?"
    return None


def _names_the_account(values: pd.Series, accounts: pd.Series) -> bool:
    """Whether a text column is one-to-one with the account id (the account's name next to its
    id): each account has one value and each value one account, over more than a few values."""
    pairs = pd.DataFrame({"value": values, "account": accounts}).dropna().drop_duplicates()
    distinct = pairs["value"].nunique()
    return (
        distinct > 20
        and pairs["account"].is_unique
        and pairs["value"].is_unique
        and distinct >= 0.9 * accounts.nunique()
    )


def _feature_entry(column: str, kind: str, names: set[str]) -> dict:
    name = slugify(column)
    if name in CANONICAL_COLUMNS:
        name = f"deal_{name}" if name == "amount" else f"{name}_value"
    while name in names:
        name += "_2"
    names.add(name)
    entry: dict = {"column": column}
    if name != slugify(column):
        entry["name"] = name
    entry["type"] = kind
    entry["description"] = re.sub(r"[_.]+", " ", column).strip().lower()
    return entry


def draft_spec(path: str | Path, *, label: str | None = None) -> Draft:
    """Guess a spec's roles, features and exclusions from a CSV or Parquet export.

    Args:
        path: the export.
        label: the label column when the guess would be wrong.

    Raises:
        AbmInputError: the file cannot be read, or ``label`` is not one of its columns.
    """
    table = read_table(SourceSpec(path=str(path)))
    frame = table.frame.drop(columns=[SOURCE_ROW])
    draft = Draft(source=str(Path(path).resolve()))
    found = _placeholders(frame)
    draft.missing_values = sorted(found)
    if found:
        draft.comments["missing_values"] = "placeholders found in the file: " + "; ".join(
            f"{value!r} in {', '.join(columns[:3])}{' ...' if len(columns) > 3 else ''}"
            for value, columns in sorted(found.items())
        )
    tokens = frozenset(DEFAULT_MISSING_VALUES) | {v.lower() for v in found}
    text = {c: clean_text(frame[c], tokens) for c in frame.columns}
    value_columns = list(frame.columns)
    draft.identical_rows = int(frame.duplicated(subset=value_columns).sum())

    taken: set[str] = set()
    guessed = _guess_label(text, label)
    outcome = None
    if guessed:
        column, draft.label, draft.comments["label"] = guessed
        taken.add(column)
        labels = text[column].astype("string")
        closed = labels.isin(draft.label["won"] + draft.label["lost"]).fillna(False).to_numpy()
        won = labels[closed].isin(draft.label["won"]).to_numpy(dtype=int)
        if 0 < won.sum() < won.size:
            outcome = (won, closed)
    _assign_ids(draft, text, taken)
    other_dates = _assign_dates(draft, text, taken)
    for column in other_dates:
        draft.exclude.append(
            {"column": column, "reason": "a date: features are values known at creation"}
        )
    decimal_note = _decimal_comma(text, taken)
    if decimal_note:
        draft.decimal, draft.comments["decimal"] = ",", decimal_note
    decimal = draft.decimal or "."
    kinds = {c: infer_type(v, decimal=decimal) for c, v in text.items() if c not in taken}
    _assign_amount_and_duration(draft, text, kinds, taken)
    names: set[str] = set()
    for column, kind in kinds.items():
        if column in taken:
            continue
        reason = _exclusion_reason(column, text[column], kind, outcome, decimal)
        if (
            reason is None
            and kind == "categorical"
            and draft.account_id
            and _names_the_account(text[column], text[draft.account_id])
        ):
            reason = (
                f"one value per account of '{draft.account_id}' (its name?): a model would learn "
                "accounts by name, and new accounts have none of them"
            )
        if reason:
            draft.exclude.append({"column": column, "reason": reason})
        else:
            draft.features.append(_feature_entry(column, kind, names))
    return draft


def _flow(value: object) -> str:
    """One YAML value on one line (quoted where YAML needs it: 'yes', 'no', ': ')."""
    text = yaml.safe_dump(
        value, default_flow_style=True, width=10_000, sort_keys=False, allow_unicode=True
    )
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _role_lines(draft: Draft) -> list[str]:
    lines = []
    if draft.label:
        lines.append(f"label: {_flow(draft.label)}  # {draft.comments['label']}")
    else:
        lines += [
            "# No column reads as won/lost: name the outcome column and its values",
            "# (or rerun with --label COLUMN).",
            "label: {column: SET_ME, won: [SET_ME_WON], lost: [SET_ME_LOST]}",
        ]
    if draft.row_id:
        lines.append(f"row_id: {_flow(draft.row_id)}  # {draft.comments['row_id']}")
    else:
        lines.append(
            "# No unique id column: each row's id is its line in the file (header = line 1)."
        )
        if draft.identical_rows:
            lines.append(
                f"# {draft.identical_rows} rows are identical to an earlier row: kept as distinct "
                "deals; `duplicates: drop` rejects them."
            )
    for role in ("account_id", "created_at", "closed_at", "duration", "amount"):
        value = getattr(draft, role)
        if value:
            lines.append(f"{role}: {_flow(value)}  # {draft.comments[role]}")
    return lines


def render_draft(draft: Draft, out: Path | None = None) -> str:
    """The draft as commented YAML; the source path relative to ``out``'s folder when given."""
    source = draft.source
    if out is not None:
        folder = Path(out).resolve().parent
        if Path(source).is_relative_to(folder):  # the spec travels with its data
            source = os.path.relpath(source, folder)
    name = slugify(Path(draft.source).stem).replace("_", "-")
    lines = [
        "# Drafted by `abm-ml spec init`: check every guess, then run `abm-ml validate` on it.",
        "# Every key is described in docs/spec.md.",
        f"name: {_flow(name)}",
        *([f"# {draft.comments['decimal']}: check it"] if draft.decimal else []),
        f"source: {_flow({'path': source} | ({'decimal': draft.decimal} if draft.decimal else {}))}",
        *_role_lines(draft),
    ]
    if draft.missing_values:
        lines.append(f"# {draft.comments['missing_values']}; drop one that is a real value.")
        lines.append(f"missing_values: {_flow(draft.missing_values)}")
    lines.append("features:" if draft.features else "features: []")
    lines += [f"  - {_flow(entry)}" for entry in draft.features]
    if draft.exclude:
        lines.append("# Not used as features; move a column to `features:` if it is known before")
        lines.append("# the outcome (the leakage guard will still check it).")
        lines.append("exclude:")
        lines += [f"  - {_flow(entry)}" for entry in draft.exclude]
    lines += [
        "# The leakage guard's thresholds (defaults shown); see docs/spec.md.",
        "# leakage: {auc_threshold: 0.95, missingness_auc_threshold: 0.75, missingness: refuse,",
        "#           suspicious_auc_threshold: 0.8, allow: []}",
    ]
    return "\n".join(lines) + "\n"
