"""Reporting: self-contained HTML pages, the charts in them, and the score history.

- :mod:`~abm_ml.reporting.training_report`: the page of a training run (the model card as a page).
- :mod:`~abm_ml.reporting.ranking_report`: the page of a ranking run (who to work first, and why).
- :mod:`~abm_ml.reporting.page`: what both pages share: templates (``templates/``), charts inlined.
- :mod:`~abm_ml.reporting.formatting`: numbers for humans and the model card's markdown subset.
- :mod:`~abm_ml.reporting.plots`: the charts, also logged to MLflow with each training run.
- :mod:`~abm_ml.reporting.history`: every ranking run in a SQL table; movement since last run.
- :mod:`~abm_ml.reporting.movement`: the wording of that movement.
"""
