"""abm-ml: which target accounts to work first, and why.

Packages by stage, in the order data flows:

- :mod:`abm_ml.data`: dataset specs, readers, parsing, validation, leakage guard, splits.
- :mod:`abm_ml.synthetic`: the synthetic ABM world (accounts, committees, engagement, intent).
- :mod:`abm_ml.features`: point-in-time features built from that world.
- :mod:`abm_ml.modeling`: feature contract, the packaged scorer, reasons, training, baselines,
  metrics, evaluation and the one ranker.
- :mod:`abm_ml.registry`: MLflow tracking, packaging, promotion and rollback, model cards.
- :mod:`abm_ml.reporting`: HTML reports, plots and the score history.
- :mod:`abm_ml.service`: the BentoML service for CRM integrations.
- :mod:`abm_ml.cli`: the ``abm-ml`` command.
"""

__version__ = "0.1.0"

from abm_ml import _legacy

_legacy.install()  # old pickled class paths of models registered before the split by stage
