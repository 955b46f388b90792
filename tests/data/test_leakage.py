"""The leakage guard refuses columns known only after the outcome and keeps honest ones.

A small export is made here with one honest column and one leak of each kind; the IBM
win-loss data checks that the guard catches the real sales-stage-duration columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from abm_ml.data.leakage import (
    check_leakage,
    name_suggests_post_outcome,
    refused,
    single_feature_auc,
)
from abm_ml.data.spec import parse_spec
from abm_ml.data.validate import load_dataset
from conftest import shared_dataset


def _export(n: int = 400, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(4, n)
    won = rng.random(n) < 1 / (1 + np.exp(-(visits - 4) * 0.4))
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    days = rng.integers(5, 120, n)
    return pd.DataFrame(
        {
            "id": [f"D{i:04d}" for i in range(n)],
            "stage": np.where(won, "Won", "Lost"),
            "created": created.strftime("%Y-%m-%d"),
            "closed": (created + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d"),
            "industry": rng.choice(["software", "retail", "fintech"], n),
            "web_visits": visits,
            "employees": rng.integers(10, 5000, n),
            # Filled in by the deal desk once a deal is won: blank unless won.
            "contract_ref": np.where(won, [f"C-{i % 7}" for i in range(n)], ""),
            "signed_seats": np.where(won, rng.integers(1, 50, n).astype(str), ""),
            # Pure noise, but the spec says it is only known after the outcome.
            "survey_score": rng.normal(0, 1, n).round(3),
            # Logged hours track how long the deal took: a proxy of its duration.
            "effort_hours": (days * 3 + rng.normal(0, 2, n)).round(1),
        }
    )


def _dataset(folder: Path, **spec):
    _export().to_csv(folder / "deals.csv", index=False)
    data = {
        "name": "leaky",
        "source": {"path": str(folder / "deals.csv")},
        "row_id": "id",
        "label": {"column": "stage", "won": "Won", "lost": "Lost"},
        "created_at": {"column": "created", "formats": ["ISO"]},
        "closed_at": {"column": "closed", "formats": ["ISO"]},
        "features": [
            "industry",
            "web_visits",
            "employees",
            "contract_ref",
            "signed_seats",
            {"column": "survey_score", "known_after_outcome": True},
            "effort_hours",
        ],
    } | spec
    return load_dataset(parse_spec(data))


def _findings(dataset):
    return {f.column: f for f in check_leakage(dataset.frame, dataset.features, dataset.spec)}


@pytest.fixture()
def findings(tmp_path):
    return _findings(_dataset(tmp_path))


def test_blank_unless_won_is_refused_by_its_auc(findings):
    for column in ("contract_ref", "signed_seats"):
        assert findings[column].rule == "single_feature_auc", findings[column]
        assert not findings[column].allowed
        assert "ROC AUC 1.000" in findings[column].detail


def test_column_marked_known_after_outcome_is_refused(findings):
    assert findings["survey_score"].rule == "spec"
    assert not findings["survey_score"].allowed


def test_duration_proxy_is_refused(findings):
    assert findings["effort_hours"].rule == "duration_proxy"
    assert (
        "Spearman +0.99" in findings["effort_hours"].detail
        or "Spearman +1.00" in findings["effort_hours"].detail
    )


def test_honest_columns_are_not_refused(tmp_path):
    dataset = _dataset(tmp_path)
    found = check_leakage(dataset.frame, dataset.features, dataset.spec)
    assert refused(found) == {"contract_ref", "signed_seats", "survey_score", "effort_hours"}
    assert {"industry", "web_visits", "employees"}.isdisjoint(f.column for f in found)


def test_allow_keeps_the_column_but_still_reports_it(tmp_path):
    dataset = _dataset(tmp_path, leakage={"allow": ["contract_ref", "effort_hours"]})
    found = check_leakage(dataset.frame, dataset.features, dataset.spec)
    by_column = {f.column: f for f in found}
    assert by_column["contract_ref"].allowed and by_column["effort_hours"].allowed
    assert "kept (allowed by the spec)" in by_column["contract_ref"].message()
    assert refused(found) == {"signed_seats", "survey_score"}


def test_guard_only_uses_closed_rows(tmp_path):
    dataset = _dataset(tmp_path)
    frame = dataset.frame.copy()
    # Open deals with the leaking column filled must not hide the leak.
    frame.loc[frame.index[:150], "outcome"] = "open"
    found = {f.column: f for f in check_leakage(frame, dataset.features, dataset.spec)}
    assert found["contract_ref"].rule == "single_feature_auc"


def test_name_patterns():
    for column in (
        "Elapsed Days In Sales Stage",
        "Total Days Identified Through Qualified",
        "Ratio Days Validated To Total Days",
        "close_value",
        "DaysToClose",
        "Opportunity Result",
    ):
        assert name_suggests_post_outcome(column), column
    for column in (
        "Region",
        "Opportunity Amount USD",
        "Client Size By Revenue",
        "Closest Competitor",
        "web_visits_30d",
    ):
        assert name_suggests_post_outcome(column) is None, column


def test_name_patterns_can_be_switched_off(tmp_path):
    (tmp_path / "d.csv").write_text(
        "id,stage,stage_count\n"
        + "".join(f"{i},{'Won' if i % 2 else 'Lost'},{i % 5}\n" for i in range(60))
    )
    spec = {
        "name": "n",
        "source": {"path": str(tmp_path / "d.csv")},
        "row_id": "id",
        "label": {"column": "stage", "won": "Won", "lost": "Lost"},
        "features": ["stage_count"],
    }
    on = load_dataset(parse_spec(spec))
    assert [f.rule for f in check_leakage(on.frame, on.features, on.spec)] == ["name"]
    off = load_dataset(parse_spec(spec | {"leakage": {"name_patterns": False}}))
    assert check_leakage(off.frame, off.features, off.spec) == []


def test_single_feature_auc():
    won = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    assert (
        single_feature_auc(
            pd.Series(["a", "b", "c", None, None, None, None, None]), won, "categorical"
        )
        == 1.0
    )
    assert (
        single_feature_auc(
            pd.Series([5, 6, 7, np.nan, np.nan, np.nan, np.nan, np.nan]), won, "numeric"
        )
        == 1.0
    )
    assert single_feature_auc(pd.Series(["x"] * 8), won, "categorical") == 0.5
    assert single_feature_auc(pd.Series([1, 2, 1, 2, 1, 2, 1, 2]), won, "numeric") < 0.7


# --- the IBM win-loss data with its exclusions removed ------------------------------------

SPECS = Path(__file__).resolve().parents[2] / "training" / "specs"
STAGE_COLUMNS = {
    "Elapsed Days In Sales Stage",
    "Sales Stage Change Count",
    "Total Days Identified Through Qualified",
    "Ratio Days Identified To Total Days",
    "Ratio Days Validated To Total Days",
    "Ratio Days Qualified To Total Days",
}


@pytest.fixture(scope="module")
def ibm_unguarded():
    shared_dataset("ibm-sales-win-loss")
    path = SPECS / "ibm-sales-win-loss.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("exclude")
    data["infer_remaining_features"] = True
    dataset = load_dataset(parse_spec(data, spec_path=path))
    return dataset, check_leakage(dataset.frame, dataset.features, dataset.spec)


@pytest.mark.shared
def test_ibm_stage_duration_columns_are_refused(ibm_unguarded):
    dataset, found = ibm_unguarded
    columns = {f.column for f in dataset.features}
    assert STAGE_COLUMNS <= columns  # inferred, so the guard had to find them
    assert "Total Days Identified Through Closing" not in columns  # the duration target
    refused_columns = {f.column for f in found if not f.allowed}
    assert refused_columns == STAGE_COLUMNS


@pytest.mark.shared
def test_ibm_honest_columns_are_kept(ibm_unguarded):
    dataset, found = ibm_unguarded
    flagged = {f.column for f in found}
    for column in (
        "Region",
        "Opportunity Amount USD",
        "Client Size By Revenue",
        "Supplies Group",
        "Route To Market",
    ):
        assert column in {f.column for f in dataset.features}
        assert column not in flagged


OLIST_CLOSED_DEAL_COLUMNS = {
    "sdr_id",
    "sr_id",
    "business_segment",
    "lead_type",
    "lead_behaviour_profile",
    "has_company",
    "has_gtin",
    "average_stock",
    "business_type",
    "declared_product_catalog_size",
    "declared_monthly_revenue",
}


@pytest.mark.shared
def test_olist_closed_deal_columns_are_all_refused_unguarded():
    # Filled only for won leads: some by their AUC, some by blank-or-not, the rare ones
    # (has_company: about 8 % of won leads, no lost lead) because no lost lead has them.
    shared_dataset("olist-marketing-funnel")
    from abm_ml.data.spec import load_spec

    shipped = load_spec(SPECS / "olist-marketing-funnel.yaml")
    spec = shipped.model_copy(update={"exclude": [], "infer_remaining_features": True})
    dataset = load_dataset(spec)
    found = check_leakage(dataset.frame, dataset.features, dataset.spec)
    assert {f.column for f in found if f.refuses} == OLIST_CLOSED_DEAL_COLUMNS
    assert {"lead_origin", "landing_page"}.isdisjoint(f.feature for f in found)


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "ibm-sales-win-loss",
        "olist-marketing-funnel",
        "uci-bank-marketing",
        "maven-crm-sales-opportunities",
    ],
)
def test_shipped_specs_get_neither_refusal_nor_warning(name):
    shared_dataset(name)
    from abm_ml.data.spec import load_spec

    dataset = load_dataset(load_spec(SPECS / f"{name}.yaml"))
    found = check_leakage(dataset.frame, dataset.features, dataset.spec)
    assert found == [], [f.message() for f in found]


def test_a_column_of_many_rare_values_is_not_a_leak_by_memory():
    """Seen once, a value's in-sample win rate is 0 or 1: the column would separate won from
    lost perfectly without saying anything about a deal. Scored out of fold, it does not."""
    rng = np.random.default_rng(3)
    n = 1500
    won = (rng.random(n) < 0.4).astype(int)
    pages = pd.Series([f"/page-{i}" for i in rng.integers(0, 700, n)])
    in_sample = pd.Series(won).groupby(pages).transform("mean")
    assert roc_auc_score(won, in_sample) > 0.8  # what the in-sample rate would have said
    assert single_feature_auc(pages, won, "categorical") < 0.6
    # A real post-outcome field of a few values still separates out of fold.
    reason = pd.Series(np.where(won == 1, "signed", rng.choice(["price", "timing", "lost"], n)))
    assert single_feature_auc(reason, won, "categorical") > 0.99
    # And a category that truly lifts the win rate keeps its signal.
    segment = pd.Series(np.where(rng.random(n) < 0.5, "a", "b"))
    lifted = (rng.random(n) < np.where(segment == "a", 0.7, 0.2)).astype(int)
    assert single_feature_auc(segment, lifted, "categorical") > 0.7
