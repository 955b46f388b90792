"""A list ranked in chunks gives the list ranked in memory: order, tiers, reasons, repeats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.data.readers import SOURCE_ROW
from abm_ml.data.records import iter_records
from abm_ml.modeling import ranking
from abm_ml.modeling.rank_stream import StreamedRanking
from abm_ml.modeling.ranking import rank_accounts
from abm_ml.reporting.history import record_parts, record_run, with_movement
from abm_ml.testing import make_crm_export

COMPARED = [
    "rank",
    "account_id",
    "abm_tier",
    "propensity",
    "score",
    "priority",
    "days_to_close_p50",
    "expected_value",
    "top_reasons",
    "risk",
]
TIERS = (5, 20, 100)


@pytest.fixture(scope="module")
def accounts() -> pd.DataFrame:
    """A CRM export with repeats of one account in different chunks and a blank id."""
    frame = make_crm_export(900, seed=21).drop(columns=["Stage"])  # no outcome: all to rank
    frame = frame.reset_index(drop=True)
    frame.loc[700, "Account"] = frame.loc[3, "Account"]  # a repeat three chunks later
    frame.loc[450, "Account"] = ""
    return frame


def _streamed(scorer, frame: pd.DataFrame, folder: Path, rows: int, **options) -> StreamedRanking:
    (folder / "spill").mkdir(parents=True, exist_ok=True)
    run = StreamedRanking(
        scorer,
        folder / "spill",
        unscorable_path=folder / "unscorable.csv",
        tiers=TIERS,
        as_of="2026-02-02",
        model_version="7",
        workers=2,
        **options,
    )
    for start in range(0, len(frame), rows):
        run.add(frame.iloc[start : start + rows])
    run.finish()
    return run


def test_chunks_rank_as_the_whole_list(trained, accounts, tmp_path, monkeypatch):
    monkeypatch.setattr(ranking, "MIN_CHUNK_ROWS", 50)
    whole = rank_accounts(
        trained.scorer, accounts, tiers=TIERS, as_of="2026-02-02", model_version="7", workers=2
    )
    run = _streamed(trained.scorer, accounts, tmp_path, rows=130)
    assert len(run._files) == 7  # really several chunks
    written = pd.read_csv(run.write(tmp_path / "ranked.csv"), keep_default_na=False)
    in_memory = ranking.write_ranked(whole.ranked, tmp_path / "whole.csv")
    expected = pd.read_csv(in_memory, keep_default_na=False)
    # The same file, byte for byte in every column, as the list ranked in memory writes.
    pd.testing.assert_frame_equal(written, expected)
    assert (written["rank"].to_numpy() == np.arange(1, len(expected) + 1)).all()
    assert set(COMPARED) <= set(written.columns)
    # Parquet is written from the spilled Arrow tables directly: the same values and types.
    streamed = pd.read_parquet(run.write(tmp_path / "ranked.parquet", slice_rows=200))
    whole_parquet = ranking.write_ranked(whole.ranked, tmp_path / "whole.parquet")
    pd.testing.assert_frame_equal(streamed, pd.read_parquet(whole_parquet))
    # The repeat three chunks later and the blank id are unscorable, as in memory.
    bad = pd.read_csv(tmp_path / "unscorable.csv", keep_default_na=False)
    assert sorted(bad["reason"]) == sorted(whole.unscorable["reason"])
    assert "repeated account_id (first occurrence scored)" in set(bad["reason"])
    result = run.result(run.light())
    assert result.meta["ranked"] == whole.meta["ranked"]
    assert result.meta["unscorable"] == whole.meta["unscorable"] == len(bad)
    assert result.meta["amount_note"] == whole.meta["amount_note"]
    # The report's head carries the structured reasons of the in-memory ranking.
    head = result.ranked.head(20)
    assert list(head["account_id"]) == list(whole.ranked["account_id"].head(20))
    assert [r["up"] for r in head["reasons"]] == [r["up"] for r in whole.ranked["reasons"].head(20)]


def test_reasons_for_the_top_n_across_chunks(trained, accounts, tmp_path, monkeypatch):
    monkeypatch.setattr(ranking, "MIN_CHUNK_ROWS", 50)
    whole = rank_accounts(
        trained.scorer, accounts, tiers=TIERS, as_of="2026-02-02", model_version="7", workers=2
    )
    run = _streamed(trained.scorer, accounts, tmp_path, rows=200, reasons_for=30)
    written = pd.read_parquet(run.write(tmp_path / "ranked.parquet"))
    assert list(written["top_reasons"].head(30)) == list(whole.ranked["top_reasons"].head(30))
    assert (written["top_reasons"].iloc[30:] == "").all() and (
        written["risk"].iloc[30:] == ""
    ).all()
    assert run.result(run.light()).meta["reasons_for"] == 30


def test_history_in_parts_moves_as_in_one_piece(trained, accounts, tmp_path):
    scorer = trained.scorer
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    # Both histories hold the same earlier run, so each account has a previous entry.
    earlier = rank_accounts(scorer, accounts.sample(frac=1, random_state=3), as_of="2026-01-01")
    earlier.ranked["score"] = earlier.ranked["score"].sample(frac=1, random_state=4).to_numpy()
    for db in (first, second):
        record_run(earlier.ranked, f"sqlite:///{db}")
    whole = rank_accounts(scorer, accounts, tiers=TIERS, as_of="2026-02-02", model_version="7")
    one = record_run(whole.ranked, f"sqlite:///{first}")
    run = _streamed(scorer, accounts, tmp_path, rows=250, details=True)
    light = run.light()
    moved = with_movement(light, record_parts(run.history_parts(), f"sqlite:///{second}"))
    assert list(moved["movement"]) == list(one["movement"])
    assert moved["movement"].str.startswith("score ").mean() > 0.9  # really moved
    # The details keep each account's structured reasons and model inputs, as JSON.
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{second}").connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT account_id, reasons, model_inputs FROM abm_score_details WHERE as_of = '2026-02-02'"
            )
        ).fetchall()
    assert len(rows) == len(whole.ranked)
    stored = {r[0]: r for r in rows}
    top = whole.ranked.iloc[0]
    assert (
        json.loads(stored[str(top["account_id"])][1])["up"][0]["text"]
        == top["reasons"]["up"][0]["text"]
    )
    assert set(json.loads(stored[str(top["account_id"])][2])) == set(scorer.feature_names)


def test_parquet_is_read_in_batches_with_its_lines(tmp_path):
    frame = pd.DataFrame({"Account": [f"A{i}" for i in range(25)], "Employees": range(25)})
    frame.set_index("Account").to_parquet(tmp_path / "a.parquet")
    parts = list(iter_records(tmp_path / "a.parquet", rows=10))
    assert [len(p) for p in parts] == [10, 10, 5]
    joined = pd.concat(parts, ignore_index=True)
    # The named index is a column again, and the lines count on across batches.
    assert list(joined["Account"]) == list(frame["Account"])
    assert list(joined[SOURCE_ROW]) == list(range(1, 26))


def test_sql_is_fetched_in_chunks(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    pd.DataFrame({"Account": [f"A{i}" for i in range(23)]}).to_sql(
        "accounts", sa.create_engine(url), index=False
    )
    parts = list(iter_records(url, table="accounts", rows=10))
    assert [len(p) for p in parts] == [10, 10, 3]
    assert list(pd.concat(parts)[SOURCE_ROW]) == list(range(1, 24))


def test_csv_is_parsed_in_chunks_with_its_lines_and_problems(tmp_path):
    """Chunks of a CSV carry the lines and the cut or wide records of the whole-file reader."""
    from abm_ml.data.records import read_records

    text = (
        "Account;Employees;Notes\n"
        'A1;10;"two\nlines"\n'
        "A2;20\n"  # cut short
        "\n"
        "A3;30;x;extra\n" + "".join(f"B{i};{i}; pad \n" for i in range(9))  # wider than the header
    )
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="cp1252")
    whole = read_records(path)
    parts = list(iter_records(path, rows=4))
    assert len(parts) > 2 and sum(len(p) for p in parts) == len(whole) == 12
    joined = pd.concat(parts, ignore_index=True)
    assert list(joined[SOURCE_ROW]) == list(whole[SOURCE_ROW]) == [2, 4, 6, *range(7, 16)]
    assert list(joined["_row_problem"].fillna("")) == list(whole["_row_problem"].fillna(""))
    assert joined["_row_problem"].notna().sum() == 2
    assert list(joined["Notes"]) == list(whole["Notes"])  # stripped: 'pad'


@pytest.mark.parametrize("sort_by", ["priority", "propensity"])
def test_a_list_with_nothing_to_score_writes_an_empty_ranking(trained, accounts, tmp_path, sort_by):
    # Ids but no feature value at all: nothing can be scored.
    bad = accounts.head(30)[["Opportunity ID", "Account"]]
    run = _streamed(trained.scorer, bad, tmp_path, rows=10, sort_by=sort_by)
    written = pd.read_csv(run.write(tmp_path / "ranked.csv"))
    assert written.empty and {"rank", "account_id", "abm_tier", sort_by} <= set(written.columns)
    result = run.result(run.light())
    assert result.meta["ranked"] == 0 and result.meta["unscorable"] == 30
    assert len(pd.read_csv(tmp_path / "unscorable.csv")) == 30


def test_reason_texts_without_the_dicts_are_the_dicts_texts(trained, accounts):
    """The streamed ranking words its chunks without dicts: the same texts, both models."""
    scorer = trained.scorer
    options = {"k_up": 3, "k_down": 1, "with_velocity_reasons": True}
    structured = scorer.score(accounts, **options)
    texts = scorer.score(accounts, structured_reasons=False, reason_texts=True, **options)
    assert "velocity_reasons" in structured.columns  # the velocity model is explained too
    assert not {"reasons", "velocity_reasons"} & set(texts.columns)
    # The dicts' texts, joined as a ranked list shows them: raising first, then lowering.
    expected = {
        "top_reasons": [_joined(r, up=True, down=False) for r in structured["reasons"]],
        "risk": [_joined(r, up=False, down=True) for r in structured["reasons"]],
        "days_reasons": [_joined(r, up=True, down=True) for r in structured["velocity_reasons"]],
    }
    for column, wanted in expected.items():
        assert texts[column].tolist() == wanted, column
    # Rows with several reasons on a side, and rows with none, are both compared.
    assert texts["top_reasons"].str.count("; ").max() >= 2
    assert (texts["risk"] == "").any() or (texts["top_reasons"] == "").any()


def _joined(entry: dict, *, up: bool, down: bool) -> str:
    """One entry's reasons as '+ text; - text', from its dicts."""
    sides = [("up", "+")] * up + [("down", "-")] * down
    return "; ".join(f"{mark} {r['text']}" for side, mark in sides for r in entry[side])
