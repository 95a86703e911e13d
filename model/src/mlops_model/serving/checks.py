"""The self-check every model passes before it serves: it answers like a 3-class classifier."""

from __future__ import annotations

import logging

import numpy as np

from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.backends import ModelLoadError, SklearnBackend
from mlops_model.serving.holder import FloatArray, InferenceBackend

log = logging.getLogger(__name__)

# A few rows of the Iris data set, one or more per class, plus random in-range rows.
IRIS_SAMPLE_ROWS: tuple[tuple[float, float, float, float], ...] = (
    (5.1, 3.5, 1.4, 0.2),
    (4.9, 3.0, 1.4, 0.2),
    (7.0, 3.2, 4.7, 1.4),
    (5.7, 2.8, 4.1, 1.3),
    (6.3, 3.3, 6.0, 2.5),
    (5.9, 3.0, 5.1, 1.8),
)
SELF_CHECK_RANDOM_ROWS = 64


class SelfCheckError(ModelLoadError):
    """The model loaded but its outputs on the sample rows are not probabilities."""


def self_check_rows(seed: int = 0) -> FloatArray:
    """Iris rows plus random rows inside each feature's observed range."""
    rng = np.random.default_rng(seed)
    lows = np.array([f.minimum for f in FEATURES])
    highs = np.array([f.maximum for f in FEATURES])
    random_rows = rng.uniform(lows, highs, size=(SELF_CHECK_RANDOM_ROWS, len(FEATURES)))
    return np.ascontiguousarray(np.vstack([np.array(IRIS_SAMPLE_ROWS), random_rows]))


def self_check(backend: InferenceBackend) -> None:
    """Raise :class:`SelfCheckError` unless the backend answers like a 3-class classifier."""
    x = self_check_rows()
    try:
        proba = np.asarray(backend.predict_proba(x))
        single = np.asarray(backend.predict_proba(np.ascontiguousarray(x[:1])))
    except Exception as exc:
        raise SelfCheckError(f"predict_proba failed on the sample rows: {exc!r}") from exc
    want = (x.shape[0], len(CLASS_NAMES))
    if proba.shape != want or single.shape != (1, len(CLASS_NAMES)):
        raise SelfCheckError(f"output shape {proba.shape}, expected {want}")
    if proba.dtype != np.float64:
        raise SelfCheckError(f"output dtype {proba.dtype}, expected float64")
    if not np.isfinite(proba).all():
        raise SelfCheckError("output has NaN or infinite values")
    if (proba < -1e-9).any() or (proba > 1 + 1e-9).any():
        raise SelfCheckError("output has values outside [0, 1]")
    if not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
        raise SelfCheckError("output rows do not sum to 1")
    if not np.allclose(single, proba[:1], atol=1e-9):
        raise SelfCheckError("a single row and the same row in a batch disagree")
    if isinstance(backend, SklearnBackend) and backend.lean:
        reference = backend.reference_proba(x)
        if not np.allclose(proba, reference, atol=1e-9):
            log.warning("lean forest path disagrees with scikit-learn; using scikit-learn's")
            backend.disable_lean_path()
