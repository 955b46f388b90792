"""Spark gives the local path's answer: same scores, reasons, order, tiers and unscorable rows.

The accounts are a CRM export in its own format (the training spec's column names, amounts as
"12,345.00", yes/no text), with the traps ranking must handle spread over several partitions:
repeated ids far apart, a blank id, an unreadable amount (once before the account's good
row), a row with no feature at all, and accounts tied on every value (the tie is broken by input order, across partitions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import load_accounts, rank_accounts
from abm_ml.registry.pyfunc import to_json_columns
from abm_ml.testing import make_crm_export

pytestmark = pytest.mark.slow

TIERS = (7, 25, 60)
FLOATS = (
    "propensity",
    "days_to_close_p10",
    "days_to_close_p50",
    "days_to_close_p90",
    "amount",
    "expected_value",
    "priority",
)


@pytest.fixture(scope="module")
def accounts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    export = make_crm_export(n=500, seed=21).drop(columns=["Stage", "Close Date"])
    export["region"] = np.where(np.arange(len(export)) % 3 == 0, "EMEA", "AMER")
    twin = export.iloc[[5]].assign(**{"Opportunity ID": "TWIN-LATE", "Account": "TWIN-LATE"})
    traps = pd.DataFrame(
        [
            {"Opportunity ID": "", "Account": "", "Industry": "software"},  # no id at all
            {"Opportunity ID": "OPP-X1", "Account": "ACC-X1", "Amount": "lots"},
            {"Opportunity ID": "OPP-X2", "Account": "ACC-X2"},  # no feature values
            # The first row's account again, with other values: only the first is scored.
            {"Opportunity ID": "OPP-X3", "Account": export["Account"].iloc[0], "Industry": "x"},
        ]
    )
    traps["region"] = "AMER"
    # An account whose first row cannot be scored: its second row is the one ranked, and it
    # ties with an account whose row lies between the two, so the tie is broken by the
    # position of the row scored, not of the account's first row.
    late = (
        export.iloc[[7, 7, 7]]
        .assign(
            **{"Opportunity ID": ["OPP-X4", "TWIN-MID", "OPP-X5"]},
            Account=["ACC-X4", "TWIN-MID", "ACC-X4"],
            region="AMER",
        )
        .reset_index(drop=True)
    )
    late.loc[0, "Amount"] = "lots"
    rows = pd.concat([export, traps, twin, late], ignore_index=True)
    rows = rows.astype({c: "string" for c in rows.columns if rows[c].dtype == object})
    path = tmp_path_factory.mktemp("spark-accounts") / "accounts.parquet"
    rows.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def local_result(trained, accounts_file: Path):
    frame = load_accounts(accounts_file, scorer=trained.scorer)
    return rank_accounts(
        trained.scorer,
        frame,
        tiers=TIERS,
        as_of="2026-03-02",
        model_name="m",
        model_version="4",
    )


@pytest.fixture(scope="module")
def spark_result(spark, trained, accounts_file: Path):
    from abm_ml.spark import rank

    # Hashed into three partitions: repeats and ties of one file land in different ones.
    result = rank(
        spark.read.parquet(str(accounts_file)),
        trained.scorer,
        tiers=TIERS,
        as_of="2026-03-02",
        model_name="m",
        model_version="4",
        partitions=3,
    )
    return result.ranked.toPandas(), result.unscorable.toPandas(), result.meta


def test_ranked_accounts_equal_the_local_path(local_result, spark_result):
    ranked, _, meta = spark_result
    expected = to_json_columns(local_result.ranked)
    assert list(ranked.columns) == list(expected.columns)
    assert len(ranked) == len(expected) > 400
    for column in expected.columns:
        if column in FLOATS:
            np.testing.assert_allclose(
                ranked[column].to_numpy(float), expected[column].to_numpy(float), rtol=0, atol=1e-9
            )
        else:
            assert ranked[column].astype(str).tolist() == expected[column].astype(str).tolist(), (
                column
            )
    assert ranked["abm_tier"].value_counts().to_dict() == {
        "1:1": 7,
        "1:few": 25,
        "1:many": 60,
        "nurture": len(ranked) - 92,
    }
    assert json.loads(ranked["reasons"].iloc[0])["up"], "the best account has reasons"
    assert meta["tiers"] == {"1:1": 7, "1:few": 25, "1:many": 60}


def test_ties_are_broken_by_input_order(spark_result):
    ranked, _, _ = spark_result
    twins = ranked[
        ranked["propensity"]
        == ranked.loc[ranked["account_id"] == "TWIN-LATE", "propensity"].iloc[0]
    ]
    late = twins.index[twins["account_id"] == "TWIN-LATE"][0]
    assert (twins.index < late).any(), "the earlier row with the same values ranks first"


def test_unscorable_accounts_equal_the_local_path(local_result, spark_result):
    _, unscorable, _ = spark_result
    expected = local_result.unscorable.drop(columns=["line"], errors="ignore")
    assert list(unscorable.columns) == list(expected.columns)
    assert unscorable["reason"].tolist() == expected["reason"].tolist()
    pd.testing.assert_frame_equal(_values(unscorable), _values(expected))
    reasons = " | ".join(expected["reason"])
    for planted in ("missing account_id", "repeated account_id", "'Amount'", "no feature values"):
        assert planted in reasons
    assert "OPP-X5" not in set(expected["Opportunity ID"])  # ranked: its first row was bad
    ranked = list(spark_result[0]["account_id"])
    assert ranked.index("TWIN-MID") < ranked.index("ACC-X4")


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    """Cell values with one kind of missing (Arrow gives None where pandas kept NA or NaN)."""
    cells = frame.reset_index(drop=True).astype(object)
    return cells.where(frame.reset_index(drop=True).notna(), None)


def test_score_equals_the_pyfunc_output(spark, trained, accounts_file: Path):
    from abm_ml.spark import score

    rows = pd.read_parquet(accounts_file).head(120)
    scored = score(spark.createDataFrame(rows), trained.scorer).toPandas()
    expected = to_json_columns(trained.scorer.score(rows))
    assert list(scored.columns) == list(expected.columns)
    np.testing.assert_allclose(scored["propensity"], expected["propensity"], rtol=0, atol=1e-9)
    assert scored["reasons"].tolist() == expected["reasons"].tolist()
    assert scored["velocity_reasons"].tolist() == expected["velocity_reasons"].tolist()


def test_filters_sort_keys_and_all_unscorable_partitions(spark, trained, accounts_file: Path):
    """A few rows over many partitions (some hold only unscorable rows), filtered, by propensity."""
    from abm_ml.spark import rank

    rows = pd.read_parquet(accounts_file)
    rows = pd.concat([rows.head(12), rows.tail(8)], ignore_index=True)
    options = {
        "tiers": (2, 3),
        "as_of": "2026-03-02",
        "filters": {"region": ["AMER"], "segment": []},
        "sort_by": "propensity",
    }
    local = rank_accounts(trained.scorer, rows, **options)
    result = rank(spark.createDataFrame(rows), trained.scorer, partitions=6, **options)
    ranked, unscorable = result.ranked.toPandas(), result.unscorable.toPandas()
    assert ranked["account_id"].tolist() == local.ranked["account_id"].tolist()
    assert ranked["abm_tier"].tolist() == local.ranked["abm_tier"].tolist()
    assert ranked["region"].eq("AMER").all() and len(ranked) == result.meta["ranked"]
    assert unscorable["reason"].tolist() == local.unscorable["reason"].tolist()
    # Blank id, two unreadable amounts, no features; the repeat's first occurrence is in EMEA:
    # filtered out first.
    assert len(unscorable) == 4
    with pytest.raises(AbmInputError, match="owner"):
        rank(spark.createDataFrame(rows), trained.scorer, filters={"owner": ["ana"]})


def test_read_accounts_sources(spark, trained, accounts_file: Path, tmp_path: Path):
    """Parquet, CSV as text for the spec's parser, a catalog table; one clear error otherwise."""
    from abm_ml.spark.job import read_accounts

    rows = pd.read_parquet(accounts_file).head(30)
    spark.createDataFrame(rows).createOrReplaceTempView("crm_accounts")
    assert read_accounts(spark, "table:crm_accounts").count() == 30
    csv = tmp_path / "accounts.csv"
    rows.assign(Amount="1,234.50").to_csv(csv, index=False)
    frame = read_accounts(spark, str(csv), trained.scorer.input)
    assert dict(frame.dtypes)["Amount"] == "string"
    assert frame.select("Amount").first()[0] == "1,234.50"  # parsed later, by the spec
    assert read_accounts(spark, str(accounts_file)).count() == len(pd.read_parquet(accounts_file))
    # pandas writes nanosecond timestamps, which Spark refuses unless told how to read them.
    stamped = tmp_path / "stamped.parquet"
    pd.DataFrame(
        {"account_id": ["a"], "seen_at": pd.to_datetime(["2026-01-02 03:04:05.123456"])}
    ).to_parquet(stamped)
    seen = read_accounts(spark, str(stamped)).first()["seen_at"]
    assert seen == pd.Timestamp("2026-01-02 03:04:05.123456").to_pydatetime()
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, message in (
        ("table:no_such_table", "no such table"),
        (str(tmp_path / "missing.parquet"), "file not found"),
        (str(empty), ".parquet or .csv"),
    ):
        with pytest.raises(AbmInputError, match=message):
            read_accounts(spark, source)
