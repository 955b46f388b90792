"""The ROI report on a campaign world with planted effects, and its input boundary.

Campaign A truly raises opportunity creation, B does nothing, C only reaches accounts that
would have bought anyway (:mod:`abm_ml.synthetic.campaigns`). The attribution views must rank
A above B, and last-touch must hand C the most pipeline (the trap the pilot then exposes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from abm_ml.errors import AbmInputError
from abm_ml.roi.attribution import credits, touched_opportunities
from abm_ml.roi.report import compute_roi
from abm_ml.roi.tables import load_tables
from abm_ml.synthetic.campaigns import generate_campaign_world


@pytest.fixture(scope="module")
def world():
    return generate_campaign_world(3000, seed=3)


@pytest.fixture(scope="module")
def world_files(world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return world.save(tmp_path_factory.mktemp("campaign-world"))


@pytest.fixture(scope="module")
def report(world_files):
    tables = load_tables(
        world_files["campaigns"],
        world_files["touches"],
        world_files["opportunities"],
        world_files["accounts"],
    )
    return compute_roi(tables, start="2025-01-01", end="2025-12-31", n_boot=300)


def _view(report, model: str) -> pd.DataFrame:
    rows = report.by_campaign
    return rows[rows["model"] == model].set_index("campaign_id")


@pytest.mark.parametrize("model", ["first_touch", "last_touch", "even_split"])
def test_effective_campaign_beats_the_useless_one_in_every_view(report, model):
    view = _view(report, model)
    assert view.at["A", "return_on_spend"] > view.at["B", "return_on_spend"] + 2
    assert view.at["A", "credited_opportunities"] > 3 * view.at["B", "credited_opportunities"]
    assert view.at["A", "cost_per_new_logo"] < view.at["B", "cost_per_new_logo"]


def test_last_touch_credits_the_campaign_that_only_reaches_buyers(report, world):
    last = _view(report, "last_touch")
    assert last["credited_opportunities"].idxmax() == "C"
    # C caused nothing, yet last-touch gives it more opportunities than A truly caused.
    assert last.at["C", "credited_opportunities"] > world.truth()["caused_opportunities"]["A"]


def test_credits_of_each_opportunity_sum_to_one_and_counts_match_the_truth(world, report):
    pairs = credits(touched_opportunities(world.touches, world.opportunities, 90))
    sums = pairs.groupby("opportunity_id")[["first_touch", "last_touch", "even_split"]].sum()
    assert (sums.round(9) == 1).all().all()
    # Every opportunity A caused comes 7-60 days after an A touch: all are touched by A.
    caused = world.opportunities.loc[world.opportunities["caused_by"] == "A", "opportunity_id"]
    assert caused.isin(pairs.loc[pairs["campaign_id"] == "A", "opportunity_id"]).all()
    rows = report.by_campaign.set_index(["campaign_id", "model"])
    reached = world.touches.groupby("campaign_id")["account_id"].nunique()
    assert rows.xs("even_split", level="model")["accounts_reached"].to_dict() == reached.to_dict()


def test_channels_add_up_the_campaigns(report):
    for model in ("first_touch", "even_split"):
        campaigns = report.by_campaign[report.by_campaign["model"] == model]
        channels = report.by_channel[report.by_channel["model"] == model]
        assert channels["credited_won_revenue"].sum() == pytest.approx(
            campaigns["credited_won_revenue"].sum()
        )
        assert channels["cost"].sum() == pytest.approx(campaigns["cost"].sum())


def test_velocity_interval_brackets_the_median_difference(report):
    velocity = report.velocity
    difference = velocity["difference_days"]
    assert velocity["won_deals_touched"] + velocity["won_deals_untouched"] > 0
    assert difference.low <= difference.value <= difference.high
    assert difference.value == pytest.approx(
        velocity["median_days_touched"].value - velocity["median_days_untouched"].value
    )


def test_every_row_is_used_or_rejected_with_its_line(world_files, tmp_path):
    touches = pd.read_csv(world_files["touches"])
    touches.loc[3, "touched_at"] = "31/02/2025"
    touches.loc[5, "campaign_id"] = "Z"
    touches.loc[7, "account_id"] = "ACC-99999"
    touches.to_csv(tmp_path / "touches.csv", index=False)
    opportunities = pd.read_csv(world_files["opportunities"])
    opportunities.loc[0, "outcome"] = "maybe"
    opportunities.to_csv(tmp_path / "opportunities.csv", index=False)
    tables = load_tables(
        world_files["campaigns"],
        tmp_path / "touches.csv",
        tmp_path / "opportunities.csv",
        world_files["accounts"],
    )
    accounting = tables.accounting()
    for counts in accounting.values():
        assert counts["used"] + counts["rejected"] == counts["read"]
    rejects = tables.rejects.set_index(["table", "line"])
    # Line = data row + 2 (header is line 1).
    assert rejects.loc[("touches", 5), "field"] == "touched_at"
    assert "not in the campaigns table" in rejects.loc[("touches", 7), "reason"]
    assert "not in the accounts table" in rejects.loc[("touches", 9), "reason"]
    assert rejects.loc[("opportunities", 2), "field"] == "outcome"


def test_a_bad_campaign_row_stops_with_file_line_and_field(world_files, tmp_path):
    campaigns = pd.read_csv(world_files["campaigns"], dtype=str)
    campaigns.loc[1, "cost"] = "lots"
    campaigns.to_csv(tmp_path / "campaigns.csv", index=False)
    with pytest.raises(AbmInputError, match=r"campaigns\.csv: cost: line 3"):
        load_tables(
            tmp_path / "campaigns.csv", world_files["touches"], world_files["opportunities"]
        )


def test_content_costs_add_to_their_campaign_and_an_unknown_campaign_stops(world_files, tmp_path):
    content = tmp_path / "content.csv"
    content.write_text("campaign_id,content_id,cost\nA,guide,5000\nA,video,15000\nB,banner,1000\n")
    files = [world_files["campaigns"], world_files["touches"], world_files["opportunities"]]
    tables = load_tables(*files, content=content)
    costs = tables.campaigns.set_index("campaign_id")
    assert costs.at["A", "cost"] == 120_000 + 20_000
    assert costs.at["A", "content_cost"] == 20_000 and costs.at["C", "content_cost"] == 0
    assert tables.accounting()["content"] == {"read": 3, "used": 3, "rejected": 0}
    report = compute_roi(tables, n_boot=0)
    assert report.by_campaign.set_index(["campaign_id", "model"]).at[
        ("A", "even_split"), "cost"
    ] == pytest.approx(140_000)
    content.write_text("campaign_id,content_id,cost\nA,guide,5000\nQ,video,15000\n")
    with pytest.raises(AbmInputError, match=r"content\.csv: campaign_id: line 3: campaign 'Q'"):
        load_tables(*files, content=content)


def test_a_missing_column_is_named(world_files, tmp_path):
    pd.read_csv(world_files["touches"]).drop(columns=["touched_at"]).to_csv(
        tmp_path / "touches.csv", index=False
    )
    with pytest.raises(AbmInputError, match="touched_at"):
        load_tables(
            world_files["campaigns"], tmp_path / "touches.csv", world_files["opportunities"]
        )


def _console_script() -> str:
    script = Path(sys.executable).with_name("abm-ml")
    return (
        str(script)
        if script.is_file()
        else (shutil.which("abm-ml") or pytest.skip("abm-ml console script not installed"))
    )


def test_the_roi_command_writes_html_and_json_and_exits_2_on_bad_input(world_files, tmp_path):
    env = os.environ | {"ABM_ML_REPORTS_DIR": str(tmp_path / "reports"), "COLUMNS": "200"}
    env.pop("ABM_ML_DEBUG", None)
    pd.read_csv(world_files["opportunities"]).drop(columns=["amount"]).to_csv(
        tmp_path / "no-amount.csv", index=False
    )
    common = ["roi", "--campaigns", str(world_files["campaigns"]), "--touches"]
    commands = {
        "good": [*common, str(world_files["touches"]), "--opportunities"]
        + [str(world_files["opportunities"]), "--accounts", str(world_files["accounts"])],
        "bad": [
            *common,
            str(world_files["touches"]),
            "--opportunities",
            str(tmp_path / "no-amount.csv"),
        ],
    }
    processes = {
        name: subprocess.Popen(
            [_console_script(), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for name, command in commands.items()
    }
    done = {name: (p.wait(timeout=300), *p.communicate()) for name, p in processes.items()}
    code, stdout, stderr = done["good"]
    assert code == 0, stderr
    assert "return on spend" in stdout
    data = json.loads((tmp_path / "reports" / "roi" / "roi.json").read_text())
    last = {
        row["campaign_id"]: row["credited_opportunities"]
        for row in data["by_campaign"]
        if row["model"] == "last_touch"
    }
    assert max(last, key=last.get) == "C"
    assert data["accounting"]["touches"]["rejected"] == 0
    html = (tmp_path / "reports" / "roi" / "roi.html").read_text()
    assert "Executive roundtables" in html and "even split (multi-touch)" in html
    code, stdout, stderr = done["bad"]
    assert code == 2
    assert "no-amount.csv" in stderr and "amount" in stderr and "Traceback" not in stderr


def test_activities_define_engagement_within_90_days_after_a_touch(world_files, tmp_path):
    touches = pd.DataFrame(
        {
            "campaign_id": ["A", "A", "A", "B"],
            "account_id": ["ACC-00001", "ACC-00002", "ACC-00003", "ACC-00001"],
            "touched_at": ["2025-03-01", "2025-03-01", "2025-03-01", "2025-06-01"],
        }
    )
    touches.to_csv(tmp_path / "touches.csv", index=False)
    activities = pd.DataFrame(
        {
            "account_id": ["ACC-00001", "ACC-00002", "ACC-00003", "ACC-00003", "ACC-99999"],
            # 90 days after the touch counts, 91 does not, one before the touch does not.
            "occurred_at": ["2025-05-30", "2025-05-31", "2025-02-27", "not a date", "2025-03-02"],
        }
    )
    activities.to_csv(tmp_path / "activities.csv", index=False)
    tables = load_tables(
        world_files["campaigns"],
        tmp_path / "touches.csv",
        world_files["opportunities"],
        world_files["accounts"],
        activities=tmp_path / "activities.csv",
    )
    assert tables.accounting()["activities"] == {"read": 5, "used": 3, "rejected": 2}
    report = compute_roi(tables, n_boot=0)
    engaged = report.by_campaign.drop_duplicates("campaign_id").set_index("campaign_id")
    assert engaged.at["A", "engaged_accounts"] == 1  # only ACC-00001, on day 90
    assert engaged.at["B", "engaged_accounts"] == 0  # ACC-00001's activity predates B's touch
    assert engaged.at["A", "cost_per_engaged_account"] == 120_000
    assert any("within 90 days" in note for note in report.notes)


def test_parquet_inputs_give_the_same_report_as_csv(world, report, tmp_path):
    world.campaigns.to_parquet(tmp_path / "campaigns.parquet")
    world.touches.to_parquet(tmp_path / "touches.parquet")
    world.opportunities.drop(columns=["caused_by"]).to_parquet(tmp_path / "opps.parquet")
    world.accounts.drop(columns=["baseline"]).to_parquet(tmp_path / "accounts.parquet")
    tables = load_tables(
        *(tmp_path / f"{name}.parquet" for name in ("campaigns", "touches", "opps", "accounts"))
    )
    parquet = compute_roi(tables, start="2025-01-01", end="2025-12-31", n_boot=300)
    pd.testing.assert_frame_equal(parquet.by_campaign, report.by_campaign)


def test_unknown_engagement_is_null_in_strict_json(world_files, tmp_path):
    from abm_ml.roi.report import write_json

    pd.read_csv(world_files["touches"]).drop(columns=["responded"]).to_csv(
        tmp_path / "touches.csv", index=False
    )
    tables = load_tables(
        world_files["campaigns"], tmp_path / "touches.csv", world_files["opportunities"]
    )
    report = compute_roi(tables, n_boot=50)
    assert report.by_campaign["engaged_accounts"].isna().all()
    assert any("not available" in note for note in report.notes)

    def refuse(token: str):
        raise AssertionError(f"{token} in JSON")

    data = json.loads(write_json(report, tmp_path / "roi.json").read_text(), parse_constant=refuse)
    assert all(row["cost_per_engaged_account"] is None for row in data["by_campaign"])
