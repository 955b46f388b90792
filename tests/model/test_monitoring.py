"""Drift monitoring: PSI and the label-free AUC estimate, and verdicts on a synthetic world.

The world is scored at two dates (a stable pair), then once more with a shifted region mix and
an industry no training row had: the monitor must flag exactly those two features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from abm_ml.data.spec import MonitoringSpec
from abm_ml.monitoring.drift import DRIFT, OK
from abm_ml.monitoring.monitor import monitor_accounts, write_outputs
from abm_ml.monitoring.profile import (
    METADATA_KEY,
    MISSING,
    RARE,
    SCORING,
    TRAINING,
    UNSEEN,
    Profile,
    ProfileStore,
    reference_of,
    training_profile,
)
from abm_ml.monitoring.stats import expected_roc_auc, psi
from abm_ml.testing import small_train_config

# --------------------------------------------------------------------------------------------
# The statistics
# --------------------------------------------------------------------------------------------


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift():
    reference = [0.25, 0.25, 0.25, 0.25]
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    small = psi(reference, [0.3, 0.2, 0.25, 0.25])
    large = psi(reference, [0.55, 0.05, 0.2, 0.2])
    # By hand: sum((c - r) * ln(c / r)).
    assert small == pytest.approx(0.05 * np.log(0.3 / 0.25) - 0.05 * np.log(0.2 / 0.25))
    assert 0 < small < 0.1
    assert large > 0.25


def test_bins_cut_between_values_never_on_one():
    from abm_ml.monitoring.profile import quantile_edges

    rng = np.random.default_rng(2)
    visits = rng.poisson(1.5, 5000).astype(float)  # counts: every value is a point mass
    edges = quantile_edges(visits)
    assert edges and all(edge % 1 == 0.5 for edge in edges)
    # Every bin holds rows (repeated quantiles collapse), and a constant gives one bin.
    counts = np.bincount(np.searchsorted(edges, visits, side="right"))
    assert (counts > 0).all() and len(counts) == len(edges) + 1
    assert quantile_edges(np.full(100, 7.0)) == []


def _pairwise_expected_auc(p: np.ndarray) -> float:
    """The estimate's definition, pair by pair (O(n^2)): the reference for the fast version."""
    won = p[:, None] * (1 - p[None, :])
    np.fill_diagonal(won, 0.0)
    order = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
    return float((won * order).sum() / won.sum())


def test_expected_auc_matches_its_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    p = np.round(rng.beta(2, 5, 300), 2)  # rounded: many ties
    assert expected_roc_auc(p) == pytest.approx(_pairwise_expected_auc(p), abs=1e-12)


def test_expected_auc_is_the_mean_auc_of_labels_drawn_from_calibrated_scores():
    rng = np.random.default_rng(1)
    p = rng.beta(1.5, 4, 2000)
    draws = [roc_auc_score(rng.random(p.size) < p, p) for _ in range(300)]
    assert expected_roc_auc(p) == pytest.approx(np.mean(draws), abs=0.004)
    # Scores that cannot rank (all equal) give 0.5, not a number that looks like skill.
    assert expected_roc_auc(np.full(50, 0.3)) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# A synthetic world, trained once
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    """A 2,000-account world, a real model trained on its opportunities, its training profile."""
    from abm_ml import config as cfg
    from abm_ml.data.spec import load_spec
    from abm_ml.data.validate import load_dataset
    from abm_ml.features.point_in_time import build_training_rows
    from abm_ml.modeling.train import train_models
    from abm_ml.synthetic.generate import generate_world

    folder = tmp_path_factory.mktemp("world")
    world = generate_world(n_accounts=2000, seed=11)
    build_training_rows(world).to_parquet(folder / "training_rows.parquet", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ABM_ML_SYNTH_DIR", str(folder))
        dataset = load_dataset(load_spec(cfg.specs_dir() / "synthetic-abm.yaml"))
    result = train_models(dataset, small_train_config())
    result.scorer.metadata[METADATA_KEY] = training_profile(result).to_dict()
    return world, result


def _scoring_rows(world, as_of: str) -> pd.DataFrame:
    from abm_ml.features.point_in_time import build_scoring_rows

    return build_scoring_rows(world, as_of)


def test_training_profile_travels_with_the_model_and_round_trips(world_model):
    _, result = world_model
    profile = reference_of(result.scorer)
    assert profile is not None and profile.population == TRAINING
    assert set(profile.features) == set(result.scorer.feature_names)
    for feature in profile.features.values():
        assert sum(feature.shares) == pytest.approx(1.0)
    region = profile.features["region"]
    # Every region is frequent: a bin each, then the (empty) rare, unseen and missing bins.
    assert region.labels[:-3] == result.scorer.preprocessor.categories_["region"]
    assert region.labels[-3:] == [RARE, UNSEEN, MISSING]
    assert region.unseen_share == 0.0 and region.shares[-3] == 0.0
    assert profile.thresholds == MonitoringSpec().model_dump()
    assert Profile.from_dict(profile.to_dict()) == profile


def test_a_fall_of_the_estimated_roc_auc_alone_alarms_at_its_limit(world_model, tmp_path):
    """No input drifted beyond its limit, but the ROC AUC the model's own probabilities imply
    fell: an alarm at a limit below the fall, none at one above it."""
    world, result = world_model
    march, june = (_scoring_rows(world, d) for d in ("2026-03-31", "2026-06-30"))
    verdicts = {}
    for limit in (0.02, 0.2):
        store = ProfileStore(tmp_path / str(limit), "abm", "1")
        limits = MonitoringSpec(auc_drop=limit)
        before = monitor_accounts(
            result.scorer, march, as_of="2026-03-31", store=store, thresholds=limits
        )
        after = monitor_accounts(
            result.scorer, june, as_of="2026-06-30", store=store, thresholds=limits
        )
        fall = before.current.estimated_roc_auc - after.current.estimated_roc_auc
        assert 0.02 < fall < 0.2
        verdicts[limit] = (after.verdict, after.reasons)
    assert verdicts[0.2] == (OK, [])
    verdict, reasons = verdicts[0.02]
    assert verdict == DRIFT and len(reasons) == 1
    assert reasons[0].startswith("estimated ROC AUC") and "(limit 0.02)" in reasons[0]


def test_monitor_flags_exactly_the_shifted_region_and_the_new_industry(world_model, tmp_path):
    world, result = world_model
    scorer = result.scorer
    store = ProfileStore(tmp_path, "abm", "1")
    # This test is about the inputs. The world's open accounts age from quarter to quarter
    # and the ROC AUC estimated without labels falls with them: 0.76 to 0.71-0.72 from March
    # to June, with the model refitted on the split's fit rows or on train + validation alone,
    # at the default limit's edge (0.05). That alarm has its own test below.
    limits = MonitoringSpec(auc_drop=0.1)

    first = monitor_accounts(
        scorer,
        _scoring_rows(world, "2026-03-31"),
        as_of="2026-03-31",
        store=store,
        thresholds=limits,
    )
    # Accounts today are not opportunities at creation: a large, known difference...
    assert first.reference == TRAINING
    assert first.table["psi_vs_training"].max() > 1.0
    # ...that is shown and never alarms.
    assert first.verdict == OK, first.reasons

    later = _scoring_rows(world, "2026-06-30")
    second = monitor_accounts(scorer, later, as_of="2026-06-30", store=store, thresholds=limits)
    assert second.reference == f"{SCORING} of 2026-03-31"
    assert second.verdict == OK, second.reasons

    rng = np.random.default_rng(5)
    shifted = later.copy()
    rarest = shifted["region"].value_counts().index[-1]
    shifted.loc[rng.random(len(shifted)) < 0.4, "region"] = rarest
    shifted.loc[rng.random(len(shifted)) < 0.12, "industry"] = "space_mining"
    third = monitor_accounts(scorer, shifted, as_of="2026-07-31", store=store, thresholds=limits)
    assert third.verdict == DRIFT
    assert sorted(third.flagged) == ["industry", "region"]
    rows = third.table.set_index("feature")
    assert rows.loc["industry", "unseen_now"] == pytest.approx(0.12, abs=0.02)
    assert rows.loc["region", "unseen_now"] == 0.0
    assert (
        "never saw" in rows.loc["industry", "why"] and "never saw" not in rows.loc["region", "why"]
    )
    # The first run stays the reference ("first" is the default).
    assert third.reference == f"{SCORING} of 2026-03-31"
    assert store.dates() == ["2026-03-31", "2026-06-30", "2026-07-31"]

    json_path, html_path = write_outputs(third, tmp_path / "out", stem="monitor")
    assert '"verdict": "drift"' in json_path.read_text()
    page = html_path.read_text()
    assert 'data-feature="industry" data-status="drift"' in page


def test_a_new_category_alarms_even_on_the_first_run(world_model, tmp_path):
    """Never-seen categories are a fact about the model, whatever population it is compared with."""
    world, result = world_model
    rows = _scoring_rows(world, "2026-03-31")
    rows["source"] = "partner_marketplace"
    verdict = monitor_accounts(
        result.scorer, rows, as_of="2026-03-31", store=ProfileStore(tmp_path, "abm", "1")
    )
    assert verdict.reference == TRAINING
    assert verdict.flagged == ["source"]


def test_previous_reference_and_a_missing_value_jump(world_model, tmp_path):
    world, result = world_model
    store = ProfileStore(tmp_path, "abm", "1")
    limits = MonitoringSpec(reference="previous", missing_increase=0.2)
    rows = _scoring_rows(world, "2026-06-30")
    for as_of in ("2026-04-30", "2026-05-31"):
        monitor_accounts(result.scorer, rows, as_of=as_of, store=store, thresholds=limits)
    blanked = rows.copy()
    blanked.loc[blanked.index[: len(blanked) // 2], "employees"] = np.nan
    verdict = monitor_accounts(
        result.scorer, blanked, as_of="2026-06-30", store=store, thresholds=limits
    )
    assert verdict.reference == f"{SCORING} of 2026-05-31"
    assert "employees" in verdict.flagged
    assert "missing 0.0% -> 50.0%" in verdict.table.set_index("feature").loc["employees", "why"]


def test_a_model_without_a_profile_is_refused_with_a_clear_message(world_model, tmp_path):
    from abm_ml.errors import AbmInputError

    world, result = world_model
    import copy

    scorer = copy.copy(result.scorer)
    scorer.metadata = {k: v for k, v in result.scorer.metadata.items() if k != METADATA_KEY}
    with pytest.raises(AbmInputError, match="retrain"):
        monitor_accounts(
            scorer,
            _scoring_rows(world, "2026-03-31"),
            as_of="2026-03-31",
            store=ProfileStore(Path(tmp_path), "a", "1"),
        )


# --------------------------------------------------------------------------------------------
# Backtest: scored at one date, outcomes revealed later
# --------------------------------------------------------------------------------------------


def test_backtest_win_rates_per_tier_equal_a_direct_computation(world_model, tmp_path):
    from abm_ml.modeling.ranking import rank_accounts
    from abm_ml.monitoring.backtest import account_outcomes, run_backtest, select_run
    from abm_ml.reporting.history import load_history, record_run
    from abm_ml.reporting.monitoring_report import backtest_report

    world, result = world_model
    as_of = "2025-12-31"
    ranked = rank_accounts(
        result.scorer,
        _scoring_rows(world, as_of),
        tiers=(20, 100, 400),
        as_of=as_of,
        model_version="1",
    ).ranked
    url = f"sqlite:///{tmp_path / 'history.db'}"
    record_run(ranked, url)
    # A later run of the same model must not be picked for --since before it.
    later = ranked.assign(as_of="2026-03-31")
    record_run(later, url)

    run = select_run(load_history(url), since="2025-12-01")
    assert set(run["as_of"]) == {as_of} and len(run) == len(ranked)
    outcomes = account_outcomes(result.dataset.frame, as_of)
    backtest = run_backtest(run, outcomes, reasons=ranked)

    # Direct computation from the world's own opportunity table.
    opp = world.opportunities
    closed = pd.to_datetime(opp["closed_at"])
    won_after = opp[(opp["outcome"].astype(str) == "won") & (closed > pd.Timestamp(as_of))]
    buyers = set(won_after["account_id"].astype(str))
    revenue = won_after.assign(a=won_after["account_id"].astype(str)).groupby("a")["amount"].sum()
    truth = ranked.assign(
        won=ranked["account_id"].astype(str).isin(buyers),
        revenue=ranked["account_id"].astype(str).map(revenue).fillna(0.0),
    )
    expected = truth.groupby("abm_tier")["won"].mean()
    got = backtest.tiers.set_index("abm_tier")
    assert list(got.index) == ["1:1", "1:few", "1:many", "nurture"]
    for tier, rate in expected.items():
        assert got.loc[tier, "win_rate"] == pytest.approx(rate), tier
        assert got.loc[tier, "won_revenue"] == pytest.approx(
            truth.loc[truth["abm_tier"] == tier, "revenue"].sum()
        )
    assert backtest.won_accounts == int(truth["won"].sum()) > 0
    assert backtest.roc_auc == pytest.approx(roc_auc_score(truth["won"], truth["propensity"]))
    assert got["share_of_won_revenue"].sum() == pytest.approx(1.0)
    # The ranking works on this world: the top decile buys more often than the bottom one.
    deciles = backtest.deciles.set_index("decile")["win_rate"]
    assert deciles.loc[1] > deciles.loc[10]
    # The review list: won accounts left in nurture, with the reasons the run gave them.
    missed = backtest.false_negatives
    assert set(missed["abm_tier"]) <= {"nurture"} and len(missed) > 0
    assert set(missed["account_id"]) <= buyers
    assert missed["top_reasons"].notna().all()
    assert "1:1 (20 accounts) held" in backtest.capture_lines()[0]
    page = backtest_report(backtest, tmp_path / "backtest.html").read_text()
    assert 'id="tiers-table"' in page and 'id="false-negatives-table"' in page


# --------------------------------------------------------------------------------------------
# Both pages in a real browser
# --------------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.mark.slow
def test_monitoring_and_backtest_pages_render_in_headless_chromium(world_model, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install the 'chromium' package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from abm_ml.modeling.ranking import rank_accounts
    from abm_ml.monitoring.backtest import account_outcomes, run_backtest
    from abm_ml.reporting.monitoring_report import backtest_report

    world, result = world_model
    store = ProfileStore(tmp_path, "abm", "1")
    rows = _scoring_rows(world, "2026-03-31")
    monitor_accounts(result.scorer, rows, as_of="2026-03-31", store=store)
    shifted = rows.assign(source="<script>alert(1)</script>")
    drift = monitor_accounts(result.scorer, shifted, as_of="2026-04-30", store=store)
    _, monitor_html = write_outputs(drift, tmp_path, stem="monitor")
    ranked = rank_accounts(result.scorer, rows, as_of="2026-03-31", model_version="1").ranked
    backtest = run_backtest(
        ranked.assign(as_of="2026-03-31"),
        account_outcomes(result.dataset.frame, "2026-03-31"),
        # Reasons quote CRM values: the page must show this, never run it.
        reasons=ranked.assign(top_reasons='<img src=x onerror="alert(1)">'),
    )
    backtest_html = backtest_report(backtest, tmp_path / "backtest.html")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(monitor_html.as_uri(), wait_until="load")
            assert page.title() == "Input monitoring, 2026-04-30"
            assert page.locator("#verdict").is_visible()
            assert "drift" in page.locator("#verdict").inner_text().lower()
            assert page.locator("#reference").inner_text() == "scoring run of 2026-03-31"
            flagged = page.locator('#drift-table tr[data-status="drift"]')
            assert flagged.count() == 1
            assert flagged.first.get_attribute("data-feature") == "source"
            assert page.locator("#drift-table tbody tr").count() == len(drift.table)
            page.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)

            page.goto(backtest_html.as_uri(), wait_until="load")
            assert page.title() == "Backtest of the scores issued 2026-03-31"
            assert page.locator("#tiers-table tbody tr").count() == 4
            assert page.locator("#deciles-table tbody tr").count() == 10
            missed = page.locator("#false-negatives-table tbody tr")
            assert missed.count() == len(backtest.false_negatives) > 0
            assert 'onerror="alert(1)"' in missed.first.inner_text()
            page.screenshot(path=str(tmp_path / "backtest.png"), full_page=True)
        finally:
            browser.close()
    assert not dialogs  # a CRM value is shown, never run
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    for name in ("monitor.png", "backtest.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def _issued_run(accounts: list[str], as_of: str) -> pd.DataFrame:
    """Four accounts' scores as the score history stores one run of model version 3."""
    return pd.DataFrame(
        {
            "account_id": accounts,
            "rank": [1, 2, 3, 4],
            "abm_tier": ["1:1", "1:few", "nurture", "nurture"],
            "score": [80, 50, 10, 5],
            "propensity": [0.8, 0.5, 0.1, 0.05],
            "model_version": "3",
            "as_of": as_of,
        }
    )


def test_backtest_counts_what_it_cannot_match_and_refuses_undated_outcomes():
    from abm_ml.errors import AbmInputError
    from abm_ml.monitoring.backtest import account_outcomes, run_backtest

    run = _issued_run(["a", "b", "c", "d"], "2026-01-01")
    deals = pd.DataFrame(
        {
            "account_id": ["a", "a", "c", None, "zz", "b"],
            "outcome": ["won", "won", "won", "won", "won", "won"],
            "closed_at": pd.to_datetime(
                ["2026-02-01", "2025-12-01", "2026-03-01", "2026-02-01", "2026-02-01", None]
            ),
            "created_at": pd.to_datetime(["2025-11-01"] * 5 + ["2026-01-15"]),
            "amount": [100.0, 999.0, 50.0, 10.0, 5.0, 30.0],
        }
    )
    outcomes = account_outcomes(deals, "2026-01-01")
    # a: only the deal closed after the date; b: no close date, created after it; c: won.
    assert outcomes.won_deals_without_account == 1
    backtest = run_backtest(run, outcomes)
    tiers = backtest.tiers.set_index("abm_tier")
    assert tiers.loc["1:1", "won_revenue"] == 100.0
    assert tiers.loc["1:few", "won_revenue"] == 30.0
    assert tiers.loc["nurture", "win_rate"] == 0.5
    assert list(backtest.false_negatives["account_id"]) == ["c"]
    assert "1 accounts won a deal without being in this run" in backtest.note
    assert "1 won deals have no account id" in backtest.note
    with pytest.raises(AbmInputError, match="no dates"):
        account_outcomes(deals.drop(columns=["closed_at", "created_at"]), "2026-01-01")


def test_a_backtest_whose_won_accounts_match_no_scored_account_is_refused():
    """The outcomes name accounts one way ("001A1", a Salesforce id), the scores another
    ("A1"): not one won account joins, and a table of zeros would look like a measured result."""
    from abm_ml.errors import AbmInputError
    from abm_ml.monitoring.backtest import account_outcomes, run_backtest

    run = _issued_run(["A1", "A2", "A3", "A4"], "2026-01-31")
    deals = pd.DataFrame(
        {
            "account_id": ["001A1", "001A3", "001A2"],
            "outcome": ["won", "won", "lost"],
            "closed_at": pd.to_datetime(["2026-02-10", "2026-03-01", "2026-02-20"]),
        }
    )
    with pytest.raises(AbmInputError) as refused:
        run_backtest(run, account_outcomes(deals, "2026-01-31", source="later.csv"))
    message = str(refused.value)
    assert "later.csv" in message and "account ids differ" in message
    assert "'001A1'" in message and "'A1'" in message
    # The same ids on both sides: measured, and the one won account outside the run is noted.
    deals["account_id"] = ["A1", "A9", "A2"]
    backtest = run_backtest(run, account_outcomes(deals, "2026-01-31"))
    assert backtest.won_accounts == 1 and backtest.unscored_won_accounts == 1


def test_a_column_of_many_rare_values_does_not_drift_between_halves_of_the_same_rows():
    """A bin per category made two random halves of one column of 500 values, most seen once
    or twice, read as a major drift (PSI > 0.25). Rare categories now share one bin."""
    from abm_ml.monitoring.profile import _categorical
    from abm_ml.monitoring.stats import psi

    rng = np.random.default_rng(0)
    common = [f"/page-{i}" for i in range(10)]
    values = np.where(
        rng.random(6000) < 0.6,
        rng.choice(common, 6000),
        np.array([f"/page-{i}" for i in rng.integers(10, 500, 6000)]),
    )
    pages = pd.Series(values, dtype=object)
    categories = sorted(set(values))
    training = _categorical("page", pages[:3000], categories)
    assert training.labels[:-3] == sorted(common) and training.labels[-3] == RARE
    later = _categorical("page", pages[3000:], categories, training)
    assert later.labels == training.labels
    assert psi(training.shares, later.shares) < 0.05
    # A value the model never saw is unseen, not rare; a blank is missing.
    fresh = _categorical("page", pd.Series(["/new", None, "/page-499"]), categories, training)
    assert fresh.unseen_share == pytest.approx(1 / 3) and fresh.missing_share == pytest.approx(
        1 / 3
    )
    assert fresh.shares[-3] == pytest.approx(1 / 3)


def test_a_profile_made_before_the_rare_bin_keeps_its_bins():
    """A reference stored before the rare bin had one bin per model category: later runs of
    that model are profiled on those same bins, so their shares still compare one to one."""
    from abm_ml.monitoring.profile import FeatureProfile, _categorical

    categories = ["a", "b", "c"]
    stored = FeatureProfile(
        "x", "categorical", [*categories, UNSEEN, MISSING], [0.5, 0.3, 0.1, 0, 0.1]
    )
    now = _categorical("x", pd.Series(["a", "c", "z", None]), categories, stored)
    assert now.labels == stored.labels
    assert now.shares == [0.25, 0.0, 0.25, 0.25, 0.25]
