"""LightGBM predictions of one row through its C API's single-row fast path.

``Booster.predict`` builds a new predictor for every call (parameters parsed, buffers sized,
the input checked), which costs more than predicting one row of a small model: ~15 us per call
against ~3 us for a 30-tree quantile model here. LightGBM's C API has the answer for
one-row serving, ``LGBM_BoosterPredictForMatSingleRowFastInit`` (set up once) and
``LGBM_BoosterPredictForMatSingleRowFast`` (per row); the Python package does not wrap it, so
this module calls it through the package's own loaded library, with the same iteration count
and thread parameter ``Booster.predict`` would use, and gives the same numbers (tested).

A set-up handle is not safe to share between threads (LightGBM keeps its buffers in it), so
each thread gets its own, freed when its predictor is, with its own input and output buffers:
their addresses are taken once, since asking numpy for an array's address through ``ctypes``
costs more (~0.9 us) than a small model's whole prediction (~0.8 us for 30 shallow trees).
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _c_str, _safe_call

from abm_ml.config import num_threads

_PREDICT_TYPES = {"normal": 0, "raw": 1, "contrib": 3}
"""LightGBM's C_API_PREDICT_* codes: transformed output, raw score, SHAP contributions."""
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64

_PREDICT_FAST = _LIB["LGBM_BoosterPredictForMatSingleRowFast"]
"""Our own function object (indexing makes a new one), so typing its arguments as plain
addresses leaves the one the lightgbm package uses as it is."""
_PREDICT_FAST.argtypes = [ctypes.c_void_p] * 4  # fast config, row, written count, result
_PREDICT_FAST.restype = ctypes.c_int


class _ThreadState:
    """One thread's LightGBM handle and the buffers its calls read and write, by address."""

    def __init__(self, handle: ctypes.c_void_p, n_features: int, n_out: int) -> None:
        self.handle = handle.value
        self.row = np.empty(n_features, dtype=np.float64)
        self.out = np.empty(n_out, dtype=np.float64)
        self.written = ctypes.c_int64(0)
        self.row_address = self.row.ctypes.data
        self.out_address = self.out.ctypes.data
        self.written_address = ctypes.addressof(self.written)


class SingleRowPredictor:
    """One booster's predictions of one float64 row, of one kind (normal, raw or contrib).

    Args:
        booster: the model (kept alive by the predictor: the C handles point into it).
        kind: ``"normal"`` (as ``predict``), ``"raw"`` (``raw_score=True``) or ``"contrib"``
            (``pred_contrib=True``: one value per feature, then the base).
        n_features: columns of the rows to predict.
    """

    def __init__(self, booster: lgb.Booster, kind: str, n_features: int) -> None:
        self.booster = booster
        self.kind = kind
        self.n_features = n_features
        self.n_out = n_features + 1 if kind == "contrib" else 1
        # As Booster.predict without num_iteration: the best iteration when early stopping
        # set one (0 = every tree), and the scorer's thread setting.
        self._iterations = int(getattr(booster, "best_iteration", 0) or 0)
        self._parameters = f"num_threads={num_threads()}"
        self._local = threading.local()

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is None:
            handle = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self.booster._handle,
                    ctypes.c_int(_PREDICT_TYPES[self.kind]),
                    ctypes.c_int(0),
                    ctypes.c_int(self._iterations),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self.n_features),
                    _c_str(self._parameters),
                    ctypes.byref(handle),
                )
            )
            # Freed when this predictor is collected, before the booster it holds can be.
            weakref.finalize(self, _LIB.LGBM_FastConfigFree, handle)
            state = self._local.state = _ThreadState(handle, self.n_features, self.n_out)
        return state

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The prediction of ``row`` (shape (n_features,) or (1, n_features)): ``n_out`` values."""
        if row.size != self.n_features:
            raise ValueError(f"expected {self.n_features} values, got {row.size}")
        state = self._state()
        state.row[:] = row.reshape(-1)  # as float64, whatever the row's type and layout
        _safe_call(
            _PREDICT_FAST(state.handle, state.row_address, state.written_address, state.out_address)
        )
        return state.out.copy()  # the buffer is overwritten by this thread's next call


def predictor(
    owner: object, booster: lgb.Booster, kind: str, n_features: int
) -> SingleRowPredictor:
    """The ``kind`` predictor of ``booster``, made once and kept in ``owner``'s ``__dict__``.

    The owner (a scorer or a velocity model) must leave ``_single_row`` out of its pickled
    state: the handles live in this process only.
    """
    cache = owner.__dict__.setdefault("_single_row", {})
    key = (id(booster), kind)
    found = cache.get(key)
    if found is None or found.booster is not booster:
        found = cache[key] = SingleRowPredictor(booster, kind, n_features)
    return found
