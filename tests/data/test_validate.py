"""Validation loses nothing: every input row is accepted or rejected with its reason.

Each case writes a small export and its spec, loads it and checks what was accepted, what was
rejected and why; every load also checks that rows read = accepted + rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.data.parsing import infer_type
from abm_ml.data.spec import parse_spec
from abm_ml.data.validate import Dataset, load_dataset
from abm_ml.schema import (
    AMOUNT,
    CLOSED_AT,
    CREATED_AT,
    DAYS_TO_CLOSE,
    LOST,
    OPEN,
    OUTCOME,
    ROW_ID,
    WON,
)

HEADER = "id,stage,created,closed,amount\n"
DATE_FORMATS = ["%m/%d/%y", "%d-%b-%y", "ISO"]


def _load(folder: Path, text: str, **spec) -> Dataset:
    """Load ``text`` as data.csv with a spec (defaults: id, stage Won/Lost); check the accounting."""
    (folder / "data.csv").write_text(text, encoding="utf-8")
    data = {
        "name": "case",
        "source": {"path": "data.csv"},
        "row_id": "id",
        "label": {"column": "stage", "won": ["Won"], "lost": ["Lost"]},
    } | spec
    dataset = load_dataset(parse_spec(data, spec_path=folder / "spec.yaml"))
    summary = dataset.summary
    assert summary.rows_read == summary.accepted + summary.rejected, summary
    assert summary.accepted == len(dataset.frame) and summary.rejected == len(dataset.rejects)
    assert sum(summary.rejected_by_reason.values()) == summary.rejected
    return dataset


def _reasons(dataset: Dataset) -> dict[int, str]:
    return dict(zip(dataset.rejects["line"], dataset.rejects["reason"], strict=True))


def test_clean_file_is_accepted_in_source_order(tmp_path):
    dataset = _load(tmp_path, "id,stage\nA,Won\nB,Lost\nC,Lost\n")
    assert list(dataset.frame[ROW_ID]) == ["A", "B", "C"]
    assert list(dataset.frame[OUTCOME]) == [WON, LOST, LOST]
    assert dataset.rejects.empty
    assert dataset.summary.outcomes == {WON: 1, LOST: 2, OPEN: 0}


def test_duplicate_id_with_different_content(tmp_path):
    dataset = _load(
        tmp_path,
        "id,stage,region\nA,Won,East\nB,Lost,East\nA,Lost,West\nC,Lost,West\n",
        features=["region"],
    )
    assert list(dataset.frame[ROW_ID]) == ["A", "B", "C"]
    assert _reasons(dataset) == {4: "duplicate 'id' (first at line 2)"}
    assert dataset.summary.rejected_by_reason == {"duplicate 'id'": 1}


def test_identical_rows_without_id_are_kept_and_counted(tmp_path):
    # Two deals of the same size in the same region are two deals: no id, no way to tell.
    dataset = _load(
        tmp_path,
        "stage,region\nWon,East\nLost,East\nWon,East\nLost,West\nWon,East\n",
        row_id=None,
        features=["region"],
    )
    assert dataset.rejects.empty
    # Without a row id, the row id is the line in the file.
    assert list(dataset.frame[ROW_ID]) == ["2", "3", "4", "5", "6"]
    assert dataset.summary.identical_rows == 2
    assert any("2 rows are identical" in note for note in dataset.summary.notes)


def test_identical_rows_dropped_when_the_spec_says_so(tmp_path):
    dataset = _load(
        tmp_path,
        "stage,region\nWon,East\nLost,East\nWon,East\nLost,West\n",
        row_id=None,
        duplicates="drop",
        features=["region"],
    )
    assert _reasons(dataset) == {4: "exact duplicate of line 2"}
    assert list(dataset.frame[ROW_ID]) == ["2", "3", "5"]
    assert dataset.summary.rejected_by_reason == {"exact duplicate": 1}
    assert dataset.summary.identical_rows == 1


def test_identical_rows_with_an_id_are_rejected(tmp_path):
    dataset = _load(tmp_path, "id,stage\nA,Won\nB,Lost\nA,Won\nC,Lost\n")
    assert _reasons(dataset) == {4: "exact duplicate of line 2"}
    assert dataset.summary.identical_rows == 1


def test_missing_row_id(tmp_path):
    dataset = _load(tmp_path, "id,stage\nA,Won\n,Lost\nC,Lost\n")
    assert _reasons(dataset) == {3: "missing row id 'id'"}


def test_closed_before_created(tmp_path):
    text = (
        HEADER
        + "A,Won,2024-01-10,2024-02-01,1\nB,Lost,2024-03-01,2024-02-28,1\nC,Lost,2024-01-01,2024-01-01,1\n"
    )
    dataset = _load(tmp_path, text, created_at="created", closed_at="closed")
    assert _reasons(dataset) == {3: "closed before created ('closed' < 'created')"}
    assert list(dataset.frame[DAYS_TO_CLOSE]) == [22.0, 0.0]


def test_unparseable_date(tmp_path):
    text = (
        HEADER
        + "A,Won,2024-01-10,2024-02-01,1\nB,Lost,2024-13-45,2024-02-28,1\nC,Lost,yesterday,,1\nD,Lost,2024-01-01,,1\n"
    )
    dataset = _load(tmp_path, text, created_at="created", closed_at="closed")
    assert _reasons(dataset) == {
        3: "unparseable date in 'created': 2024-13-45",
        4: "unparseable date in 'created': yesterday",
    }
    assert dataset.summary.rejected_by_reason == {"unparseable date in 'created'": 2}


def test_dates_in_several_formats(tmp_path):
    text = (
        HEADER
        + "A,Won,5/26/17,27-Mar-18,1\n"
        + "B,Lost,27-Mar-12,2012-04-01,1\n"
        + "C,Lost,2017-05-26,06/01/17,1\n"
        + "D,Lost,2017-05-26T10:30:00,2017-05-27,1\n"
        + "E,Lost,26.05.2017,,1\n"
    )
    formats = {"column": "created", "formats": DATE_FORMATS}
    dataset = _load(
        tmp_path, text, created_at=formats, closed_at={"column": "closed", "formats": DATE_FORMATS}
    )
    frame = dataset.frame.set_index(ROW_ID)
    assert list(frame[CREATED_AT]) == [
        pd.Timestamp("2017-05-26"),
        pd.Timestamp("2012-03-27"),
        pd.Timestamp("2017-05-26"),
        pd.Timestamp("2017-05-26 10:30"),
    ]
    assert list(frame[CLOSED_AT]) == [
        pd.Timestamp("2018-03-27"),
        pd.Timestamp("2012-04-01"),
        pd.Timestamp("2017-06-01"),
        pd.Timestamp("2017-05-27"),
    ]
    assert _reasons(dataset) == {6: "unparseable date in 'created': 26.05.2017"}


def test_missing_created_date_rejects_closed_deals_only(tmp_path):
    text = "id,stage,created\nA,Won,2024-01-01\nB,Lost,\nC,Open,\nD,Lost,2024-01-02\n"
    dataset = _load(
        tmp_path,
        text,
        created_at="created",
        label={"column": "stage", "won": "Won", "lost": "Lost"},
    )
    assert _reasons(dataset) == {3: "missing created date 'created'"}
    assert list(dataset.frame[OUTCOME]) == [WON, OPEN, LOST]


def test_unparseable_number_in_amount_and_numeric_feature(tmp_path):
    text = 'id,stage,amount,seats\nA,Won,"1,200",5\nB,Lost,abc,6\nC,Lost,300,six\nD,Lost,,7\n'
    dataset = _load(
        tmp_path, text, amount="amount", features=[{"column": "seats", "type": "numeric"}]
    )
    assert _reasons(dataset) == {
        3: "unparseable number in 'amount': abc",
        4: "unparseable number in 'seats': six",
    }
    assert dataset.frame[AMOUNT].tolist()[0] == 1200.0 and np.isnan(dataset.frame[AMOUNT].iloc[1])
    assert list(dataset.frame["seats"]) == [5.0, 7.0]


def test_amount_with_comma_decimal(tmp_path):
    text = 'id;stage;amount\nA;Won;"1.234,50"\nB;Lost;"99,9"\n'
    dataset = _load(tmp_path, text, amount={"column": "amount", "decimal": ","})
    assert list(dataset.frame[AMOUNT]) == [1234.5, 99.9]


def test_duration_column(tmp_path):
    text = "id,stage,weeks\nA,Won,2\nB,Lost,1.5\nC,Lost,-1\nD,Open,3\nE,Lost,soon\n"
    dataset = _load(tmp_path, text, duration={"column": "weeks", "unit": "weeks"})
    assert _reasons(dataset) == {
        4: "negative duration in 'weeks'",
        6: "unparseable number in 'weeks': soon",
    }
    assert dataset.frame[DAYS_TO_CLOSE].tolist()[:2] == [14.0, 10.5]
    assert np.isnan(dataset.frame[DAYS_TO_CLOSE].iloc[2])  # open deals have no duration yet


def test_label_outside_declared_open_values(tmp_path):
    text = "id,stage\nA,Won\nB,Lost\nC,Prospecting\nD,Wonn\nE,\nF,Engaging\n"
    label = {"column": "stage", "won": "Won", "lost": "Lost", "open": ["Prospecting", "Engaging"]}
    dataset = _load(tmp_path, text, label=label)
    assert list(dataset.frame[OUTCOME]) == [WON, LOST, OPEN, OPEN]
    assert _reasons(dataset) == {
        5: "label 'stage' value outside the declared values: Wonn",
        6: "missing label 'stage'",
    }


def test_label_values_without_declared_open_values_are_open_deals(tmp_path):
    dataset = _load(tmp_path, "id,stage\nA,Won\nB,Lost\nC,Negotiation\n")
    assert list(dataset.frame[OUTCOME]) == [WON, LOST, OPEN]


def test_missing_placeholders_become_missing(tmp_path):
    text = (
        "id,stage,industry,seats,engaged\n"
        "A,Won,software,5,yes\n"
        "B,Lost,unknown,UNKNOWN,no\n"
        "C,Lost,Select,  ,Select\n"
        "D,Won,,n/a,\n"
        "E,Lost,retail,10,No\n"
    )
    dataset = _load(
        tmp_path,
        text,
        missing_values=["unknown", "Select"],
        features=["industry", "seats", "engaged"],
    )
    assert dataset.summary.features == {
        "industry": "categorical",
        "seats": "numeric",
        "engaged": "boolean",
    }
    frame = dataset.frame
    assert frame["industry"].tolist()[0] == "software" and frame["industry"].iloc[1:4].isna().all()
    assert frame["seats"].tolist()[0] == 5.0 and frame["seats"].iloc[1:4].isna().all()
    assert frame["engaged"].tolist()[:2] == [1.0, 0.0] and frame["engaged"].iloc[2:4].isna().all()
    assert dataset.rejects.empty


def test_placeholders_are_values_unless_declared(tmp_path):
    dataset = _load(
        tmp_path, "id,stage,industry\nA,Won,software\nB,Lost,unknown\n", features=["industry"]
    )
    assert list(dataset.frame["industry"]) == ["software", "unknown"]


def test_types_are_inferred(tmp_path):
    text = (
        "id,stage,seats,revenue,engaged,flag01,industry,band\n"
        'A,Won,5,"1,200.50",Yes,1,software,1\n'
        "B,Lost,12,300,no,0,retail,2\n"
        "C,Lost,7,$40,Y,1,software,3\n"
        "D,Won,1,0,N,0,fintech,A\n"
    )
    dataset = _load(tmp_path, text, infer_remaining_features=True)
    assert dataset.summary.features == {
        "seats": "numeric",
        "revenue": "numeric",
        "engaged": "boolean",
        "flag01": "numeric",
        "industry": "categorical",
        "band": "categorical",
    }
    frame = dataset.frame
    assert list(frame["revenue"]) == [1200.5, 300.0, 40.0, 0.0]
    assert list(frame["engaged"]) == [1.0, 0.0, 1.0, 0.0]
    assert list(frame["band"]) == ["1", "2", "3", "A"]


def test_types_can_be_overridden(tmp_path):
    text = "id,stage,zip,flag01,seats\nA,Won,02134,1,5\nB,Lost,10001,0,6\nC,Lost,94105,1,7\n"
    features = [
        {"column": "zip", "type": "categorical"},
        {"column": "flag01", "type": "boolean"},
        {"column": "seats", "name": "seat_count", "type": "numeric"},
    ]
    dataset = _load(tmp_path, text, features=features)
    assert dataset.summary.features == {
        "zip": "categorical",
        "flag01": "boolean",
        "seat_count": "numeric",
    }
    assert list(dataset.frame["zip"]) == ["02134", "10001", "94105"]
    assert list(dataset.frame["flag01"]) == [1.0, 0.0, 1.0]
    assert list(dataset.frame["seat_count"]) == [5.0, 6.0, 7.0]


def test_wrong_boolean_value_is_rejected(tmp_path):
    text = "id,stage,engaged\nA,Won,yes\nB,Lost,maybe\nC,Lost,no\n"
    dataset = _load(tmp_path, text, features=[{"column": "engaged", "type": "boolean"}])
    assert _reasons(dataset) == {3: "not a yes/no value in 'engaged': maybe"}


def test_identifier_like_column_is_not_inferred_as_a_feature(tmp_path):
    rows = "".join(f"R{i},{'Won' if i % 3 == 0 else 'Lost'},note {i},{i % 4}\n" for i in range(80))
    dataset = _load(tmp_path, "id,stage,comment,tier\n" + rows, infer_remaining_features=True)
    assert set(dataset.summary.features) == {"tier"}
    assert any("'comment' looks like an identifier" in note for note in dataset.summary.notes)


def test_blank_and_single_valued_features_are_noted_and_kept(tmp_path):
    text = "id,stage,empty,region,size\nA,Won,,EU,1\nB,Lost,,EU,2\nC,Lost,,EU,3\n"
    features = [{"column": c} for c in ("empty", "region", "size")]
    dataset = _load(tmp_path, text, features=features)
    notes = dataset.summary.notes
    assert "column 'empty' is blank in every accepted row; it cannot inform the model" in notes
    assert any("'region' has the same value in every accepted row" in note for note in notes)
    assert not any("'size'" in note for note in notes)
    assert {"empty", "region", "size"} <= set(dataset.summary.features)


def test_infer_type_helper():
    assert infer_type(pd.Series(["1", "2.5", np.nan])) == "numeric"
    assert infer_type(pd.Series(["yes", "No", "YES"])) == "boolean"
    assert infer_type(pd.Series(["0", "1", "1"])) == "numeric"
    assert infer_type(pd.Series([0, 1, 1])) == "boolean"
    assert infer_type(pd.Series(["a", "b"])) == "categorical"
    assert infer_type(pd.Series([np.nan, np.nan], dtype=object)) == "categorical"


def test_rejects_table_names_file_line_reason_and_original_values(tmp_path):
    text = (
        HEADER
        + 'A,Won,2024-01-01,2024-02-01," 1,200 "\nB,Lost,2024-01-02,2024-01-01,"$ 9"\nA,Lost,2024-01-03,2024-02-03,x\n'
    )
    text += "C,Lost,2024-01-01,2024-01-05,5\n"
    dataset = _load(tmp_path, text, created_at="created", closed_at="closed", amount="amount")
    rejects = dataset.rejects
    assert list(rejects.columns) == [
        "file",
        "line",
        "reason",
        "id",
        "stage",
        "created",
        "closed",
        "amount",
    ]
    assert set(rejects["file"]) == {str(tmp_path / "data.csv")}
    assert rejects.to_dict("records")[0] == {
        "file": str(tmp_path / "data.csv"),
        "line": 3,
        "reason": "closed before created ('closed' < 'created')",
        "id": "B",
        "stage": "Lost",
        "created": "2024-01-02",
        "closed": "2024-01-01",
        "amount": "$ 9",
    }
    # A row with several problems is rejected once, for the first.
    assert rejects.to_dict("records")[1]["reason"] == "duplicate 'id' (first at line 2)"


def test_messy_file_accounts_for_every_row(tmp_path):
    text = (
        "id,stage,created,closed,amount,industry\n"
        '1,Won,5/26/17,27-Mar-18," 1,234.50 ",software\n'
        "2,Lost,2017-05-01,2017-06-01,$200,Select\n"
        "3,Lost,5/26/17,5/20/17,300,retail\n"
        "4,Won,13/40/17,,400,unknown\n"
        "2,Lost,2017-05-01,2017-06-01,$200,Select\n"
        "2,Won,2017-05-01,2017-06-01,$200,Select\n"
        "5,Maybe,,,abc,\n"
        "6,Open,,,,\n"
        "\n"
        "7,Lost,2017-01-01,2017-01-02,lots,retail\n"
    )
    dates = {"formats": DATE_FORMATS}
    dataset = _load(
        tmp_path,
        text,
        created_at={"column": "created"} | dates,
        closed_at={"column": "closed"} | dates,
        amount="amount",
        label={"column": "stage", "won": "Won", "lost": "Lost", "open": "Open"},
        missing_values=["unknown", "Select"],
        features=["industry"],
    )
    assert list(dataset.frame[ROW_ID]) == ["1", "2", "6"]
    assert dataset.summary.rows_read == 9  # the blank line is not a row
    assert _reasons(dataset) == {
        4: "closed before created ('closed' < 'created')",
        5: "unparseable date in 'created': 13/40/17",
        6: "exact duplicate of line 3",
        7: "duplicate 'id' (first at line 3)",
        8: "label 'stage' value outside the declared values: Maybe",
        11: "unparseable number in 'amount': lots",
    }
    assert list(dataset.frame["industry"].fillna("-")) == ["software", "-", "-"]


@pytest.mark.parametrize("column", ["created", "closed"])
def test_feature_cannot_be_a_role_column(tmp_path, column):
    from abm_ml.errors import AbmInputError

    with pytest.raises(AbmInputError, match=f"'{column}' is both a feature"):
        _load(
            tmp_path,
            HEADER + "A,Won,2024-01-01,2024-01-02,1\nB,Lost,2024-01-01,2024-01-02,1\n",
            created_at="created",
            closed_at="closed",
            features=[{"column": column, "name": "x"}],
        )
