"""Sign-in with ABM_ML_API_TOKEN: the cookie, CSRF on the forms, and the API's bearer middleware."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from abm_ml.web import create_app
from abm_ml.web.paths import is_page_path

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "page-token-91b2"


@pytest.fixture()
def guarded(ranked_runs):
    with TestClient(create_app(history_url=ranked_runs["url"], token=TOKEN)) as client:
        yield client


def login_csrf(client: TestClient) -> str:
    r = client.get("/login")
    assert r.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)


def test_pages_need_sign_in(guarded):
    r = guarded.get("/?tier=1:1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2F%3Ftier%3D1%3A1"
    r = guarded.get("/accounts.csv", follow_redirects=False)
    assert r.status_code == 303
    # htmx requests are told where to go instead of getting the sign-in page as a fragment.
    r = guarded.get("/", headers={"HX-Request": "true", "HX-Target": "rows"})
    assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/login")
    assert guarded.get("/static/app.css").status_code == 200


def test_sign_in_sets_a_signed_httponly_strict_cookie(guarded):
    csrf = login_csrf(guarded)
    r = guarded.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf, "next": "/?tier=1:1"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/?tier=1:1"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("abm_ml_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie
    r = guarded.get("/", follow_redirects=False)
    assert r.status_code == 200 and "Sign out" in r.text


def test_wrong_token_forged_cookie_and_missing_csrf_are_refused(guarded):
    csrf = login_csrf(guarded)
    r = guarded.post("/login", data={"token": "nope", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 401 and "wrong token" in r.text
    assert "abm_ml_session" not in r.headers.get("set-cookie", "")
    # A form posted from elsewhere has no CSRF token matching the signed login cookie.
    guarded.cookies.clear()
    r = guarded.post("/login", data={"token": TOKEN, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    guarded.cookies.set("abm_ml_session", "eyJjc3JmIjoieCJ9.forged.signature")
    assert guarded.get("/", follow_redirects=False).status_code == 303


def test_open_redirects_are_refused(guarded):
    csrf = login_csrf(guarded)
    r = guarded.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_sign_out_needs_the_session_csrf(guarded):
    csrf = login_csrf(guarded)
    guarded.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
    page = guarded.get("/").text
    session_csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert guarded.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert guarded.get("/", follow_redirects=False).status_code == 200
    r = guarded.post("/logout", data={"csrf": session_csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert guarded.get("/", follow_redirects=False).status_code == 303


def test_scripts_may_use_the_bearer_header(guarded):
    r = guarded.get("/accounts.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.text.startswith("rank,account_id")
    r = guarded.get(
        "/accounts.csv", headers={"Authorization": "Bearer wrong"}, follow_redirects=False
    )
    assert r.status_code == 303


def test_token_from_the_environment_is_read_per_request(ranked_runs, monkeypatch):
    app = create_app(history_url=ranked_runs["url"])
    with TestClient(app) as client:
        monkeypatch.delenv("ABM_ML_API_TOKEN", raising=False)
        assert client.get("/", follow_redirects=False).status_code == 200
        monkeypatch.setenv("ABM_ML_API_TOKEN", TOKEN)
        assert client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/", True),
        ("/accounts/ACC1", True),
        ("/accounts.csv", True),
        ("/model", True),
        ("/static/htmx.min.js", True),
        ("/login", True),
        ("/score", False),
        ("/rank", False),
        ("/metadata", False),
        ("/docs.json", False),
        ("/metrics", False),
        ("/readyz", False),
        ("/modelx", False),
    ],
)
def test_page_paths_are_told_apart_from_api_paths(path, page):
    assert is_page_path(path) is page


async def _call(middleware, path):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    await middleware({"type": "http", "path": path, "headers": []}, receive, send)
    return sent


def test_bearer_middleware_lets_pages_guard_themselves():
    import asyncio

    from abm_ml.service.auth import BearerAuthMiddleware

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    middleware = BearerAuthMiddleware(app, token=TOKEN)
    assert asyncio.run(_call(middleware, "/score"))[0]["status"] == 401
    asyncio.run(_call(middleware, "/"))
    asyncio.run(_call(middleware, "/accounts/ACC1"))
    assert reached == ["/", "/accounts/ACC1"]
