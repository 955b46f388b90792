"""Data: from a dataset spec and its files to validated rows, nothing lost on the way.

In the order a dataset goes through them:

- :mod:`~abm_ml.data.spec`: the YAML dataset spec (sources, roles, features), read and checked.
- :mod:`~abm_ml.data.readers`: CSV, Parquet and SQL sources read as they really are.
- :mod:`~abm_ml.data.joins`: extra sources joined onto the main one, unmatched rows rejected.
- :mod:`~abm_ml.data.parsing`: value parsers (numbers, dates, missing placeholders, types).
- :mod:`~abm_ml.data.validate`: ``load_dataset``: every row accepted or rejected with a reason.
- :mod:`~abm_ml.data.leakage`: the guard that refuses features known only after the outcome.
- :mod:`~abm_ml.data.split`: time- and account-honest train/validation/test splits.
- :mod:`~abm_ml.data.records`: the scoring side of the same boundary: a file in the CRM's own
  format read and parsed as training read it, by the spec the model carries.
"""
