"""Scoring and ranking on Apache Spark with the same packaged scorer as everywhere else.

Needs the ``spark`` dependency group (``pyspark``) and a Java runtime; see ``docs/spark.md``.
"""

from abm_ml.spark.scoring import SparkRankResult, account_keys, rank, score
from abm_ml.spark.session import get_session, load_scorer, scoring_conf

__all__ = [
    "SparkRankResult",
    "account_keys",
    "get_session",
    "load_scorer",
    "rank",
    "score",
    "scoring_conf",
]
