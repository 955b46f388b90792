"""The JSON text a ranking run stores per account: compact, exact, and missing as null."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from abm_ml.jsontext import json_text, rows_json


def test_numbers_keep_every_digit_and_missing_is_null():
    value = {
        "up": [{"feature": "x", "value": np.float64(0.1 + 0.2), "contribution": 1 / 3}],
        "n": np.int64(7),
        "flag": np.True_,
        "gone": [math.nan, None, pd.NA, pd.NaT, np.float64("nan")],
        "when": pd.Timestamp("2026-01-02"),
    }
    back = json.loads(json_text(value))
    assert back["up"][0]["value"] == 0.1 + 0.2  # 0.30000000000000004: not rounded
    assert back["up"][0]["contribution"] == 1 / 3
    assert back["n"] == 7 and back["flag"] is True
    assert back["gone"] == [None] * 5
    assert back["when"] == "2026-01-02T00:00:00"
    assert " " not in json_text({"a": [1, 2]})  # compact: a million accounts per run


def test_rows_are_objects_keyed_by_name_in_row_order():
    frame = pd.DataFrame({"a": [1.5, np.nan], "b": pd.Series(["x", None], dtype="str")})
    rows = rows_json(list(frame.columns), (frame[c].tolist() for c in frame.columns))
    assert [json.loads(r) for r in rows] == [{"a": 1.5, "b": "x"}, {"a": None, "b": None}]


def test_what_json_cannot_hold_is_an_error_not_a_string():
    with pytest.raises(TypeError):  # orjson.JSONEncodeError
        json_text({"x": object()})
