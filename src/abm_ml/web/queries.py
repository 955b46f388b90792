"""The pages' reads of the score history: filtered, sorted and paged in SQL, never in the browser.

The accounts list is the latest ranking run (the latest ``(as_of, run_at)`` in the history),
joined to its details (:data:`abm_ml.reporting.history.DETAILS_TABLE`) and to the same
accounts' rows in the run before it, which gives the movement since the last run. Every
filter, the search, the sort and the page cut are SQL clauses, so a page of 50 accounts out of
100k reads 50 rows (plus one ``COUNT``); the CSV download streams the filtered rows in chunks.

Movement here compares with the *previous run* (the run just before the latest one). The
ranking files' ``movement`` column compares with each account's previous entry in any earlier
run; the two agree for every account that was in the previous run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from abm_ml.modeling.ranking import ABM_TIERS, NURTURE
from abm_ml.reporting.history import (
    DETAILS_TABLE,
    TABLE_NAME,
    details_table,
    history_table,
)

TIERS = (*ABM_TIERS, NURTURE)
SORTS = {
    "priority": "priority (rank)",
    "propensity": "propensity",
    "expected_value": "expected value",
    "movement": "score change",
}
MOVES = {
    "up": "moved up",
    "down": "moved down",
    "new_in_tier": "new in tier",
    "new": "new account",
}
FILTER_COLUMNS = ("segment", "region", "owner")
PAGE_SIZES = (25, 50, 100, 200)
CSV_CHUNK = 5_000
SEARCH_MAX = 100

LIST_COLUMNS = (
    "rank",
    "account_id",
    "account_name",
    "abm_tier",
    "score",
    "previous_score",
    "score_change",
    "previous_abm_tier",
    "propensity",
    "priority",
    "expected_value",
    "days_to_close_p10",
    "days_to_close_p50",
    "days_to_close_p90",
    "amount",
    "segment",
    "region",
    "owner",
    "top_reasons",
    "risk",
)
CSV_COLUMNS = tuple(c for c in LIST_COLUMNS if c != "previous_abm_tier") + (
    "previous_abm_tier",
    "model_version",
    "as_of",
)
PAGE_COLUMNS = (*LIST_COLUMNS, "previous_seen")
DETAIL_NAMES = frozenset(
    {
        "account_name",
        "days_to_close_p10",
        "days_to_close_p50",
        "days_to_close_p90",
        "amount",
        "segment",
        "region",
        "owner",
        "top_reasons",
        "risk",
        "reasons",
    }
)
MOVEMENT_NAMES = frozenset({"previous_score", "score_change", "previous_abm_tier", "previous_seen"})


@dataclass(frozen=True)
class Run:
    """One ranking run: a model version's ranking as of a date, stored at ``run_at``."""

    model_version: str
    as_of: str
    run_at: str


@dataclass(frozen=True)
class AccountQuery:
    """What the accounts list shows: filters, search, sort and page (all validated)."""

    tier: str = ""
    segment: str = ""
    region: str = ""
    owner: str = ""
    move: str = ""
    search: str = ""
    sort: str = "priority"
    page: int = 1
    size: int = 50
    errors: tuple[str, ...] = field(default=())

    @classmethod
    def from_params(cls, params: Any) -> AccountQuery:
        """From URL parameters; an unknown value is dropped with a message, never a 500."""
        errors = []

        def pick(name: str, allowed: Any, default: str = "") -> str:
            value = (params.get(name) or "").strip()
            if value and value not in allowed:
                errors.append(f"unknown {name} {value[:40]!r}: showing all")
                return default
            return value or default

        def number(name: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
            text = (params.get(name) or "").strip()
            if not text:
                return default
            try:
                value = int(text)
            except ValueError:
                errors.append(f"{name} must be a whole number, got {text[:20]!r}")
                return default
            if value < 1 or (allowed is not None and value not in allowed):
                errors.append(f"{name} {value} is not offered: using {default}")
                return default
            return value

        return cls(
            tier=pick("tier", TIERS),
            segment=(params.get("segment") or "").strip()[:255],
            region=(params.get("region") or "").strip()[:255],
            owner=(params.get("owner") or "").strip()[:255],
            move=pick("move", MOVES),
            search=(params.get("q") or "").strip()[:SEARCH_MAX],
            sort=pick("sort", SORTS, "priority"),
            page=number("page", 1),
            size=number("size", 50, PAGE_SIZES),
            errors=tuple(errors),
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """URL parameters of this query (defaults left out), with ``changes`` applied."""
        query = replace(self, **changes)
        out = {
            "tier": query.tier,
            "segment": query.segment,
            "region": query.region,
            "owner": query.owner,
            "move": query.move,
            "q": query.search,
            "sort": query.sort if query.sort != "priority" else "",
            "page": str(query.page) if query.page != 1 else "",
            "size": str(query.size) if query.size != 50 else "",
        }
        return {k: v for k, v in out.items() if v}


class HistoryReader:
    """Read-only queries of one history database (an engine, tables and the run cache)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        metadata = sa.MetaData()
        self.history = history_table(metadata)
        self.details = details_table(metadata)
        self._options: dict[Run, dict[str, list[str]]] = {}
        self._tier_counts: dict[Run, dict[str, int]] = {}

    # -- runs -------------------------------------------------------------------------------

    def has_history(self, connection: sa.Connection) -> bool:
        return sa.inspect(connection).has_table(TABLE_NAME)

    def has_details(self, connection: sa.Connection) -> bool:
        return sa.inspect(connection).has_table(DETAILS_TABLE)

    def has_model_inputs(self, connection: sa.Connection) -> bool:
        """Whether the details table has the model inputs column (tables made before lack it)."""
        if not self.has_details(connection):
            return False
        columns = sa.inspect(connection).get_columns(DETAILS_TABLE)
        return any(c["name"] == "model_inputs" for c in columns)

    def runs(self, connection: sa.Connection, limit: int = 2) -> list[Run]:
        """The latest ``limit`` runs, newest first (by as-of date, then when they were stored).

        The distinct (as_of, model_version) pairs come from the run index alone; ``run_at`` is
        then looked up for the newest few pairs, so the whole table is never sorted.
        """
        h = self.history
        keys = connection.execute(
            sa.select(h.c.as_of, h.c.model_version)
            .group_by(h.c.as_of, h.c.model_version)
            .order_by(h.c.as_of.desc())
            .limit(max(limit, 1) * 8)
        ).all()
        runs = []
        for as_of, version in keys:
            run_at = connection.execute(
                sa.select(h.c.run_at)
                .where(h.c.as_of == as_of, h.c.model_version == version)
                .limit(1)
            ).scalar_one()
            runs.append(Run(str(version), str(as_of), str(run_at)))
        runs.sort(key=lambda r: (r.as_of, r.run_at, r.model_version), reverse=True)
        return runs[:limit]

    # -- the accounts list ------------------------------------------------------------------

    def _base(
        self,
        latest: Run,
        previous: Run | None,
        *,
        details: bool,
        movement: bool,
        columns: tuple[str, ...] | None,
    ) -> tuple[sa.Select, Any]:
        """SELECT of the latest run's accounts, joined only to what the caller needs.

        Args:
            latest: The run to list.
            previous: The run before it (movement), or None.
            details: Join the details table (segment, region, owner, days, reasons).
            movement: Join the previous run's rows.
            columns: Names of the columns to select (see the mapping below); None selects
                the account id only (the key query of a page).
        """
        cur = self.history.alias("cur")
        prev = self.history.alias("prev")
        joined = cur
        d = None
        if details:
            d = self.details.alias("d")
            joined = joined.outerjoin(
                d,
                sa.and_(
                    d.c.account_id == cur.c.account_id,
                    d.c.model_version == cur.c.model_version,
                    d.c.as_of == cur.c.as_of,
                ),
            )
        if movement:
            joined = joined.outerjoin(
                prev,
                sa.and_(
                    prev.c.account_id == cur.c.account_id,
                    prev.c.model_version == (previous.model_version if previous else ""),
                    prev.c.as_of == (previous.as_of if previous else ""),
                ),
            )

        def detail(name: str, type_: Any = sa.String) -> Any:
            return d.c[name] if d is not None else sa.null().cast(type_)

        available = {
            "rank": lambda: cur.c.rank,
            "account_id": lambda: cur.c.account_id,
            "account_name": lambda: detail("account_name"),
            "abm_tier": lambda: cur.c.abm_tier,
            "score": lambda: cur.c.score,
            "previous_score": lambda: prev.c.score,
            "score_change": lambda: cur.c.score - prev.c.score,
            "previous_abm_tier": lambda: prev.c.abm_tier,
            "previous_seen": lambda: prev.c.account_id.isnot(None),
            "propensity": lambda: cur.c.propensity,
            "priority": lambda: cur.c.priority,
            "expected_value": lambda: cur.c.expected_value,
            "days_to_close_p10": lambda: detail("days_to_close_p10", sa.Float),
            "days_to_close_p50": lambda: detail("days_to_close_p50", sa.Float),
            "days_to_close_p90": lambda: detail("days_to_close_p90", sa.Float),
            "amount": lambda: detail("amount", sa.Float),
            "segment": lambda: detail("segment"),
            "region": lambda: detail("region"),
            "owner": lambda: detail("owner"),
            "top_reasons": lambda: detail("top_reasons", sa.Text),
            "risk": lambda: detail("risk", sa.Text),
            "reasons": lambda: detail("reasons", sa.Text),
            "model_inputs": lambda: detail("model_inputs", sa.Text),
            "model_version": lambda: cur.c.model_version,
            "as_of": lambda: cur.c.as_of,
        }
        chosen = columns or ("account_id",)
        select = (
            sa.select(*(available[name]().label(name) for name in chosen))
            .select_from(joined)
            .where(cur.c.model_version == latest.model_version, cur.c.as_of == latest.as_of)
        )
        return select, (cur, prev, d)

    @staticmethod
    def _tier_position(column: Any) -> Any:
        """1:1 → 0 … nurture → 3; unknown tiers after nurture."""
        return sa.case(
            *((column == name, position) for position, name in enumerate(TIERS)),
            else_=len(TIERS),
        )

    def _filtered(
        self,
        latest: Run,
        previous: Run | None,
        query: AccountQuery,
        with_details: bool,
        columns: tuple[str, ...] | None,
        *,
        for_sort: bool = False,
    ):
        """The base SELECT with the query's filters; joins only what filters, sort or columns use."""
        wanted = set(columns or ())
        details = with_details and (
            bool(wanted & DETAIL_NAMES) or any(getattr(query, name) for name in FILTER_COLUMNS)
        )
        movement = (
            bool(wanted & MOVEMENT_NAMES)
            or bool(query.move)
            or (for_sort and query.sort == "movement")
        )
        select, (cur, prev, d) = self._base(
            latest, previous, details=details, movement=movement, columns=columns
        )
        conditions = []
        if query.tier:
            conditions.append(cur.c.abm_tier == query.tier)
        for name in FILTER_COLUMNS:
            value = getattr(query, name)
            if value:
                conditions.append(d.c[name] == value if d is not None else sa.false())
        if query.search:
            conditions.append(self._search(cur, latest, query.search, with_details))
        if query.move:
            seen = prev.c.account_id.isnot(None)
            now, before = self._tier_position(cur.c.abm_tier), self._tier_position(prev.c.abm_tier)
            change = cur.c.score - prev.c.score
            if query.move == "up":
                conditions.append(sa.and_(seen, sa.or_(change > 0, now < before)))
            elif query.move == "down":
                conditions.append(sa.and_(seen, sa.or_(change < 0, now > before)))
            elif query.move == "new_in_tier":
                conditions.append(
                    sa.or_(sa.not_(seen), cur.c.abm_tier != prev.c.abm_tier)
                    & (cur.c.abm_tier != NURTURE)
                )
            else:  # new
                conditions.append(sa.not_(seen))
        if conditions:
            select = select.where(*conditions)
        return select, (cur, prev, d)

    def _search(self, cur: Any, latest: Run, text: str, with_details: bool) -> Any:
        """Accounts whose id or name contains ``text``, ignoring case.

        The names are matched in a sub-select of the details table alone, so a search does
        not join every account of the run to its details first.
        """
        pattern = "%" + _escape_like(text) + "%"

        def contains(column: Any) -> Any:
            # SQLite's LIKE ignores ASCII case on its own; ILIKE elsewhere (PostgreSQL).
            if self.engine.dialect.name == "sqlite":
                return column.like(pattern, escape="\\")
            return column.ilike(pattern, escape="\\")

        by_id = contains(cur.c.account_id)
        if not with_details:
            return by_id
        d = self.details
        by_name = sa.select(d.c.account_id).where(
            d.c.model_version == latest.model_version,
            d.c.as_of == latest.as_of,
            contains(d.c.account_name),
        )
        return sa.or_(by_id, cur.c.account_id.in_(by_name))

    def _sorted(self, select: sa.Select, sort: str, tables: tuple) -> sa.Select:
        cur, prev, _ = tables
        by_rank = (cur.c.rank.asc(), cur.c.account_id.asc())
        if sort == "propensity":
            return select.order_by(cur.c.propensity.desc(), *by_rank)
        if sort == "expected_value":
            # NULLs last on every backend: sort on "is null" first.
            return select.order_by(
                cur.c.expected_value.is_(None), cur.c.expected_value.desc(), *by_rank
            )
        if sort == "movement":
            change = cur.c.score - prev.c.score
            return select.order_by(change.is_(None), change.desc(), *by_rank)
        return select.order_by(*by_rank)

    def accounts_page(
        self, connection: sa.Connection, latest: Run, previous: Run | None, query: AccountQuery
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the filtered, sorted accounts and the number matching the filters.

        Three small queries instead of one wide one: the count and the page's ids join only
        what the filters and the sort need (no join for the default view), and only the page's
        50 accounts are joined to their details and previous run.
        """
        with_details = self.has_details(connection)
        counted, _ = self._filtered(latest, previous, query, with_details, None)
        total = connection.execute(
            sa.select(sa.func.count()).select_from(counted.subquery())
        ).scalar_one()
        keys, tables = self._filtered(latest, previous, query, with_details, None, for_sort=True)
        paged = (
            self._sorted(keys, query.sort, tables)
            .limit(query.size)
            .offset((query.page - 1) * query.size)
        )
        ids = [str(i) for i in connection.execute(paged).scalars()]
        if not ids:
            return [], int(total)
        select, (cur, _, _) = self._base(
            latest, previous, details=with_details, movement=True, columns=PAGE_COLUMNS
        )
        found = {
            row.account_id: dict(row._mapping)
            for row in connection.execute(select.where(cur.c.account_id.in_(ids)))
        }
        return [found[i] for i in ids if i in found], int(total)

    def accounts_csv_rows(
        self, connection: sa.Connection, latest: Run, previous: Run | None, query: AccountQuery
    ) -> Iterator[list[tuple]]:
        """Every filtered account in the query's order as :data:`CSV_COLUMNS` tuples, in chunks."""
        with_details = self.has_details(connection)
        select, tables = self._filtered(
            latest, previous, query, with_details, CSV_COLUMNS, for_sort=True
        )
        result = connection.execution_options(stream_results=True).execute(
            self._sorted(select, query.sort, tables)
        )
        while chunk := result.fetchmany(CSV_CHUNK):
            yield [tuple(row) for row in chunk]

    def options(self, connection: sa.Connection, latest: Run) -> dict[str, list[str]]:
        """Distinct segments, regions and owners of a run (cached per run: they never change)."""
        if latest in self._options:
            return self._options[latest]
        out: dict[str, list[str]] = {name: [] for name in FILTER_COLUMNS}
        if self.has_details(connection):
            d = self.details
            for name in FILTER_COLUMNS:
                values = connection.execute(
                    sa.select(d.c[name])
                    .where(
                        d.c.model_version == latest.model_version,
                        d.c.as_of == latest.as_of,
                        d.c[name].isnot(None),
                    )
                    .distinct()
                    .order_by(d.c[name])
                    .limit(500)
                ).scalars()
                out[name] = [str(v) for v in values]
        if len(self._options) > 16:
            self._options.clear()
        self._options[latest] = out
        return out

    def tier_counts(self, connection: sa.Connection, latest: Run) -> dict[str, int]:
        """Accounts per ABM tier in a run (cached per run, like :meth:`options`)."""
        if latest in self._tier_counts:
            return self._tier_counts[latest]
        h = self.history
        rows = connection.execute(
            sa.select(h.c.abm_tier, sa.func.count())
            .where(h.c.model_version == latest.model_version, h.c.as_of == latest.as_of)
            .group_by(h.c.abm_tier)
        ).all()
        counts = {str(tier): int(n) for tier, n in rows}
        out = {name: counts.get(name, 0) for name in TIERS} | {
            k: v for k, v in counts.items() if k not in TIERS
        }
        if len(self._tier_counts) > 16:
            self._tier_counts.clear()
        self._tier_counts[latest] = out
        return out

    # -- one account ------------------------------------------------------------------------

    def account(
        self, connection: sa.Connection, latest: Run, previous: Run | None, account_id: str
    ) -> dict[str, Any] | None:
        """The account's row in the latest run (with details and movement), or None.

        ``model_inputs`` is the stored inputs' JSON text (None when the run stored none).
        """
        inputs = ("model_inputs",) if self.has_model_inputs(connection) else ()
        select, (cur, _, _) = self._base(
            latest,
            previous,
            details=self.has_details(connection),
            movement=True,
            columns=(*PAGE_COLUMNS, "reasons", *inputs),
        )
        row = connection.execute(select.where(cur.c.account_id == account_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out.setdefault("model_inputs", None)
        try:
            out["reasons"] = json.loads(out["reasons"]) if out.get("reasons") else None
        except ValueError:
            out["reasons"] = None
        return out

    def account_history(self, connection: sa.Connection, account_id: str) -> list[dict[str, Any]]:
        """Every stored run of one account, oldest first (primary-key lookup)."""
        h = self.history
        rows = connection.execute(
            sa.select(h.c.as_of, h.c.run_at, h.c.model_version, h.c.score, h.c.rank, h.c.abm_tier)
            .where(h.c.account_id == account_id)
            .order_by(h.c.as_of, h.c.run_at, h.c.model_version)
        )
        return [dict(row._mapping) for row in rows]


def _escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
