"""Pilots with a control group on the planted campaign world, stored in a real score history.

Campaign A truly raises opportunity creation by ``LIFT_A``; C reaches only accounts that
would have bought anyway. The pilot must measure A's lift and find none for C, although
last-touch attribution credits C the most.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from abm_ml.errors import AbmInputError
from abm_ml.reporting.history import record_run
from abm_ml.roi.pilot import (
    CONTROL,
    PILOT,
    latest_ranking,
    load_pilot,
    pilot_report,
    record_pilot,
    select_pilot,
)
from abm_ml.roi.report import compute_roi
from abm_ml.roi.tables import RoiTables
from abm_ml.synthetic.campaigns import LIFT_A, generate_campaign_world, simulate_pilot

STARTED = "2026-04-01"
ENDED = "2026-07-30"


@pytest.fixture(scope="module")
def world():
    return generate_campaign_world(4000, seed=5)


@pytest.fixture()
def history_url(world, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    older = world.ranking.iloc[::-1].assign(
        model_version="1", as_of="2025-06-30", rank=range(1, len(world.ranking) + 1)
    )
    record_run(older, url)  # an older run in reverse order: the pilot must not use it
    record_run(world.ranking.assign(model_version="2", as_of=str(world.as_of.date())), url)
    return url


def _run_pilot(world, url: str, campaign: str, n: int, seed: int):
    pilot = select_pilot(
        latest_ranking(url), n, seed=seed, pilot_id=f"{campaign}-{n}", started_on=STARTED
    )
    record_pilot(pilot, url)
    stored = load_pilot(url)
    touches, opportunities = simulate_pilot(world, stored.assignment, campaign, STARTED, seed=seed)
    return pilot_report(stored, opportunities, touches, as_of=ENDED, n_boot=500, seed=seed)


def test_arms_are_randomised_within_score_strata_from_the_latest_ranking(world, history_url):
    ranking = latest_ranking(history_url)
    assert ranking["model_version"].eq("2").all()
    pilot = select_pilot(ranking, 100, seed=1)
    chosen = set(pilot.assignment["account_id"])
    assert chosen == set(world.ranking["account_id"].head(200))
    arms = pilot.assignment.groupby("stratum")["arm"].agg(sorted)
    assert all(tuple(a) == (CONTROL, PILOT) for a in arms)  # one of each in every matched pair
    again = select_pilot(ranking, 100, seed=1).assignment
    other = select_pilot(ranking, 100, seed=2).assignment
    assert again["arm"].tolist() == pilot.assignment["arm"].tolist()
    assert other["arm"].tolist() != pilot.assignment["arm"].tolist()
    balance = pilot.balance()
    assert balance[PILOT]["accounts"] == balance[CONTROL]["accounts"] == 100
    # Matched on score: the arms' mean scores differ by less than one point.
    assert abs(balance[PILOT]["mean_score"] - balance[CONTROL]["mean_score"]) < 1


def test_the_assignment_is_stored_with_the_history_and_read_back(history_url):
    pilot = select_pilot(latest_ranking(history_url), 30, seed=4, started_on=STARTED)
    record_pilot(pilot, history_url)
    stored = load_pilot(history_url, pilot.pilot_id)
    assert (stored.model_version, stored.ranking_as_of, stored.seed) == ("2", "2026-03-31", 4)
    expected = pilot.assignment.sort_values(["stratum", "account_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        stored.assignment[["account_id", "arm", "stratum"]],
        expected[["account_id", "arm", "stratum"]],
        check_dtype=False,
    )
    with pytest.raises(AbmInputError, match="exists already"):
        record_pilot(pilot, history_url)


def test_the_working_campaign_shows_its_planted_lift(world, history_url):
    report = _run_pilot(world, history_url, "A", 400, seed=1)
    lift = report.metrics["opened_opportunity"]["difference"]
    assert report.verdict == "lift"
    assert 0 < lift.low <= LIFT_A <= lift.high
    assert report.p_value < 0.001


def test_the_campaign_last_touch_credits_shows_no_lift_against_control(world, history_url):
    roi = compute_roi(
        RoiTables(
            campaigns=world.campaigns,
            touches=world.touches,
            opportunities=world.opportunities,
            accounts=world.accounts,
        ),
        n_boot=0,
    )
    last_touch = roi.by_campaign[roi.by_campaign["model"] == "last_touch"]
    assert last_touch.set_index("campaign_id")["credited_won_revenue"].idxmax() == "C"

    report = _run_pilot(world, history_url, "C", 400, seed=2)
    lift = report.metrics["opened_opportunity"]["difference"]
    assert lift.low < 0 < lift.high
    assert report.verdict == "no_lift"
    assert report.needed_for_min_lift <= 400


def test_too_few_accounts_are_refused_with_the_number_needed(world, history_url):
    report = _run_pilot(world, history_url, "A", 12, seed=3)
    assert report.verdict == "too_few"
    needed = report.needed_for_observed or report.needed_for_min_lift
    assert needed > 12
    assert f"{needed:,} accounts per arm" in report.message


def test_a_pilot_larger_than_the_ranking_is_refused(world, history_url):
    with pytest.raises(AbmInputError, match="need 8002"):
        select_pilot(latest_ranking(history_url), 4001)


def test_no_history_is_a_clear_error(tmp_path):
    with pytest.raises(AbmInputError, match="no such SQLite file"):
        latest_ranking(f"sqlite:///{tmp_path / 'missing.db'}")


def _abm_ml(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("abm-ml")
    if not script.is_file():
        pytest.skip("abm-ml console script not installed")
    env = os.environ | {"ABM_ML_REPORTS_DIR": str(folder / "reports"), "COLUMNS": "200"}
    env.pop("ABM_ML_DEBUG", None)
    return subprocess.run(
        [str(script), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
    )


def test_the_pilot_commands_start_and_report_a_pilot(world, history_url, tmp_path):
    started = _abm_ml(
        ["pilot", "--accounts", "250", "--history-url", history_url, "--start", STARTED], tmp_path
    )
    assert started.returncode == 0, started.stderr
    assignment = pd.read_csv(tmp_path / "reports" / "roi" / "pilots" / f"pilot-{STARTED}-7.csv")
    assert assignment["arm"].value_counts().to_dict() == {PILOT: 250, CONTROL: 250}
    touches, opportunities = simulate_pilot(world, assignment, "A", STARTED)
    touches.to_csv(tmp_path / "touches.csv", index=False)
    opportunities.drop(columns=["caused_by"]).to_csv(tmp_path / "opps.csv", index=False)
    report_args = ["pilot", "report", "--opportunities", str(tmp_path / "opps.csv")]
    report_args += ["--touches", str(tmp_path / "touches.csv"), "--history-url", history_url]
    reported = _abm_ml([*report_args, "--as-of", ENDED], tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert "Lift measured" in reported.stdout
    data = json.loads((tmp_path / "reports" / "roi" / f"pilot-{STARTED}-7.json").read_text())
    assert data["verdict"] == "lift"
    assert data["metrics"]["opened_opportunity"]["difference"]["low"] > 0
    assert "Lift measured" in (tmp_path / "reports" / "roi" / f"pilot-{STARTED}-7.html").read_text()
    refused = _abm_ml([*report_args, "--as-of", "2020-01-01"], tmp_path)
    assert refused.returncode == 2 and "--as-of" in refused.stderr


def test_the_demo_step_prints_roi_and_pilots_against_the_planted_truth(tmp_path, capsys):
    from abm_ml.cli.roi import demo_roi

    demo_roi(tmp_path / "world", tmp_path / "reports", n_accounts=3000)
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "Lift measured" in printed
    assert "yet a pilot with C measures" in printed and ": no lift." in printed
    assert (tmp_path / "reports" / "pilot-demo-C.html").is_file()
    assert json.loads((tmp_path / "reports" / "roi.json").read_text())["by_campaign"]


def test_activities_in_the_period_define_engagement(world, history_url):
    pilot = select_pilot(latest_ranking(history_url), 40, seed=9, started_on=STARTED)
    worked = pilot.assignment.loc[pilot.assignment["arm"] == PILOT, "account_id"]
    control = pilot.assignment.loc[pilot.assignment["arm"] == CONTROL, "account_id"]
    activities = pd.DataFrame(
        {
            "account_id": [*worked, *control],
            # Control accounts were active only before the pilot started: not engaged by it.
            "occurred_at": pd.to_datetime(
                ["2026-05-01"] * len(worked) + ["2026-03-01"] * len(control)
            ),
        }
    )
    _, opportunities = simulate_pilot(world, pilot.assignment, "B", STARTED)
    report = pilot_report(pilot, opportunities, None, activities, as_of=ENDED, n_boot=200)
    engaged = report.metrics["engaged"]
    assert (engaged["pilot"].value, engaged["control"].value) == (1.0, 0.0)
    assert any("CRM activity" in note for note in report.notes)
