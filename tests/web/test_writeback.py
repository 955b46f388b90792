"""CRM write-back files: headers, id columns, text limits, --changed-only, and the command."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from abm_ml.errors import AbmInputError
from abm_ml.reporting.history import record_run
from abm_ml.reporting.writeback import crm_format, cut, export_writeback


def numeric_ids(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    out = frame.drop(
        columns=["previous_score", "previous_abm_tier", "previous_rank", "movement"],
        errors="ignore",
    ).copy()
    out["account_id"] = out["account_id"].astype(str).map(mapping)
    return out


@pytest.fixture()
def crm_history(ranked_runs, tmp_path):
    """The two conftest runs again, with HubSpot-style numeric record ids."""
    first, second = ranked_runs["first"], ranked_runs["second"]
    ids = sorted(set(first["account_id"].astype(str)) | set(second["account_id"].astype(str)))
    mapping = {a: str(9_000_000 + i) for i, a in enumerate(ids)}
    url = f"sqlite:///{tmp_path / 'history.db'}"
    record_run(numeric_ids(first, mapping), url, run_at="2026-01-05T08:00:00")
    record_run(numeric_ids(second, mapping), url, run_at="2026-01-12T08:00:00")
    latest = numeric_ids(second, mapping).sort_values("rank").reset_index(drop=True)
    latest["score_change"] = (
        second.sort_values("rank")["score"].to_numpy()
        - second.sort_values("rank")["previous_score"].astype(float).to_numpy()
    )
    return {"url": url, "latest": latest, "mapping": mapping}


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_hubspot_file_has_the_documented_columns_and_every_account(crm_history, tmp_path):
    out = tmp_path / "hubspot.csv"
    result = export_writeback(crm_format("hubspot"), crm_history["url"], out)
    header, rows = read(out)
    assert header == [
        "Record ID",
        "abm_score",
        "abm_tier",
        "abm_reasons",
        "abm_days_to_close",
        "abm_score_change",
    ]
    latest = crm_history["latest"]
    assert result.written == len(latest) == len(rows) and result.as_of == "2026-01-12"
    assert [r["Record ID"] for r in rows] == latest["account_id"].tolist()
    assert [int(r["abm_score"]) for r in rows] == latest["score"].tolist()
    assert [r["abm_tier"] for r in rows] == latest["abm_tier"].tolist()
    assert rows[0]["abm_reasons"] == latest["top_reasons"].iloc[0]
    assert int(rows[0]["abm_days_to_close"]) == round(latest["days_to_close_p50"].iloc[0])
    changes = ["" if pd.isna(c) else str(round(c)) for c in latest["score_change"]]
    assert [r["abm_score_change"] for r in rows] == changes


def test_salesforce_needs_record_ids_or_an_external_id_field(crm_history, ranked_runs, tmp_path):
    with pytest.raises(AbmInputError, match="Salesforce record id .*--id-field"):
        export_writeback(crm_format("salesforce"), crm_history["url"], tmp_path / "x.csv")
    fmt = crm_format(
        "salesforce",
        id_field="ABM_Account_Key__c",
        renames={"reasons": "Why__c"},
        max_reasons=60,
    )
    out = tmp_path / "sf.csv"
    export_writeback(fmt, ranked_runs["url"], out)
    header, rows = read(out)
    assert header == [
        "ABM_Account_Key__c",
        "ABM_Score__c",
        "ABM_Tier__c",
        "Why__c",
        "ABM_Days_To_Close__c",
        "ABM_Score_Change__c",
    ]
    assert max(len(r["Why__c"]) for r in rows) <= 60
    full = dict(
        zip(ranked_runs["second"]["account_id"].astype(str), ranked_runs["second"]["top_reasons"])
    )
    for row in rows:
        reasons = full[row["ABM_Account_Key__c"]]
        if len(reasons) <= 60:
            assert row["Why__c"] == reasons
        else:  # whole reasons kept, in order, or the first cut with an ellipsis
            assert reasons.startswith(row["Why__c"].rstrip("…"))


def test_salesforce_default_limit_is_255(crm_history):
    assert crm_format("salesforce").limits["reasons"] == 255
    long = "; ".join(f"+ reason number {i} with some words" for i in range(30))
    assert len(cut(long, 255)) <= 255 and cut(long, 255).endswith("words")
    assert cut("x" * 300, 255) == "x" * 254 + "…"
    assert cut("short", 255) == "short"


def test_hubspot_domain_ids_are_checked(crm_history, tmp_path):
    with pytest.raises(AbmInputError, match="not a domain name"):
        export_writeback(
            crm_format("hubspot", id_field="Company Domain Name"),
            crm_history["url"],
            tmp_path / "d.csv",
        )


def test_changed_only_writes_what_moved_since_the_last_export(crm_history, tmp_path):
    url, latest = crm_history["url"], crm_history["latest"]
    fmt = crm_format("hubspot")
    first = export_writeback(fmt, url, tmp_path / "full.csv", changed_only=True)
    assert first.written == len(latest)  # nothing exported before: everything is new
    again = export_writeback(fmt, url, tmp_path / "again.csv", changed_only=True)
    assert (again.written, again.unchanged) == (0, len(latest))
    assert read(tmp_path / "again.csv")[0][0] == "Record ID"

    # A new run moves a few accounts' scores and one tier.
    third = latest.drop(columns=["score_change"]).copy()
    third["as_of"], third["model_version"] = "2026-01-19", "2"
    moved = third["account_id"].iloc[[3, 50, 200]].tolist()
    third.loc[third["account_id"].isin(moved[:2]), "score"] += 7
    third.loc[third["account_id"] == moved[2], "abm_tier"] = "1:1"
    record_run(third, url, run_at="2026-01-19T08:00:00")
    changed = export_writeback(fmt, url, tmp_path / "changed.csv", changed_only=True)
    _, rows = read(tmp_path / "changed.csv")
    assert sorted(r["Record ID"] for r in rows) == sorted(moved)
    assert changed.unchanged == len(latest) - 3
    by_id = {r["Record ID"]: r for r in rows}
    assert by_id[moved[0]]["abm_score_change"] == "7"


def test_bad_options_are_input_errors():
    with pytest.raises(AbmInputError, match="unknown CRM"):
        crm_format("dynamics")
    with pytest.raises(AbmInputError, match="unknown field"):
        crm_format("hubspot", renames={"colour": "x"})
    with pytest.raises(AbmInputError, match="at least 1"):
        crm_format("hubspot", max_reasons=0)


def test_export_command(crm_history, tmp_path):
    cli = Path(sys.executable).with_name("abm-ml")
    out = tmp_path / "cmd.csv"
    done = subprocess.run(
        [
            str(cli),
            "export",
            "--crm",
            "hubspot",
            "--history-url",
            crm_history["url"],
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "Wrote 400 accounts" in done.stdout.replace("\n", " ")
        or f"Wrote {len(crm_history['latest'])}" in done.stdout
    )
    assert read(out)[0][0] == "Record ID"
    bad = subprocess.run(
        [
            str(cli),
            "export",
            "--crm",
            "salesforce",
            "--history-url",
            crm_history["url"],
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "--id-field" in bad.stderr
