"""The synthetic ABM world: a CRM with planted, documented drivers of winning and of speed.

- :mod:`~abm_ml.synthetic.world`: the :class:`~abm_ml.synthetic.world.World` tables, their
  vocabularies, the planted truth (``PLANTED_WIN_DRIVERS``...), save and load.
- :mod:`~abm_ml.synthetic.generate`: ``generate_world(n_accounts, seed)``, seed in, tables out.
- :mod:`~abm_ml.synthetic.crm`: draws of accounts, opportunities (with the planted effects) and
  contacts.
- :mod:`~abm_ml.synthetic.engagement`: draws of activities and weekly intent.
- :mod:`~abm_ml.synthetic.sampling`: vectorised drawing and time helpers.
- :mod:`~abm_ml.synthetic.names`: job titles, company and rep names.

See ``docs/synthetic_world.md`` for the tables and the planted effects.
"""
