"""HTML reports: the numbers they show, their safety, and that a real browser renders them."""

from __future__ import annotations

import dataclasses
import html
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from abm_ml.modeling.ranking import RankResult, rank_accounts
from abm_ml.modeling.train import MODEL_NAME
from abm_ml.registry.card import model_card, verdict
from abm_ml.reporting import formatting
from abm_ml.reporting import ranking_report as ranking_page
from abm_ml.reporting import training_report as training_page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOP = 40
EVIL_ID = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


# ---------------------------------------------------------------------------------------------
# Fixtures: one real training report and one real ranking, built once per module
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_html(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = training_page.training_report(
        trained, tmp_path_factory.mktemp("training") / "training.html", run_id="run123", version="7"
    )
    return path, _text(path)


@pytest.fixture(scope="module")
def ranking(trained) -> RankResult:
    # Holdout rows as accounts: repeated account ids give an unscorable table too.
    accounts = trained.holdout.drop(columns=["outcome"])
    result = rank_accounts(
        trained.scorer,
        accounts,
        tiers=(5, 15, 30),
        model_name="abm-ml",
        model_version="7",
        as_of="2026-01-15",
    )
    assert len(result.ranked) > TOP and len(result.unscorable) > 0
    return result


@pytest.fixture(scope="module")
def ranking_html(ranking, trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = ranking_page.ranking_report(
        ranking,
        tmp_path_factory.mktemp("ranking") / "ranking.html",
        model_card_md=model_card(trained, version="7"),
        top=TOP,
    )
    return path, _text(path)


def _text(path: Path) -> str:
    # Percentages carry a no-break space before the sign; compare with plain spaces.
    return path.read_text(encoding="utf-8").replace("\u00a0", " ")


def _cell(page: str, model: str, metric: str) -> str:
    match = re.search(
        rf'<td class="metric[^"]*" data-model="{re.escape(model)}" data-metric="{metric}">(.*?)</td>',
        page,
        re.DOTALL,
    )
    assert match, f"no cell for {model} / {metric}"
    return match.group(1)


class _RankedRows(HTMLParser):
    """Text of each cell of each body row of ``<table id="ranked">``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == "ranked":
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._in_table:
            self._in_table = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _ranked_rows(page: str) -> list[list[str]]:
    parser = _RankedRows()
    parser.feed(page)
    return parser.rows


def _expected_share(score: np.ndarray, value: np.ndarray, k: int) -> float:
    """Share of ``value`` in the top ``k`` by score, ties split evenly (expected random tie-break)."""
    frame = pd.DataFrame({"score": score, "value": value})
    groups = frame.groupby("score")["value"].agg(["sum", "size"]).sort_index(ascending=False)
    before = groups["size"].cumsum() - groups["size"]
    taken = np.clip(k - before, 0, groups["size"])
    return float((taken / groups["size"] * groups["sum"]).sum() / frame["value"].sum())


# ---------------------------------------------------------------------------------------------
# Training report
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_report_shows_every_metric_with_its_interval_for_model_and_baselines(
    trained, training_html
):
    _, page = training_html
    for model in (MODEL_NAME, "logistic_regression", "rule_based_fit"):
        for name in (
            "roc_auc",
            "pr_auc",
            "brier",
            "log_loss",
            "ece",
            "lift_top_decile",
            "precision_at_k",
            "recall_at_k",
        ):
            metric = trained.propensity[model][name]
            cell = _cell(page, model, name)
            assert f">{metric.value:.3f}<" in cell, (model, name, cell)
            assert f"[{metric.low:.3f}, {metric.high:.3f}]" in cell, (model, name, cell)
    for model in trained.velocity:
        metric = trained.velocity[model]["mae_days"]
        assert f"[{metric.low:.3f}, {metric.high:.3f}]" in _cell(page, model, "mae_days")
    # The best ROC AUC is highlighted, and only there.
    aucs = {
        m: trained.propensity[m]["roc_auc"].value
        for m in (MODEL_NAME, "logistic_regression", "rule_based_fit")
    }
    best = max(aucs, key=aucs.get)
    for model in aucs:
        marked = f'<td class="metric best" data-model="{model}" data-metric="roc_auc">' in page
        assert marked == (model == best)


@pytest.mark.slow
def test_training_report_capacity_sentence_matches_the_holdout(trained, training_html):
    _, page = training_html
    predictions = trained.holdout_predictions
    won = predictions["won"].to_numpy()
    amounts = trained.holdout["amount"].to_numpy(dtype=float)
    assert np.isfinite(amounts).all(), (
        "the fixture's holdout has amounts, so revenue is the measure"
    )
    n = len(won)
    k = 50
    revenue = _expected_share(predictions[MODEL_NAME].to_numpy(), won * amounts, k)
    wins = _expected_share(predictions[MODEL_NAME].to_numpy(), won.astype(float), k)
    sentence = (
        f"Working the top 50 accounts would have reached {revenue * 100:.1f} % of won revenue "
        f"({wins * 100:.1f} % of wins); random picking would reach about {k / n * 100:.1f} %."
    )
    assert sentence in page
    # 10 % of the holdout is analysed too, and capacities beyond the holdout are capped.
    decile = -(-n // 10)
    assert f"Working the top {decile} accounts would have reached" in page
    assert f'data-k="{n}"' in page and 'data-k="500"' not in page


@pytest.mark.slow
def test_training_report_has_the_verdict_data_and_charts(trained, training_html):
    _, page = training_html
    assert html.escape(verdict(trained), quote=False) in page
    assert ('class="banner danger"' in page) == trained.no_better_than_chance
    summary = trained.dataset.summary
    assert f"{summary.rows_read:,}" in page and "Leakage guard" in page
    assert f"{trained.split.describe()['n_test']:,}" in page
    # Calibration, gains, velocity residuals, SHAP summary and importance at least.
    assert page.count('<img src="data:image/png;base64,') >= 5
    assert "<title>Training report: tiny-crm v7</title>" in page


def test_no_better_than_chance_gets_a_red_banner(trained, tmp_path, monkeypatch):
    # Charts are not under test here; skipping them keeps this test fast.
    monkeypatch.setattr(
        training_page,
        "_training_charts",
        lambda *a, **k: {"propensity": [], "velocity": [], "shap": []},
    )
    chance = dataclasses.replace(trained, no_better_than_chance=True)
    page = _text(training_page.training_report(chance, tmp_path / "chance.html"))
    assert 'class="banner danger"' in page and 'role="alert"' in page
    assert "NO BETTER THAN CHANCE" in page
    fine = _text(
        training_page.training_report(
            dataclasses.replace(trained, no_better_than_chance=False), tmp_path / "fine.html"
        )
    )
    assert 'class="banner danger"' not in fine


def test_capacity_falls_back_to_wins_without_amounts(trained):
    no_amounts = dataclasses.replace(trained, holdout=trained.holdout.assign(amount=np.nan))
    analysis = training_page.capacity_analysis(no_amounts)
    assert analysis["measure"] == "wins"
    won = trained.holdout_predictions["won"].to_numpy().astype(float)
    first = analysis["rows"][0]
    expected = _expected_share(trained.holdout_predictions[MODEL_NAME].to_numpy(), won, first["k"])
    assert first["share"] == pytest.approx(expected)
    assert analysis["sentences"][0].endswith(
        f"of wins; random picking would reach about {first['k'] / analysis['n'] * 100:.1f}\u00a0%."
    )


# ---------------------------------------------------------------------------------------------
# Ranking report
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ranking_report_lists_the_top_accounts_with_their_tiers(ranking, ranking_html):
    _, page = ranking_html
    rows = _ranked_rows(page)
    assert len(rows) == TOP
    top = ranking.ranked.head(TOP)
    for row, expected in zip(rows, top.itertuples()):
        # Cells: rank, account, ABM tier, score tier, ...
        assert row[0] == str(expected.rank)
        assert row[1] == expected.account_id
        assert row[2] == expected.abm_tier
        assert row[3] == expected.tier
    beyond = ranking.ranked["account_id"].iloc[TOP]
    assert beyond not in {r[1] for r in rows}
    assert f"{len(ranking.ranked):,}" in page and f"{len(ranking.unscorable):,}" in page
    assert "repeated account_id" in page
    assert (
        '<section class="model-card" id="card">' in page and "<table" in page.split('id="card"')[1]
    )


def test_ranking_report_escapes_crm_values(ranking, tmp_path):
    ranked = ranking.ranked.copy()
    ranked.loc[0, "account_id"] = EVIL_ID
    ranked["movement"] = [2, -1, np.nan] + [0] * (len(ranked) - 3)
    unscorable = ranking.unscorable.assign(reason="unparseable value in 'x': <b>bold</b>")
    page = _text(
        ranking_page.ranking_report(
            RankResult(ranked, unscorable, ranking.meta),
            tmp_path / "evil.html",
            model_card_md="# Card <i>x</i>\n\n- `<tag>` and **bold**",
            top=5,
        )
    )
    assert EVIL_ID not in page and "<b>bold</b>" not in page and "<i>x</i>" not in page
    # Shown as text: the parsed cell (after rank and movement) reads back exactly the id.
    assert _ranked_rows(page)[0][2] == EVIL_ID
    assert "<code>&lt;tag&gt;</code>" in page and "<strong>bold</strong>" in page
    assert "<script" not in page
    assert (
        '<span class="move up" aria-label="up 2">' in page
        and '<span class="move down" aria-label="down 1">' in page
    )


@pytest.mark.slow
def test_reports_load_nothing_from_the_network(training_html, ranking_html):
    for _, page in (training_html, ranking_html):
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page, re.IGNORECASE)
        assert "@import" not in page
        for src in re.findall(r'<img[^>]*\bsrc="([^"]*)"', page):
            assert src.startswith("data:image/png;base64,")


def test_markdown_subset_renders_tables_lists_and_headings():
    out = str(
        formatting.markdown_to_html(
            "# Title\n\n**Verdict.** ok `x<y`.\n\n- a\n- b\n\n1. one\n2. two\n\n| metric | m |\n|---|---|\n| auc | 0.8 |\n",
            heading_offset=1,
        )
    )
    assert "<h2>Title</h2>" in out
    assert "<p><strong>Verdict.</strong> ok <code>x&lt;y</code>.</p>" in out
    assert "<ul><li>a</li><li>b</li></ul>" in out and "<ol><li>one</li><li>two</li></ol>" in out
    assert '<th scope="col">metric</th>' in out and "<td>0.8</td>" in out and "---" not in out


def test_importing_the_reports_leaves_the_matplotlib_backend_alone():
    # A notebook user importing abm_ml must keep their backend (e.g. inline plots).
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import abm_ml.reporting.plots, abm_ml.reporting.training_report, abm_ml.reporting.ranking_report; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_numbers_are_formatted_for_humans():
    assert formatting.fmt_pct(0.4231) == "42.3\u00a0%"
    assert formatting.fmt_money(1234567.8) == "1,234,568"
    assert formatting.fmt_pct(float("nan")) == formatting.fmt_int(None) == "\u2013"


# ---------------------------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reports_render_in_headless_chromium(training_html, ranking_html, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing (install the 'chromium' package); Playwright's own browser cannot be downloaded here"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    # A launch failure with the browser present is a real failure, not a skip.
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))

            training_path, _ = training_html
            page.goto(training_path.as_uri(), wait_until="load")
            assert page.title() == "Training report: tiny-crm v7"
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            assert len(widths) >= 5 and all(w > 0 for w in widths), widths
            assert page.locator("#verdict").is_visible()
            assert page.locator("#propensity-metrics tbody tr").count() >= 8
            page.screenshot(path=str(tmp_path / "training.png"), full_page=True)

            ranking_path, _ = ranking_html
            page.goto(ranking_path.as_uri(), wait_until="load")
            assert page.title() == "Account ranking: abm-ml v7, 2026-01-15"
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            assert len(widths) >= 1 and all(w > 0 for w in widths), widths
            assert page.locator("table#ranked tbody tr").count() == TOP
            # The ranked table fits the page: no sideways scrolling at a laptop width.
            wrap = page.locator(".table-wrap", has=page.locator("table#ranked"))
            assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth")
            page.screenshot(path=str(tmp_path / "ranking.png"), full_page=True)
        finally:
            browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    for name in ("training.png", "ranking.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_training_report_shows_leakage_warnings_and_refusals(trained, tmp_path, monkeypatch):
    from abm_ml.data.leakage import LeakFinding

    monkeypatch.setattr(
        training_page,
        "_training_charts",
        lambda *a, **k: {"propensity": [], "velocity": [], "shap": []},
    )
    feature = trained.scorer.features[0]
    findings = [
        LeakFinding(
            feature.name,
            "Deal Tags",
            "suspicious",
            "alone it separates won from lost with ROC AUC 0.925",
            False,
            "warn",
            0.925,
        ),
        LeakFinding("discount", "Discount", "missingness", "blank for 86% of lost", False),
    ]
    warned = dataclasses.replace(trained, leak_findings=findings)
    page = _text(training_page.training_report(warned, tmp_path / "leaks.html"))
    assert "ROC AUC 0.925" in page and "kept, suspicious: check it" in page
    assert "refused as a feature" in page
    # A warned feature is still used by the model.
    status = {f["name"]: f["status"] for f in training_page._data_summary(warned)["features"]}
    assert status[feature.name] == "used"


def test_shap_charts_of_a_feature_blank_in_every_row_warn_nothing(tmp_path):
    """A blank column (validation notes it) reaches the charts; numpy's All-NaN warning must
    not reach the user's terminal, and every chart is still drawn."""
    import warnings

    from abm_ml.reporting import plots

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"visits": rng.poisson(3, 200).astype(float), "empty": np.nan})
    values = np.column_stack([rng.normal(size=200), np.zeros(200)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        paths = plots.shap_plots(values, data, np.zeros(200), tmp_path, top=2)
    assert {p.name for p in paths} >= {"shap_summary.png", "shap_importance.png"}
    assert all(p.stat().st_size > 0 for p in paths)
