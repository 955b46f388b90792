"""Batch ranking in parallel chunks, reasons for the top N only, and optional velocity reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abm_ml.modeling import ranking
from abm_ml.modeling.ranking import rank_accounts, score_in_chunks
from abm_ml.testing import make_crm_export

COMPARED = ["account_id", "propensity", "priority", "top_reasons", "risk"]


@pytest.fixture(scope="module")
def accounts() -> pd.DataFrame:
    """A fresh CRM export (its own column names), one row per account."""
    frame = make_crm_export(1500, seed=13).drop(columns=["Stage"])  # no outcome: all to rank
    return frame.drop_duplicates("Account").reset_index(drop=True)


def test_parallel_chunks_give_the_sequential_output(trained, accounts, monkeypatch):
    scorer = trained.scorer
    records = scorer.prepare(accounts).frame
    whole = scorer.score(records, with_velocity_reasons=False, parsed=True)
    monkeypatch.setattr(ranking, "MIN_CHUNK_ROWS", 100)
    chunked = score_in_chunks(scorer, records, parsed=True, workers=4)
    assert ranking.chunk_rows(len(records), 4) < len(records) // 3  # really several chunks
    pd.testing.assert_frame_equal(chunked[whole.columns], whole, check_exact=True)
    assert chunked["top_reasons"].str.len().gt(0).sum() > len(records) // 2


def test_reasons_for_the_top_n_only(trained, accounts, monkeypatch):
    monkeypatch.setattr(ranking, "MIN_CHUNK_ROWS", 100)
    full = rank_accounts(trained.scorer, accounts, as_of="2026-01-05", workers=2)
    top = rank_accounts(trained.scorer, accounts, as_of="2026-01-05", reasons_for=25, workers=2)
    assert top.meta["reasons_for"] == 25 and full.meta["reasons_for"] == len(full.ranked)
    a, b = full.ranked, top.ranked
    # The order and the scores do not depend on how many accounts are explained.
    assert list(a["account_id"]) == list(b["account_id"])
    np.testing.assert_allclose(a["propensity"], b["propensity"], rtol=1e-12)
    # The first 25 carry the same reasons as when every account is explained; the rest none.
    pd.testing.assert_frame_equal(b[COMPARED].head(25), a[COMPARED].head(25), rtol=1e-9)
    assert b["reasons"].iloc[:25].notna().all() and b["reasons"].iloc[25:].isna().all()
    assert (b["top_reasons"].iloc[25:] == "").all() and (b["risk"].iloc[25:] == "").all()
    assert rank_accounts(trained.scorer, accounts, reasons_for=0).ranked["reasons"].isna().all()


def test_velocity_reasons_are_optional(trained, accounts):
    plain = rank_accounts(trained.scorer, accounts.head(60))
    with_days = rank_accounts(trained.scorer, accounts.head(60), velocity_reasons=True)
    assert "days_reasons" not in plain.ranked.columns
    days = with_days.ranked["days_reasons"]
    assert days.str.len().gt(0).all()
    assert days.str.startswith(("+ ", "- ")).all()
    pd.testing.assert_frame_equal(with_days.ranked[COMPARED], plain.ranked[COMPARED])
