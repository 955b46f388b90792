"""``python -m abm_ml.cli``: the same as the ``abm-ml`` command."""

from abm_ml.cli import main

main()
