"""Import paths of models registered before the package was split by stage.

A packaged scorer is a pickle: it names the modules of its classes (``abm_ml.model.AccountScorer``,
``abm_ml.validate.FeatureInfo``) and an MLflow model's code file imports ``abm_ml.pyfunc``. Those
modules moved; this finder answers the old names with the new modules, lazily, so models
registered by an earlier release still load and score. Nothing else may import the old names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

LEGACY_MODULES = {
    "abm_ml.model": "abm_ml.modeling.scorer",
    "abm_ml.validate": "abm_ml.modeling.feature_info",
    "abm_ml.explain": "abm_ml.modeling.reasons",
    "abm_ml.pyfunc": "abm_ml.registry.pyfunc",
}
"""Old module name -> the module that now holds its pickled classes."""


class _LegacyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: object, target: object = None):
        if fullname not in LEGACY_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(LEGACY_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The new module is already executed."""


def install() -> None:
    """Answer the old module names (idempotent)."""
    if not any(isinstance(finder, _LegacyFinder) for finder in sys.meta_path):
        sys.meta_path.append(_LegacyFinder())
