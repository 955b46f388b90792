"""Campaign ROI and ABM lift: what campaigns cost and returned, and pilots with a control group.

:mod:`~abm_ml.roi.tables` reads the inputs, :mod:`~abm_ml.roi.attribution` splits credit,
:mod:`~abm_ml.roi.report` builds the ROI report, :mod:`~abm_ml.roi.pilot` selects and reports
pilots, :mod:`~abm_ml.roi.stats` holds the intervals and sample sizes they share.
"""
