"""The pages through an ASGI client: list, filters, sort, paging, CSV, account page, access.

Every expectation is computed from the ranked frames the real ranker produced (conftest), not
from the pages' own SQL, so a wrong join, filter, order or page cut fails here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from abm_ml.web.queries import CSV_COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HTMX = {"HX-Request": "true", "HX-Target": "rows"}


def ids_in(html: str) -> list[str]:
    return re.findall(r'class="account" href="/accounts/([^"]+)"', html)


def total_in(html: str) -> int:
    return int(re.search(r'<span id="total">([\d,]+)</span>', html).group(1).replace(",", ""))


@pytest.fixture(scope="module")
def latest(ranked_runs) -> pd.DataFrame:
    frame = ranked_runs["second"].copy()
    frame["account_id"] = frame["account_id"].astype(str)
    return frame.sort_values("rank").reset_index(drop=True)


def test_list_is_the_latest_run_in_rank_order(pages, latest):
    r = pages.get("/")
    assert r.status_code == 200
    assert "as of <strong>2026-01-12</strong>, model v2" in r.text
    assert total_in(r.text) == len(latest)
    assert ids_in(r.text) == latest["account_id"].head(50).tolist()
    assert "content-security-policy" in r.headers
    assert "script-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("params", "column", "value"),
    [
        ({"tier": "1:1"}, "abm_tier", "1:1"),
        ({"tier": "1:few"}, "abm_tier", "1:few"),
        ({"segment": "smb"}, "segment", "smb"),
        ({"region": "EMEA"}, "region", "EMEA"),
        ({"owner": "rep-3"}, "owner", "rep-3"),
    ],
)
def test_filters_match_the_ranked_frame(pages, latest, params, column, value):
    r = pages.get("/", params={**params, "size": 200})
    expected = latest[latest[column].astype(str) == value]
    assert total_in(r.text) == len(expected)
    assert ids_in(r.text) == expected["account_id"].head(200).tolist()


def test_movement_filters_and_sort(pages, latest, ranked_runs):
    change = latest["score"] - latest["previous_score"].astype(float)
    order = {"1:1": 0, "1:few": 1, "1:many": 2, "nurture": 3}
    now = latest["abm_tier"].map(order)
    before = latest["previous_abm_tier"].map(order)
    up = latest[(change > 0) | (now < before)]
    down = latest[(change < 0) | (now > before)]
    assert len(up) > 0 and len(down) > 0
    # The planted boost moved the boosted accounts up.
    assert ranked_runs["boosted"] & set(up["account_id"])

    r = pages.get("/", params={"move": "up", "size": 200})
    assert total_in(r.text) == len(up)
    assert set(ids_in(r.text)) == set(up["account_id"].head(200))
    r = pages.get("/", params={"move": "down", "size": 200})
    assert total_in(r.text) == len(down)

    entered = latest[
        (latest["abm_tier"] != latest["previous_abm_tier"]) & (latest["abm_tier"] != "nurture")
    ]
    r = pages.get("/", params={"move": "new_in_tier", "size": 200})
    assert set(ids_in(r.text)) == set(entered["account_id"])

    r = pages.get("/", params={"sort": "movement", "size": 25})
    shown = ids_in(r.text)
    by_id = dict(zip(latest["account_id"], change))
    assert by_id[shown[0]] == change.max()
    assert [by_id[i] for i in shown] == sorted((by_id[i] for i in shown), reverse=True)
    assert "entered" in r.text or "▲" in r.text


@pytest.mark.parametrize("sort", ["propensity", "expected_value"])
def test_sort_by_a_column(pages, latest, sort):
    r = pages.get("/", params={"sort": sort, "size": 25})
    expected = latest.sort_values([sort, "rank"], ascending=[False, True])
    assert ids_in(r.text) == expected["account_id"].head(25).tolist()


def test_paging_and_htmx_fragment(pages, latest):
    r = pages.get("/", params={"page": 2, "size": 25}, headers=HTMX)
    assert r.status_code == 200
    assert r.text.lstrip().startswith('<section id="rows"')
    assert "<html" not in r.text
    assert ids_in(r.text) == latest["account_id"].iloc[25:50].tolist()
    assert 'rel="next"' in r.text and 'rel="prev"' in r.text
    # A page past the end shows the last page, not an empty table or an error.
    r = pages.get("/", params={"page": 999, "size": 100})
    assert ids_in(r.text) == latest["account_id"].iloc[300:400].tolist()


def test_search_by_id_escapes_like_wildcards(pages, latest):
    target = latest["account_id"].iloc[17]
    r = pages.get("/", params={"q": target.lower()})
    assert target in ids_in(r.text)
    assert all(target.lower() in i.lower() for i in ids_in(r.text))
    r = pages.get("/", params={"q": "%"})
    assert total_in(r.text) == 0


def test_bad_parameters_are_messages_and_html_is_escaped(pages):
    r = pages.get("/", params={"tier": "<script>x</script>", "size": "abc", "q": "<b>hi"})
    assert r.status_code == 200
    assert "<script>x</script>" not in r.text and "&lt;b&gt;hi" in r.text
    assert "unknown tier" in r.text and "size must be a whole number" in r.text


def test_csv_download_is_the_filtered_view(pages, latest):
    r = pages.get("/accounts.csv", params={"tier": "1:many", "sort": "propensity"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    expected = latest[latest["abm_tier"] == "1:many"].sort_values(
        ["propensity", "rank"], ascending=[False, True]
    )
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [row["account_id"] for row in rows] == expected["account_id"].tolist()
    assert [int(row["score"]) for row in rows] == expected["score"].tolist()
    assert rows[0]["top_reasons"] == expected["top_reasons"].iloc[0].replace("+ ", "'+ ", 1)


def test_account_page_shows_reasons_days_and_history(pages, latest):
    row = latest.iloc[0]
    r = pages.get(f"/accounts/{row['account_id']}")
    assert r.status_code == 200
    reasons = row["reasons"]["up"] + row["reasons"]["down"]
    for reason in reasons:
        assert reason["text"] in r.text
    assert r.text.count('<tr class="up">') == len(row["reasons"]["up"])
    # Score over the two runs: two points, a line, and the table.
    chart = r.text.split('id="history-chart"')[1].split("</figure>")[0]
    assert chart.count("<circle") == 2 and "<polyline" in chart
    assert "2026-01-05" in r.text and "2026-01-12" in r.text
    assert f"P50 {row['days_to_close_p50']:,.0f}" in r.text


def test_unknown_account_is_a_404_page(pages):
    r = pages.get("/accounts/NO-SUCH-ACCOUNT")
    assert r.status_code == 404 and "No account NO-SUCH-ACCOUNT" in r.text


def test_no_history_yet_is_a_page_not_an_error(tmp_path):
    from starlette.testclient import TestClient

    from abm_ml.web import create_app

    url = f"sqlite:///{tmp_path / 'missing.db'}"
    with TestClient(create_app(history_url=url, token="")) as client:
        r = client.get("/")
    assert r.status_code == 200 and "Nothing to show yet" in r.text
    assert not (tmp_path / "missing.db").exists()


def test_vendored_htmx_is_the_recorded_file(pages):
    static = Path(__file__).resolve().parents[2] / "src/abm_ml/web/static"
    recorded = re.search(r"sha256 `([0-9a-f]{64})`", (static / "htmx.SOURCE.md").read_text())
    assert hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest() == recorded.group(1)
    r = pages.get("/static/htmx.min.js")
    assert r.status_code == 200 and "htmx" in r.text[:2000]


def test_search_by_name_ignores_case_and_takes_wildcards_literally(ranked_runs, tmp_path):
    from starlette.testclient import TestClient

    from abm_ml.reporting.history import record_run
    from abm_ml.web import create_app

    run = ranked_runs["second"].drop(columns=["movement", "previous_score"], errors="ignore")
    run = run.assign(account_name=[f"Company {i}" for i in range(len(run))])
    run.loc[run.index[7], "account_name"] = "ACME 50% Holdings"
    run.loc[run.index[9], "account_name"] = "Acme5 Holdings"
    url = f"sqlite:///{tmp_path / 'names.db'}"
    record_run(run, url)
    with TestClient(create_app(history_url=url, token="")) as client:
        both = ids_in(client.get("/", params={"q": "acme"}).text)
        literal = client.get("/", params={"q": "acme 50%"}).text
    named = run["account_id"].astype(str)
    assert sorted(both) == sorted([named.iloc[7], named.iloc[9]])
    assert ids_in(literal) == [named.iloc[7]]
    assert "ACME 50% Holdings" in literal
