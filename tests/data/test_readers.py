"""Readers on CRM exports as they really arrive: one small file per trap, written by the test.

Each case checks the parsed values and the line each row came from (header = line 1), since
a reject is only useful if the user can find its row in the file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.data.parsing import parse_number_value, parse_numbers
from abm_ml.data.readers import ROW_PROBLEM, SOURCE_ROW, read_table
from abm_ml.data.spec import SourceSpec, parse_spec
from abm_ml.data.validate import load_dataset
from abm_ml.errors import AbmInputError
from abm_ml.schema import LOST, OUTCOME, ROW_ID, WON


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _read(path: Path, **source) -> pd.DataFrame:
    return read_table(SourceSpec(path=str(path), **source)).frame


def _rows(frame: pd.DataFrame) -> list[dict]:
    return frame.drop(columns=[SOURCE_ROW]).to_dict("records")


# --- line endings, byte-order mark, spaces -------------------------------------------------


def test_crlf_line_endings(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", b"id,name,amount\r\n1,Acme,10\r\n2,Beta,20\r\n"))
    assert list(frame.columns) == ["id", "name", "amount", SOURCE_ROW]
    assert _rows(frame) == [
        {"id": "1", "name": "Acme", "amount": "10"},
        {"id": "2", "name": "Beta", "amount": "20"},
    ]
    assert list(frame[SOURCE_ROW]) == [2, 3]


def test_bare_cr_line_endings(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", b"id,name,amount\r1,Acme,10\r2,Beta,20\r3,Gamma,30"))
    assert _rows(frame) == [
        {"id": "1", "name": "Acme", "amount": "10"},
        {"id": "2", "name": "Beta", "amount": "20"},
        {"id": "3", "name": "Gamma", "amount": "30"},
    ]
    assert list(frame[SOURCE_ROW]) == [2, 3, 4]


def test_utf8_byte_order_mark_is_not_part_of_the_first_header(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", "\ufeffid,name\r\n1,Zoë\r\n".encode()))
    assert list(frame.columns) == ["id", "name", SOURCE_ROW]
    assert _rows(frame) == [{"id": "1", "name": "Zoë"}]


def test_non_breaking_spaces_become_spaces_and_are_stripped(tmp_path):
    text = "id,company,amount\n1,\u00a0Acme\u00a0Corp\u00a0,1\u00a0234\n2,Beta\u202fLtd,\u00a0500\n"
    frame = _read(_write(tmp_path, "a.csv", text))
    assert list(frame["company"]) == ["Acme Corp", "Beta Ltd"]
    assert list(frame["amount"]) == ["1 234", "500"]
    values, bad = parse_numbers(frame["amount"])
    assert list(values) == [1234.0, 500.0]
    assert not bad.any()


def test_padded_amounts_and_thousands_separators(tmp_path):
    text = 'id,amount\n1," 1,234.50 "\n2,"$12,000"\n3,   7   \n4,"1,234,567"\n5,"(1,000)"\n6,12%\n'
    frame = _read(_write(tmp_path, "a.csv", text))
    assert list(frame["amount"]) == ["1,234.50", "$12,000", "7", "1,234,567", "(1,000)", "12%"]
    values, bad = parse_numbers(frame["amount"])
    assert list(values) == [1234.5, 12000.0, 7.0, 1234567.0, -1000.0, 12.0]
    assert not bad.any()


def test_amounts_with_a_currency_code_are_numbers():
    """Salesforce's multi-currency exports write 'USD 12,345.67'; others '1.234,50 EUR'."""
    values, bad = parse_numbers(pd.Series(["USD 12,345.67", "12 USD", "GBP-5", "EUR1,000"]))
    assert list(values) == [12345.67, 12.0, -5.0, 1000.0] and not bad.any()
    values, bad = parse_numbers(pd.Series(["1.234,50 EUR", "EUR 2.000"]), decimal=",")
    assert list(values) == [1234.5, 2000.0] and not bad.any()
    # A code alone, lower case or letters in the number are not amounts.
    values, bad = parse_numbers(pd.Series(["USD", "usd 5", "USD 1x", "ABCD 5"]))
    assert values.isna().all() and bad.all()
    assert [parse_number_value(v) for v in ("USD 12,345.67", "12 USD")] == [12345.67, 12.0]


def test_european_amounts_with_comma_decimal(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", 'id;amount\n1;"1.234,50"\n2;7,5\n3;12\n'), sep=";")
    values, bad = parse_numbers(frame["amount"], decimal=",")
    assert list(values) == [1234.5, 7.5, 12.0]
    assert not bad.any()


def test_bad_amounts_are_flagged_not_guessed(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", 'id,amount\n1,"12,34"\n2,abc\n3,\n4,5\n'))
    values, bad = parse_numbers(frame["amount"].replace("", np.nan))
    assert list(bad) == [True, True, False, False]
    assert values.iloc[3] == 5.0 and values.iloc[:3].isna().all()


# --- separators and quoting ------------------------------------------------------------------


def test_semicolon_separator_is_sniffed(tmp_path):
    text = 'id;amount;contact\n1;"1,234.50";"Smith, J"\n2;"2,000";"Doe, A"\n'
    frame = _read(_write(tmp_path, "a.csv", text))
    assert _rows(frame) == [
        {"id": "1", "amount": "1,234.50", "contact": "Smith, J"},
        {"id": "2", "amount": "2,000", "contact": "Doe, A"},
    ]


def test_semicolon_separator_from_the_spec(tmp_path):
    frame = _read(
        _write(tmp_path, "a.csv", '"age";"job";"y"\n56;"housemaid";"no"\n57;"services";"yes"\n'),
        sep=";",
    )
    assert _rows(frame) == [
        {"age": "56", "job": "housemaid", "y": "no"},
        {"age": "57", "job": "services", "y": "yes"},
    ]


def test_quoted_fields_with_separators_quotes_and_newlines(tmp_path):
    text = (
        "id,note,owner\n"
        '1,"first line\nsecond line",Ann\n'  # a record over lines 2-3
        '2,"says ""hi"", twice",Bob\n'  # line 4
        '3,"x\r\ny",Cy\r\n'  # lines 5-6, CRLF inside the quotes
        "4,plain,Di\n"  # line 7
    )
    frame = _read(_write(tmp_path, "a.csv", text))
    assert list(frame["note"]) == ["first line\nsecond line", 'says "hi", twice', "x\ny", "plain"]
    assert list(frame["owner"]) == ["Ann", "Bob", "Cy", "Di"]
    assert list(frame[SOURCE_ROW]) == [2, 4, 5, 7]


def test_line_numbers_survive_blank_lines(tmp_path):
    text = '\nid,note\n1,"a\nb"\n\n   \n2,c\n\n3,d\n\n'
    frame = _read(_write(tmp_path, "a.csv", text))
    assert list(frame["id"]) == ["1", "2", "3"]
    assert list(frame[SOURCE_ROW]) == [3, 7, 9]


def test_trailing_separator_does_not_shift_columns(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", "id,stage\n1,Won,\n2,Lost,\n"))
    assert _rows(frame) == [{"id": "1", "stage": "Won"}, {"id": "2", "stage": "Lost"}]


def test_extra_fields_mark_their_row_not_lost(tmp_path):
    frame = _read(_write(tmp_path, "a.csv", "id,stage\n1,Won,oops\n2,Lost\n"))
    assert list(frame[ROW_PROBLEM]) == ["more fields than the header: 3 of 2", None]
    assert list(frame[SOURCE_ROW]) == [2, 3]


def test_repeated_header_column_is_an_error(tmp_path):
    path = _write(tmp_path, "a.csv", "id,amount,amount\n1,2,3\n")
    with pytest.raises(AbmInputError, match=r"a\.csv.*repeats columns \['amount'\]"):
        _read(path)


# --- encodings -------------------------------------------------------------------------------


def test_cp1252_fallback(tmp_path):
    text = "id,company,owner\n1,Café Müller,José\n2,Smith – Sons,Zoë\n"
    frame = _read(_write(tmp_path, "a.csv", text.encode("cp1252")))
    assert list(frame["company"]) == ["Café Müller", "Smith – Sons"]
    assert list(frame["owner"]) == ["José", "Zoë"]


def test_encoding_from_the_spec(tmp_path):
    path = _write(tmp_path, "a.csv", "id,city\n1,Zürich\n".encode("utf-16"))
    assert list(_read(path, encoding="utf-16")["city"]) == ["Zürich"]
    with pytest.raises(AbmInputError, match="cannot decode as ascii"):
        _read(_write(tmp_path, "b.csv", "id,city\n1,Zürich\n"), encoding="ascii")


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_keeps_types_and_numbers_rows(tmp_path):
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "amount": [1.5, np.nan, 3.0],
            "created": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
        }
    )
    path = tmp_path / "deals.parquet"
    frame.to_parquet(path, index=False)
    read = _read(path)
    assert list(read[SOURCE_ROW]) == [1, 2, 3]
    pd.testing.assert_frame_equal(read.drop(columns=[SOURCE_ROW]), frame)


def test_parquet_named_index_is_kept_as_a_column(tmp_path):
    path = tmp_path / "deals.parquet"
    pd.DataFrame({"id": ["a", "b"], "amount": [1.0, 2.0]}).set_index("id").to_parquet(path)
    read = _read(path)
    assert list(read["id"]) == ["a", "b"]
    assert list(read["amount"]) == [1.0, 2.0]


def test_broken_parquet_is_an_input_error(tmp_path):
    path = _write(tmp_path, "deals.parquet", b"not parquet at all")
    with pytest.raises(AbmInputError, match=r"deals\.parquet: not a readable Parquet file"):
        _read(path)


# --- SQL -------------------------------------------------------------------------------------


@pytest.fixture()
def sqlite_db(tmp_path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table deals (id integer, stage text, amount real, created text)")
        connection.executemany(
            "insert into deals values (?, ?, ?, ?)",
            [
                (1, "Won", 10.5, "2024-01-01"),
                (2, "Lost", None, "2024-02-01"),
                (3, "Lost", 7.0, "2024-03-01"),
            ],
        )
    return path


def test_sqlite_table(sqlite_db):
    table = read_table(SourceSpec(url=f"sqlite:///{sqlite_db}", table="deals"))
    assert "table deals" in table.name
    assert list(table.frame["id"]) == [1, 2, 3]
    assert list(table.frame["stage"]) == ["Won", "Lost", "Lost"]
    assert table.frame["amount"].tolist()[0] == 10.5 and np.isnan(table.frame["amount"].tolist()[1])
    assert list(table.frame[SOURCE_ROW]) == [1, 2, 3]
    assert len(table.sha256) == 64


def test_sqlite_query(sqlite_db):
    table = read_table(
        SourceSpec(
            url=f"sqlite:///{sqlite_db}",
            query="select id, stage from deals where stage = 'Lost' order by id",
        )
    )
    assert list(table.frame.columns) == ["id", "stage", SOURCE_ROW]
    assert list(table.frame["id"]) == [2, 3]
    assert list(table.frame[SOURCE_ROW]) == [1, 2]


def test_sqlite_source_loads_through_validation(sqlite_db):
    spec = parse_spec(
        {
            "name": "sql",
            "source": {"url": f"sqlite:///{sqlite_db}", "table": "deals"},
            "row_id": "id",
            "label": {"column": "stage", "won": "Won", "lost": "Lost"},
            "created_at": {"column": "created", "formats": ["ISO"]},
            "amount": "amount",
        }
    )
    dataset = load_dataset(spec)
    assert list(dataset.frame[ROW_ID]) == ["1", "2", "3"]
    assert list(dataset.frame[OUTCOME]) == [WON, LOST, LOST]
    assert dataset.frame["amount"].tolist()[::2] == [10.5, 7.0]
    assert dataset.summary.rows_read == dataset.summary.accepted + dataset.summary.rejected == 3


def test_missing_sql_table_is_an_input_error(sqlite_db):
    with pytest.raises(AbmInputError, match=r"table nope\): cannot read"):
        read_table(SourceSpec(url=f"sqlite:///{sqlite_db}", table="nope"))


def test_database_password_is_not_shown(tmp_path):
    pytest.importorskip("psycopg")
    with pytest.raises(AbmInputError) as error:
        read_table(
            SourceSpec(
                url="postgresql+psycopg://crm:s3cret@127.0.0.1:1/crm?connect_timeout=2",
                table="deals",
            )
        )
    assert "s3cret" not in str(error.value)
    assert "table deals" in str(error.value)


@pytest.fixture()
def duckdb_file(tmp_path) -> Path:
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("duckdb_engine")
    path = tmp_path / "crm.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute(
        "create table deals as select * from (values"
        " (1, 'Won', 10.5, DATE '2024-01-01', DATE '2024-02-01', true),"
        " (2, 'Lost', NULL, DATE '2024-01-05', DATE '2024-01-20', false),"
        " (3, 'Lost', 3.0, DATE '2024-01-05', DATE '2024-01-02', NULL),"
        " (4, 'Won', 8.0, DATE '2024-02-01', DATE '2024-03-02', NULL))"
        " t(id, stage, amount, created, closed, engaged)"
    )
    connection.close()
    return path


def test_duckdb_table_and_query(duckdb_file):
    table = read_table(SourceSpec(url=f"duckdb:///{duckdb_file}", table="deals"))
    assert list(table.frame["id"]) == [1, 2, 3, 4]
    assert list(table.frame[SOURCE_ROW]) == [1, 2, 3, 4]
    query = read_table(
        SourceSpec(
            url=f"duckdb:///{duckdb_file}",
            query="select id from deals where amount > 5 order by id",
        )
    )
    assert list(query.frame["id"]) == [1, 4]


def test_duckdb_typed_dates_and_booleans_are_values_not_missing(duckdb_file):
    # A SQL driver returns DATE as datetime.date objects and a nullable BOOLEAN as objects:
    # they are values, and typed dates need no format.
    spec = parse_spec(
        {
            "name": "duck",
            "source": {"url": f"duckdb:///{duckdb_file}", "table": "deals"},
            "row_id": "id",
            "label": {"column": "stage", "won": "Won", "lost": "Lost"},
            "created_at": {"column": "created", "formats": ["%m/%d/%Y"]},
            "closed_at": {"column": "closed", "formats": ["%m/%d/%Y"]},
            "features": ["engaged"],
        }
    )
    dataset = load_dataset(spec)
    assert list(dataset.frame[ROW_ID]) == ["1", "2", "4"]
    assert list(dataset.frame["days_to_close"]) == [31.0, 15.0, 30.0]
    assert dataset.summary.features == {"engaged": "boolean"}
    assert dataset.frame["engaged"].tolist()[:2] == [1.0, 0.0] and np.isnan(
        dataset.frame["engaged"].iloc[2]
    )
    assert dataset.rejects[["line", "reason"]].to_dict("records") == [
        {"line": 3, "reason": "closed before created ('closed' < 'created')"}
    ]


# --- joins -----------------------------------------------------------------------------------


LEADS = "lead_id,origin,first_contact\nL1,organic,2024-01-01\nL2,paid,2024-01-02\nL3,,2024-01-03\nL4,paid,2024-01-04\nL5,social,2024-01-05\n"
DEALS = (
    "lead_id,won_date,seller\n"
    "L1,2024-02-01,S1\n"  # line 2: used
    "L9,2024-02-02,S2\n"  # line 3: no such lead
    "L1,2024-03-01,S3\n"  # line 4: second deal for L1
    ",2024-01-01,S4\n"  # line 5: blank key
    "L4,2024-03-04,S5\n"  # line 6: used
)


def _funnel_spec(folder: Path, **join) -> dict:
    return {
        "name": "funnel",
        "source": {
            "path": str(folder / "leads.csv"),
            "join": [{"path": str(folder / "deals.csv"), "on": "lead_id", **join}],
        },
        "row_id": "lead_id",
        "label": {"column": "won_date", "present_means_won": True},
        "created_at": {"column": "first_contact", "formats": ["ISO"]},
        "closed_at": {"column": "won_date", "formats": ["ISO"]},
        "features": ["origin"],
        "exclude": ["seller"],
    }


def test_join_leads_and_closed_deals_present_means_won(tmp_path):
    _write(tmp_path, "leads.csv", LEADS)
    _write(tmp_path, "deals.csv", DEALS)
    dataset = load_dataset(parse_spec(_funnel_spec(tmp_path)))
    frame = dataset.frame
    assert dict(zip(frame[ROW_ID], frame[OUTCOME], strict=True)) == {
        "L1": WON,
        "L2": LOST,
        "L3": LOST,
        "L4": WON,
        "L5": LOST,
    }
    assert dict(zip(frame[ROW_ID], frame["days_to_close"].fillna(-1), strict=True)) == {
        "L1": 31,
        "L2": -1,
        "L3": -1,
        "L4": 60,
        "L5": -1,
    }

    rejects = dataset.rejects
    deals_path = str(tmp_path / "deals.csv")
    assert rejects[["file", "line", "reason"]].sort_values("line").to_dict("records") == [
        {
            "file": deals_path,
            "line": 3,
            "reason": "no matching row in the main source for join key 'lead_id'",
        },
        {
            "file": deals_path,
            "line": 4,
            "reason": "duplicate join key 'lead_id' (first occurrence used)",
        },
        {"file": deals_path, "line": 5, "reason": "blank join key 'lead_id'"},
    ]
    # The rejected deals keep their original values.
    assert rejects.sort_values("line")["seller"].tolist() == ["S2", "S3", "S4"]
    # Every row of both files is accounted for: 5 leads accepted; 2 deals used, 3 rejected.
    assert dataset.summary.rows_read == 10
    assert dataset.summary.accepted + dataset.summary.rejected + 2 == dataset.summary.rows_read
    assert any("2 of its 5 rows used" in note for note in dataset.summary.notes)


def test_join_does_not_leave_a_copy_of_the_key(tmp_path):
    # A `<key>_right` copy would be blank unless won: a leaking feature when features are inferred.
    _write(tmp_path, "leads.csv", LEADS)
    _write(tmp_path, "deals.csv", DEALS)
    spec = _funnel_spec(tmp_path) | {"features": [], "infer_remaining_features": True}
    dataset = load_dataset(parse_spec(spec))
    assert set(dataset.summary.features) == {"origin"}
    assert not [c for c in dataset.rejects.columns if c.endswith("_right")]


def test_inner_join_reports_main_rows_without_a_match(tmp_path):
    _write(tmp_path, "leads.csv", LEADS)
    _write(tmp_path, "deals.csv", DEALS)
    spec = _funnel_spec(tmp_path, how="inner") | {
        "label": {"column": "seller", "won": ["S1"], "lost": ["S5"]},
        "exclude": [],
    }
    dataset = load_dataset(parse_spec(spec))
    assert list(dataset.frame[ROW_ID]) == ["L1", "L4"]
    lost = dataset.rejects[dataset.rejects["file"] == str(tmp_path / "leads.csv")]
    assert list(lost["line"]) == [3, 4, 6]
    assert set(lost["reason"]) == {
        f"no matching row in {tmp_path / 'deals.csv'} for join key 'lead_id'"
    }
    assert list(lost["lead_id"]) == ["L2", "L3", "L5"]


def _pipeline_and_products(folder: Path) -> None:
    _write(
        folder,
        "pipeline.csv",
        "opp,product,stage\n1,GTXPro,Won\n2,GTX Basic,Lost\n3,MG Special,Lost\n4,GTX Basic,Won\n",
    )
    _write(
        folder,
        "products.csv",
        "product,series,price\nGTX Basic,GTX,550\nGTX Pro,GTX,4821\nMG Special,MG,55\nMG Special,MG,56\nUnused,X,1\n",
    )


def _pipeline_spec(folder: Path, match: str) -> dict:
    return {
        "name": "pipeline",
        "source": {
            "path": str(folder / "pipeline.csv"),
            "join": [{"path": str(folder / "products.csv"), "on": "product", "match": match}],
        },
        "row_id": "opp",
        "label": {"column": "stage", "won": "Won", "lost": "Lost"},
        "features": ["product", "series", {"column": "price", "name": "list_price"}],
    }


def test_loose_join_matches_gtxpro_to_gtx_pro(tmp_path):
    _pipeline_and_products(tmp_path)
    dataset = load_dataset(parse_spec(_pipeline_spec(tmp_path, "loose")))
    assert list(dataset.frame["product"]) == ["GTXPro", "GTX Basic", "MG Special", "GTX Basic"]
    assert list(dataset.frame["list_price"]) == [4821.0, 550.0, 55.0, 550.0]
    assert list(dataset.frame["series"]) == ["GTX", "GTX", "MG", "GTX"]
    products = str(tmp_path / "products.csv")
    assert dataset.rejects[["file", "line", "reason"]].to_dict("records") == [
        {
            "file": products,
            "line": 5,
            "reason": "duplicate join key 'product' (first occurrence used)",
        },
        {
            "file": products,
            "line": 6,
            "reason": "no matching row in the main source for join key 'product'",
        },
    ]


def test_exact_join_does_not_match_gtxpro(tmp_path):
    _pipeline_and_products(tmp_path)
    dataset = load_dataset(parse_spec(_pipeline_spec(tmp_path, "exact")))
    assert np.isnan(dataset.frame["list_price"].iloc[0])
    unused = dataset.rejects[dataset.rejects["reason"].str.startswith("no matching row")]
    assert list(unused["line"]) == [3, 6]
    assert list(unused["product"]) == ["GTX Pro", "Unused"]


def test_join_with_differently_named_keys(tmp_path):
    _write(tmp_path, "leads.csv", LEADS)
    _write(tmp_path, "deals.csv", DEALS.replace("lead_id,", "mql,", 1))
    spec = _funnel_spec(tmp_path)
    spec["source"]["join"] = [
        {"path": str(tmp_path / "deals.csv"), "left_on": "lead_id", "right_on": "mql"}
    ]
    spec["exclude"] = ["seller", "mql"]
    dataset = load_dataset(parse_spec(spec))
    assert dict(zip(dataset.frame[ROW_ID], dataset.frame[OUTCOME], strict=True)) == {
        "L1": WON,
        "L2": LOST,
        "L3": LOST,
        "L4": WON,
        "L5": LOST,
    }


def test_source_decimal_comma_reads_features_and_amount_alike_for_training_and_scoring(tmp_path):
    """`source.decimal: ','` applies to numeric features and the amount, in training and in the
    scoring paths (a file and one record) alike; the amount's own `decimal` still wins."""
    from abm_ml.data.records import InputSpec, canonical_record, canonical_records

    text = "id;stage;rate;amount\n1;Won;0,25;1.234,5\n2;Lost;1,5;7,5\n3;Lost;12;12\n"
    path = _write(tmp_path, "a.csv", text)
    spec = parse_spec(
        {
            "name": "eu",
            "source": {"path": str(path), "decimal": ","},
            "row_id": "id",
            "label": {"column": "stage", "won": ["Won"], "lost": ["Lost"]},
            "amount": "amount",
            "features": [{"column": "rate"}],
        },
        spec_path=tmp_path / "spec.yaml",
    )
    dataset = load_dataset(spec)
    assert list(dataset.frame["rate"]) == [0.25, 1.5, 12.0]
    assert list(dataset.frame["amount"]) == [1234.5, 7.5, 12.0]

    info = [f for f in dataset.features if f.name == "rate"]
    assert info[0].type == "numeric"
    inputs = InputSpec.from_dataset_spec(spec)
    records = pd.DataFrame({"id": ["9"], "rate": ["0,75"], "amount": ["2.000,5"]})
    parsed = canonical_records(records, info, inputs).frame
    assert parsed["rate"].tolist() == [0.75] and parsed["amount"].tolist() == [2000.5]
    one = canonical_record({"id": "9", "rate": "0,75", "amount": "2.000,5"}, info, inputs)
    assert one["rate"] == 0.75 and one["amount"] == 2000.5
    for text in ("1.234", "1.5", "12", "-3,25", "1.234.567"):  # one value reads as its column
        one = canonical_record({"id": "9", "rate": text}, info, inputs)
        frame = canonical_records(pd.DataFrame({"id": ["9"], "rate": [text]}), info, inputs).frame
        assert one["rate"] == frame["rate"].iloc[0], text

    point_amount = spec.model_copy(
        update={"amount": spec.amount.model_copy(update={"decimal": "."})}
    )
    assert InputSpec.from_dataset_spec(point_amount).amount_decimal == "."
    assert InputSpec.from_dataset_spec(point_amount).decimal == ","


def test_a_model_pickled_before_source_decimal_reads_points():
    import pickle

    from abm_ml.data.records import InputSpec

    state = InputSpec(row_id="id").__getstate__()
    state["__dict__"] = {k: v for k, v in state["__dict__"].items() if k != "decimal"}
    old = InputSpec.__new__(InputSpec)
    old.__setstate__(state)
    assert old.decimal == "." and old.row_id == "id"
    assert pickle.loads(pickle.dumps(old)).decimal == "."
