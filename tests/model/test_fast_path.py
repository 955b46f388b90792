"""The one-record path and the array preprocessing give exactly what the frame path gives."""

from __future__ import annotations

import dataclasses
import math
import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from abm_ml.data.parsing import parse_feature_value
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.testing import make_crm_export

# Values a CRM or an integration sends, per column, beside the export's own: placeholders,
# blanks, unseen categories, numbers as text in several formats, typed values.
ODD_VALUES = {
    "Industry": [None, "", "unknown", "  software ", "aerospace", "SOFTWARE", 7, np.nan],
    "Employees": [None, "", " 1,234 ", "$12 000", "(300)", "1.5e3", "many", 250, 12.5, "n/a"],
    "Web Visits 30d": [None, "7", "+3", " 0012 ", "3.", ".5", "1_000", 9, 4.0, "-"],
    "Economic Buyer Engaged": [None, "", "YES", " no ", "true", "0", "1", "maybe", 1, 0.0],
    "Competitor In Place": [None, "Y", "f", "unknown", "1.0", True, False],
    "Amount": [None, "", "12,500.00", "€ 9 999", "(1,000)", "abc", 5000, 1e6],
    "Noise Score": [None, "-0.5", "1e-2", "nan", "inf", 0.25, "--1"],
    "Account": [None, "", "  ACC-7 ", 42],
}


def _records(n: int, seed: int) -> list[dict]:
    """CRM-export records (its own column names) with odd values sprinkled in."""
    rng = np.random.default_rng(seed)
    frame = make_crm_export(n, seed=seed).astype(object)
    records = frame.to_dict(orient="records")
    for record in records:
        for column, odd in ODD_VALUES.items():
            if rng.random() < 0.3:
                record[column] = odd[rng.integers(len(odd))]
        if rng.random() < 0.1:
            del record["Noise Score"]  # an absent field is a missing value
    return records


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _assert_rows_equal(fast: dict, batch: dict) -> None:
    assert fast.keys() == batch.keys()
    for key, value in fast.items():
        assert _same(value, batch[key]), (key, value, batch[key])


def test_one_record_path_equals_the_batch_path_on_many_records(trained):
    scorer = trained.scorer
    records = _records(400, seed=5)
    batch = scorer.score(pd.DataFrame.from_records(records)).to_dict(orient="records")
    for record, expected in zip(records, batch):
        _assert_rows_equal(scorer.score_record(record), expected)
    # The records did exercise the odd cases: unseen categories, unreadable numbers, blanks.
    seen = {r["reasons"]["up"][0]["value"] for r in batch if r["reasons"]["up"]}
    assert len({r["account_id"] for r in batch}) > 300
    assert len(seen) > 5


def test_one_record_path_equals_a_one_row_frame_for_typed_values(trained):
    """Typed values (booleans, numbers) read as a one-row frame of them reads them."""
    scorer = trained.scorer
    typed = [
        {"account_id": "a1", "employees": True, "has_economic_buyer": 2, "industry": 3.0},
        {"account_id": "a2", "web_visits_30d": np.int64(9), "uses_competitor": np.True_},
        {"row_id": 17, "amount": "1,500", "deal_amount": 1500},
        {"industry": "fintech"},
        {"Noise Score": None},
    ]
    for record in typed:
        expected = scorer.score(pd.DataFrame.from_records([record])).to_dict(orient="records")[0]
        _assert_rows_equal(scorer.score_record(record), expected)


def test_canonical_records_score_like_the_crm_export(trained):
    """Records under the model's feature names give what the export's column names give."""
    scorer = trained.scorer
    records = _records(50, seed=9)
    renames = {f.column: f.name for f in scorer.features if f.column != "Amount"}
    for record in records:
        canonical = {renames.get(k, k): v for k, v in record.items()}
        _assert_rows_equal(scorer.score_record(canonical), scorer.score_record(record))


def test_the_matrix_predicts_as_the_pandas_categorical_frame(trained):
    """LightGBM fitted on pd.Categorical columns reads the code array as the same categories."""
    scorer = trained.scorer
    frame = scorer._canonical(pd.DataFrame.from_records(_records(300, seed=11)))
    values = scorer.preprocessor.raw_values(frame)
    X = scorer.preprocessor.matrix(values)
    encoded = scorer.preprocessor.encode(values)
    booster = scorer.propensity_booster
    assert X.dtype == np.float64 and X.shape == (len(frame), len(scorer.features))
    industry = scorer.feature_names.index("industry")
    assert np.isnan(X[:, industry]).any() and not np.isnan(X[:, industry]).all()
    np.testing.assert_array_equal(
        booster.predict(X, raw_score=True), booster.predict(encoded, raw_score=True)
    )
    np.testing.assert_array_equal(
        booster.predict(X, pred_contrib=True), booster.predict(encoded, pred_contrib=True)
    )


def test_category_codes_survive_pickling_and_are_rebuilt(trained):
    trained.scorer.score_record({"Industry": "software"})  # the derived lookups made
    assert "_row_plan" in trained.scorer.preprocessor.__dict__
    scorer: AccountScorer = pickle.loads(pickle.dumps(trained.scorer))
    assert "_lookups" not in scorer.preprocessor.__dict__
    assert "_row_plan" not in scorer.preprocessor.__dict__
    record = {"Industry": "software", "Account": "x"}
    assert (
        scorer.score_record(record)["propensity"]
        == trained.scorer.score_record(record)["propensity"]
    )
    assert "_lookups" not in pickle.loads(pickle.dumps(scorer)).preprocessor.__dict__
    # Refitting forgets the codes of the categories fitted before.
    refitted = scorer.preprocessor.fit(trained.holdout.head(0))
    assert "_row_plan" not in refitted.__dict__ and "_lookups" not in refitted.__dict__


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (" 1,234.5 ", "numeric", 1234.5),
        ("(12)", "numeric", -12.0),
        ("twelve", "numeric", np.nan),
        ("Yes", "boolean", 1.0),
        ("maybe", "boolean", np.nan),
        (5, "categorical", "5"),
    ],
)
def test_one_value_parsers_read_as_the_column_parsers(value, kind, expected):
    got = parse_feature_value(value.strip() if isinstance(value, str) else value, kind)
    assert _same(got, expected)


def test_velocity_contributions_add_up_to_the_p50_log_days(trained):
    scorer = trained.scorer
    X = scorer.preprocessor.matrix(scorer.preprocessor.raw_values(trained.holdout))
    contrib = scorer.velocity.contributions(X)
    p50: lgb.Booster = scorer.velocity.boosters["p50"]
    np.testing.assert_allclose(contrib.raw, p50.predict(X), rtol=1e-9, atol=1e-9)


def _variants(scorer: AccountScorer, propensities: np.ndarray) -> dict[str, AccountScorer]:
    """The scorer as trained without amounts, without a velocity model, without any days,
    and with tier cut-offs at records' exact propensities (where a tie decides the tier)."""
    cuts = sorted(np.unique(propensities).tolist(), reverse=True)
    at_ties = [cuts[len(cuts) // 10], cuts[len(cuts) // 3], cuts[len(cuts) // 2]]
    return {
        "as trained": scorer,
        "no amounts": dataclasses.replace(
            scorer, metadata={**scorer.metadata, "amount_known": False}
        ),
        "median days": dataclasses.replace(scorer, velocity=None, default_days=41.5),
        "no days": dataclasses.replace(scorer, velocity=None, default_days=float("nan")),
        "tier ties": dataclasses.replace(scorer, tier_thresholds=at_ties),
    }


@pytest.mark.parametrize("options", [{}, {"with_reasons": False}, {"k_up": 0, "k_down": 3}])
def test_the_scalar_one_record_steps_equal_the_batch_in_every_variant(trained, options):
    """Days, amounts, priority, score and tier in Python numbers give the array path's values."""
    records = _records(120, seed=21)
    frame = pd.DataFrame.from_records(records)
    propensities = trained.scorer.score(frame, with_reasons=False)["propensity"].to_numpy()
    for name, scorer in _variants(trained.scorer, propensities).items():
        batch = scorer.score(frame, **options).to_dict(orient="records")
        for record, expected in zip(records, batch):
            _assert_rows_equal(scorer.score_record(record, **options), expected)
        tiers = {row["tier"] for row in batch}
        assert len(tiers) >= 3, (name, tiers)
