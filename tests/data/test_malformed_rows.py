"""Rows cut short or too wide, and other malformed inputs: never read as blanks or shifted values.

A truncated export (the last line cut inside a number) or a row that lost its trailing fields
would otherwise be accepted with blanks, and an amount of ``22`` instead of ``22100`` would be
trained on or scored. Each such row is a reject (validation) or unscorable (ranking), with its line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from abm_ml.data.readers import ROW_PROBLEM, SOURCE_ROW, read_table
from abm_ml.data.spec import SourceSpec, parse_spec
from abm_ml.data.validate import load_dataset
from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import load_accounts, rank_accounts
from abm_ml.schema import AMOUNT, ROW_ID

HEADER = "id,amount,stage,region\n"
ROWS = "A,100,Won,EMEA\nB,200,Lost,AMER\nC,300,Lost,EMEA\n"


def _dataset(folder: Path, text: str, **source):
    (folder / "deals.csv").write_text(text, encoding="utf-8")
    spec = {
        "name": "cut",
        "source": {"path": "deals.csv", **source},
        "row_id": "id",
        "label": {"column": "stage", "won": ["Won"], "lost": ["Lost"]},
        "amount": "amount",
        "features": ["region"],
    }
    dataset = load_dataset(parse_spec(spec, spec_path=folder / "spec.yaml"))
    summary = dataset.summary
    assert summary.rows_read == summary.accepted + summary.rejected
    return dataset


def test_last_line_cut_inside_a_number_is_rejected_with_its_line(tmp_path):
    # The export stopped mid-row: "D,22100,Won,AMER" became "D,22".
    dataset = _dataset(tmp_path, HEADER + ROWS + "D,22")
    assert "D" not in set(dataset.frame[ROW_ID])
    reject = dataset.rejects.set_index("line").loc[5]
    assert reject["reason"].startswith("row cut short, fewer fields than the header: 2 of 4")
    assert reject["file"].endswith("deals.csv")
    assert 22 not in set(dataset.frame[AMOUNT])


def test_short_row_mid_file_is_rejected_not_read_as_blanks(tmp_path):
    dataset = _dataset(tmp_path, HEADER + "A,100,Won,EMEA\nB,200\nC,300,Lost,EMEA\nE,5,Lost,AMER\n")
    assert list(dataset.frame[ROW_ID]) == ["A", "C", "E"]
    assert list(dataset.rejects["line"]) == [3]
    assert "fewer fields than the header" in dataset.rejects["reason"].iloc[0]
    assert dataset.summary.rejected_by_reason == {"row cut short, fewer fields than the header": 1}


def test_complete_last_line_without_newline_is_fine(tmp_path):
    dataset = _dataset(tmp_path, HEADER + ROWS + "D,22100,Won,AMER")
    assert dataset.rejects.empty
    assert dataset.frame.set_index(ROW_ID).loc["D", AMOUNT] == 22100


def test_short_rows_allowed_when_the_spec_says_the_export_drops_trailing_blanks(tmp_path):
    dataset = _dataset(tmp_path, HEADER + ROWS + "D,50,Won\n", allow_short_rows=True)
    assert dataset.rejects.empty
    assert dataset.frame.set_index(ROW_ID).loc["D"].isna()["region"]


def test_row_with_more_fields_is_a_reject_not_a_refused_file(tmp_path):
    dataset = _dataset(tmp_path, HEADER + "A,100,Won,EMEA\nB,2,00,Lost,AMER\nC,300,Lost,EMEA\n")
    assert list(dataset.rejects["line"]) == [3]
    assert dataset.rejects["reason"].iloc[0] == "more fields than the header: 5 of 4"
    assert "B" not in set(dataset.frame[ROW_ID])


def test_trailing_blank_fields_stay_fine(tmp_path):
    frame = read_table(SourceSpec(path=str(_write(tmp_path, "a.csv", "id,x\n1,a\n2,b,,\n")))).frame
    assert ROW_PROBLEM not in frame.columns and list(frame["x"]) == ["a", "b"]
    assert list(frame[SOURCE_ROW]) == [2, 3]


def test_malformed_rows_of_a_joined_source_are_rejected(tmp_path):
    (tmp_path / "regions.csv").write_text("id,owner\nA,ann\nB\nC,cy\n")
    (tmp_path / "deals.csv").write_text(HEADER + ROWS)
    spec = {
        "name": "join",
        "source": {"path": "deals.csv", "join": [{"path": "regions.csv", "on": "id"}]},
        "row_id": "id",
        "label": {"column": "stage", "won": ["Won"], "lost": ["Lost"]},
        "features": ["owner"],
    }
    dataset = load_dataset(parse_spec(spec, spec_path=tmp_path / "spec.yaml"))
    bad = dataset.rejects[dataset.rejects["file"].str.endswith("regions.csv")]
    assert list(bad["line"]) == [3] and "fewer fields" in bad["reason"].iloc[0]


def _write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_rank_lists_cut_rows_as_unscorable_with_their_line(trained, tmp_path):
    accounts = trained.holdout.drop(
        columns=["outcome", "closed_at", "days_to_close", "created_at", "row_id"]
    ).drop_duplicates("account_id")
    accounts = accounts.head(5)
    path = tmp_path / "accounts.csv"
    accounts.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:2])  # a row that lost its trailing fields
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    result = rank_accounts(trained.scorer, load_accounts(path), tiers=(1, 1, 1))
    unscorable = result.unscorable.set_index("line")
    assert sorted(unscorable.index) == [4, 6]
    assert unscorable["reason"].str.startswith("row cut short").all()
    assert ROW_PROBLEM not in result.unscorable.columns
    assert len(result.ranked) == 3
    assert len(load_accounts(path, allow_short_rows=True)) == 5


def test_utf16_export_with_bom_is_detected(tmp_path):
    text = "id\tcity\tamount\r\n1\tZürich\t10\r\n2\tKöln\t20\r\n"
    path = _write(tmp_path, "unicode.txt", "\ufeff".encode("utf-16-le") + text.encode("utf-16-le"))
    frame = read_table(SourceSpec(path=str(path))).frame
    assert list(frame["city"]) == ["Zürich", "Köln"] and list(frame["amount"]) == ["10", "20"]
    frame_be = read_table(
        SourceSpec(path=str(_write(tmp_path, "be.txt", text.encode("utf-16"))))
    ).frame
    assert list(frame_be["city"]) == ["Zürich", "Köln"]


def test_a_folder_given_as_a_file_says_so(tmp_path):
    with pytest.raises(AbmInputError, match="is a folder, not a file"):
        read_table(SourceSpec(path=str(tmp_path)))


def test_database_url_needs_exactly_one_of_table_or_query(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(AbmInputError, match="exactly one of --table or --query"):
        load_accounts(url)
    with pytest.raises(AbmInputError, match="exactly one of --table or --query"):
        load_accounts(url, table="accounts", query="select 1")
    with pytest.raises(AbmInputError, match=r"postgresql://ann:\*\*\*@db/crm"):
        load_accounts("postgresql://ann:s3cret@db/crm")
