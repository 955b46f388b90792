"""One record parsed by the precompiled record parser reads as the general value parsers read it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from abm_ml.data.parsing import category_value, clean_text, clean_value, parse_feature_value
from abm_ml.data.records import InputSpec, canonical_record, canonical_records, record_parser
from abm_ml.modeling.feature_info import FeatureInfo

FEATURES = [
    FeatureInfo("visits", "Web Visits", "numeric", "web visits"),
    FeatureInfo("buyer", "Economic Buyer", "boolean", "economic buyer"),
    FeatureInfo("industry", "Industry", "categorical", "industry"),
]
SPEC = InputSpec(account_id="Account", amount="Amount", missing_values=["n/a", "unknown"])
# Every type a JSON body or a Python caller may send, for every kind of feature.
VALUES = [
    1.5,
    -0.0,
    0.0,
    math.nan,
    math.inf,
    3,
    True,
    False,
    None,
    np.float64(2.5),
    np.int64(4),
    np.nan,
    np.True_,
    " 12 ",
    "1,234.5",
    "yes",
    " No ",
    "n/a",
    "UNKNOWN",
    "",
    "  software ",
    "maybe",
    "0",
    "1.0",
]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b and repr(a) == repr(b)  # repr: -0.0 is not 0.0


def test_each_shortcut_gives_what_the_general_value_parser_gives():
    parse = record_parser(FEATURES, SPEC)
    for feature in FEATURES:
        for value in VALUES:
            got = parse({feature.column: value})[feature.name]
            expected = parse_feature_value(clean_value(value, SPEC.tokens), feature.type)
            assert _same(got, expected), (feature.type, value, got, expected)


def test_the_parser_reads_a_record_as_a_one_row_frame_of_it():
    records = [
        {"Account": " A-1 ", "Amount": "2,000", "Web Visits": 4.0, "Economic Buyer": True},
        {"Account": "n/a", "visits": "7", "buyer": "no", "industry": "unknown"},
        {"Industry": 5, "Economic Buyer": 0.0, "Web Visits": None},
        {},
    ]
    for record in records:
        one = canonical_record(record, FEATURES, SPEC)
        frame = canonical_records(pd.DataFrame([record]), FEATURES, SPEC).frame
        for name in ("visits", "buyer", "industry", "amount"):
            cell = frame[name].iloc[0]
            cell = float(cell) if isinstance(cell, np.floating) else cell  # a frame's float
            assert _same(one[name], cell), (record, name, one[name], cell)
    assert math.isnan(canonical_record({}, FEATURES, SPEC)["visits"])


def test_a_parser_is_made_once_per_features_and_spec():
    assert record_parser(FEATURES, SPEC) is record_parser(FEATURES, SPEC)
    other = InputSpec(missing_values=["-"])
    assert record_parser(FEATURES, other) is not record_parser(FEATURES, SPEC)
    # The placeholders are the spec's own: "-" is missing under one and text under the other.
    assert math.isnan(canonical_record({"Industry": "-"}, FEATURES, other)["industry"])
    assert canonical_record({"Industry": "-"}, FEATURES, SPEC)["industry"] == "-"


def test_a_column_of_mixed_values_parses_each_value_as_the_one_record_path_does():
    # factorize takes False, 0, 0.0 and -0.0 for one value and True for 1: a column of a
    # JSON body or SQL driver that mixes them must still parse each value on its own.
    records = pd.DataFrame(
        {
            "Account": [f"A-{i}" for i in range(len(VALUES))],
            "Web Visits": pd.Series(VALUES, dtype=object),
            "Economic Buyer": pd.Series(VALUES, dtype=object),
            "Industry": pd.Series(VALUES, dtype=object),
        }
    )
    frame = canonical_records(records, FEATURES, SPEC).frame
    for i, value in enumerate(VALUES):
        one = canonical_record(records.iloc[i].to_dict(), FEATURES, SPEC)
        for name in ("visits", "buyer", "industry"):
            cell = frame[name].iloc[i]
            cell = float(cell) if isinstance(cell, np.floating) else cell
            assert _same(one[name], cell), (value, name, one[name], cell)


def test_clean_text_is_the_one_value_cleaner_on_every_value():
    mixed = pd.Series(VALUES, dtype=object)
    text = pd.Series(["  a ", "n/a", None, " UNKNOWN", "b", "", "a"], dtype="str")
    for column in (mixed, text, mixed.astype("string")):
        got = clean_text(column, SPEC.tokens).tolist()
        expected = [clean_value(v, SPEC.tokens) for v in column.tolist()]
        assert all(_same(g, e) for g, e in zip(got, expected, strict=True)), (got, expected)


def test_category_texts_of_a_column_are_the_one_value_texts():
    from abm_ml.modeling.scorer import _category_texts

    for values in (
        np.array(VALUES, dtype=object),  # typed values: 1.0 and True are different texts
        np.array(["b", "a", None, "b", np.nan, "a"], dtype=object),  # text: once per value
    ):
        got = _category_texts(values).tolist()
        expected = [category_value(v) for v in values.tolist()]
        assert all(_same(g, e) for g, e in zip(got, expected, strict=True)), (got, expected)


def test_plain_numbers_read_directly_are_what_the_text_parser_reads():
    from abm_ml.data.parsing import _parse_number_text, _parse_plain_or_text

    rng = np.random.default_rng(7)
    texts = [
        *(repr(x) for x in rng.normal(0, 1e6, 200)),
        *(str(i) for i in rng.integers(-1000, 1000, 50)),
        *[" 12 ", "1,234.5", "(1,234)", "$12 000", "1e5", "-3", "+4.5", "inf", "-inf", "nan"],
        *["Infinity", "0x10", "1_000", "12%", "€5", "1.2.3", "", " ", "abc", "1,23", ".5", "5."],
        *["-.5", "1E-3", "  -7  ", "١٢", "1\u00a0000", "0012", "-0", "1,234,567", "True", "\t3\n"],
    ]
    uniques = pd.Series(texts, dtype=object)
    for decimal in (".", ","):
        expected = _parse_number_text(uniques, decimal).astype(float).tolist()
        got = _parse_plain_or_text(uniques, decimal).astype(float).tolist()
        for text, e, g in zip(texts, expected, got, strict=True):
            assert repr(e) == repr(g), (decimal, text, e, g)
