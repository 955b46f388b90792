"""Scoring and ranking on Spark with the same :class:`AccountScorer` as the local path.

Two entry points:

* :func:`score`: each Arrow batch goes through the packaged model's ``predict`` (what
  ``mlflow.pyfunc.spark_udf`` returns too): one row per record, reasons as JSON.
* :func:`rank`: what ``abm-ml rank`` does, on a cluster. Rows are hashed by their account id
  (parsed as the scorer parses it), so every repeat of an id lands in one partition in input
  order; each partition then goes through :func:`abm_ml.modeling.ranking.rank_accounts` itself,
  which finds the unscorable rows (with the same reasons) and scores the rest. Only the global
  order and the ABM tiers need all partitions: a Spark sort with the ordering of
  :func:`~abm_ml.modeling.ranking.rank_order` (sort key, then propensity, both descending with
  missing values last, then input order), and :func:`~abm_ml.modeling.ranking.abm_tiers` on
  the driver for the tiered head of the list.

The model goes to the workers as a broadcast variable: unpickled once per Python worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from abm_ml.data.records import canonical_records, require_id_column
from abm_ml.errors import AbmInputError
from abm_ml.modeling.ranking import (
    ABM_TIERS,
    FILTER_COLUMNS,
    NURTURE,
    abm_tiers,
    check_sort_key,
    rank_accounts,
)
from abm_ml.modeling.scorer import AccountScorer
from abm_ml.registry.pyfunc import output_signature, to_json_columns
from abm_ml.schema import ACCOUNT_ID, ROW_ID
from abm_ml.spark.session import THREADS_PER_TASK, load_scorer

INPUT_ORDER = "_abm_input_order"
"""Position of a record in the input (``monotonically_increasing_id``): the last tie-break."""
ACCOUNT_KEY = "_abm_account_key"
"""The account id as :func:`~abm_ml.modeling.ranking.rank_accounts` compares ids for repeats."""
REASON = "reason"
_INPUT_PREFIX = "_abm_in__"
_PARTITION_BITS = 33
"""``monotonically_increasing_id`` puts the partition index above the lower 33 bits."""

RANKED_SCHEMA = T.StructType(
    [
        T.StructField("account_id", T.StringType()),
        T.StructField("propensity", T.DoubleType()),
        T.StructField("score", T.LongType()),
        T.StructField("tier", T.StringType()),
        T.StructField("days_to_close_p10", T.DoubleType()),
        T.StructField("days_to_close_p50", T.DoubleType()),
        T.StructField("days_to_close_p90", T.DoubleType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("expected_value", T.DoubleType()),
        T.StructField("priority", T.DoubleType()),
        T.StructField("reasons", T.StringType()),
        T.StructField("top_reasons", T.StringType()),
        T.StructField("risk", T.StringType()),
    ]
)
"""Columns of the local ranking between ``abm_tier`` and the filter columns (reasons as JSON)."""
RUN_COLUMNS = ("model_name", "model_version", "as_of")


@dataclass
class SparkRankResult:
    """The ranked accounts and the unscorable ones, as Spark DataFrames, and the run's facts."""

    ranked: DataFrame
    unscorable: DataFrame
    meta: dict = field(default_factory=dict)


def _limit_threads(threads: int) -> None:
    """One task, ``threads`` LightGBM threads (read by :func:`abm_ml.config.num_threads`)."""
    os.environ["ABM_ML_NUM_THREADS"] = str(threads)


def score(
    accounts: DataFrame,
    model: str | AccountScorer,
    *,
    k_up: int = 3,
    k_down: int = 1,
    with_reasons: bool = True,
    threads_per_task: int = THREADS_PER_TASK,
) -> DataFrame:
    """Score every record, as the packaged model's pyfunc ``predict`` does.

    Args:
        accounts: records as the CRM exports them (the training spec's columns) or canonical.
        model: an MLflow model URI (``models:/abm-account-scorer@champion``), a folder or
            ``scorer.joblib`` file, or a scorer.
        k_up: factors raising the propensity to return per record.
        k_down: factors lowering it.
        with_reasons: add ``reasons`` and ``velocity_reasons`` as JSON text.
        threads_per_task: LightGBM threads in each Spark task.

    Returns:
        The columns of the pyfunc's output signature, one row per input row.
    """
    scorer = load_scorer(model)
    schema = output_signature(scorer).as_spark_schema()
    if not with_reasons:
        schema = T.StructType([f for f in schema.fields if not f.name.endswith("reasons")])
    shipped = accounts.sparkSession.sparkContext.broadcast(scorer)

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        _limit_threads(threads_per_task)
        for batch in batches:
            scored = shipped.value.score(batch, k_up=k_up, k_down=k_down, with_reasons=with_reasons)
            yield to_json_columns(scored)[schema.fieldNames()]

    return accounts.mapInPandas(score_batches, schema)


def account_keys(records: pd.DataFrame, scorer: AccountScorer) -> pd.Series:
    """Each record's account id as ranking compares ids (parsed by the spec, stripped), or NA."""
    if scorer.input is not None:
        ids = canonical_records(records, [], scorer.input).frame[ACCOUNT_ID]
    else:
        ids = records[ACCOUNT_ID if ACCOUNT_ID in records.columns else ROW_ID]
    return ids.astype("string").str.strip()


def rank(
    accounts: DataFrame,
    model: str | AccountScorer,
    *,
    tiers: tuple[int, ...] = (10, 50, 500),
    as_of: str | None = None,
    filters: dict[str, list[str]] | None = None,
    sort_by: str = "priority",
    model_name: str = "",
    model_version: str = "",
    k_up: int = 3,
    partitions: int | None = None,
    threads_per_task: int = THREADS_PER_TASK,
) -> SparkRankResult:
    """Score, sort and tier accounts on Spark; list the unscorable ones with their reasons.

    The same result as :func:`abm_ml.modeling.ranking.rank_accounts` on the same rows: the
    same columns (``reasons`` as JSON text), scores, reasons, order and tiers, and the same
    unscorable records with the same reasons, in input order.

    Args:
        accounts: the accounts (any Spark source; columns as the training export or canonical).
        model: an MLflow model URI, a folder or file holding ``scorer.joblib``, or a scorer.
        tiers: sizes of the 1:1, 1:few and 1:many tiers; the rest is nurture.
        as_of: the date the ranking is as of (default today).
        filters: keep only rows whose column holds one of the values (segment, region, owner).
        sort_by: priority, propensity or expected_value.
        model_name: written into every ranked row.
        model_version: likewise.
        k_up: factors raising the propensity listed per account.
        partitions: partitions the accounts are hashed into by id (default
            ``spark.sql.shuffle.partitions``); each is scored as one pandas frame, so size
            them to fit a worker's memory (about 200,000 accounts each is comfortable).
        threads_per_task: LightGBM threads in each Spark task.

    Returns:
        Lazy ``ranked`` (sorted by ``rank``) and ``unscorable`` DataFrames over one cached
        scoring pass; ``unpersist`` them when done on a long-lived session.

    Raises:
        AbmInputError: no id column, an unknown sort key or filter column.
    """
    check_sort_key(sort_by)
    scorer = load_scorer(model)
    spark = accounts.sparkSession
    columns = list(accounts.columns)
    require_id_column(pd.DataFrame(columns=columns), scorer.input, "accounts")
    for column, wanted in (filters or {}).items():
        if wanted and column not in columns:
            raise AbmInputError(
                f"cannot filter by {column!r}: the accounts have no such column",
                field=f"--{column}",
            )
    as_of = str(pd.Timestamp(as_of).date()) if as_of else str(pd.Timestamp.now().date())
    shipped = spark.sparkContext.broadcast(scorer)

    def add_keys(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield batch.assign(**{ACCOUNT_KEY: account_keys(batch, shipped.value)})

    keyed = accounts.withColumn(INPUT_ORDER, F.monotonically_increasing_id())
    keyed = keyed.mapInPandas(
        add_keys, T.StructType([*keyed.schema.fields, T.StructField(ACCOUNT_KEY, T.StringType())])
    )
    keyed = (
        keyed.repartition(partitions, ACCOUNT_KEY) if partitions else keyed.repartition(ACCOUNT_KEY)
    )

    input_fields = [f for f in accounts.schema.fields]
    unscorable_fields = list(input_fields)
    if ACCOUNT_ID not in columns:
        unscorable_fields.append(T.StructField(ACCOUNT_ID, T.StringType()))
    filter_fields = [f for f in input_fields if f.name in FILTER_COLUMNS]
    filter_fields.sort(key=lambda f: FILTER_COLUMNS.index(f.name))
    ranked_fields = [
        *RANKED_SCHEMA.fields,
        *filter_fields,
        *(T.StructField(name, T.StringType()) for name in RUN_COLUMNS),
    ]
    carried = [
        T.StructField(_INPUT_PREFIX + f.name, f.dataType, nullable=True) for f in unscorable_fields
    ]
    both = T.StructType(
        [
            T.StructField(INPUT_ORDER, T.LongType()),
            T.StructField(REASON, T.StringType()),
            *ranked_fields,
            *carried,
        ]
    )
    ranked_names = [f.name for f in ranked_fields]
    unscorable_names = [f.name for f in unscorable_fields]

    options = {
        "as_of": as_of,
        "filters": filters,
        "model_name": model_name,
        "model_version": str(model_version),
        "k_up": k_up,
    }

    def rank_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        _limit_threads(threads_per_task)
        parts = [batch for batch in batches if len(batch)]
        if parts:
            rows = pd.concat(parts, ignore_index=True)
            out = rank_rows(rows, shipped.value, options, ranked_names, unscorable_names)
            yield _text_as_text(out.reindex(columns=both.fieldNames()), both)

    scored = keyed.mapInPandas(rank_partition, both).persist(StorageLevel.MEMORY_AND_DISK)
    unscorable = (
        scored.filter(F.col(REASON).isNotNull())
        .orderBy(INPUT_ORDER)
        .select(
            F.col(REASON),
            *(F.col(_INPUT_PREFIX + name).alias(name) for name in unscorable_names),
        )
    )
    ranked, total = _global_rank(
        scored.filter(F.col(REASON).isNull()).select(INPUT_ORDER, *ranked_names),
        sort_by=sort_by,
        tiers=tiers,
    )
    meta = {
        "as_of": as_of,
        "ranked": total,
        "tiers": dict(zip(ABM_TIERS, tiers)),
        "sort_by": sort_by,
        "filters": {k: v for k, v in (filters or {}).items() if v},
        "model_name": model_name,
        "model_version": str(model_version),
        "engine": "spark",
        **scorer.basis(),
    }
    return SparkRankResult(ranked=ranked, unscorable=unscorable, meta=meta)


def rank_rows(
    rows: pd.DataFrame,
    scorer: AccountScorer,
    options: dict,
    ranked_names: list[str],
    unscorable_names: list[str],
) -> pd.DataFrame:
    """One partition through :func:`rank_accounts`: scored rows and unscorable rows in one frame.

    Unscorable rows carry ``reason`` and their input columns (prefixed); scored rows carry the
    ranking's columns and a null ``reason``. Both carry their input position.
    """
    # Input order inside the partition, so "first occurrence" means the same as locally.
    rows = rows.sort_values(INPUT_ORDER, kind="stable").reset_index(drop=True)
    # The partition's own order is discarded (the global sort uses the caller's sort key);
    # priority also avoids rank_accounts' empty-frame path repeating 'propensity'.
    result = rank_accounts(scorer, rows, tiers=(), sort_by="priority", **options)
    # Repeats of an id share this partition and only the first scorable one is scored, so each
    # ranked id has one input position: the first occurrence of its key among scorable rows.
    bad = result.unscorable
    scorable = rows[~rows[INPUT_ORDER].isin(bad[INPUT_ORDER])]
    first = scorable.drop_duplicates(ACCOUNT_KEY).set_index(ACCOUNT_KEY)[INPUT_ORDER]
    ranked = to_json_columns(result.ranked)
    # reindex: a partition whose every row is unscorable has an empty, column-less ranking.
    ranked_out = ranked.reindex(columns=ranked_names)
    ranked_out[INPUT_ORDER] = (
        ranked["account_id"].astype(str).str.strip().map(first).to_numpy(dtype=np.int64)
    )
    bad_out = pd.DataFrame(
        {
            INPUT_ORDER: bad[INPUT_ORDER].to_numpy(dtype=np.int64),
            REASON: bad["reason"].to_numpy(dtype=object),
            **{_INPUT_PREFIX + name: bad[name].to_numpy() for name in unscorable_names},
        }
    )
    return pd.concat([ranked_out, bad_out], ignore_index=True)


def _text_as_text(frame: pd.DataFrame, schema: T.StructType) -> pd.DataFrame:
    """Text columns that are all missing in this batch (NaN floats) as None objects for Arrow."""
    for spec in schema.fields:
        if isinstance(spec.dataType, T.StringType) and frame[spec.name].dtype != object:
            values = frame[spec.name]
            frame[spec.name] = values.astype(object).where(values.notna(), None)
    return frame


def _descending_missing_last(name: str) -> Column:
    """Descending, NaN and null after every known value (Spark counts NaN as the largest)."""
    column = F.col(name)
    return F.when(F.isnan(column), F.lit(None)).otherwise(column).desc_nulls_last()


def _global_rank(
    scored: DataFrame, *, sort_by: str, tiers: tuple[int, ...]
) -> tuple[DataFrame, int]:
    """``rank`` from 1 in :func:`~abm_ml.modeling.ranking.rank_order`'s order, ``abm_tier``; the count.

    The sort stays distributed: after it, each partition's rows get consecutive positions
    (``monotonically_increasing_id``), and each partition's offset is the sum of the sizes of
    the partitions before it, counted in one small aggregation.
    """
    spark = scored.sparkSession
    position = "_abm_position"
    ordered = (
        scored.orderBy(
            _descending_missing_last(sort_by),
            _descending_missing_last("propensity"),
            F.col(INPUT_ORDER).asc(),
        )
        .withColumn(position, F.monotonically_increasing_id())
        .withColumn("_abm_partition", F.shiftright(F.col(position), _PARTITION_BITS))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    sizes = sorted(
        (row["_abm_partition"], row["count"])
        for row in ordered.groupBy("_abm_partition").count().collect()
    )
    starts = np.concatenate([[0], np.cumsum([size for _, size in sizes])[:-1]]).astype(int)
    offsets = spark.createDataFrame(
        [(int(p), int(s)) for (p, _), s in zip(sizes, starts)],
        "_abm_partition long, _abm_offset long",
    )
    total = int(sum(size for _, size in sizes))
    ranked = ordered.join(F.broadcast(offsets), "_abm_partition").withColumn(
        "rank",
        F.col("_abm_offset")
        + F.col(position).bitwiseAND(F.lit((1 << _PARTITION_BITS) - 1))
        + F.lit(1),
    )
    head = min(total, sum(tiers))
    tiered = spark.createDataFrame(
        pd.DataFrame({"rank": np.arange(1, head + 1), "abm_tier": abm_tiers(head, tiers)}),
        "rank long, abm_tier string",
    )
    ranked = ranked.join(F.broadcast(tiered), "rank", "left").fillna(NURTURE, subset=["abm_tier"])
    names = [c for c in scored.columns if c != INPUT_ORDER]
    ranked = ranked.select("rank", names[0], "abm_tier", *names[1:]).sortWithinPartitions("rank")
    return ranked, total
