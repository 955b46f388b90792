"""Score history: every ranking run in a SQL table, and each account's movement since the last run.

A run is stored in ``abm_score_history`` (created on first use with portable SQLAlchemy Core
types, so a SQLite file, PostgreSQL or any other SQLAlchemy URL works), one row per account,
keyed by ``(account_id, model_version, as_of)``. Re-running the same model version for the same
as-of date replaces that run's rows (delete + insert in one transaction), so a run repeated
after a fix leaves no duplicates and no stale accounts.

Movement since each account's previous entry is worded by :mod:`abm_ml.reporting.movement`.

Timestamps (``run_at``) are stored as fixed-width UTC ISO text, which sorts in time order on
every backend; ``as_of`` is the ``YYYY-MM-DD`` text that :func:`abm_ml.modeling.ranking.rank_accounts` writes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from abm_ml.errors import AbmInputError
from abm_ml.jsontext import json_text
from abm_ml.redact import mask_credentials
from abm_ml.reporting.movement import movement_text

TABLE_NAME = "abm_score_history"
KEY_COLUMNS = ("account_id", "model_version", "as_of")
REQUIRED_COLUMNS = ("account_id", "model_version", "as_of", "score")
OPTIONAL_COLUMNS = (
    "model_name",
    "rank",
    "abm_tier",
    "tier",
    "propensity",
    "priority",
    "expected_value",
)
INT_COLUMNS = ("rank", "score")
FLOAT_COLUMNS = ("propensity", "priority", "expected_value")
HISTORY_COLUMNS = (
    "account_id",
    "model_version",
    "as_of",
    "run_at",
    "model_name",
    "rank",
    "abm_tier",
    "tier",
    "propensity",
    "score",
    "priority",
    "expected_value",
)
"""Lower is better: 1:1 before 1:few before 1:many before nurture."""
INSERT_CHUNK = 20_000
"""Rows per executemany call: bounds the size of one parameter list on 100k-account runs."""
RUN_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        TABLE_NAME,
        metadata,
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.String(10), primary_key=True),
        sa.Column("run_at", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(255)),
        sa.Column("rank", sa.Integer),
        sa.Column("abm_tier", sa.String(16)),
        sa.Column("tier", sa.String(8)),
        sa.Column("propensity", sa.Float),
        sa.Column("score", sa.Integer),
        sa.Column("priority", sa.Float),
        sa.Column("expected_value", sa.Float),
        # Finds one run's rows (delete on re-run, the join that looks up previous entries)
        # without scanning every week ever stored.
        sa.Index(f"ix_{TABLE_NAME}_run", "as_of", "model_version"),
    )


def safe_url(url: str) -> str:
    """The URL with its password masked, fit for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL still must not leak what looks like a password
        return mask_credentials(url)


def _scrub(text: str, url: str) -> str:
    """First line of a driver's error, with the URL's password masked should the driver echo it."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(text).__name__
    try:
        password = sa.engine.make_url(url).password
    except Exception:  # noqa: BLE001
        password = None
    return line.replace(str(password), "***") if password else line


def _engine(url: str, *, writing: bool, create_sqlite_folder: bool = False) -> sa.Engine:
    """An engine for ``url``; bad URLs, unknown drivers and missing SQLite files become AbmInputError.

    Reading needs an existing SQLite file; writing needs its folder, which is created only when
    ``create_sqlite_folder`` says so (the entry point decides, a library call never does).
    """
    shown = safe_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except Exception as error:  # noqa: BLE001 - any URL problem is the user's input
        raise AbmInputError(
            f"not a valid database URL ({_scrub(error, url)})", source=shown
        ) from None
    connect_args: dict = {}
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
    ):
        path = Path(database)
        if not writing:
            if not path.is_file():
                # Reading must not leave an empty database file behind a mistyped path.
                raise AbmInputError("no such SQLite file", source=shown)
        elif create_sqlite_folder:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise AbmInputError(
                    f"cannot create the folder of the SQLite file ({error.strerror})", source=shown
                ) from None
        elif not path.parent.is_dir():
            raise AbmInputError(
                f"the folder of the SQLite file does not exist: {path.parent}", source=shown
            )
    if (
        parsed.get_backend_name() == "postgresql"
        and "connect_timeout" not in parsed.query
        and "+psycopg" in parsed.drivername
    ):
        # An unreachable host should fail in seconds, not after the OS's TCP timeout.
        connect_args["connect_timeout"] = 10
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args)
    except Exception as error:  # noqa: BLE001 - unknown dialect, missing driver
        raise AbmInputError(f"cannot open database ({_scrub(error, url)})", source=shown) from None
    if writing and parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _large_pages)
    return engine


SQLITE_PAGE_SIZE = 65536
"""Page size of a new SQLite history file (an existing file keeps its own).

A run's details are about 2 KB per account: with SQLite's default 4 KiB pages each row took a
page of its own (3.8 GB for a million accounts, 19 s to insert); with 64 KiB pages they pack
(2.1 GB, 9 s)."""


def _large_pages(dbapi_connection, _record) -> None:
    """Ask for :data:`SQLITE_PAGE_SIZE`: applies when the file has no table yet, else a no-op."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
    finally:
        cursor.close()


def _run_at(value: str | None) -> str:
    try:
        stamp = pd.Timestamp(value) if value else pd.Timestamp.now(tz="UTC")
    except ValueError:
        raise AbmInputError(f"run_at must be a timestamp, got {value!r}", field="run_at") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime(RUN_AT_FORMAT)


def _plain(values: pd.Series) -> list:
    """Python values with None for missing (drivers reject numpy scalars, NaN and pd.NA)."""
    values = values.astype(object)
    return values.where(values.notna(), None).tolist()


def _column_values(ranked: pd.DataFrame, name: str) -> list:
    """One history column of the run as Python values, converted to the column's type."""
    if name not in ranked.columns:
        return [None] * len(ranked)
    column = ranked[name]
    if name in INT_COLUMNS:
        return _plain(pd.to_numeric(column, errors="coerce").round().astype("Int64"))
    if name in FLOAT_COLUMNS:
        return _plain(pd.to_numeric(column, errors="coerce").astype(float))
    return _plain(column.astype("string"))


def _check(ranked: pd.DataFrame, shown: str) -> tuple[str, str]:
    """The run's (model_version, as_of); refuses frames that cannot be one run."""
    missing = [c for c in REQUIRED_COLUMNS if c not in ranked.columns]
    if missing:
        raise AbmInputError(
            f"the ranked accounts have no {', '.join(map(repr, missing))} column",
            source=shown,
            field=missing[0],
        )
    keys = ranked[["model_version", "as_of"]].astype(str).drop_duplicates()
    if len(keys) != 1:
        raise AbmInputError(
            f"one run has one model version and one as-of date, got {len(keys)} combinations",
            source=shown,
            field="model_version, as_of",
        )
    ids = ranked["account_id"].astype(str)
    if ranked["account_id"].isna().any() or ids.duplicated().any():
        first = ids[ids.duplicated()].iloc[0] if ids.duplicated().any() else "missing"
        raise AbmInputError(
            f"account ids must be present and unique in a run (first offender: {first})",
            source=shown,
            field="account_id",
        )
    version, as_of = keys.iloc[0]
    try:
        return version, str(pd.Timestamp(as_of).date())
    except ValueError:
        raise AbmInputError(
            f"as_of must be a date (YYYY-MM-DD), got {as_of!r}", source=shown, field="as_of"
        ) from None


def record_run(
    ranked: pd.DataFrame,
    url: str,
    *,
    run_at: str | None = None,
    create_sqlite_folder: bool = False,
) -> pd.DataFrame:
    """Store one ranking run and return it with each account's movement since its previous entry.

    Args:
        ranked: The ranked accounts of one run (one ``model_version`` and one ``as_of``), as
            :func:`abm_ml.modeling.ranking.rank_accounts` makes them; needs ``account_id``, ``model_version``,
            ``as_of`` and ``score``, stores ``rank``, ``abm_tier``, ``tier`` and the other
            history columns when present.
        url: SQLAlchemy URL of the history database (see :func:`abm_ml.config.history_url`).
        run_at: When the run was made (any timestamp pandas parses; naive means UTC); now by default.
        create_sqlite_folder: Create the folder of a SQLite file when missing (for entry points
            such as the CLI); otherwise a missing folder is an AbmInputError.

    Returns:
        A copy of ``ranked`` with ``previous_score``, ``previous_abm_tier``, ``previous_rank``
        (missing for new accounts) and ``movement``. An empty ``ranked`` stores nothing and
        comes back with the empty columns.

    Raises:
        AbmInputError: The URL is invalid, the database cannot be reached or written, or the
            frame is not one run with unique account ids.
    """
    if ranked.empty:
        # Nothing was ranked (e.g. filters left no account): no run to store, nothing moved.
        empty = pd.DataFrame(
            {"account_id": pd.Series(dtype=object), "score": [], "abm_tier": [], "rank": []}
        )
        return with_movement(
            ranked.assign(account_id=ranked.get("account_id", pd.Series(dtype=object))), empty
        )
    previous = record_parts([ranked], url, run_at=run_at, create_sqlite_folder=create_sqlite_folder)
    return with_movement(ranked, previous)


def record_parts(
    parts: Iterable[pd.DataFrame],
    url: str,
    *,
    run_at: str | None = None,
    create_sqlite_folder: bool = False,
) -> pd.DataFrame:
    """Store one ranking run given in parts, in one transaction; each account's previous entry.

    For runs too large to hold at once (:mod:`abm_ml.modeling.rank_stream`): each part is
    inserted as it comes, so only one part's rows are in memory.

    Args:
        parts: The run's ranked accounts in parts (at least one), each as for
            :func:`record_run`; an account id appears in one part only.
        url: As for :func:`record_run`.
        run_at: As for :func:`record_run`.
        create_sqlite_folder: As for :func:`record_run`.

    Returns:
        ``account_id``, ``score``, ``abm_tier`` and ``rank`` of each account's latest earlier
        entry (accounts without one are absent): give it to :func:`with_movement`.

    Raises:
        AbmInputError: As for :func:`record_run`, or parts of different runs.
    """
    shown = safe_url(url)
    parts = iter(parts)
    first = next(parts)
    version, as_of = _check(first, shown)
    stamp = _run_at(run_at)
    metadata = sa.MetaData()
    table = _table(metadata)
    details_table(metadata)  # web pages (issue 18): created with the history, race-safe
    engine = _engine(url, writing=True, create_sqlite_folder=create_sqlite_folder)
    # The bulk paths talk to the DBAPI cursor directly, so its errors arrive unwrapped.
    database_errors = (sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
    try:
        _create_table(engine, metadata)
        with engine.begin() as connection:
            _check_schema(connection, shown)
            _add_detail_columns(connection, metadata)
            # Delete + insert rather than an upsert: portable, and a re-run that dropped an
            # account must not keep that account's stale row.
            connection.execute(
                table.delete().where(table.c.model_version == version, table.c.as_of == as_of)
            )
            # --- web pages (issue 18): the details' rows of this run go too ---
            details = metadata.tables[DETAILS_TABLE]
            connection.execute(
                details.delete().where(details.c.model_version == version, details.c.as_of == as_of)
            )
            # --- end web pages ---
            for part in itertools.chain([first], parts):
                if part is not first and _check(part, shown) != (version, as_of):
                    raise AbmInputError(
                        "the parts of one run have one model version and one as-of date",
                        source=shown,
                        field="model_version, as_of",
                    )
                _bulk_insert(connection, table, _history_records(part, version, as_of, stamp))
                # --- web pages (issue 18): what the pages show beyond the score ---
                _store_details(connection, metadata, part, version, as_of)
                # --- end web pages ---
            return _previous_entries(connection, table, version, as_of, stamp)
    except AbmInputError:
        raise
    except database_errors as error:
        raise AbmInputError(
            f"cannot write the score history ({_scrub(getattr(error, 'orig', None) or error, url)})",
            source=shown,
        ) from None
    finally:
        engine.dispose()


def _history_records(ranked: pd.DataFrame, version: str, as_of: str, stamp: str) -> list[tuple]:
    """The history rows of ``ranked``: tuples in :data:`HISTORY_COLUMNS` order, by account."""
    constant = {"model_version": version, "as_of": as_of, "run_at": stamp}
    columns = [
        [constant[name]] * len(ranked) if name in constant else _column_values(ranked, name)
        for name in HISTORY_COLUMNS
    ]
    columns[HISTORY_COLUMNS.index("account_id")] = ranked["account_id"].astype(str).tolist()
    # Sorted by account: the primary key's B-tree then grows at one end instead of taking
    # 100k random inserts.
    return sorted(zip(*columns), key=lambda record: record[0])


def _create_table(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create the history table unless it exists, safely when two first runs race.

    ``checkfirst`` alone is a check-then-act: two writers can both see no table and both
    issue CREATE TABLE, and the loser gets "table already exists" (SQLite) or a duplicate
    table/type error (PostgreSQL). The loser re-checks, in a fresh transaction, and carries on
    when the tables are there (creating what is still missing); any other error is raised.
    """
    # With several tables the loser may lose on the first one while the winner has not yet
    # created the next (SQLite commits each CREATE on its own): so the loser tries again, and
    # checkfirst skips what exists by then. A writer that keeps failing while tables are
    # still missing has a real error.
    attempts = len(metadata.tables) + 2
    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                metadata.create_all(connection, checkfirst=True)
            return
        except sa.exc.SQLAlchemyError:
            with engine.connect() as connection:
                inspector = sa.inspect(connection)
                if all(inspector.has_table(name) for name in metadata.tables):
                    return
            if attempt == attempts - 1:
                raise


def _check_schema(connection: sa.Connection, shown: str) -> None:
    """Refuses a pre-existing table of the same name that is not a score history."""
    present = {c["name"] for c in sa.inspect(connection).get_columns(TABLE_NAME)}
    missing = [c for c in HISTORY_COLUMNS if c not in present]
    if missing:
        raise AbmInputError(
            f"table {TABLE_NAME!r} exists but lacks the columns {', '.join(missing)}",
            source=shown,
            field=TABLE_NAME,
        )


def _bulk_insert(
    connection: sa.Connection,
    table: sa.Table,
    records: list[tuple],
    columns: tuple[str, ...] = HISTORY_COLUMNS,
) -> None:
    """Insert rows (tuples in ``columns`` order) the fastest way the driver offers.

    psycopg 3 gets COPY (its executemany sends rows one by one: ~10 s per 100k accounts);
    SQLite gets the DBAPI's executemany directly (SQLAlchemy's per-row parameter handling
    costs more than the insert itself); other drivers get SQLAlchemy's executemany, which uses
    each dialect's batching (e.g. multi-row VALUES for psycopg2). All run in the caller's
    transaction, on its connection.
    """
    if not records:
        return
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        quote = dialect.identifier_preparer.quote
        copy_sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
        with (
            connection.connection.driver_connection.cursor() as cursor,
            cursor.copy(copy_sql) as copy,
        ):
            for record in records:
                copy.write_row(record)
        return
    if dialect.name == "sqlite":
        compiled = table.insert().values({name: None for name in columns}).compile(dialect=dialect)
        order = [columns.index(name) for name in compiled.positiontup]
        if order != list(range(len(columns))):
            records = [tuple(r[i] for i in order) for r in records]
        cursor = connection.connection.cursor()
        try:
            for start in range(0, len(records), INSERT_CHUNK):
                cursor.executemany(str(compiled), records[start : start + INSERT_CHUNK])
        finally:
            cursor.close()
        return
    for start in range(0, len(records), INSERT_CHUNK):
        connection.execute(
            table.insert(),
            [dict(zip(columns, r)) for r in records[start : start + INSERT_CHUNK]],
        )


def _fetch_all(connection: sa.Connection, query: sa.Select) -> list[tuple]:
    """Rows of a SELECT through the DBAPI cursor: SQLAlchemy's Row objects cost ~1 s per 100k."""
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    params = compiled.params
    args = tuple(params[name] for name in compiled.positiontup) if compiled.positional else params
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return cursor.fetchall()
    finally:
        cursor.close()


def _previous_entries(
    connection: sa.Connection, table: sa.Table, version: str, as_of: str, run_at: str
) -> pd.DataFrame:
    """Each account of this run with its latest earlier row, in one query (window function)."""
    h, current = table.alias("h"), table.alias("c")
    earlier = sa.or_(h.c.as_of < as_of, sa.and_(h.c.as_of == as_of, h.c.run_at < run_at))
    not_this_run = sa.not_(sa.and_(h.c.model_version == version, h.c.as_of == as_of))
    order = sa.func.row_number().over(
        partition_by=h.c.account_id,
        # model_version last: two versions stored at the very same instant still pick one row.
        order_by=(h.c.as_of.desc(), h.c.run_at.desc(), h.c.model_version.desc()),
    )
    inner = (
        sa.select(h.c.account_id, h.c.score, h.c.abm_tier, h.c.rank, order.label("position"))
        .select_from(h.join(current, h.c.account_id == current.c.account_id))
        .where(current.c.model_version == version, current.c.as_of == as_of, earlier, not_this_run)
        .subquery()
    )
    query = sa.select(inner.c.account_id, inner.c.score, inner.c.abm_tier, inner.c.rank).where(
        inner.c.position == 1
    )
    return pd.DataFrame(
        _fetch_all(connection, query), columns=["account_id", "score", "abm_tier", "rank"]
    )


def with_movement(ranked: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``ranked`` with ``previous_*`` columns and ``movement`` (see :func:`record_run`)."""
    out = ranked.copy()
    keys = out["account_id"].astype(str)
    # One index lookup serves the three columns; get_indexer's -1 ("not found") picks the None
    # appended at the end of each column.
    where = pd.Index(previous["account_id"]).get_indexer(keys)
    seen = where >= 0

    def pick(name: str) -> np.ndarray:
        return np.append(previous[name].to_numpy(dtype=object), None)[where]

    out["previous_score"] = pd.array(pick("score"), dtype="Int64")
    out["previous_abm_tier"] = pick("abm_tier")
    out["previous_rank"] = pd.array(pick("rank"), dtype="Int64")
    out["movement"] = [
        movement_text(*values)
        for values in zip(
            _column_values(out, "score"),
            _plain(out["previous_score"]),
            _column_values(out, "abm_tier"),
            _plain(out["previous_abm_tier"]),
            _column_values(out, "rank"),
            _plain(out["previous_rank"]),
            seen.tolist(),
        )
    ]
    return out


def load_history(url: str, account_id: str | None = None) -> pd.DataFrame:
    """The stored runs, oldest first: one account's score history, or every account's.

    Args:
        url: SQLAlchemy URL of the history database.
        account_id: Only this account's rows; all accounts when None.

    Returns:
        One row per stored (account, model version, as-of date), sorted by account, ``as_of``
        and ``run_at``; empty (with the columns) when the account has no history.

    Raises:
        AbmInputError: The URL is invalid, the database cannot be reached, or it holds no
            score history table.
    """
    shown = safe_url(url)
    engine = _engine(url, writing=False)
    metadata = sa.MetaData()
    table = _table(metadata)
    query = sa.select(*(table.c[name] for name in HISTORY_COLUMNS))
    if account_id is not None:
        query = query.where(table.c.account_id == str(account_id))
    query = query.order_by(table.c.account_id, table.c.as_of, table.c.run_at, table.c.model_version)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            if not all(inspector.has_table(name) for name in metadata.tables):
                raise AbmInputError(
                    f"no {TABLE_NAME!r} table: no ranking run has been recorded here", source=shown
                )
            rows = connection.execute(query).all()
    except AbmInputError:
        raise
    except sa.exc.SQLAlchemyError as error:
        raise AbmInputError(
            f"cannot read the score history ({_scrub(getattr(error, 'orig', None) or error, url)})",
            source=shown,
        ) from None
    finally:
        engine.dispose()
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    for name in INT_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    return frame


# --- web pages (issue 18): details of each run and the queries the pages make -------------------

DETAILS_TABLE = "abm_score_details"
DETAIL_TEXT_COLUMNS = ("account_name", "segment", "region", "owner")
DETAIL_FLOAT_COLUMNS = (
    "days_to_close_p10",
    "days_to_close_p50",
    "days_to_close_p90",
    "amount",
)
DETAIL_LONG_TEXT_COLUMNS = ("top_reasons", "risk", "reasons", "model_inputs")
DETAIL_COLUMNS = DETAIL_TEXT_COLUMNS + DETAIL_FLOAT_COLUMNS + DETAIL_LONG_TEXT_COLUMNS
"""Per account and run, next to its score: what the pages filter on and show.

``reasons`` is the scorer's structured reasons (the factors raising and lowering the
propensity, with their pushes in probability points) as JSON text. ``model_inputs`` is the
values the model saw, by feature name, as JSON text (:mod:`abm_ml.web.waterfall`): with the
model that issued the run they give back every feature's push.
"""
ADDED_DETAIL_COLUMNS = ("model_inputs",)
"""Columns added after the details table first shipped: added to an older table on write."""


def details_table(metadata: sa.MetaData) -> sa.Table:
    """The details table, keyed like the history, with indexes for the pages' filters."""
    return sa.Table(
        DETAILS_TABLE,
        metadata,
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.String(10), primary_key=True),
        *(sa.Column(name, sa.String(255)) for name in DETAIL_TEXT_COLUMNS),
        *(sa.Column(name, sa.Float) for name in DETAIL_FLOAT_COLUMNS),
        *(sa.Column(name, sa.Text) for name in DETAIL_LONG_TEXT_COLUMNS),
        sa.Index(f"ix_{DETAILS_TABLE}_run", "as_of", "model_version"),
    )


def history_table(metadata: sa.MetaData) -> sa.Table:
    """The score history table (public name for readers such as the web pages)."""
    return _table(metadata)


def _store_details(
    connection: sa.Connection, metadata: sa.MetaData, ranked: pd.DataFrame, version: str, as_of: str
) -> None:
    """Insert the details rows of ``ranked`` (the caller deleted the run's old ones); a run
    without any detail column stores none."""
    present = [c for c in DETAIL_COLUMNS if c in ranked.columns]
    table = metadata.tables[DETAILS_TABLE]
    if not present:
        return
    columns: dict[str, list] = {"account_id": ranked["account_id"].astype(str).tolist()}
    for name in DETAIL_COLUMNS:
        if name not in ranked.columns:
            continue
        if name == "reasons":
            # Already JSON text when a streamed ranking spilled them.
            columns[name] = [
                value if value is None or isinstance(value, str) else json_text(value)
                for value in ranked[name].tolist()
            ]
        elif name in DETAIL_FLOAT_COLUMNS:
            columns[name] = _plain(pd.to_numeric(ranked[name], errors="coerce").astype(float))
        else:
            values = _plain(ranked[name].astype("string"))
            if name in DETAIL_TEXT_COLUMNS:
                values = [None if v is None else v[:255] for v in values]
            columns[name] = values
    columns["model_version"] = [version] * len(ranked)
    columns["as_of"] = [as_of] * len(ranked)
    # In the table's column order (the compiled INSERT's), sorted by account like the history.
    names = tuple(c.name for c in table.columns if c.name in columns)
    records = sorted(zip(*(columns[name] for name in names)), key=lambda record: record[0])
    _bulk_insert(connection, table, records, names)


def _add_detail_columns(connection: sa.Connection, metadata: sa.MetaData) -> None:
    """Add :data:`ADDED_DETAIL_COLUMNS` to a details table made before they existed."""
    table = metadata.tables[DETAILS_TABLE]
    present = {c["name"] for c in sa.inspect(connection).get_columns(DETAILS_TABLE)}
    quote = connection.dialect.identifier_preparer.quote
    for name in ADDED_DETAIL_COLUMNS:
        if name not in present:
            kind = table.c[name].type.compile(dialect=connection.dialect)
            connection.execute(
                sa.text(f"ALTER TABLE {quote(DETAILS_TABLE)} ADD COLUMN {quote(name)} {kind}")
            )


def read_engine(url: str) -> sa.Engine:
    """An engine for reading the history (bad URLs and missing SQLite files: AbmInputError)."""
    return _engine(url, writing=False)
