"""The pages for sales ops as one self-contained ASGI (Starlette) app.

``create_app()`` reads its settings from the environment (the history URL, the API token, the
registered model name) and returns an app that the BentoML service mounts at ``/`` with one
line; it runs as well under any ASGI server or test client. Routes:

* ``/`` the latest ranking: filters, search, sort, paging (an htmx request gets the table
  fragment only); ``/accounts.csv`` the filtered view as CSV;
* ``/accounts/<id>`` one account: every factor's push when the served model ranked the run
  (:mod:`abm_ml.web.waterfall`; else the factors stored with the run and why), its
  buying-committee coverage (:mod:`abm_ml.web.committee`), days to close, score over runs;
* ``/model`` champion and challenger with metrics, capacity and the latest drift verdict
  (:mod:`abm_ml.web.drift`); ``/model/report/<version>``
  the training report logged with a version;
* ``/login`` and ``/logout`` when ``ABM_ML_API_TOKEN`` is set (:mod:`abm_ml.web.session`);
* ``/static/`` htmx (vendored, see ``static/htmx.SOURCE.md``) and the style sheet.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from abm_ml import config as cfg
from abm_ml.errors import AbmInputError
from abm_ml.service.settings import ENV_API_TOKEN
from abm_ml.web import charts
from abm_ml.web.committee import committee_coverage
from abm_ml.web.drift import latest_verdict
from abm_ml.web.queries import (
    CSV_COLUMNS,
    FILTER_COLUMNS,
    MOVES,
    PAGE_SIZES,
    SORTS,
    TIERS,
    AccountQuery,
    HistoryReader,
    Run,
)
from abm_ml.web.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    SessionSigner,
    csrf_matches,
)
from abm_ml.web.waterfall import ServedModel, account_waterfall

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
WHOLE_NUMBER_COLUMNS = ("rank", "score", "previous_score", "score_change")

SECURITY_HEADERS = [
    # Scripts only from this server (htmx is vendored); no framing; no MIME sniffing.
    (
        b"content-security-policy",
        (
            b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """ASGI wrapper adding :data:`SECURITY_HEADERS` to every response of the pages."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "–" if v is None else f"{float(v) * 100:.1f} %"
    env.filters["qs"] = lambda params: urlencode(params)
    env.globals["movement"] = movement
    return env


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def movement(row: dict[str, Any]) -> dict[str, str]:
    """The movement badge of a row: arrow, text and a CSS class."""
    if not row.get("previous_seen"):
        return {"arrow": "★", "text": "new", "css": "new"}
    tier, before = row.get("abm_tier"), row.get("previous_abm_tier")
    now_pos = TIERS.index(tier) if tier in TIERS else len(TIERS)
    before_pos = TIERS.index(before) if before in TIERS else len(TIERS)
    change = row.get("score_change")
    parts = []
    if change:
        parts.append(f"{int(change):+d}")
    if now_pos < before_pos:
        parts.append(f"entered {tier}")
    elif now_pos > before_pos:
        parts.append(f"left {before}")
    if now_pos < before_pos or (now_pos == before_pos and (change or 0) > 0):
        return {"arrow": "▲", "text": ", ".join(parts), "css": "up"}
    if now_pos > before_pos or (change or 0) < 0:
        return {"arrow": "▼", "text": ", ".join(parts), "css": "down"}
    return {"arrow": "=", "text": "no change", "css": "same"}


def _safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything else (other hosts, schemes) goes to /."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


class WebState:
    """Everything the routes share: settings, the history reader, the model view."""

    def __init__(
        self,
        history_url: str | None,
        token: str | None,
        model_name: str | None,
        served: ServedModel | None = None,
    ):
        self.served = served
        self._history_url = history_url
        self._token = token
        self.model_name = model_name
        self.env = _environment()
        self._reader: HistoryReader | None = None
        self._reader_url: str | None = None
        self._signer: SessionSigner | None = None
        self._model_view = None
        self._lock = threading.Lock()

    @property
    def history_url(self) -> str:
        return self._history_url or cfg.history_url()

    @property
    def signer(self) -> SessionSigner:
        """The signer of the configured token; read from the environment when not given.

        Read per request (cheaply cached per value) because the service module builds this
        app at import time, before a test or launcher may have set ``ABM_ML_API_TOKEN``.
        """
        token = self._token if self._token is not None else os.environ.get(ENV_API_TOKEN)
        signer = self._signer
        if signer is None or signer.token != (token or None):
            signer = self._signer = SessionSigner(token)
        return signer

    # -- data -------------------------------------------------------------------------------

    def reader(self) -> HistoryReader:
        """The history reader, made on first use (the database may appear after start-up)."""
        with self._lock:
            url = self.history_url
            if self._reader is None or self._reader_url != url:
                from abm_ml.reporting.history import read_engine

                self._reader = HistoryReader(read_engine(url))
                self._reader_url = url
            return self._reader

    def model_view(self):
        with self._lock:
            if self._model_view is None:
                from abm_ml.web.model_view import ModelView

                self._model_view = ModelView(self.model_name)
            return self._model_view

    # -- rendering --------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = self.signer.read_session(request.cookies.get(SESSION_COOKIE))
        html = self.env.get_template(name).render(
            signed_in=session is not None,
            csrf=session.csrf if session else "",
            sign_in_enabled=self.signer.enabled,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["cache-control"] = "no-store"
        response.headers["vary"] = "HX-Request, Cookie"
        return response

    # -- access -----------------------------------------------------------------------------

    def denied(self, request: Request) -> Response | None:
        """None when the request may see the pages; else a redirect (or 401 for htmx) to sign in."""
        if not self.signer.enabled:
            return None
        if self.signer.read_session(request.cookies.get(SESSION_COOKIE)) is not None:
            return None
        if self.signer.bearer_matches(request.headers.get("authorization")):
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = "/login?" + urlencode({"next": target})
        if request.headers.get("hx-request"):
            # htmx does not follow a redirect into the fragment target: it loads the page.
            return Response(status_code=401, headers={"HX-Redirect": login})
        return RedirectResponse(login, status_code=303)


def _guarded(handler: Callable[[WebState, Request], Response]) -> Callable:
    @functools.wraps(handler)
    def endpoint(request: Request) -> Response:
        state: WebState = request.app.state.web
        return state.denied(request) or handler(state, request)

    return endpoint


def _latest(state: WebState, connection: sa.Connection) -> tuple[Run | None, Run | None]:
    reader = state.reader()
    if not reader.has_history(connection):
        return None, None
    runs = reader.runs(connection, limit=2)
    return (runs[0] if runs else None), (runs[1] if len(runs) > 1 else None)


def _no_ranking(state: WebState, request: Request, why: str) -> Response:
    return state.render(request, "empty.html.j2", why=why)


@_guarded
def accounts(state: WebState, request: Request) -> Response:
    """The ranked accounts; an htmx request gets the table fragment only."""
    query = AccountQuery.from_params(request.query_params)
    try:
        reader = state.reader()
    except AbmInputError as error:
        return _no_ranking(state, request, str(error))
    with reader.engine.connect() as connection:
        latest, previous = _latest(state, connection)
        if latest is None:
            return _no_ranking(state, request, "no ranking run has been recorded yet")
        rows, total = reader.accounts_page(connection, latest, previous, query)
        pages = max(1, -(-total // query.size))
        if query.page > pages:
            query = dataclasses.replace(query, page=pages)
            rows, total = reader.accounts_page(connection, latest, previous, query)
        context = {
            "query": query,
            "rows": rows,
            "total": total,
            "pages": pages,
            "latest": latest,
            "previous": previous,
            "sorts": SORTS,
            "moves": MOVES,
            "tiers": TIERS,
            "page_sizes": PAGE_SIZES,
        }
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "rows":
            return state.render(request, "_rows.html.j2", **context)
        context["options"] = reader.options(connection, latest)
        context["tier_counts"] = reader.tier_counts(connection, latest)
        context["filter_columns"] = FILTER_COLUMNS
    return state.render(request, "accounts.html.j2", **context)


@_guarded
def accounts_csv(state: WebState, request: Request) -> Response:
    """The filtered, sorted view as CSV (every matching row, streamed in chunks)."""
    query = AccountQuery.from_params(request.query_params)
    try:
        reader = state.reader()
    except AbmInputError as error:
        return _no_ranking(state, request, str(error))
    with reader.engine.connect() as connection:
        latest, previous = _latest(state, connection)
    if latest is None:
        return _no_ranking(state, request, "no ranking run has been recorded yet")

    def lines() -> Iterator[str]:
        yield ",".join(CSV_COLUMNS) + "\n"
        with reader.engine.connect() as connection:
            for chunk in reader.accounts_csv_rows(connection, latest, previous, query):
                yield csv_text(chunk)

    name = f"accounts-{latest.as_of}-v{latest.model_version}.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def csv_text(chunk: list[tuple]) -> str:
    """CSV lines of :data:`CSV_COLUMNS` tuples, cells a spreadsheet would run neutralised."""
    import pandas as pd

    from abm_ml.modeling.ranking import neutralise_formulas

    frame = pd.DataFrame.from_records(chunk, columns=list(CSV_COLUMNS))
    for name in WHOLE_NUMBER_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
    return neutralise_formulas(frame).to_csv(header=False, index=False, float_format="%.4f")


@_guarded
def account(state: WebState, request: Request) -> Response:
    """One account: factors, days to close, score over runs, movement."""
    account_id = request.path_params["account_id"]
    try:
        reader = state.reader()
    except AbmInputError as error:
        return _no_ranking(state, request, str(error))
    with reader.engine.connect() as connection:
        latest, previous = _latest(state, connection)
        if latest is None:
            return _no_ranking(state, request, "no ranking run has been recorded yet")
        row = reader.account(connection, latest, previous, account_id)
        history = reader.account_history(connection, account_id)
    if row is None and not history:
        return state.render(
            request, "not_found.html.j2", status=404, account_id=account_id, latest=latest
        )
    points = charts.history_points(history)
    waterfall = (
        account_waterfall(state.served, latest.model_version, row.get("model_inputs"))
        if row
        else None
    )
    return state.render(
        request,
        "account.html.j2",
        account_id=account_id,
        row=row,
        latest=latest,
        history=history,
        points=points,
        polyline=charts.polyline(points),
        chart={"width": charts.CHART_WIDTH, "height": charts.CHART_HEIGHT, "pad": charts.PAD},
        factors=charts.factor_bars(row["reasons"] if row else None),
        waterfall=waterfall,
        committee=committee_coverage(row.get("model_inputs")) if row else [],
        steps=charts.waterfall_bars(waterfall) if waterfall else [],
        days=charts.days_range(
            row["days_to_close_p10"] if row else None,
            row["days_to_close_p50"] if row else None,
            row["days_to_close_p90"] if row else None,
        ),
    )


@_guarded
def model(state: WebState, request: Request) -> Response:
    """Champion and challenger: metrics with intervals, capacity, training report links."""
    versions, why = state.model_view().versions()
    # Read at every request, not cached with the version: a verdict may arrive at any time.
    drift = {v.version: latest_verdict(v.version) for v in versions}
    return state.render(request, "model.html.j2", versions=versions, why=why, drift=drift)


@_guarded
def model_report(state: WebState, request: Request) -> Response:
    view = state.model_view()
    view.versions()  # fills the cache with the aliased versions
    html = view.report_html(str(request.path_params["version"]))
    if html is None:
        return state.render(request, "empty.html.j2", status=404, why="no training report")
    return HTMLResponse(html)


async def login(request: Request) -> Response:
    """The sign-in form (GET) and its check (POST): the API token, once per working day."""
    state: WebState = request.app.state.web
    if not state.signer.enabled:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        target = _safe_next(request.query_params.get("next"))
        return _login_form(state, request, target, message=None, status=200)
    form = await request.form()
    target = _safe_next(str(form.get("next") or "/"))
    if not state.signer.login_csrf_matches(
        request.cookies.get(LOGIN_CSRF_COOKIE), str(form.get("csrf") or "")
    ):
        return _login_form(state, request, target, "the form expired; sign in again", status=403)
    if not state.signer.token_matches(str(form.get("token") or "")):
        return _login_form(state, request, target, "wrong token", status=401)
    _, cookie = state.signer.new_session()
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _login_form(
    state: WebState, request: Request, target: str, message: str | None, status: int
) -> Response:
    csrf, cookie = state.signer.new_login_csrf()
    html = state.env.get_template("login.html.j2").render(
        signed_in=False,
        csrf=csrf,
        sign_in_enabled=True,
        path="/login",
        next=target,
        message=message,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["cache-control"] = "no-store"
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        cookie,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


async def logout(request: Request) -> Response:
    """Sign out (POST with the session's CSRF token): the cookie is dropped."""
    state: WebState = request.app.state.web
    form = await request.form()
    session = state.signer.read_session(request.cookies.get(SESSION_COOKIE))
    if state.signer.enabled and not csrf_matches(session, str(form.get("csrf") or "")):
        return Response("the form expired; reload the page", status_code=403)
    response = RedirectResponse("/login" if state.signer.enabled else "/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def create_app(
    *,
    history_url: str | None = None,
    token: str | None = None,
    model_name: str | None = None,
    served: ServedModel | None = None,
) -> Starlette:
    """The pages as an ASGI app.

    Args:
        history_url: SQLAlchemy URL of the score history; ``ABM_ML_HISTORY_URL`` (or the
            default SQLite file) when None.
        token: the token the pages ask for; ``ABM_ML_API_TOKEN`` when None; empty: open pages.
        model_name: registered model name; ``ABM_ML_MODEL_NAME`` (or the default) when None.
        served: returns the scorer served in this process and its registry version; the
            account page re-explains the run's stored inputs with it (every factor's push)
            when that version issued the run. None: the pages show the stored factors.

    Returns:
        A Starlette app (sending security headers); mount it at ``/``.
    """
    routes = [
        Route("/", accounts, name="accounts"),
        Route("/accounts.csv", accounts_csv, name="accounts_csv"),
        Route("/accounts/{account_id:path}", account, name="account"),
        Route("/model", model, name="model"),
        Route("/model/report/{version}", model_report, name="model_report"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    # BentoML's mount hands a path to this app only when one of these routes matches it, so
    # the pages never shadow the API (/score, /docs.json, /metrics ...).
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.web = WebState(history_url, token, model_name, served)
    return app
