"""The nightly job behind ``abm-ml rank --engine spark``: read, rank, write Parquet by as-of date.

Inputs: Parquet, CSV (read as text with the training export's separator and encoding, then
parsed by the model's spec like the local reader's output), or a catalog table
(``table:db.accounts``). Output folder::

    OUT/ranked/as_of=2026-11-30/part-*.parquet      sorted by rank within the day
    OUT/unscorable/as_of=2026-11-30/part-*.parquet  the reason first, then the input's columns

A rerun of a day replaces that day only (dynamic partition overwrite), so ``OUT/ranked`` is
the score history too: one partition per run date, readable by Spark, DuckDB or pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from abm_ml.data.records import InputSpec
from abm_ml.errors import AbmInputError
from abm_ml.spark.scoring import SparkRankResult

TABLE_PREFIX = "table:"


def read_accounts(spark: SparkSession, source: str, spec: InputSpec | None = None) -> DataFrame:
    """Accounts from Parquet, CSV (every column as text) or ``table:NAME``.

    CSV columns stay text so that the model's spec parses them exactly as training did
    (thousands separators, placeholders such as 'n/a', yes/no words); Spark's own number
    parsing would read "12,345.00" as missing.

    Raises:
        AbmInputError: the file or table does not exist, or the format is not known.
    """
    if source.startswith(TABLE_PREFIX):
        name = source.removeprefix(TABLE_PREFIX)
        if not spark.catalog.tableExists(name):
            raise AbmInputError("no such table in the Spark catalog", source=name)
        return spark.table(name)
    local = "://" not in source
    if local and not Path(source).exists():
        raise AbmInputError("file not found", source=source)
    kind = _format(source)
    if kind == "parquet":
        return _read_parquet(spark, source)
    return spark.read.csv(
        source,
        header=True,
        inferSchema=False,
        sep=(spec.sep if spec and spec.sep else ","),
        encoding=(spec.encoding if spec and spec.encoding else "UTF-8"),
        mode="PERMISSIVE",
    )


def _read_parquet(spark: SparkSession, source: str) -> DataFrame:
    """Parquet, including pandas' nanosecond timestamps (which Spark refuses by default).

    Such columns are read as nanoseconds since the epoch and turned back into timestamps
    (microseconds, Spark's precision); they are found in the file's own schema (local paths).
    """
    from pyspark.errors import AnalysisException

    try:
        return spark.read.parquet(source)
    except AnalysisException as error:
        if "TIMESTAMP(NANOS" not in str(error):
            raise
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    frame = spark.read.parquet(source)
    for name in _nanosecond_columns(source):
        micros = F.floor(F.col(name) / 1000).cast("long")
        frame = frame.withColumn(name, F.timestamp_micros(micros).cast("timestamp_ntz"))
    return frame


def _nanosecond_columns(source: str) -> list[str]:
    """Columns stored as nanosecond timestamps in the (first) Parquet file at ``source``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(source)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        return []
    return [
        field.name
        for field in pq.read_schema(files[0])
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns"
    ]


def _format(source: str) -> str:
    """'parquet' or 'csv' from the name, or from the files of a folder."""
    path = Path(source)
    names = [p.name.lower() for p in path.iterdir()] if path.is_dir() else [path.name.lower()]
    for kind, suffixes in (("parquet", (".parquet", ".pq")), ("csv", (".csv", ".csv.gz"))):
        if any(name.endswith(suffixes) for name in names):
            return kind
    raise AbmInputError("give a .parquet or .csv file or folder, or table:NAME", source=source)


@dataclass
class RankOutput:
    """Where the job wrote, how many rows, and the first ranked rows for the terminal."""

    ranked_path: str
    unscorable_path: str
    ranked: int
    unscorable: int
    head: pd.DataFrame


def write_ranking(result: SparkRankResult, out: str, *, show: int = 15) -> RankOutput:
    """Write ``OUT/ranked`` and ``OUT/unscorable`` partitioned by as-of date (that day replaced)."""
    as_of = result.meta["as_of"]
    ranked_path, unscorable_path = f"{out}/ranked", f"{out}/unscorable"
    _write(result.ranked, ranked_path)
    _write(result.unscorable.withColumn("as_of", F.lit(as_of)), unscorable_path)
    return RankOutput(
        ranked_path=ranked_path,
        unscorable_path=unscorable_path,
        ranked=result.meta["ranked"],
        unscorable=result.unscorable.count(),
        head=result.ranked.filter(F.col("rank") <= show).orderBy("rank").toPandas(),
    )


def _write(frame: DataFrame, path: str) -> None:
    (
        frame.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("as_of")
        .parquet(path)
    )
