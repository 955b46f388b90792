"""Batch ranking for sales ops: who to work first, in which ABM tier, and why.

Accounts come from a CSV/Parquet file or a SQL table/query, are scored by a registered model
(the same :meth:`AccountScorer.score` as everywhere), sorted by priority, and cut into ABM
tiers by capacity: with ``tiers=(10, 50, 500)`` the first 10 accounts are 1:1, the next 50
1:few, the next 500 1:many, the rest nurture. Accounts that cannot be scored (no id, a
repeated id, an unparseable number, no feature at all) go to a separate table with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.data.readers import ROW_PROBLEM, SOURCE_ROW
from abm_ml.data.records import (
    InputSpec,
    ScoringRecords,
    closed_deals,
    read_records,
    require_id_column,
)
from abm_ml.errors import AbmInputError
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.redact import mask_credentials
from abm_ml.schema import ACCOUNT_ID, AMOUNT, ROW_ID

ABM_TIERS = ("1:1", "1:few", "1:many")
NURTURE = "nurture"
FILTER_COLUMNS = ("segment", "region", "owner")
SORT_KEYS = ("priority", "propensity", "expected_value")
CHUNK_ROWS = 100_000
"""Most rows scored at a time: bounds memory on million-account files."""
CHUNKS_PER_WORKER = 4
"""Chunks each worker gets of a list (see :func:`chunk_rows`)."""
MIN_CHUNK_ROWS = 5_000
"""Fewest rows per chunk when a list is split across workers (a call has a fixed cost)."""


@dataclass
class RankResult:
    """The ranked accounts, the ones that could not be scored, and how the run was made."""

    ranked: pd.DataFrame
    unscorable: pd.DataFrame
    meta: dict = field(default_factory=dict)


def load_accounts(
    source: str | Path,
    *,
    table: str | None = None,
    query: str | None = None,
    scorer: AccountScorer | None = None,
    allow_short_rows: bool = False,
    input_spec: InputSpec | None = None,
) -> pd.DataFrame:
    """Read accounts from a CSV/Parquet file or a SQLAlchemy URL with the training reader.

    Given the ``scorer`` (or its ``input_spec``), the separator and encoding of its training
    export are used. CSV
    records cut short or too wide come back with their reason in
    :data:`~abm_ml.data.readers.ROW_PROBLEM`; :func:`rank_accounts` lists them as unscorable.

    Raises:
        AbmInputError: a URL without exactly one of ``table`` or ``query``, or an unreadable source.
    """
    text = str(source)
    check_accounts_source(text, table=table, query=query)
    return read_records(
        text,
        input_spec or (scorer.input if scorer else None),
        table=table,
        query=query,
        allow_short_rows=allow_short_rows,
    )


def check_accounts_source(source: str, *, table: str | None, query: str | None) -> None:
    """Refuse a database URL without exactly one of ``table`` or ``query`` (before any work)."""
    if "://" in source and bool(table) == bool(query):
        raise AbmInputError(
            "a database URL needs exactly one of --table or --query",
            source=mask_credentials(source),
            field="--table/--query",
        )


def parse_tiers(text: str) -> tuple[int, ...]:
    """'10,50,500' -> (10, 50, 500): accounts in 1:1, 1:few and 1:many."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise AbmInputError(
            f"tiers must be whole numbers separated by commas, got {text!r}", field="--tiers"
        ) from None
    if not 1 <= len(sizes) <= 3 or any(s < 0 for s in sizes):
        raise AbmInputError(
            f"give one to three non-negative tier sizes (1:1, 1:few, 1:many), got {text!r}",
            field="--tiers",
        )
    return sizes


def check_sort_key(sort_by: str) -> None:
    """Refuse a sort key that is not one of :data:`SORT_KEYS`."""
    if sort_by not in SORT_KEYS:
        raise AbmInputError(
            f"sort by one of {', '.join(SORT_KEYS)}, not {sort_by!r}", field="sort_by"
        )


def rank_order(sort_values: object, propensity: object) -> np.ndarray:
    """Positions of the accounts, best first: the one ordering of the CLI, reports and ``/rank``.

    Sorted by ``sort_values`` descending; ties by propensity descending, then by input order.
    A missing value (NaN) sorts after every known one instead of counting as zero.
    """
    key = np.asarray(sort_values, dtype=float)
    tie = np.asarray(propensity, dtype=float)
    primary = np.where(np.isnan(key), np.inf, -key)
    secondary = np.where(np.isnan(tie), np.inf, -tie)
    return np.lexsort((np.arange(len(key)), secondary, primary))


def rank_scored(
    scored: pd.DataFrame,
    *,
    sort_by: str = "priority",
    tiers: tuple[int, ...] | None = None,
    top: int | None = None,
) -> pd.DataFrame:
    """Scored accounts in rank order with ``rank`` from 1 and, given ``tiers``, ``abm_tier``.

    Args:
        scored: output of :meth:`AccountScorer.score` (at least ``propensity`` and ``sort_by``).
        sort_by: one of :data:`SORT_KEYS`.
        tiers: sizes of the 1:1, 1:few and 1:many tiers; the rest is nurture.
        top: keep only the first ``top`` accounts (tiers are cut on the whole list first).
    """
    check_sort_key(sort_by)
    order = rank_order(scored[sort_by], scored["propensity"])
    ranked = scored.iloc[order].reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    if tiers is not None:
        ranked.insert(2, "abm_tier", abm_tiers(len(ranked), tiers))
    return ranked.head(top) if top is not None else ranked


def abm_tiers(n: int, sizes: tuple[int, ...]) -> np.ndarray:
    """ABM tier of each position in a ranked list of ``n`` accounts."""
    out = np.full(n, NURTURE, dtype=object)
    start = 0
    for name, size in zip(ABM_TIERS, sizes):
        out[start : start + size] = name
        start += size
    return out


def _unscorable(
    accounts: pd.DataFrame,
    scorer: AccountScorer,
    prepared: ScoringRecords | None,
    seen_ids: set[str] | None = None,
    *,
    closed: bool = True,
) -> tuple[pd.Series, pd.Series]:
    """The reason each account cannot be scored, or NA, and each account's id as stripped
    text (``prepared``: the parsed accounts; ``seen_ids``: ids scored in earlier batches of
    the same list; ``closed``: whether a closed deal is unscorable)."""
    reasons = pd.Series(pd.NA, index=accounts.index, dtype=object)

    def add(mask: pd.Series, reason: str | pd.Series) -> None:
        fresh = mask & reasons.isna()
        reasons[fresh] = reason[fresh] if isinstance(reason, pd.Series) else reason

    if ROW_PROBLEM in accounts.columns:
        # A record the reader found cut short or too wide: its values cannot be trusted.
        add(accounts[ROW_PROBLEM].notna(), accounts[ROW_PROBLEM])
    # A whole CRM export holds won and lost deals too: their outcome is known, there is
    # nothing to rank (and an account's first row is often a deal closed years ago).
    spec = scorer.input
    outcomes = closed_deals(accounts, spec) if closed else pd.Series(dtype=object)
    if outcomes.notna().any():
        reason = f"a closed deal ({spec.label!r} is " + outcomes.astype(str)
        add(outcomes.notna(), reason + "): only open deals are ranked")
    if prepared is not None:
        add(prepared.problems.notna(), prepared.problems)
        accounts = prepared.frame
    ids = accounts[ACCOUNT_ID].astype("string").str.strip()
    add(ids.isna() | (ids == ""), "missing account_id")
    present = pd.Series(False, index=accounts.index)
    for feature in scorer.features:
        name = (
            feature.name
            if feature.name in accounts.columns
            else feature.column
            if feature.column in accounts.columns
            else None
        )
        if name is None:
            continue
        column = accounts[name]
        blank = _blank(column)
        present |= ~blank
        if (
            prepared is None
            and feature.type != "categorical"
            and not pd.api.types.is_numeric_dtype(column)
        ):
            parsed = scorer.preprocessor.raw_values(
                accounts[[name]].rename(columns={name: feature.name})
            )[feature.name]
            bad = parsed.isna() & ~blank
            add(bad, f"unparseable value in {name!r}: " + column.astype(str))
    add(~present, "no feature values at all")
    # Last, among the rows still scorable: an account's first row with a problem does not
    # make its next, good row a repeat of a row that was never scored.
    candidates = reasons.isna() & ids.notna()
    repeated = pd.Series(False, index=ids.index)
    repeated[candidates] = ids[candidates].duplicated(keep="first")
    if seen_ids:
        # A set lookup per id: Series.isin would turn the whole set into an array per batch.
        texts = ids.to_numpy(dtype=object, na_value="")
        earlier = np.fromiter((i in seen_ids for i in texts), dtype=bool, count=len(texts))
        repeated |= pd.Series(earlier & candidates.to_numpy(), index=ids.index)
    add(repeated, "repeated account_id (first occurrence scored)")
    return reasons, ids


def row_ranked_for(
    scorer: AccountScorer, accounts: pd.DataFrame, account_id: str, source: str
) -> pd.DataFrame:
    """The parsed row of ``accounts`` that :func:`rank_accounts` scores for ``account_id``.

    An id that is a row id (an opportunity) gives that row. An account id gives the row the
    ranker would score: its first row that is not a closed deal, a repeat or unreadable, so
    ``abm-ml explain`` explains the number ``abm-ml rank`` printed.

    Raises:
        AbmInputError: the id is not in ``accounts``, or none of the account's rows can be
            scored (with the first row's reason).
    """
    accounts = accounts.reset_index(drop=True)
    prepared = scorer.prepare(accounts)
    frame = prepared.frame if prepared is not None else accounts

    def matches(column: str) -> np.ndarray:
        if column not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        return (frame[column].astype("string").str.strip() == account_id).fillna(False).to_numpy()

    by_row, by_account = matches(ROW_ID), matches(ACCOUNT_ID)
    if not by_row.any() and not by_account.any():
        raise AbmInputError(f"account {account_id!r} not found", source=source, field="account_id")
    rows = (accounts[by_row] if by_row.any() else accounts[by_account]).reset_index(drop=True)
    # A deal asked for by its own id is explained closed or not, unless it cannot be read.
    reasons, _ = _unscorable(rows, scorer, scorer.prepare(rows), closed=not by_row.any())
    good = reasons.isna().to_numpy()
    if not good.any():
        where = f"line {rows[SOURCE_ROW].iloc[0]}" if SOURCE_ROW in rows.columns else "the first"
        count = f"its {len(rows)} rows" if len(rows) > 1 else "its row"
        raise AbmInputError(
            f"{account_id!r}: none of {count} can be scored ({where}: {reasons.iloc[0]})",
            source=source,
        )
    position = np.flatnonzero(by_row if by_row.any() else by_account)[np.argmax(good)]
    return frame.iloc[[position]]


def _blank(column: pd.Series) -> pd.Series:
    """Missing or whitespace-only values; text is stripped once per distinct value."""
    if not (
        pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)
    ):
        return column.isna()
    codes, uniques = pd.factorize(column)
    blank = np.array([str(u).strip() == "" for u in uniques] + [True], dtype=bool)
    # factorize marks missing values -1, which picks the True appended last.
    return pd.Series(blank[codes], index=column.index)


def amount_meta(
    scorer: AccountScorer, known: int, total: int, column: str | None
) -> dict[str, str | None]:
    """Where the ranked amounts come from: per row from the file, the training median, or none.

    Args:
        scorer: the scorer that ranked the accounts.
        known: ranked accounts whose amount the file gives.
        total: ranked accounts.
        column: the file's column the amounts were read from.
    """
    if not scorer.has_amount:
        return {"amount": None, "amount_note": "no deal amount in training: no expected value"}
    median = f"the training median of won deals ({scorer.default_amount:,.0f})"
    if known == 0:
        note = f"every account's amount is {median}: the file has no amount"
        if scorer.input and scorer.input.amount:
            note += f" (expected column {scorer.input.amount!r})"
    else:
        source = f"column {column!r}" if column else "the file"
        note = f"{known} of {total} amounts from {source}"
        if known < total:
            note += f"; {total - known} blank, given {median}"
    return {"amount": "per row" if known else "training median", "amount_note": note}


def known_amounts(frame: pd.DataFrame) -> int:
    """Accounts of ``frame`` (canonical columns) whose amount is given."""
    if AMOUNT not in frame.columns:
        return 0
    return int(pd.to_numeric(frame[AMOUNT], errors="coerce").notna().sum())


@dataclass
class ScoredAccounts:
    """One batch of accounts scored, in input order, and the ones that could not be scored.

    Attributes:
        scored: the scorer's output per scorable account with the reason texts and the
            filter columns (``segment``, ``region``, ``owner``) the file has; None until
            :func:`score_checked` has scored the batch.
        records: the rows that were (or are to be) scored, as the scorer takes them
            (``parsed`` tells how).
        parsed: ``records`` are the :meth:`AccountScorer.prepare` frame.
        unscorable: the other accounts with their ``reason`` (and ``line`` in the file).
        read: accounts read, before the filters.
        after_filters: accounts left by the filters.
        amounts_known: scorable accounts whose amount the file gives.
        amount_column: the file's column the amounts were read from.
        context: the filter columns of the scorable accounts, copied into ``scored``.
    """

    scored: pd.DataFrame | None
    records: pd.DataFrame
    parsed: bool
    unscorable: pd.DataFrame
    read: int
    after_filters: int
    amounts_known: int
    amount_column: str | None
    context: pd.DataFrame = field(default_factory=pd.DataFrame)


def check_accounts(
    scorer: AccountScorer,
    accounts: pd.DataFrame,
    *,
    filters: dict[str, list[str]] | None = None,
    seen_ids: set[str] | None = None,
) -> ScoredAccounts:
    """Filter one batch of accounts and set the unscorable ones apart; score with
    :func:`score_checked`.

    Args:
        seen_ids: account ids scored in earlier batches of the same list: their repeats here
            are unscorable ("repeated account_id"), as a repeat in the same batch is. The ids
            to score here are added to it.
        Others: as for :func:`rank_accounts`.
    """
    accounts = accounts.reset_index(drop=True)
    require_id_column(accounts, scorer.input, "accounts")
    if scorer.input is None and ACCOUNT_ID not in accounts.columns:
        accounts = accounts.assign(**{ACCOUNT_ID: accounts[ROW_ID]})
    n_read = len(accounts)
    for column, wanted in (filters or {}).items():
        if not wanted:
            continue
        if column not in accounts.columns:
            raise AbmInputError(
                f"cannot filter by {column!r}: the accounts have no such column",
                field=f"--{column}",
            )
        accounts = accounts[
            accounts[column].astype(str).isin([str(w) for w in wanted])
        ].reset_index(drop=True)

    prepared = scorer.prepare(accounts)
    reasons, ids = _unscorable(accounts, scorer, prepared, seen_ids)
    bad = reasons.notna()
    if prepared is not None:
        # Ids as the scorer gives them (the spec's account column, else the row id).
        accounts = accounts.assign(**{ACCOUNT_ID: prepared.frame[ACCOUNT_ID].to_numpy()})
    unscorable = accounts[bad].copy()
    unscorable.insert(0, "reason", reasons[bad].astype(str))
    if SOURCE_ROW in unscorable.columns:
        unscorable = unscorable.rename(columns={SOURCE_ROW: "line"})
    unscorable = unscorable.drop(columns=[ROW_PROBLEM], errors="ignore")
    good = accounts[~bad].drop(columns=[ROW_PROBLEM], errors="ignore").reset_index(drop=True)
    # The accounts were parsed once above; the scorer takes the parsed rows as they are.
    to_score = (
        prepared.frame[~bad.to_numpy()].reset_index(drop=True) if prepared is not None else good
    )
    if seen_ids is not None:
        seen_ids.update(ids[~bad].tolist())
    return ScoredAccounts(
        scored=None,
        records=to_score,
        parsed=prepared is not None,
        unscorable=unscorable.reset_index(drop=True),
        read=n_read,
        after_filters=len(accounts),
        amounts_known=known_amounts(to_score),
        amount_column=prepared.amount_column if prepared is not None else None,
        context=good[[c for c in FILTER_COLUMNS if c in good.columns]],
    )


def score_checked(
    scorer: AccountScorer,
    part: ScoredAccounts,
    *,
    k_up: int = 3,
    with_reasons: bool = True,
    velocity_reasons: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScoredAccounts:
    """``part`` (from :func:`check_accounts`) with its scorable accounts scored."""
    scored = score_in_chunks(
        scorer,
        part.records,
        parsed=part.parsed,
        k_up=k_up,
        with_reasons=with_reasons,
        velocity_reasons=velocity_reasons,
        workers=workers,
        progress=progress,
    )
    return with_scores(part, scored)


def with_scores(part: ScoredAccounts, scored: pd.DataFrame) -> ScoredAccounts:
    """``part`` with ``scored`` (its records' scores, in order) and its filter columns."""
    for column in part.context.columns:
        scored[column] = part.context[column].to_numpy()
    return replace(part, scored=scored)


def score_accounts(
    scorer: AccountScorer,
    accounts: pd.DataFrame,
    *,
    filters: dict[str, list[str]] | None = None,
    k_up: int = 3,
    with_reasons: bool = True,
    velocity_reasons: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    seen_ids: set[str] | None = None,
) -> ScoredAccounts:
    """:func:`check_accounts` then :func:`score_checked`: one batch filtered, checked, scored."""
    return score_checked(
        scorer,
        check_accounts(scorer, accounts, filters=filters, seen_ids=seen_ids),
        k_up=k_up,
        with_reasons=with_reasons,
        velocity_reasons=velocity_reasons,
        workers=workers,
        progress=progress,
    )


def rank_accounts(
    scorer: AccountScorer,
    accounts: pd.DataFrame,
    *,
    tiers: tuple[int, ...] = (10, 50, 500),
    as_of: str | None = None,
    filters: dict[str, list[str]] | None = None,
    sort_by: str = "priority",
    model_name: str = "",
    model_version: str = "",
    k_up: int = 3,
    progress: Callable[[int, int], None] | None = None,
    reasons_for: int | None = None,
    velocity_reasons: bool = False,
    workers: int | None = None,
) -> RankResult:
    """Score, sort and tier accounts; list the unscorable ones with their reasons.

    Every account is held in memory; :mod:`abm_ml.modeling.rank_stream` ranks a list read in
    chunks with the same steps (:func:`score_accounts`, :func:`rank_order`, :func:`abm_tiers`).

    Args:
        reasons_for: compute reasons (TreeSHAP, most of the cost) only for the first
            ``reasons_for`` accounts of the ranking; the others get empty reason columns.
            None: every account. The scores and the order do not depend on it.
        velocity_reasons: add ``velocity_reasons`` (what moves the P50 days to close); they
            double the TreeSHAP work.
        workers: chunks scored at once (threads; LightGBM releases the GIL while it
            computes). None: one per available core.
        progress: ``progress(done, total)`` after each chunk of accounts scored.
    """
    check_sort_key(sort_by)
    as_of = ranking_date(as_of)
    explain_all = reasons_for is None
    part = score_accounts(
        scorer,
        accounts,
        filters=filters,
        k_up=k_up,
        with_reasons=explain_all,
        velocity_reasons=velocity_reasons,
        workers=workers,
        progress=progress,
    )
    ranked = part.scored
    explain_all = explain_all or int(reasons_for or 0) >= len(ranked)
    if reasons_for is not None:
        _add_reasons_for_top(
            scorer,
            ranked,
            part.records,
            parsed=part.parsed,
            top=min(max(int(reasons_for), 0), len(ranked)),
            sort_by=sort_by,
            k_up=k_up,
            velocity_reasons=velocity_reasons,
        )
    if ranked.empty:
        ranked = empty_ranking(sort_by)
    ranked = rank_scored(ranked, sort_by=sort_by, tiers=tiers)
    ranked["model_name"] = model_name
    ranked["model_version"] = str(model_version)
    ranked["as_of"] = as_of
    meta = ranking_meta(
        scorer,
        as_of=as_of,
        read=part.read,
        after_filters=part.after_filters,
        ranked=len(ranked),
        unscorable=len(part.unscorable),
        tiers=tiers,
        sort_by=sort_by,
        filters=filters,
        model_name=model_name,
        model_version=model_version,
        reasons_for=len(ranked) if explain_all else min(int(reasons_for or 0), len(ranked)),
        amounts_known=part.amounts_known,
        amount_column=part.amount_column,
    )
    return RankResult(ranked=ranked, unscorable=part.unscorable, meta=meta)


def empty_ranking(sort_by: str) -> pd.DataFrame:
    """A ranking of no account: the columns ranking needs, for a list with nothing to score."""
    # dict.fromkeys: sorting by propensity must not name the column twice.
    return pd.DataFrame(columns=list(dict.fromkeys(["account_id", "propensity", sort_by])))


def ranking_date(as_of: str | None) -> str:
    """The ranking's as-of date as ``YYYY-MM-DD`` (today when not given)."""
    return str(pd.Timestamp(as_of).date()) if as_of else str(pd.Timestamp.now().date())


def ranking_meta(
    scorer: AccountScorer,
    *,
    as_of: str,
    read: int,
    after_filters: int,
    ranked: int,
    unscorable: int,
    tiers: tuple[int, ...],
    sort_by: str,
    filters: dict[str, list[str]] | None,
    model_name: str,
    model_version: str,
    reasons_for: int,
    amounts_known: int,
    amount_column: str | None,
) -> dict:
    """How a ranking run was made: counts, tiers, model, and what its columns are made of."""
    return {
        "as_of": as_of,
        "accounts_read": read,
        "accounts_after_filters": after_filters,
        "ranked": ranked,
        "unscorable": unscorable,
        "tiers": dict(zip(ABM_TIERS, tiers)),
        "sort_by": sort_by,
        "filters": {k: v for k, v in (filters or {}).items() if v},
        "model_name": model_name,
        "model_version": str(model_version),
        "reasons_for": reasons_for,
        **scorer.basis(),
        **amount_meta(scorer, amounts_known, ranked, amount_column),
    }


# --------------------------------------------------------------------------------------------
# Two propensities: to buy within a horizon (every account), to win the open deal (where one is)
# --------------------------------------------------------------------------------------------

BUY, WIN = "buy", "win"
"""Values of ``propensity_used``: which model's propensity ranks the account."""
_PER_MODEL = ("propensity", "tier", "score", "reasons", "top_reasons", "risk")
_DEAL_COLUMNS = (
    "days_to_close_p10",
    "days_to_close_p50",
    "days_to_close_p90",
    AMOUNT,
    "expected_value",
)


def account_ids_of(accounts: pd.DataFrame, input_spec: InputSpec | None) -> pd.Series:
    """Each raw record's account id as text, read as the scorer reads it (spec column first)."""
    names = (
        (input_spec.account_id, ACCOUNT_ID, input_spec.row_id, ROW_ID)
        if input_spec
        else (ACCOUNT_ID, ROW_ID)
    )
    column = next((n for n in names if n and n in accounts.columns), None)
    if column is None:
        raise AbmInputError("the accounts have no account id column", field=ACCOUNT_ID)
    return accounts[column].astype("string").str.strip()


def combine_propensities(buy: pd.DataFrame, win: pd.DataFrame | None) -> pd.DataFrame:
    """One row per account with ``buy_propensity``, ``win_propensity`` and the one that applies.

    Args:
        buy: the propensity-to-buy model's scored accounts (every account).
        win: the opportunity model's scored accounts (those with an open deal), or None.

    Returns:
        ``buy_*`` and ``win_*`` columns (propensity, tier, score, reasons), the deal columns
        (days, amount, expected value) of the win model, ``propensity_used`` (``win`` where a
        deal is open and the win model scored it, else ``buy``), and ``propensity``, ``tier``,
        ``score``, reasons and ``priority`` taken from the model that applies.
    """
    base = buy.drop(
        columns=[c for c in ("rank", "abm_tier", "priority", *_DEAL_COLUMNS) if c in buy.columns]
    )
    out = base.rename(columns={c: f"{BUY}_{c}" for c in _PER_MODEL if c in base.columns})
    if win is not None and len(win):
        keep = [ACCOUNT_ID, *(c for c in (*_PER_MODEL, *_DEAL_COLUMNS) if c in win.columns)]
        part = win[keep].rename(columns={c: f"{WIN}_{c}" for c in _PER_MODEL})
        out = out.merge(part, on=ACCOUNT_ID, how="left", validate="one_to_one")
    else:
        out[f"{WIN}_propensity"] = np.nan
    applies_win = out[f"{WIN}_propensity"].notna().to_numpy()
    out["propensity_used"] = np.where(applies_win, WIN, BUY)
    for column in _PER_MODEL:
        mine, theirs = f"{BUY}_{column}", f"{WIN}_{column}"
        if mine in out.columns and theirs in out.columns:
            out[column] = out[theirs].where(applies_win, out[mine])
        elif mine in out.columns:
            out[column] = out[mine]
    out = out.drop(columns=[f"{BUY}_reasons", f"{WIN}_reasons"], errors="ignore")
    out = out.rename(
        columns={f"{BUY}_top_reasons": "buy_reasons", f"{WIN}_top_reasons": "win_reasons"}
    )
    # Both are probabilities of a won deal from this account: the one that applies ranks it.
    out["priority"] = out["propensity"].astype(float)
    return out


def rank_buy_and_win(
    buy_scorer: AccountScorer,
    win_scorer: AccountScorer,
    accounts: pd.DataFrame,
    open_deal_accounts: set[str],
    *,
    tiers: tuple[int, ...] = (10, 50, 500),
    as_of: str | None = None,
    filters: dict[str, list[str]] | None = None,
    buy_model: tuple[str, str] = ("", ""),
    win_model: tuple[str, str] = ("", ""),
    k_up: int = 3,
) -> RankResult:
    """Rank every account by the propensity that applies to it, with both and their reasons.

    Every account is scored by ``buy_scorer`` (propensity to buy within its horizon); accounts
    in ``open_deal_accounts`` are also scored by ``win_scorer`` (the open deal's win
    propensity), which then ranks them. Both go through :func:`rank_accounts`, so filters,
    unscorable rows and reasons are handled once; an account the win model cannot score keeps
    its buy propensity and is listed as unscorable by the win model.

    Args:
        buy_scorer: the propensity-to-buy model.
        win_scorer: the opportunity (win) model.
        accounts: the accounts, as for :func:`rank_accounts` (both models read the same file).
        open_deal_accounts: ids of the accounts with a deal open at ``as_of``.
        tiers: sizes of the 1:1, 1:few and 1:many tiers, cut in priority order.
        as_of: the ranking date.
        filters: as for :func:`rank_accounts`.
        buy_model: registered name and version of the buy model.
        win_model: registered name and version of the win model.
        k_up: reasons per account and model.
    """
    accounts = accounts.reset_index(drop=True)
    common = {
        "tiers": (),
        "as_of": as_of,
        "filters": filters,
        "sort_by": "propensity",
        "k_up": k_up,
    }
    buy = rank_accounts(
        buy_scorer, accounts, model_name=buy_model[0], model_version=buy_model[1], **common
    )
    ids = account_ids_of(accounts, win_scorer.input)
    open_rows = accounts[ids.isin({str(a) for a in open_deal_accounts}).to_numpy()]
    win = (
        rank_accounts(
            win_scorer, open_rows, model_name=win_model[0], model_version=win_model[1], **common
        )
        if len(open_rows)
        else None
    )
    combined = combine_propensities(buy.ranked, win.ranked if win is not None else None)
    used = combined["propensity_used"].to_numpy()
    combined["model_name"] = np.where(used == WIN, win_model[0], buy_model[0])
    combined["model_version"] = np.where(used == WIN, str(win_model[1]), str(buy_model[1]))
    ranked = rank_scored(combined, sort_by="priority", tiers=tiers)
    unscorable = [buy.unscorable.assign(model=BUY)]
    if win is not None:
        unscorable.append(win.unscorable.assign(model=WIN))
    horizon = buy_scorer.metadata.get("horizon_days")
    within = f"within {horizon} days" if horizon else "within the model's horizon"
    meta = {
        **buy.meta,
        "ranked": len(ranked),
        "unscorable": int(sum(len(u) for u in unscorable)),
        "tiers": dict(zip(ABM_TIERS, tiers)),
        "sort_by": "priority",
        "model_name": f"{buy_model[0]} + {win_model[0]}",
        "model_version": f"{buy_model[1]} + {win_model[1]}",
        "buy_model": f"{buy_model[0]} v{buy_model[1]}",
        "win_model": f"{win_model[0]} v{win_model[1]}",
        "horizon_days": horizon,
        "open_deals": int((used == WIN).sum()),
        "open_deals_not_scored": len(open_rows) - int((used == WIN).sum()),
        "propensity": (
            f"win propensity (the open deal is won) for the {int((used == WIN).sum()):,} accounts "
            f"with an open deal; propensity to buy (a deal created {within} and won) for the others"
        ),
        "priority": "the propensity that applies (win where a deal is open, else buy)",
        "days_to_close": "open deals only (win model)"
        if win is not None
        else "none (no open deal)",
        "expected_value": "win propensity x the open deal's amount (open deals only)",
        **({"amount_note": win.meta.get("amount_note")} if win is not None else {}),
    }
    return RankResult(ranked=ranked, unscorable=pd.concat(unscorable, ignore_index=True), meta=meta)


def chunk_rows(n: int, workers: int) -> int:
    """Rows per chunk: :data:`CHUNKS_PER_WORKER` chunks per worker, at most :data:`CHUNK_ROWS`.

    Several chunks per worker, not one: a chunk's parsing and reasons hold the GIL while its
    TreeSHAP does not, and workers that start one chunk each at the same moment reach those
    phases together and wait for each other; with more, smaller chunks they drift apart, so
    one worker's Python runs while another's LightGBM does.
    """
    per_chunk = -(-n // (max(workers, 1) * CHUNKS_PER_WORKER))
    return max(MIN_CHUNK_ROWS, min(CHUNK_ROWS, per_chunk))


def chunk_scorer(
    scorer: AccountScorer,
    *,
    parsed: bool,
    k_up: int = 3,
    with_reasons: bool = True,
    velocity_reasons: bool = False,
    structured: bool = True,
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """What scoring one chunk of records is: :meth:`AccountScorer.score` with the reason texts.

    :func:`score_in_chunks` and the streamed ranking
    (:class:`~abm_ml.modeling.rank_stream.StreamedRanking`) run it on their chunks. With
    ``structured`` False the reasons are their texts only (no ``reasons`` dicts).
    """

    def score_chunk(records: pd.DataFrame) -> pd.DataFrame:
        return scorer.score(
            records,
            k_up=k_up,
            k_down=1,
            with_reasons=with_reasons,
            with_velocity_reasons=velocity_reasons,
            parsed=parsed,
            structured_reasons=structured,
            reason_texts=True,
        )

    return score_chunk


def split_rows(n: int, workers: int) -> list[slice]:
    """The chunks (row slices) ``n`` records are scored in by ``workers`` workers."""
    size = chunk_rows(n, workers)
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def score_in_chunks(
    scorer: AccountScorer,
    records: pd.DataFrame,
    *,
    parsed: bool,
    k_up: int = 3,
    with_reasons: bool = True,
    velocity_reasons: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """:meth:`AccountScorer.score` on ``records`` in chunks, several at once, in input order.

    Each chunk is scored with LightGBM's own thread count (``ABM_ML_NUM_THREADS``, 1 by
    default) in a thread of its own: LightGBM releases the GIL while it computes, so the
    TreeSHAP of ``workers`` chunks runs in parallel while Python words another's reasons.
    Every row is computed independently, so the output is the same for any chunking.
    """
    from abm_ml.service.settings import available_cores

    workers = workers or available_cores()
    score_chunk = chunk_scorer(
        scorer,
        parsed=parsed,
        k_up=k_up,
        with_reasons=with_reasons,
        velocity_reasons=velocity_reasons,
    )
    chunks = split_rows(len(records), workers)
    parts = []
    with ThreadPoolExecutor(max_workers=min(workers, max(len(chunks), 1))) as pool:
        scored = pool.map(lambda rows: score_chunk(records.iloc[rows]), chunks)
        for rows, part in zip(chunks, scored):
            parts.append(part)
            if progress is not None:
                progress(rows.stop, len(records))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _add_reasons_for_top(
    scorer: AccountScorer,
    scored: pd.DataFrame,
    records: pd.DataFrame,
    *,
    parsed: bool,
    top: int,
    sort_by: str,
    k_up: int,
    velocity_reasons: bool,
) -> None:
    """Reasons for the first ``top`` accounts of the ranking only (in place; others empty).

    The scores come from the pass without reasons; the reasons of the chosen accounts are
    computed on them alone, so TreeSHAP runs on ``top`` rows instead of every row.
    """
    chosen = np.sort(rank_order(scored[sort_by], scored["propensity"])[:top])
    explained = score_in_chunks(
        scorer,
        records.iloc[chosen],
        parsed=parsed,
        k_up=k_up,
        with_reasons=True,
        velocity_reasons=velocity_reasons,
    )
    columns = ["reasons", "top_reasons", "risk"] + (
        ["velocity_reasons", "days_reasons"] if "velocity_reasons" in explained.columns else []
    )
    for column in columns:
        # Accounts past the cut: no structured reasons (None), empty text.
        empty = "" if column in ("top_reasons", "risk", "days_reasons") else None
        values = np.full(len(scored), empty, dtype=object)
        if len(chosen):
            values[chosen] = explained[column].to_numpy(dtype=object)
        scored[column] = values


OUTPUT_COLUMNS = (
    "rank",
    "account_id",
    "abm_tier",
    "tier",
    "propensity",
    "propensity_used",
    "buy_propensity",
    "win_propensity",
    "score",
    "days_to_close_p10",
    "days_to_close_p50",
    "days_to_close_p90",
    "amount",
    "expected_value",
    "priority",
    "top_reasons",
    "risk",
    "buy_reasons",
    "win_reasons",
    "days_reasons",
    "movement",
    "segment",
    "region",
    "owner",
    "model_name",
    "model_version",
    "as_of",
)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make Excel or LibreOffice read a cell as a formula (OWASP CSV injection)."""
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that a spreadsheet would run as a formula start with ``'``.

    An account name such as ``=HYPERLINK(...)`` or ``@SUM(...)`` from a CRM export must not
    execute when sales ops open the CSV. Numeric columns are untouched, and so is text that is
    a plain number (``-5``), which a spreadsheet reads as that number and nothing else.
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        text = values.astype("string")
        risky = text.str.startswith(FORMULA_STARTS).fillna(False) & ~text.str.match(
            _PLAIN_NUMBER
        ).fillna(False)
        if risky.any():
            out[column] = values.astype(object).where(~risky, "'" + text.astype(object))
    return out


def write_ranked(ranked: pd.DataFrame, path: Path) -> Path:
    """CSV or Parquet (by suffix) with the columns sales ops read; structured reasons stay out.

    CSV cells that would run as spreadsheet formulas are neutralised
    (:func:`neutralise_formulas`); Parquet keeps the values as they are.
    """
    columns = [c for c in OUTPUT_COLUMNS if c in ranked.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = ranked[columns]
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        neutralise_formulas(frame).to_csv(path, index=False, float_format="%.4f")
    return path


def write_unscorable(unscorable: pd.DataFrame, path: Path) -> Path:
    """The accounts that could not be scored, with the reason, as CSV safe to open in Excel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise_formulas(unscorable).to_csv(path, index=False)
    return path
