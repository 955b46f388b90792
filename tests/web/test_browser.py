"""A person's walk through the pages in Debian's Chromium, against a real ``abm-ml serve``.

The server is started the way a user starts it (``abm-ml serve --model champion`` with
``ABM_ML_API_TOKEN`` set and the score history of the conftest runs) on a free loopback port,
and stopped by the test. Screenshots are written to the test's tmp folder, or to
``ABM_ML_SCREENSHOTS_DIR`` when set.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import httpx
import pytest

from abm_ml.service.settings import ENV_API_TOKEN, ENV_BENTO_MODEL
from abm_ml.testing import free_port, start_server, stop_server, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TOKEN = "browser-token-5e0c"


@pytest.fixture(scope="module")
def server(deployed, ranked_runs, tmp_path_factory):
    """``abm-ml serve`` with the token and the history, from a folder outside the checkout."""
    where = tmp_path_factory.mktemp("web-server")
    log = where / "server.log"
    port = free_port()
    env = {**os.environ, ENV_API_TOKEN: TOKEN, "ABM_ML_HISTORY_URL": ranked_runs["url"]}
    env.pop(ENV_BENTO_MODEL, None)
    cli = Path(sys.executable).with_name("abm-ml")
    proc = start_server(
        [str(cli), "serve", "--model", "champion", "--port", str(port)],
        env,
        cwd=where,
        log_path=log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, token=TOKEN, timeout=240, proc=proc)
        yield {"url": url, "log": log, "version": deployed["version"]}
    finally:
        stop_server(proc)
    assert proc.poll() is not None
    assert TOKEN not in log.read_text(errors="replace")


def test_api_and_openapi_still_answer_next_to_the_pages(server):
    with httpx.Client(base_url=server["url"], timeout=30) as client:
        doc = client.get("/docs.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert doc.status_code == 200 and "/score" in doc.json()["paths"]
        assert client.get("/metadata").status_code == 401
        assert (
            client.get("/metadata", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_sales_ops_walk_through_the_pages(server, ranked_runs, tmp_path):
    # ABM_ML_SCREENSHOTS_DIR keeps the screenshots where a person can look at them (e.g. reports/).
    shots = Path(os.environ.get("ABM_ML_SCREENSHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install the 'chromium' package)")
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    latest = ranked_runs["second"].sort_values("rank")
    one_to_one = latest[latest["abm_tier"] == "1:1"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1366, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            outside: list[str] = []
            page.on(
                "request",
                lambda r: None if r.url.startswith(server["url"]) else outside.append(r.url),
            )
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Sign in.
            page.goto(server["url"] + "/", wait_until="load")
            assert "/login" in page.url
            page.screenshot(path=str(shots / "1-sign-in.png"))
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_selector("table.accounts")
            assert page.locator("#total").inner_text() == f"{len(latest):,}"
            cookie = next(c for c in context.cookies() if c["name"] == "abm_ml_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            # Filter to tier 1:1 (htmx swaps the table and pushes the URL).
            page.select_option("select[name=tier]", "1:1")
            expect(page.locator("#total")).to_have_text(f"{len(one_to_one):,}")
            assert "tier=1%3A1" in page.url or "tier=1:1" in page.url
            ids = page.locator("a.account").all_inner_texts()
            assert ids == one_to_one["account_id"].astype(str).tolist()

            # Sort by propensity.
            page.select_option("select[name=sort]", "propensity")
            expected = one_to_one.sort_values(["propensity", "rank"], ascending=[False, True])
            first_id = str(expected["account_id"].iloc[0])
            page.wait_for_url("**sort=propensity**")
            expect(page.locator("a.account").first).to_have_text(first_id)
            assert page.locator("a.account").first.inner_text() == first_id
            page.screenshot(path=str(shots / "2-accounts-1to1.png"), full_page=True)

            # Download the filtered view as CSV.
            with page.expect_download() as download_info:
                page.click("#download")
            rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
            assert [r["account_id"] for r in rows] == expected["account_id"].astype(str).tolist()

            # Open the account: reasons and the history chart.
            page.click(f"a.account >> text={first_id}")
            page.wait_for_selector("#history-chart svg")
            assert page.locator("#account-id").inner_text() == first_id
            reason = expected["reasons"].iloc[0]["up"][0]["text"]
            assert page.locator("#factors").inner_text().count(reason) == 1
            assert page.locator("#history-chart circle").count() == 2
            # The served scorer reaches the pages (same process): every factor's push when it
            # ranked the run, else the stored factors and why (never "no model is served").
            if server["version"] == "2":
                expect(page.locator("#waterfall")).to_be_visible()
            else:
                why = page.locator("#waterfall-why").inner_text()
                assert f"the served model is v{server['version']}" in why
            page.screenshot(path=str(shots / "3-account.png"), full_page=True)

            # The model page.
            page.click("text=Model")
            page.wait_for_selector("#champion")
            page.screenshot(path=str(shots / "4-model.png"), full_page=True)
            assert not outside, outside  # no CDN, no request leaves the server
            assert not errors, errors
        finally:
            browser.close()
    assert all((shots / n).stat().st_size > 5_000 for n in ("2-accounts-1to1.png", "3-account.png"))
