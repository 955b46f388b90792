"""Reading CRM exports as they really are: CSV or Parquet files, SQL tables or queries.

Real exports arrive with CRLF or bare-CR line endings, a UTF-8 byte-order mark, cp1252 text,
non-breaking spaces, `;` separators and quoted fields. Everything is read as text here (so that
validation can report each unparseable value with its row) except Parquet and SQL columns that
already carry a numeric or date type.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abm_ml.data.spec import JoinSpec, SourceSpec
from abm_ml.errors import AbmInputError
from abm_ml.redact import mask_credentials

SOURCE_ROW = "_source_row"
"""Column holding each row's line in its file (header = line 1), or its position in a SQL result."""

ROW_PROBLEM = "_row_problem"
"""Column present only when some CSV records are malformed: why each one is (None when fine)."""

_SEPARATORS = [",", ";", "\t", "|"]
_SPARE = "_abm_spare_field_"


@dataclass(frozen=True)
class RawTable:
    """One source read into text columns, with where it came from and a content hash."""

    frame: pd.DataFrame
    name: str
    sha256: str


def _decode(data: bytes, encoding: str | None, name: str) -> str:
    if encoding:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as error:
            raise AbmInputError(f"cannot decode as {encoding}: {error}", source=name) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode Text" export: UTF-16 with a byte-order mark (and tab-separated).
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise AbmInputError(f"cannot decode as UTF-16: {error}", source=name) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Exports from Excel on Windows are cp1252 more often than anything else.
        return data.decode("cp1252", errors="replace")


def _normalise_text(text: str) -> str:
    text = text.lstrip("\ufeff")
    # Bare CR (old Mac exports) and CRLF both become LF; the csv module handles quoted newlines.
    return (
        text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ").replace("\u202f", " ")
    )


def _sniff_separator(text: str) -> str:
    end = -1
    for _ in range(20):  # the first 20 lines (text.split would copy the rest of the file)
        end = text.find("\n", end + 1)
        if end < 0:
            break
    sample = text if end < 0 else text[:end]
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(_SEPARATORS)).delimiter
    except csv.Error:
        header = sample.split("\n", 1)[0]
        counts = {sep: header.count(sep) for sep in _SEPARATORS}
        best = max(counts, key=counts.get)  # type: ignore[arg-type]
        return best if counts[best] else ","


@dataclass(frozen=True)
class _Layout:
    """What the csv module saw: the header's width and, per record, its first line and width."""

    header: list[str]
    lines: list[int]
    widths: list[int]
    overflow: list[bool]
    """The record has more fields than the header and at least one of the extra ones is not blank."""


def _scan(utf8: bytes, sep: str, name: str) -> _Layout:
    """The file line on which each record starts (a quoted field may span lines) and its width.

    Args:
        utf8: the normalised text (LF line ends) as UTF-8. Read through a text wrapper that
            decodes as it goes: ``io.StringIO`` would hold 4 bytes per character.

    Raises:
        AbmInputError: the header repeats a column.
    """
    lines_of = io.TextIOWrapper(io.BytesIO(utf8), encoding="utf-8", newline="")
    reader = csv.reader(lines_of, delimiter=sep)
    header: list[str] | None = None
    lines: list[int] = []
    widths: list[int] = []
    overflow: list[bool] = []
    start = 1
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            # pandas skips blank and whitespace-only lines; the csv module returns them as records.
            start = reader.line_num + 1
            continue
        if header is None:
            header = [c.strip() for c in row]
            dupes = sorted({c for c in header if c and header.count(c) > 1})
            if dupes:
                raise AbmInputError(f"the header repeats columns {dupes}", source=name)
        else:
            lines.append(start)
            widths.append(len(row))
            overflow.append(any(v.strip() for v in row[len(header) :]))
        start = reader.line_num + 1
    return _Layout(header=header or [], lines=lines, widths=widths, overflow=overflow)


def _row_problems(layout: _Layout, allow_short_rows: bool) -> list[str | None]:
    """Why each record cannot be trusted: fewer fields than the header (a row cut short, e.g.
    the last line of a truncated export), or more non-blank fields (values shifted)."""
    width = len(layout.header)
    problems: list[str | None] = []
    for fields, extra in zip(layout.widths, layout.overflow):
        if fields < width and not allow_short_rows:
            problems.append(
                f"row cut short, fewer fields than the header: {fields} of {width} (if the export "
                "drops trailing blanks, set `allow_short_rows: true` in the spec source)"
            )
        elif extra:
            problems.append(f"more fields than the header: {fields} of {width}")
        else:
            problems.append(None)
    return problems


def read_csv_text(
    data: bytes,
    *,
    name: str,
    sep: str | None = None,
    encoding: str | None = None,
    allow_short_rows: bool = False,
) -> pd.DataFrame:
    """Parse CSV bytes into a frame of stripped text columns plus :data:`SOURCE_ROW`.

    A record with fewer fields than the header (unless ``allow_short_rows``) or with more
    non-blank fields is kept, with its reason in :data:`ROW_PROBLEM`, so that validation
    rejects it and ranking lists it as unscorable instead of reading blanks or shifted values.
    A last line cut inside its last field cannot be told from a complete one.
    """
    csv_file = _CsvFile.parse(data, name=name, sep=sep, encoding=encoding)
    frame = csv_file.frames(None, allow_short_rows=allow_short_rows, records=None)
    return next(frame)


@dataclass
class _CsvFile:
    """A decoded CSV text (kept as UTF-8), its separator, and the record layout the csv module saw."""

    utf8: bytes
    """The normalised text as UTF-8 for pandas: ``io.StringIO`` holds 4 bytes per character
    once read (0.9 GB for a 240 MB export), bytes hold one per ASCII character."""
    name: str
    sep: str
    layout: _Layout
    names: list[str] | None
    """Column names given to pandas when some rows are wider than the header (spare columns)."""

    @classmethod
    def parse(cls, data: bytes, *, name: str, sep: str | None, encoding: str | None) -> _CsvFile:
        # One text and one UTF-8 copy at a time: a 240 MB export must not cost gigabytes.
        text = _normalise_text(_decode(data, encoding, name))
        del data  # the caller's bytes, when it passed them without keeping them
        if not text or text.isspace():
            raise AbmInputError("the file is empty", source=name)
        sep = sep or _sniff_separator(text)
        utf8 = text.encode("utf-8")
        del text
        layout = _scan(utf8, sep, name)
        extra = max(layout.widths, default=0) - len(layout.header)
        # Rows wider than the header get named spare columns (checked, then dropped) so that
        # pandas neither refuses the file nor silently drops or shifts their values.
        names = (
            [c or f"Unnamed: {i}" for i, c in enumerate(layout.header)]
            + [f"{_SPARE}{i}" for i in range(extra)]
            if extra > 0
            else None
        )
        return cls(utf8=utf8, name=name, sep=sep, layout=layout, names=names)

    def _read(self, **options) -> pd.DataFrame | Iterator[pd.DataFrame]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                return pd.read_csv(
                    io.BytesIO(self.utf8),
                    encoding="utf-8",
                    sep=self.sep,
                    dtype=str,
                    keep_default_na=False,
                    skip_blank_lines=True,
                    quotechar='"',
                    engine="c",
                    # With spare columns the header is read as a record (then dropped): the C
                    # engine would otherwise expect the header's width on every row.
                    header=None if self.names else 0,
                    names=self.names,
                    # A trailing separator on every row must not turn the first column into
                    # the index.
                    index_col=False,
                    **options,
                )
        except (pd.errors.ParserError, ValueError) as error:
            raise AbmInputError(
                f"not a readable CSV ({str(error).strip()})", source=self.name
            ) from None

    def records(self) -> int:
        """How many records pandas reads (one narrow pass over the text)."""
        return len(self._read(usecols=[0])) - (1 if self.names else 0)

    def frames(
        self, rows: int | None, *, allow_short_rows: bool, records: int | None
    ) -> Iterator[pd.DataFrame]:
        """The file's records in frames of ``rows`` (None: one frame).

        Args:
            rows: records per frame, or None for all in one.
            allow_short_rows: a row with fewer fields than the header is not a problem.
            records: the count of :meth:`records` when known in advance (frames in parts);
                None: counted from the one frame.
        """
        lines = self.layout.lines
        problems = _row_problems(self.layout, allow_short_rows)
        done = 0
        parts = self._read(chunksize=rows) if rows else iter([self._read()])
        for frame in parts:
            if self.names and done == 0:
                frame = frame.iloc[1:].reset_index(drop=True)
            if self.names:
                frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith(_SPARE)])
            frame.columns = [str(c).strip() for c in frame.columns]
            dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
            if dupes:
                raise AbmInputError(f"the header repeats columns {dupes}", source=self.name)
            for column in frame.columns:
                # Strip each distinct value once: CRM columns repeat a few values over many rows.
                codes, uniques = pd.factorize(frame[column])
                stripped = np.array([u.strip() for u in uniques] + [""], dtype=object)
                frame[column] = stripped[codes]
            n = len(frame)
            if (records if records is not None else n) == len(lines):
                frame[SOURCE_ROW] = lines[done : done + n]
                mine = problems[done : done + n]
                if any(mine):
                    frame[ROW_PROBLEM] = pd.Series(mine, index=frame.index, dtype=object)
            else:  # the csv module and pandas disagree on this file's records
                frame[SOURCE_ROW] = list(range(done + 2, done + n + 2))
            done += n
            yield frame


def _read_file(
    path: str,
    fmt: str | None,
    sep: str | None,
    encoding: str | None,
    allow_short_rows: bool = False,
) -> RawTable:
    file = Path(path)
    if file.is_dir():
        raise AbmInputError("is a folder, not a file: give the export file inside it", source=path)
    if not file.is_file():
        raise AbmInputError("file not found", source=path)
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    fmt = fmt or ("parquet" if file.suffix.lower() in {".parquet", ".pq"} else "csv")
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as error:  # noqa: BLE001 - pyarrow raises several unrelated types for a broken file
            raise AbmInputError(f"not a readable Parquet file ({error})", source=path) from None
        if frame.empty:
            raise AbmInputError("the file has no rows", source=path)
        # A named index (pandas stores it in the file's metadata) is one of the export's columns.
        frame = frame.reset_index(drop=all(name is None for name in frame.index.names))
        frame[SOURCE_ROW] = range(1, len(frame) + 1)
    else:
        frame = read_csv_text(
            data, name=path, sep=sep, encoding=encoding, allow_short_rows=allow_short_rows
        )
        if frame.empty:
            raise AbmInputError("the file has a header but no rows", source=path)
    return RawTable(frame=frame, name=path, sha256=digest)


def _sql_source(url: str, table: str | None, query: str | None):
    """The engine, the statement and the name shown in messages of one SQL source."""
    import sqlalchemy as sa

    safe_url = mask_credentials(url)
    name = f"{safe_url} ({'table ' + table if table else 'query'})"
    try:
        engine = sa.create_engine(url)
    except Exception as error:  # noqa: BLE001 - any driver/URL problem is the user's input
        raise AbmInputError(
            f"cannot open database ({mask_credentials(error)})", source=safe_url
        ) from None
    # select_from: a bare sa.table() has no columns, so select(table) alone would have no FROM clause.
    statement = sa.text(query) if query else sa.select(sa.text("*")).select_from(sa.table(table))
    return engine, statement, name


def _sql_error(error: Exception, name: str) -> AbmInputError:
    first_line = (str(error).splitlines() or [type(error).__name__])[0]
    return AbmInputError(f"cannot read ({mask_credentials(first_line)})", source=name)


def _read_sql(url: str, table: str | None, query: str | None) -> RawTable:
    engine, statement, name = _sql_source(url, table, query)
    try:
        with engine.connect() as connection:
            frame = pd.read_sql(statement, connection)
    except Exception as error:  # noqa: BLE001
        raise _sql_error(error, name) from None
    finally:
        engine.dispose()
    if frame.empty:
        raise AbmInputError("the query returned no rows", source=name)
    frame[SOURCE_ROW] = range(1, len(frame) + 1)
    digest = hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).values.tobytes()
    ).hexdigest()
    return RawTable(frame=frame, name=name, sha256=digest)


def read_table(part: SourceSpec | JoinSpec) -> RawTable:
    """Read one source or join side described by a spec."""
    if part.url:
        return _read_sql(part.url, part.table, part.query)
    assert part.path is not None
    return _read_file(part.path, part.format, part.sep, part.encoding, part.allow_short_rows)


def _suggest(column: str, available: list[str]) -> str:
    close = difflib.get_close_matches(column, available, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def require_columns(table: RawTable, columns: list[tuple[str, str]]) -> None:
    """Raise one clear error for the first (role, column) pair whose column the table lacks."""
    available = [c for c in table.frame.columns if c != SOURCE_ROW]
    for role, column in columns:
        if column not in table.frame.columns:
            raise AbmInputError(
                f"column {column!r} (the spec's `{role}`) is not in the file{_suggest(column, available)}",
                source=table.name,
            )


def iter_table(part: SourceSpec, rows: int) -> Iterator[pd.DataFrame]:
    """One source read in frames of at most ``rows`` rows, as :func:`read_table` reads it.

    Parquet files are read batch by batch, CSV text parsed ``rows`` records at a time and SQL
    results fetched in chunks, so a list of a million accounts is never held whole as a frame
    (a CSV file's text is: its records' layout is checked over the whole file first);
    :data:`SOURCE_ROW` counts on across the frames.

    Raises:
        AbmInputError: As for :func:`read_table`, raised before the first frame.
    """
    if part.url:
        yield from _iter_sql(part.url, part.table, part.query, rows)
        return
    assert part.path is not None
    file = Path(part.path)
    fmt = part.format or ("parquet" if file.suffix.lower() in {".parquet", ".pq"} else "csv")
    if not file.is_file():
        read_table(part)  # its message: a folder, or no such file
    if fmt == "parquet":
        yield from _iter_parquet(part.path, rows)
        return
    csv_file = _CsvFile.parse(
        file.read_bytes(), name=part.path, sep=part.sep, encoding=part.encoding
    )
    # Counted first, so every frame knows whether the csv module's line numbers apply.
    records = csv_file.records()
    if records == 0:
        raise AbmInputError("the file has a header but no rows", source=part.path)
    yield from csv_file.frames(rows, allow_short_rows=part.allow_short_rows, records=records)


def _iter_parquet(path: str, rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
        first = next(batches, None)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several unrelated types for a broken file
        raise AbmInputError(f"not a readable Parquet file ({error})", source=path) from None
    if first is None or first.num_rows == 0:
        raise AbmInputError("the file has no rows", source=path)
    done = 0
    for batch in itertools.chain([first], batches):
        # The file's pandas metadata (index, nullable dtypes) applies to each batch as a whole.
        frame = pa.Table.from_batches([batch]).to_pandas()
        frame = frame.reset_index(drop=all(name is None for name in frame.index.names))
        frame[SOURCE_ROW] = range(done + 1, done + len(frame) + 1)
        done += len(frame)
        yield frame


def _iter_sql(url: str, table: str | None, query: str | None, rows: int) -> Iterator[pd.DataFrame]:
    engine, statement, name = _sql_source(url, table, query)
    done = 0
    try:
        with engine.connect() as connection:

            def fetch(chunks: Iterator[pd.DataFrame] | None) -> tuple:
                try:
                    chunks = chunks or pd.read_sql(statement, connection, chunksize=rows)
                    return chunks, next(chunks, None)
                except Exception as error:  # noqa: BLE001 - the driver's errors are the input's
                    raise _sql_error(error, name) from None

            chunks, frame = fetch(None)
            if frame is None or frame.empty:
                raise AbmInputError("the query returned no rows", source=name)
            while frame is not None:
                frame[SOURCE_ROW] = range(done + 1, done + len(frame) + 1)
                done += len(frame)
                yield frame
                chunks, frame = fetch(chunks)
    finally:
        engine.dispose()
