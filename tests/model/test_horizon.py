"""Propensity to buy within a horizon: labels, snapshots, training and the two-propensity ranking."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from abm_ml.config import specs_dir
from abm_ml.data.spec import load_spec
from abm_ml.data.validate import load_dataset
from abm_ml.errors import AbmInputError
from abm_ml.features.columns import AS_OF
from abm_ml.modeling import horizon as hz
from abm_ml.schema import ACCOUNT_ID, CLOSED_AT, CREATED_AT, LOST, OPEN, OUTCOME, WON
from abm_ml.synthetic.world import NOISE_FEATURES

T = pd.Timestamp("2025-03-01")


def _opp(account: str, created: str, closed: str | None, outcome: str) -> dict:
    return {
        ACCOUNT_ID: account,
        CREATED_AT: pd.Timestamp(created),
        CLOSED_AT: pd.Timestamp(closed) if closed else pd.NaT,
        OUTCOME: outcome,
    }


def test_labels_follow_the_horizon_and_exclude_open_deals():
    opportunities = pd.DataFrame(
        [
            _opp(
                "won_in_window", "2025-04-01", "2025-12-01", WON
            ),  # won after the window: still won
            _opp("won_too_late", "2025-09-10", "2025-10-01", WON),  # created after 180 days
            _opp("lost_in_window", "2025-04-01", "2025-05-01", LOST),
            _opp("open_at_snapshot", "2025-01-15", "2025-04-01", WON),  # open on 1 March
            _opp("closed_before", "2024-10-01", "2025-02-01", WON),  # a prior win, not open
            _opp("pending", "2025-05-01", None, OPEN),  # still open at export: unknown
            _opp("on_the_day", "2025-03-01", "2025-03-20", WON),  # created at the snapshot
            _opp("day_180", "2025-08-28", "2025-09-20", WON),  # 1 March + 180 days: outside
        ]
    )
    accounts = [*opportunities[ACCOUNT_ID], "no_deal"]
    keys = pd.DataFrame({ACCOUNT_ID: accounts, AS_OF: T})
    outcome, open_deal = hz.label_snapshots(keys, opportunities, 180, "2026-06-30")
    got = dict(zip(accounts, outcome))
    assert got["won_in_window"] == WON
    assert got["won_too_late"] == LOST
    assert got["lost_in_window"] == LOST
    assert got["closed_before"] == LOST
    assert got["pending"] == OPEN
    assert got["on_the_day"] == WON
    assert got["day_180"] == LOST
    assert got["no_deal"] == LOST
    assert dict(zip(accounts, open_deal)) == {a: a == "open_at_snapshot" for a in accounts}


def test_a_window_past_the_export_is_not_called_lost():
    opportunities = pd.DataFrame([_opp("x", "2024-01-01", "2024-02-01", LOST)])
    keys = pd.DataFrame({ACCOUNT_ID: ["x", "x"], AS_OF: [T, T + pd.Timedelta(days=60)]})
    outcome, _ = hz.label_snapshots(keys, opportunities, 180, T + pd.Timedelta(days=200))
    assert list(outcome) == [LOST, OPEN]


def test_accounts_with_open_deal_uses_the_scoring_rule():
    opportunities = pd.DataFrame(
        [
            _opp("a", "2025-01-01", None, OPEN),
            _opp("b", "2025-01-01", "2025-02-28", WON),  # closed the day before
            # Closes on the day: still open, as the features do not count it a prior win yet.
            _opp("e", "2025-01-01", "2025-03-01", WON),
            _opp("c", "2025-03-02", None, OPEN),  # created after the date
            _opp("d", "2025-02-01", "2025-03-02", LOST),  # closes the day after: open then
        ]
    )
    assert hz.accounts_with_open_deal(opportunities, T) == {"a", "d", "e"}


def test_opportunities_the_labels_cannot_be_read_from_are_refused():
    with pytest.raises(AbmInputError, match="closed_at"):
        hz.check_opportunities(pd.DataFrame({ACCOUNT_ID: [], CREATED_AT: [], OUTCOME: []}))
    good = pd.DataFrame([_opp("a", "2025-01-01", None, OPEN), _opp("b", "2025-01-02", None, WON)])
    hz.check_opportunities(good)
    with pytest.raises(AbmInputError, match="'Closed Won' at row 2"):
        hz.check_opportunities(good.assign(outcome=[OPEN, "Closed Won"]))
    with pytest.raises(AbmInputError, match="no creation date.*row 1"):
        hz.check_opportunities(good.assign(created_at=[pd.NaT, pd.Timestamp("2025-01-02")]))


def test_snapshot_dates_stop_where_the_window_would_pass_the_export():
    dates = hz.snapshot_dates("2024-01-01", "2026-06-30", 180)
    assert dates[0] == pd.Timestamp("2024-04-01")
    assert dates[-1] + pd.Timedelta(days=180) <= pd.Timestamp("2026-06-30")
    assert (dates + pd.Timedelta(days=180) <= pd.Timestamp("2026-06-30")).all()
    with pytest.raises(AbmInputError, match="too short"):
        hz.snapshot_dates("2024-01-01", "2024-09-01", 180)


@pytest.fixture(scope="module")
def world():
    from abm_ml.synthetic.generate import generate_world

    return generate_world(n_accounts=2000, seed=11)


@pytest.fixture(scope="module")
def snapshots(world):
    rows_as_of, opportunities = hz.world_source(world)
    dates = hz.snapshot_dates(world.start, world.as_of, 180)
    return hz.build_snapshots(
        rows_as_of, opportunities, dates, horizon_days=180, known_until=world.as_of
    )


def test_every_snapshot_row_is_kept_with_a_label_or_counted_as_excluded(world, snapshots):
    table, summary = snapshots
    assert summary.rows_built == len(world.accounts) * len(summary.snapshot_dates)
    assert summary.open_deal_excluded > 0
    assert summary.rows_built == len(table) + summary.open_deal_excluded
    assert summary.won + summary.lost + summary.label_unknown == len(table)
    assert summary.opportunities_unmatched == 0
    assert table["row_id"].is_unique
    assert "amount" not in table.columns and "source" not in table.columns
    # No kept row belongs to an account with a deal open at its snapshot date.
    opportunities = world.opportunities
    for date in pd.to_datetime(table[hz.SNAPSHOT_AT].unique()[:3]):
        busy = hz.accounts_with_open_deal(opportunities, date)
        kept = set(table.loc[table[hz.SNAPSHOT_AT] == date, ACCOUNT_ID])
        assert busy and not (busy & kept)


def test_a_snapshot_row_is_the_scoring_row_of_that_date(world, snapshots):
    from abm_ml.features.columns import FEATURE_COLUMNS
    from abm_ml.features.point_in_time import build_scoring_rows

    table, summary = snapshots
    date = pd.Timestamp(summary.snapshot_dates[7])
    mine = table[table[hz.SNAPSHOT_AT] == date].set_index(ACCOUNT_ID)
    scoring = build_scoring_rows(world, date).set_index(ACCOUNT_ID).loc[mine.index]
    pd.testing.assert_frame_equal(
        mine[list(FEATURE_COLUMNS)], scoring[list(FEATURE_COLUMNS)], check_dtype=False
    )


def test_the_generated_spec_drops_deal_attributes_and_keeps_the_wording(snapshots, tmp_path):
    table, _ = snapshots
    base = load_spec(specs_dir() / "synthetic-abm.yaml")
    spec_path = hz.write_horizon_dataset(table, base, tmp_path, horizon_days=180)
    dataset = load_dataset(load_spec(spec_path))
    assert dataset.summary.rejected == 0
    assert dataset.summary.accepted == len(table)
    names = set(dataset.feature_names)
    assert "deal_amount" not in names and "source" not in names
    base_templates = {f.key: f.template for f in base.features}
    assert {f.key: f.template for f in dataset.spec.features} == {
        k: base_templates[k] for k in names
    }
    assert dataset.spec.created_at.column == hz.SNAPSHOT_AT


@pytest.fixture(scope="module")
def horizon_result(world, tmp_path_factory):
    from abm_ml.testing import small_train_config

    rows_as_of, opportunities = hz.world_source(world)
    dataset, summary = hz.horizon_dataset(
        rows_as_of,
        opportunities,
        load_spec(specs_dir() / "synthetic-abm.yaml"),
        tmp_path_factory.mktemp("horizon"),
        horizon_days=180,
        known_until=world.as_of,
        first_day=world.start,
    )
    assert summary.won + summary.lost + summary.label_unknown == dataset.summary.accepted
    return hz.train_horizon(dataset, small_train_config(), horizon_days=180)


@pytest.mark.slow
def test_buy_model_beats_firmographic_only_and_the_rule_based_fit(horizon_result):
    result = horizon_result
    gains = hz.auc_gains(result)
    for baseline in (hz.FIRMOGRAPHIC_ONLY, "rule_based_fit"):
        assert gains[baseline].low > 0, (baseline, gains[baseline])
        auc, other = (result.propensity[n]["roc_auc"].value for n in ("abm-ml", baseline))
        assert gains[baseline].value == pytest.approx(auc - other)
    # Firmographics alone barely rank who buys next in this world: engagement and intent do.
    assert result.propensity[hz.FIRMOGRAPHIC_ONLY]["roc_auc"].value < 0.65
    assert hz.FIRMOGRAPHIC_ONLY in result.holdout_predictions.columns
    assert any(
        line.startswith("propensity to buy beats firmographic")
        for line in hz.comparison_lines(result)
    )


@pytest.mark.slow
def test_split_is_by_snapshot_date_with_no_account_on_both_sides(horizon_result):
    result = horizon_result
    frame = result.dataset.frame
    split = result.split
    train_accounts = set(frame[ACCOUNT_ID].iloc[np.concatenate([split.train, split.valid])])
    test_accounts = set(frame[ACCOUNT_ID].iloc[split.test])
    assert not (train_accounts & test_accounts)
    assert frame[CREATED_AT].iloc[split.test].min() >= frame[CREATED_AT].iloc[split.train].max()
    assert split.method.startswith("time")
    # Engagement, committee or intent lead the explanations; the planted noise stays out of them.
    top = list(result.feature_importance["feature"].head(5))
    assert top[0] not in hz.FIRMOGRAPHIC_FEATURES, top
    assert not set(top) & set(NOISE_FEATURES), top


def test_firmographic_only_needs_a_firmographic_feature(crm_dataset):
    assert hz.firmographic_only(crm_dataset, None, firmographic=("no_such_column",)) is None


@pytest.fixture(scope="module")
def win_result(world, tmp_path_factory):
    """The opportunity (win) model on the same world, through its own spec."""
    from abm_ml.features.point_in_time import build_training_rows
    from abm_ml.modeling.train import train_models
    from abm_ml.testing import small_train_config

    path = tmp_path_factory.mktemp("win") / "training_rows.parquet"
    build_training_rows(world).to_parquet(path, index=False)
    spec = load_spec(specs_dir() / "synthetic-abm.yaml")
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"path": str(path)})})
    return train_models(load_dataset(spec), small_train_config())


@pytest.mark.slow
def test_ranking_carries_both_propensities_and_uses_the_one_that_applies(
    world, horizon_result, win_result, tmp_path
):
    from abm_ml.features.point_in_time import build_scoring_rows
    from abm_ml.modeling.ranking import rank_buy_and_win, write_ranked
    from abm_ml.reporting.ranking_report import ranking_report

    accounts = build_scoring_rows(world, world.as_of)
    open_deals = hz.accounts_with_open_deal(world.opportunities, world.as_of)
    result = rank_buy_and_win(
        horizon_result.scorer,
        win_result.scorer,
        accounts,
        open_deals,
        tiers=(10, 50, 100),
        as_of=str(world.as_of.date()),
        buy_model=("abm-buy-propensity", "1"),
        win_model=("abm-account-scorer", "3"),
    )
    ranked = result.ranked.set_index(ACCOUNT_ID)
    assert len(ranked) + len(result.unscorable) == len(accounts)
    is_open = ranked.index.isin(list(open_deals))
    assert 0 < is_open.sum() < len(ranked)
    assert (ranked["propensity_used"] == np.where(is_open, "win", "buy")).all()
    assert ranked["buy_propensity"].notna().all()
    assert ranked.loc[~is_open, "win_propensity"].isna().all()
    applied = np.where(is_open, ranked["win_propensity"], ranked["buy_propensity"])
    np.testing.assert_allclose(ranked["propensity"], applied)
    assert ranked.loc[is_open, "win_reasons"].str.len().gt(0).all()
    assert ranked.loc[~is_open, "win_reasons"].isna().all()
    assert ranked["buy_reasons"].str.len().gt(0).all()
    assert set(ranked.loc[is_open, "model_name"]) == {"abm-account-scorer"}

    # The same numbers as each scorer gives on its own: one scoring path.
    buy_alone = horizon_result.scorer.score(accounts, with_reasons=False)
    buy_alone = buy_alone.set_index(ACCOUNT_ID)["propensity"]
    np.testing.assert_allclose(ranked["buy_propensity"], buy_alone.loc[ranked.index])
    win_alone = win_result.scorer.score(
        accounts[accounts[ACCOUNT_ID].isin(list(open_deals))], with_reasons=False
    ).set_index(ACCOUNT_ID)["propensity"]
    np.testing.assert_allclose(
        ranked.loc[is_open, "win_propensity"], win_alone.loc[ranked.index[is_open]]
    )

    # Priority follows the propensity that applies; tiers are cut on it.
    assert result.ranked["priority"].is_monotonic_decreasing
    assert (
        result.ranked["abm_tier"].value_counts()[["1:1", "1:few", "1:many"]] == [10, 50, 100]
    ).all()
    assert "180 days" in result.meta["propensity"]

    # Without open deals every account is ranked by its propensity to buy.
    no_deals = rank_buy_and_win(horizon_result.scorer, win_result.scorer, accounts, set())
    assert (no_deals.ranked["propensity_used"] == "buy").all()
    assert no_deals.ranked["win_propensity"].isna().all()
    np.testing.assert_allclose(
        no_deals.ranked.set_index(ACCOUNT_ID)["propensity"].loc[ranked.index],
        ranked["buy_propensity"],
    )

    out = write_ranked(result.ranked, tmp_path / "ranking.csv")
    written = pd.read_csv(out)
    for column in (
        "propensity_used",
        "buy_propensity",
        "win_propensity",
        "buy_reasons",
        "win_reasons",
    ):
        assert column in written.columns
    html = ranking_report(result, tmp_path / "ranking.html").read_text()
    assert "Propensity to buy within 180 days" in html and "Win propensity" in html


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "abm_ml.cli", *args], capture_output=True, text=True, check=False
    )


def test_train_buy_without_a_world_says_so_in_one_line(tmp_path):
    run = _cli("train-buy", "--world", str(tmp_path / "nowhere"))
    assert run.returncode == 2, run.stderr
    assert "abm-ml synth" in run.stderr and "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0


def test_rank_buy_refuses_opportunities_without_closed_at(tmp_path):
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("account_id\nA1\n")
    deals = tmp_path / "deals.csv"
    deals.write_text("account_id,created_at,outcome\nA1,2025-01-01,open\n")
    run = _cli("rank-buy", str(accounts), "--opportunities", str(deals))
    assert run.returncode == 2, run.stderr
    assert "closed_at" in run.stderr and str(deals) in run.stderr
    deals.write_text("account_id,created_at,closed_at,outcome\nA1,2025-01-01,someday,won\n")
    run = _cli("rank-buy", str(accounts), "--opportunities", str(deals))
    assert run.returncode == 2 and "someday" in run.stderr and "line 2" in run.stderr


@pytest.mark.slow
def test_rank_buy_command_ranks_with_both_registered_models(
    world, horizon_result, win_result, mlflow_store, tmp_path
):
    from abm_ml import config as cfg
    from abm_ml.features.point_in_time import build_scoring_rows
    from abm_ml.registry import tracking

    tracking.configure()
    buy = tracking.log_training(horizon_result, model_name=cfg.buy_model_name())
    win = tracking.log_training(win_result)
    assert buy["model_name"] == "abm-buy-propensity" and win["model_name"] == "abm-account-scorer"
    accounts = tmp_path / "accounts.parquet"
    build_scoring_rows(world, world.as_of).to_parquet(accounts, index=False)
    deals = tmp_path / "opportunities.parquet"
    world.opportunities.to_parquet(deals, index=False)
    out = tmp_path / "ranked.csv"
    run = _cli(
        "rank-buy",
        str(accounts),
        "--opportunities",
        str(deals),
        "--buy-model",
        "challenger",
        "--win-model",
        "challenger",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "buy = deal created within 180 days and won" in " ".join(run.stdout.split())
    ranked = pd.read_csv(out)
    open_deals = hz.accounts_with_open_deal(world.opportunities, world.as_of)
    assert (ranked["propensity_used"] == "win").sum() == len(open_deals)
    assert ranked["buy_propensity"].notna().all()
    assert out.with_suffix(".html").is_file()
