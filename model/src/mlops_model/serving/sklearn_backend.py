"""The scikit-learn backend: a fitted classifier from an MLflow model directory (skops only).

Random forests take a lean path without joblib (:attr:`SklearnBackend.lean`); the
load-time self-check (:func:`mlops_model.serving.checks.self_check`) compares it with
scikit-learn's own ``predict_proba`` before a model serves. Nothing here imports
scikit-learn, skops or pandas until a model is actually loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES
from mlops_model.serving.errors import ModelLoadError
from mlops_model.serving.holder import F32_MAX, BackendFallback, FloatArray


class SklearnBackend:
    """A scikit-learn classifier; random forests take a lean path without joblib.

    ``RandomForestClassifier.predict_proba`` dispatches every tree through joblib,
    which costs milliseconds per call even for one row. The lean path calls each
    fitted tree's low-level ``predict`` and averages, exactly what scikit-learn
    computes; the loader's self-check compares both paths before a model is used.
    """

    name = "sklearn"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.fallback: BackendFallback | None = None
        self._n_features = len(FEATURE_NAMES)
        self._n_classes = len(CLASS_NAMES)
        self._class_order = self._class_permutation(estimator)
        self._feature_names = self._fitted_feature_names(estimator)
        self._trees: list[Any] = self._forest_trees(estimator)

    # -- construction helpers -------------------------------------------------
    @staticmethod
    def _class_permutation(estimator: Any) -> list[int] | None:
        classes = getattr(estimator, "classes_", None)
        if classes is None or not hasattr(estimator, "predict_proba"):
            raise ModelLoadError("the model is not a fitted probabilistic classifier")
        labels = [c.item() if isinstance(c, np.generic) else c for c in classes]
        if labels == list(range(len(CLASS_NAMES))):
            return None
        if labels == list(CLASS_NAMES):
            return None
        if sorted(map(str, labels)) == sorted(CLASS_NAMES):
            return [labels.index(name) for name in CLASS_NAMES]
        raise ModelLoadError(
            f"the model's classes {labels} are neither indices 0..{len(CLASS_NAMES) - 1} "
            f"nor the class names {list(CLASS_NAMES)}"
        )

    @staticmethod
    def _fitted_feature_names(estimator: Any) -> list[str] | None:
        names = getattr(estimator, "feature_names_in_", None)
        if names is None:
            n = getattr(estimator, "n_features_in_", len(FEATURE_NAMES))
            if n != len(FEATURE_NAMES):
                raise ModelLoadError(f"the model expects {n} features, the schema has 4")
            return None
        names = [str(n) for n in names]
        if sorted(names) != sorted(FEATURE_NAMES):
            raise ModelLoadError(
                f"the model was fitted on features {names}, the schema has {list(FEATURE_NAMES)}"
            )
        return names

    def _forest_trees(self, estimator: Any) -> list[Any]:
        from sklearn.ensemble import (  # type: ignore[import-untyped]
            ExtraTreesClassifier,
            RandomForestClassifier,
        )

        if (
            type(estimator) in (RandomForestClassifier, ExtraTreesClassifier)
            and getattr(estimator, "n_outputs_", 1) == 1
            and self._class_order is None
            and (self._feature_names is None or self._feature_names == list(FEATURE_NAMES))
        ):
            return [tree.tree_ for tree in estimator.estimators_]
        return []

    @property
    def class_order(self) -> list[int] | None:
        """Column ``i`` of the answer is the model's class ``class_order[i]`` (None: same)."""
        return self._class_order

    @property
    def column_labels(self) -> list[int | str]:
        """The model's own label of each answer column (what its ``predict`` returns)."""
        labels = [c.item() if isinstance(c, np.generic) else c for c in self.estimator.classes_]
        order = self._class_order or range(len(labels))
        return [labels[i] for i in order]

    @property
    def feature_order(self) -> list[int] | None:
        """The model's input column ``j`` is schema feature ``feature_order[j]`` (None: same)."""
        names = self._feature_names
        if names is None or names == list(FEATURE_NAMES):
            return None
        return [FEATURE_NAMES.index(n) for n in names]

    # -- inference ------------------------------------------------------------
    @property
    def lean(self) -> bool:
        """True when the joblib-free forest path is in use."""
        return bool(self._trees)

    def disable_lean_path(self) -> None:
        self._trees = []

    def predict_proba(self, x: FloatArray) -> FloatArray:
        if self._trees:
            return self._forest_proba(x)
        return self.reference_proba(x)

    def _forest_proba(self, x: FloatArray) -> FloatArray:
        x32 = np.clip(x, -F32_MAX, F32_MAX).astype(np.float32)
        k = self._n_classes
        trees = self._trees
        acc: FloatArray = np.array(trees[0].predict(x32)[:, :k], dtype=np.float64)
        for tree in trees[1:]:
            acc += tree.predict(x32)[:, :k]
        acc /= len(trees)
        return acc

    def reference_proba(self, x: FloatArray) -> FloatArray:
        """scikit-learn's own ``predict_proba`` (the slow, general path)."""
        xc = np.clip(x, -F32_MAX, F32_MAX)
        if self._feature_names is not None:
            import pandas as pd  # type: ignore[import-untyped]

            frame = pd.DataFrame(xc, columns=list(FEATURE_NAMES))[self._feature_names]
            proba = self.estimator.predict_proba(frame)
        else:
            proba = self.estimator.predict_proba(xc)
        out: FloatArray = np.asarray(proba, dtype=np.float64)
        if self._class_order is not None:
            out = np.ascontiguousarray(out[:, self._class_order])
        return out


def read_flavors(model_dir: Path) -> dict[str, Any]:
    """The ``flavors`` of an MLflow model directory's ``MLmodel`` file (plain YAML)."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    try:
        doc = yaml.safe_load((model_dir / "MLmodel").read_text())
        flavors = doc["flavors"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"no readable MLmodel file: {exc}") from exc
    if not isinstance(flavors, dict):
        raise ModelLoadError("the MLmodel file has no flavors")
    return flavors


def load_sklearn(
    model_dir: Path, flavors: dict[str, Any], trusted: Sequence[str]
) -> SklearnBackend:
    """Load the ``sklearn`` flavor of an MLflow model directory; only skops is accepted."""
    conf = flavors.get("sklearn")
    if not isinstance(conf, dict):
        raise ModelLoadError("the model has no sklearn flavor")
    fmt = conf.get("serialization_format", "pickle")
    if fmt != "skops":
        # pickle/cloudpickle run arbitrary code when loaded: the predictor refuses them.
        raise ModelLoadError(f"serialization format {fmt!r} refused: only 'skops' is loaded")
    path = model_dir / str(conf.get("pickled_model", "model.skops"))
    import skops.io  # type: ignore[import-untyped]

    try:
        # The predictor's own allow-list: a model cannot widen it by listing types in MLmodel.
        estimator = skops.io.load(path, trusted=list(trusted))
    except Exception as exc:  # skops raises many types: untrusted types, bad files, ...
        raise ModelLoadError(f"skops could not load {path.name}: {exc}") from exc
    return SklearnBackend(estimator)
