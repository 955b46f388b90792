"""A whole CRM export as the list to rank: closed deals are reported, not ranked, and an
account's first row that cannot be scored does not hide its next, good row."""

from __future__ import annotations

import copy

import pandas as pd

from abm_ml.modeling.ranking import rank_accounts
from abm_ml.testing import make_crm_export


def _reasons(ranking) -> dict[str, str]:
    bad = ranking.unscorable
    return dict(zip(bad["Opportunity ID"], bad["reason"]))


def test_closed_deals_are_reported_with_their_outcome_and_open_ones_ranked(trained):
    export = make_crm_export(400, seed=31)
    export.loc[export.index % 4 == 0, "Stage"] = "Open"  # a quarter still being worked
    ranking = rank_accounts(trained.scorer, export)
    reasons = _reasons(ranking)
    closed = export[export["Stage"] != "Open"]
    assert len(closed) > 100 and (export["Stage"] == "Open").sum() > 10
    for _, row in closed.iterrows():
        assert reasons[row["Opportunity ID"]] == (
            f"a closed deal ('Stage' is {row['Stage']}): only open deals are ranked"
        )
    # Every open deal is ranked, once per account, and nothing is dropped silently.
    open_deals = export[export["Stage"] == "Open"]
    assert set(ranking.ranked["account_id"]) == set(open_deals["Account"])
    assert len(ranking.ranked) + len(ranking.unscorable) == len(export)


def test_an_accounts_closed_first_row_does_not_make_its_open_deal_a_repeat(trained):
    export = make_crm_export(200, seed=32).head(3).copy()
    export["Account"] = "ACC-ONE"
    export["Stage"] = ["Closed Won", "Open", "Open"]
    export["Opportunity ID"] = ["D1", "D2", "D3"]
    ranking = rank_accounts(trained.scorer, export)
    assert list(ranking.ranked["account_id"]) == ["ACC-ONE"]
    reasons = _reasons(ranking)
    assert reasons["D1"].startswith("a closed deal")
    assert reasons["D3"] == "repeated account_id (first occurrence scored)"
    assert "D2" not in reasons  # the first open deal is the one scored


def test_a_row_with_a_problem_does_not_make_the_accounts_good_row_a_repeat(trained):
    export = make_crm_export(200, seed=33).drop(columns=["Stage"]).head(2).copy()
    export["Account"] = "ACC-TWO"
    export["Opportunity ID"] = ["E1", "E2"]
    export["Employees"] = export["Employees"].astype(object)
    export.loc[0, "Employees"] = "many"  # unparseable: the first row cannot be scored
    ranking = rank_accounts(trained.scorer, export)
    assert list(ranking.ranked["account_id"]) == ["ACC-TWO"]
    reasons = _reasons(ranking)
    assert set(reasons) == {"E1"} and "'Employees'" in reasons["E1"]


def test_a_model_stored_before_the_closed_labels_ranks_every_row(trained):
    scorer = copy.copy(trained.scorer)
    scorer.input_spec = {k: v for k, v in scorer.input_spec.items() if k != "closed_labels"}
    export = make_crm_export(300, seed=34).drop_duplicates("Account")
    ranking = rank_accounts(scorer, export)
    assert len(ranking.ranked) == len(export)
    assert not pd.Series(ranking.unscorable.get("reason", [])).str.contains("closed").any()
