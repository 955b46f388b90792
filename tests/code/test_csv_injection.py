"""Ranked CSVs are opened in Excel by sales ops: no CRM value may run there as a formula."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from abm_ml.modeling.ranking import write_ranked, write_unscorable

HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB"]


def _ranked() -> pd.DataFrame:
    ids = [*HOSTILE, "ACME-1", "-5"]
    return pd.DataFrame(
        {
            "rank": range(1, len(ids) + 1),
            "account_id": ids,
            "propensity": [0.5] * len(ids),
            "expected_value": [-5.0] + [10.0] * (len(ids) - 1),
            "top_reasons": ["+ 12 web visits"] + [""] * (len(ids) - 1),
        }
    )


def _cells(path: Path, column: str) -> list[str]:
    with path.open(newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def test_ranked_csv_neutralises_formulas_and_keeps_numbers(tmp_path: Path):
    path = write_ranked(_ranked(), tmp_path / "ranked.csv")
    ids = _cells(path, "account_id")
    assert ids[: len(HOSTILE)] == ["'" + v for v in HOSTILE]
    assert ids[-2:] == ["ACME-1", "-5"]  # plain text and a plain number stay as they are
    assert _cells(path, "expected_value")[0] == "-5.0000"
    assert _cells(path, "top_reasons")[0] == "'+ 12 web visits"


def test_parquet_keeps_values_as_they_are(tmp_path: Path):
    path = write_ranked(_ranked(), tmp_path / "ranked.parquet")
    assert list(pd.read_parquet(path)["account_id"]) == list(_ranked()["account_id"])


def test_unscorable_csv_neutralises_formulas(tmp_path: Path):
    unscorable = pd.DataFrame(
        {"reason": ["missing account_id"], "account_id": [""], "name": ["=1+1"], "line": [7]}
    )
    path = write_unscorable(unscorable, tmp_path / "ranked-unscorable.csv")
    assert _cells(path, "name") == ["'=1+1"] and _cells(path, "line") == ["7"]


def test_carriage_return_and_numeric_columns():
    from abm_ml.modeling.ranking import neutralise_formulas

    frame = pd.DataFrame({"name": ["\rCR", "ok", None], "score": [-5, 3, 1]})
    out = neutralise_formulas(frame)
    assert list(out["name"])[:2] == ["'\rCR", "ok"] and out["name"].iloc[2] is None
    assert list(out["score"]) == [-5, 3, 1] and out["score"].dtype == frame["score"].dtype


def test_validate_rejects_file_neutralises_formulas(tmp_path: Path):
    from typer.testing import CliRunner

    from abm_ml.cli import app

    (tmp_path / "deals.csv").write_text(
        'id,stage,owner\nA,Won,ann\nB,Lost,bob\nC,Maybe,"=HYPERLINK(""http://evil"")"\n'
    )
    (tmp_path / "spec.yaml").write_text(
        "name: inj\nsource: {path: deals.csv}\nrow_id: id\n"
        "label: {column: stage, won: [Won], lost: [Lost], open: [Open]}\nfeatures: [owner]\n"
    )
    rejects = tmp_path / "rejects.csv"
    result = CliRunner().invoke(
        app, ["validate", str(tmp_path / "spec.yaml"), "--rejects", str(rejects)]
    )
    assert result.exit_code == 0, result.output
    assert _cells(rejects, "owner") == ['\'=HYPERLINK("http://evil")']
