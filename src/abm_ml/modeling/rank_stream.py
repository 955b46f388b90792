"""Ranking a list too large to hold at once: read, scored and written in chunks.

``abm-ml rank`` reads the accounts in chunks (:func:`abm_ml.data.records.iter_records`),
checks each chunk with :func:`~abm_ml.modeling.ranking.check_accounts` and scores its parts
with :func:`~abm_ml.modeling.ranking.chunk_scorer` (the batch ranker's own steps: filters,
unscorable rows with their reasons, the one scorer) on threads shared across chunks, and spills
what the written list needs to a Parquet file per chunk. The reasons are worded as texts from
their arrays; their dicts are made only where they are kept (the history's details, the head
of the list the report shows). Only what orders the list stays in memory: each
account's sort key and propensity, its id (to find repeats across chunks) and the head of the
list for the report. Once every chunk is scored, :func:`~abm_ml.modeling.ranking.rank_order`
and :func:`~abm_ml.modeling.ranking.abm_tiers` rank the whole list, exactly as
:func:`~abm_ml.modeling.ranking.rank_accounts` does in memory, and the ranked file is written
in that order, slice by slice, from the spilled chunks. The score history is stored chunk by
chunk in one transaction (:func:`abm_ml.reporting.history.record_parts`).

With ``reasons_for=N`` the chunks are scored without reasons and the best N accounts seen so
far are kept (a chunk's best N and the best N before it contain the best N of both), so only
those N are explained at the end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Self, TypeVar

import numpy as np
import pandas as pd

from abm_ml.jsontext import json_text
from abm_ml.modeling.ranking import (
    FILTER_COLUMNS,
    OUTPUT_COLUMNS,
    RankResult,
    ScoredAccounts,
    abm_tiers,
    check_accounts,
    check_sort_key,
    chunk_scorer,
    empty_ranking,
    neutralise_formulas,
    rank_order,
    ranking_date,
    ranking_meta,
    score_in_chunks,
    split_rows,
    with_scores,
)
from abm_ml.modeling.scorer import OUTPUT_COLUMNS as SCORED_COLUMNS
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.service.settings import available_cores

READ_ROWS = 50_000
"""Accounts read and scored at a time: a chunk's parsing and scoring hold a few KB per account."""
RELEASE_EVERY = 8
"""Chunks between two :func:`release_memory` calls while scoring. Memory handed back is
faulted in again by the next chunk (zeroed page by page): after every chunk that was 180k page
faults and ~0.5 s of system time per million accounts, with the same peak RSS (1M accounts:
1.21 vs 1.22 GiB streamed, 1.45 GiB through the default ``abm-ml rank``)."""
REPORT_TOP = 200
"""Accounts at the head of the list kept whole (structured reasons) for the report."""
REASONS_JSON = "reasons"
"""Spilled column: the structured reasons as JSON text (only when the history keeps them)."""
INPUTS_JSON = "model_inputs"
"""Spilled column: the model inputs as JSON text (see :mod:`abm_ml.web.waterfall`)."""
_POSITION = "_abm_position"
_RUN_COLUMNS = ("model_name", "model_version", "as_of")
_REASON_COLUMNS = ("reasons", "top_reasons", "risk", "velocity_reasons", "days_reasons")
_TEXT_REASONS = ("top_reasons", "risk", "days_reasons")
_LIGHT = (*SCORED_COLUMNS, *FILTER_COLUMNS)
"""Columns of every ranked account the report reads (tier cards, charts, totals): the scorer's
own columns and the filter columns."""


_END = object()
T = TypeVar("T")


def _one_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` in order, each made in a background thread while the caller uses the last."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="abm-ml-write") as pool:
        it = iter(items)
        upcoming = pool.submit(next, it, _END)
        while (item := upcoming.result()) is not _END:
            upcoming = pool.submit(next, it, _END)
            yield item


def release_memory() -> None:
    """Hand the memory freed so far back to the system (every :data:`RELEASE_EVERY` chunks,
    and before each step of the end: ranking, history, writing).

    glibc keeps freed heap (per thread arena) and Arrow's allocator keeps its pool; without
    this, the peak of the chunks' parsing and scoring stays resident under the end's own.
    """
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    if name and "libc" in name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
            pass


class StreamedRanking:
    """One ranking run over chunks of accounts; see the module docstring.

    Use: :meth:`add` each chunk, :meth:`finish`, then optionally :meth:`history_parts` for
    the score history, :meth:`write` the ranked file and :meth:`result` for the report.
    """

    def __init__(
        self,
        scorer: AccountScorer,
        folder: Path,
        *,
        unscorable_path: Path,
        tiers: tuple[int, ...] = (10, 50, 500),
        as_of: str | None = None,
        filters: dict[str, list[str]] | None = None,
        sort_by: str = "priority",
        model_name: str = "",
        model_version: str = "",
        k_up: int = 3,
        reasons_for: int | None = None,
        velocity_reasons: bool = False,
        workers: int | None = None,
        details: bool = False,
    ) -> None:
        """Args as for :func:`~abm_ml.modeling.ranking.rank_accounts`, and:

        Args:
            folder: an empty folder for the spilled chunks (the caller removes it).
            unscorable_path: the CSV the unscorable accounts are written to as they are found.
            details: also spill the structured reasons and the model inputs as JSON, for
                the score history's details (the account pages).
        """
        check_sort_key(sort_by)
        self.scorer = scorer
        self.folder = folder
        self.unscorable_path = unscorable_path
        self.tiers = tiers
        self.as_of = ranking_date(as_of)
        self.filters = filters
        self.sort_by = sort_by
        self.model_name = model_name
        self.model_version = str(model_version)
        self.k_up = k_up
        self.reasons_for = None if reasons_for is None else max(int(reasons_for), 0)
        self.velocity_reasons = velocity_reasons
        self.workers = workers or available_cores()
        self.details = details
        self._files: list[Path] = []
        self._sizes: list[int] = []
        self._keys: list[np.ndarray] = []
        self._propensity: list[np.ndarray] = []
        self._seen: set[str] = set()
        self._head: pd.DataFrame | None = None
        self._head_records: pd.DataFrame | None = None
        self._parsed = True
        self._unscorable: list[pd.DataFrame] = []
        self._unscorable_header: list[str] | None = None
        self._unscorable_written = False
        self._counts = {"read": 0, "after_filters": 0, "amounts_known": 0}
        self._amount_column: str | None = None
        self.order: np.ndarray | None = None
        self._rank: np.ndarray | None = None
        self._tier: np.ndarray | None = None
        self._explained: pd.DataFrame | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._score_chunk: Callable[[pd.DataFrame], pd.DataFrame] | None = None
        self._pending: deque[tuple[ScoredAccounts, list[slice], list[Future], Callable | None]] = (
            deque()
        )

    @property
    def scored(self) -> int:
        """Accounts scored so far."""
        return int(sum(self._sizes))

    def unscorable_counts(self) -> pd.Series:
        """Accounts that could not be scored so far, by reason, the most frequent first."""
        if not self._unscorable:
            return pd.Series(dtype="int64")
        return pd.concat(self._unscorable)["reason"].value_counts()

    def add(
        self, accounts: pd.DataFrame, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Take one chunk of accounts (in input order after the chunks before it).

        The chunk is checked here (filters, unscorable rows, repeats of earlier chunks) and
        its parts are queued for the scoring threads behind the chunk before it; then the
        chunk before it is collected (kept and spilled). The threads never wait for the
        caller: while they score this chunk, the caller collects the one before and reads
        and checks the next. At most three chunks are in memory.
        """
        part = check_accounts(self.scorer, accounts, filters=self.filters, seen_ids=self._seen)
        self._counts["read"] += part.read
        self._counts["after_filters"] += part.after_filters
        self._counts["amounts_known"] += part.amounts_known
        self._amount_column = self._amount_column or part.amount_column
        self._parsed = part.parsed
        self._write_unscorable(part.unscorable)
        if part.records.empty:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="abm-ml-rank"
            )
            self._score_chunk = chunk_scorer(
                self.scorer,
                parsed=part.parsed,
                k_up=self.k_up,
                with_reasons=self.reasons_for is None,
                velocity_reasons=self.velocity_reasons,
                # The reasons' dicts only where they are kept for every account (the
                # history); the head's are made for it at the end (_structure_head).
                structured=self.details,
            )
        records = part.records
        rows = split_rows(len(records), self.workers)
        futures = [self._pool.submit(self._score_chunk, records.iloc[r]) for r in rows]
        self._pending.append((part, rows, futures, progress))
        while len(self._pending) > 1:
            self._collect(*self._pending.popleft())

    def _collect(
        self,
        part: ScoredAccounts,
        rows: list[slice],
        futures: list[Future],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        """Wait for a chunk's scores; keep its keys and head, spill it."""
        parts = []
        for r, future in zip(rows, futures):
            parts.append(future.result())
            if progress is not None:
                progress(r.stop, len(part.records))
        part = with_scores(part, pd.concat(parts, ignore_index=True))
        del parts
        scored = part.scored
        offset = self.scored
        positions = np.arange(offset, offset + len(scored))
        self._keys.append(scored[self.sort_by].to_numpy(dtype=float))
        self._propensity.append(scored["propensity"].to_numpy(dtype=float))
        self._keep_head(scored, part, positions)
        self._spill(scored, part)
        self._sizes.append(len(scored))
        del part, scored
        if len(self._sizes) % RELEASE_EVERY == 0:
            release_memory()

    def close(self) -> None:
        """Stop the background scoring (after an error) or wait for it; idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        self._score_chunk = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _keep_head(self, scored: pd.DataFrame, part: ScoredAccounts, positions: np.ndarray) -> None:
        """Keep the best accounts seen so far, whole: the report's head and ``reasons_for``."""
        keep = max(REPORT_TOP, self.reasons_for or 0)
        mine = rank_order(scored[self.sort_by], scored["propensity"])[:keep]
        # Positions stay in input order, so rank_order's last tie-break (input order) holds.
        mine = np.sort(mine)
        head = scored.iloc[mine].assign(**{_POSITION: positions[mine]})
        records = part.records.iloc[mine]
        if self._head is not None:
            head = pd.concat([self._head, head], ignore_index=True)
            records = pd.concat([self._head_records, records], ignore_index=True)
        best = np.sort(rank_order(head[self.sort_by], head["propensity"])[:keep])
        self._head = head.iloc[best].reset_index(drop=True)
        self._head_records = records.iloc[best].reset_index(drop=True)

    def _spill(self, scored: pd.DataFrame, part: ScoredAccounts) -> None:
        """Write what the ranked file and the history need of this chunk to Parquet."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [c for c in (*OUTPUT_COLUMNS, *_LIGHT) if c in scored.columns]
        table = pa.Table.from_pandas(scored[list(dict.fromkeys(columns))], preserve_index=False)
        if self.details and len(scored):
            from abm_ml.web.waterfall import record_inputs

            # ~2 KB of JSON per account: made into Arrow strings directly, since pandas'
            # conversion of object columns cost several times the encoding itself.
            if "reasons" in scored.columns:
                reasons = [None if r is None else json_text(r) for r in scored["reasons"]]
                table = table.append_column(REASONS_JSON, pa.array(reasons, pa.string()))
            inputs = record_inputs(self.scorer, part.records)
            table = table.append_column(INPUTS_JSON, pa.array(inputs, pa.string()))
        path = self.folder / f"chunk-{len(self._files):05d}.parquet"
        pq.write_table(table, path)
        self._files.append(path)

    def _write_unscorable(self, unscorable: pd.DataFrame) -> None:
        """Append this chunk's unscorable accounts to the CSV; keep their reasons and ids."""
        if self._unscorable_header is None:
            self._unscorable_header = list(unscorable.columns)
        if unscorable.empty:
            return
        self.unscorable_path.parent.mkdir(parents=True, exist_ok=True)
        neutralise_formulas(unscorable.reindex(columns=self._unscorable_header)).to_csv(
            self.unscorable_path,
            mode="a" if self._unscorable_written else "w",
            header=not self._unscorable_written,
            index=False,
        )
        self._unscorable_written = True
        light = [c for c in ("reason", "line", "account_id") if c in unscorable.columns]
        self._unscorable.append(unscorable[light])

    def finish(self) -> None:
        """Rank the whole list; explain the head when reasons are for the top N only."""
        while self._pending:
            self._collect(*self._pending.popleft())
        self.close()
        if not self._unscorable_written:
            # An empty file with the header says "none", as the in-memory ranking writes it.
            self.unscorable_path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(columns=self._unscorable_header or ["reason"]).to_csv(
                self.unscorable_path, index=False
            )
        keys = np.concatenate(self._keys) if self._keys else np.array([])
        propensity = np.concatenate(self._propensity) if self._propensity else np.array([])
        self.order = rank_order(keys, propensity)
        n = len(self.order)
        self._rank = np.empty(n, dtype=np.int64)
        self._rank[self.order] = np.arange(1, n + 1)
        self._tier = np.empty(n, dtype=object)
        self._tier[self.order] = abm_tiers(n, self.tiers)
        if self.reasons_for is not None and self._head is not None:
            self._explain_head(min(self.reasons_for, n))
        elif self._head is not None and not self.details:
            self._structure_head()
        self._seen = set()  # repeats are all found: ~100 bytes per account back
        release_memory()

    def _explain_head(self, top: int) -> None:
        """Reasons for the first ``top`` accounts of the whole list (kept in the head)."""
        head = self._head
        wanted = set(self.order[:top].tolist())
        chosen = np.flatnonzero(head[_POSITION].isin(wanted).to_numpy())
        explained = score_in_chunks(
            self.scorer,
            self._head_records.iloc[chosen],
            parsed=self._parsed,
            k_up=self.k_up,
            with_reasons=True,
            velocity_reasons=self.velocity_reasons,
            workers=self.workers,
        )
        explained[_POSITION] = head[_POSITION].to_numpy()[chosen]
        self._explained = explained.set_index(_POSITION)
        for column in _REASON_COLUMNS:
            empty = "" if column in _TEXT_REASONS else None
            values = np.full(len(head), empty, dtype=object)
            if column in explained.columns:
                values[chosen] = explained[column].to_numpy(dtype=object)
                head[column] = values

    def _structure_head(self) -> None:
        """The head's reasons as dicts (for the report): the chunks were scored with texts only.

        The head's rows are scored again, a few hundred at most: the same rows give the same
        contributions, so the dicts match the texts already spilled.
        """
        explained = score_in_chunks(
            self.scorer,
            self._head_records,
            parsed=self._parsed,
            k_up=self.k_up,
            with_reasons=True,
            velocity_reasons=self.velocity_reasons,
            workers=1,
        )
        for column in ("reasons", "velocity_reasons"):
            if column in explained.columns:
                self._head[column] = explained[column].to_numpy(dtype=object)

    def _run_columns(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The columns a ranked slice gets besides the spilled ones, for ``positions``:
        ``rank``, ``abm_tier``, the run's model and date, and the top-N reasons if any."""
        n = len(positions)
        columns = {
            "rank": self._rank[positions],
            "abm_tier": self._tier[positions],
            "model_name": np.full(n, self.model_name, dtype=object),
            "model_version": np.full(n, self.model_version, dtype=object),
            "as_of": np.full(n, self.as_of, dtype=object),
        }
        explained = self._explained
        if explained is not None:
            # Reasons for the top N only: theirs from the explained head, empty for the others.
            where = explained.index.get_indexer(positions)
            for column in _TEXT_REASONS:
                if column in explained.columns:
                    texts = explained[column].to_numpy(dtype=object)
                    columns[column] = np.append(texts, "")[where]
            if self.details and "reasons" in explained.columns:
                entries = np.append(explained["reasons"].to_numpy(dtype=object), None)[where]
                columns[REASONS_JSON] = np.array(
                    [None if r is None else json_text(r) for r in entries], dtype=object
                )
        return columns

    def _with_run_columns(self, frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
        """``frame`` (spilled columns) with :meth:`_run_columns`: ``rank`` first, ``abm_tier`` third."""
        columns = self._run_columns(positions)
        frame.insert(0, "rank", columns.pop("rank"))
        frame.insert(2, "abm_tier", columns.pop("abm_tier"))
        for name, values in columns.items():
            frame[name] = values
        return frame

    def _arrow_slice(self, table, positions: np.ndarray, movement: np.ndarray | None):
        """The ranked file's slice at ``positions`` as Arrow, with no pandas round trip.

        Converting a million spilled rows to pandas and back cost more than writing them.
        Text columns are typed as strings (a slice whose movements are all missing stays a
        string column, as the file's schema says).
        """
        import pyarrow as pa

        taken = table.take(pa.array(positions))
        columns = dict(zip(taken.column_names, taken.columns))
        extra = self._run_columns(positions)
        if movement is not None:
            extra["movement"] = movement
        for name, values in extra.items():
            kind = pa.string() if np.asarray(values).dtype == object else None
            columns[name] = pa.array(values, type=kind)
        return pa.table({c: columns[c] for c in OUTPUT_COLUMNS if c in columns})

    def _read_spill(self, columns: tuple[str, ...] | list[str]):
        """The spilled chunks' ``columns`` (those they have) as one Arrow table, or None."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for path in self._files:
            present = pq.read_schema(path).names
            tables.append(pq.read_table(path, columns=[c for c in columns if c in present]))
        return pa.concat_tables(tables, promote_options="default") if tables else None

    def history_parts(self) -> Iterator[pd.DataFrame]:
        """The ranked accounts chunk by chunk (input order), with the history's columns."""
        start = 0
        for path, size in zip(self._files, self._sizes):
            frame = pd.read_parquet(path)
            positions = np.arange(start, start + size)
            start += size
            yield self._with_run_columns(frame, positions)
            del frame
            release_memory()

    def light(self) -> pd.DataFrame:
        """Every ranked account in rank order, with the columns the report and movement need."""
        import pyarrow as pa

        table = self._read_spill(_LIGHT)
        if table is None:
            frame = empty_ranking(self.sort_by)
        else:
            taken = table.take(pa.array(self.order))
            del table
            frame = taken.to_pandas(split_blocks=True, self_destruct=True)
            del taken
        frame = self._with_run_columns(frame, self.order)
        # A million accounts share a handful of tiers, segments, models and dates.
        for column in ("abm_tier", "tier", "segment", "region", "owner", *_RUN_COLUMNS):
            if column in frame.columns:
                frame[column] = frame[column].astype("category")
        release_memory()
        return frame

    def write(self, path: Path, movement: np.ndarray | None = None, slice_rows: int = 100_000):
        """Write the ranked list in rank order (CSV or Parquet by suffix), slice by slice.

        Each slice is taken from the spill and converted in a background thread while the
        one before is written: both are mostly Arrow's C++ work, which releases the GIL.

        Args:
            path: the ranked file.
            movement: each ranked account's movement text, in rank order, or None.
            slice_rows: rows converted and written at a time.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self._read_spill(OUTPUT_COLUMNS)
        path.parent.mkdir(parents=True, exist_ok=True)
        parquet = path.suffix.lower() in {".parquet", ".pq"}
        writer = None
        try:
            for start, part in _one_ahead(self._slices(table, movement, slice_rows, parquet)):
                if isinstance(part, pa.Table):
                    writer = writer or pq.ParquetWriter(path, part.schema)
                    writer.write_table(part.cast(writer.schema))
                else:
                    neutralise_formulas(part).to_csv(
                        path,
                        mode="a" if start else "w",
                        header=not start,
                        index=False,
                        float_format="%.4f",
                    )
        finally:
            if writer is not None:
                writer.close()
            del table
            release_memory()
        return path

    def _slices(self, table, movement: np.ndarray | None, slice_rows: int, parquet: bool):
        """(first row, slice) of the ranked file in rank order: Arrow tables for Parquet
        (no pandas round trip), frames for CSV; one empty frame for an empty list."""
        import pyarrow as pa

        n = len(self.order)
        for start in range(0, max(n, 1), slice_rows):
            positions = self.order[start : start + slice_rows]
            moved = None if movement is None else movement[start : start + slice_rows]
            if parquet and table is not None and n:
                yield start, self._arrow_slice(table, positions, moved)
                continue
            if table is not None and n:
                frame = table.take(pa.array(positions)).to_pandas()
            else:
                frame = empty_ranking(self.sort_by)
            frame = self._with_run_columns(frame, positions)
            if moved is not None:
                frame["movement"] = moved
            frame = frame[[c for c in OUTPUT_COLUMNS if c in frame.columns]]
            yield start, pa.Table.from_pandas(frame, preserve_index=False) if parquet else frame

    def result(self, ranked: pd.DataFrame) -> RankResult:
        """The run for the report: ``ranked`` (from :meth:`light`) with the head's reasons."""
        head = self._head
        if head is not None and len(head):
            top = min(len(head), len(ranked))
            where = pd.Index(head[_POSITION]).get_indexer(self.order[:top])
            for column in _REASON_COLUMNS:
                if column in head.columns:
                    values = np.full(len(ranked), None, dtype=object)
                    values[:top] = np.append(head[column].to_numpy(dtype=object), None)[where]
                    ranked[column] = values
        unscorable = (
            pd.concat(self._unscorable, ignore_index=True)
            if self._unscorable
            else pd.DataFrame(columns=["reason"])
        )
        n = len(ranked)
        meta = ranking_meta(
            self.scorer,
            as_of=self.as_of,
            read=self._counts["read"],
            after_filters=self._counts["after_filters"],
            ranked=n,
            unscorable=len(unscorable),
            tiers=self.tiers,
            sort_by=self.sort_by,
            filters=self.filters,
            model_name=self.model_name,
            model_version=self.model_version,
            reasons_for=n if self.reasons_for is None else min(self.reasons_for, n),
            amounts_known=self._counts["amounts_known"],
            amount_column=self._amount_column,
        )
        return RankResult(ranked=ranked, unscorable=unscorable, meta=meta)
