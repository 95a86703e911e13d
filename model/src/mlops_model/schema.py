"""The Iris feature schema: the one contract shared by training and serving."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str
    minimum: float
    maximum: float


# Ranges are those observed in scikit-learn's bundled Iris data set; serving
# uses them for input histograms and random in-range self-check rows.
FEATURES: tuple[Feature, ...] = (
    Feature("sepal_length", "cm", 4.3, 7.9),
    Feature("sepal_width", "cm", 2.0, 4.4),
    Feature("petal_length", "cm", 1.0, 6.9),
    Feature("petal_width", "cm", 0.1, 2.5),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CLASS_NAMES: tuple[str, ...] = ("setosa", "versicolor", "virginica")

# The registered model name and the alias production serves.
DEFAULT_MODEL_NAME = "iris"
DEFAULT_ALIAS = "champion"
# Tag on runs and model versions that makes training idempotent.
FINGERPRINT_TAG = "mlops.fingerprint"
# What skops must trust beyond its built-in safe list to load the forest: the only
# such type of a fitted RandomForestClassifier (checked with skops.io.get_untrusted_types
# on a dumped forest). Training logs the model with it; the predictor loads with it
# unless PREDICTOR_SKOPS_TRUSTED_TYPES says otherwise.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)
