"""The checks a model passes before it serves, and the one generator of the rows they use.

* :func:`self_check`: every backend answers like a 3-class classifier on
  :func:`self_check_rows` (a few Iris rows plus random in-range rows);
* :func:`parity_error`: a compiled model answers like scikit-learn on
  :func:`parity_rows` (the whole Iris set plus many more random in-range rows).

Both row sets come from :func:`check_rows`.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.errors import SelfCheckError
from mlops_model.serving.holder import FloatArray, InferenceBackend
from mlops_model.serving.sklearn_backend import SklearnBackend

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
# Parity of the compiled model with scikit-learn: labels identical, probabilities
# at most this far apart, on the Iris set plus PARITY_RANDOM_ROWS random rows.
PARITY_TOLERANCE = 1e-5
PARITY_RANDOM_ROWS = 1000
PARITY_SEED = 8


# --------------------------------------------------------------------------- rows


def check_rows(n_random: int, seed: int, base: ArrayLike = ()) -> FloatArray:
    """``base`` rows, then ``n_random`` random rows inside each feature's observed range.

    C-contiguous float64 ``(len(base) + n_random, 4)``, the same for the same arguments.
    """
    rng = np.random.default_rng(seed)
    lows = np.array([f.minimum for f in FEATURES])
    highs = np.array([f.maximum for f in FEATURES])
    random_rows = rng.uniform(lows, highs, size=(n_random, len(FEATURES)))
    first = np.asarray(base, dtype=np.float64).reshape(-1, len(FEATURES))
    return np.ascontiguousarray(np.vstack([first, random_rows]))


def self_check_rows(seed: int = 0) -> FloatArray:
    """Iris sample rows plus random rows inside each feature's observed range."""
    return check_rows(SELF_CHECK_RANDOM_ROWS, seed, IRIS_SAMPLE_ROWS)


def parity_rows(n_random: int = PARITY_RANDOM_ROWS, seed: int = PARITY_SEED) -> FloatArray:
    """The whole Iris data set plus random rows inside each feature's observed range."""
    from mlops_model.data import load_features  # pandas and scikit-learn: only when preparing

    return check_rows(n_random, seed, load_features()[0].to_numpy(dtype=np.float64))


# --------------------------------------------------------------------------- checks


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


def parity_error(
    got: FloatArray, reference: FloatArray, tolerance: float | None = None
) -> str | None:
    """Why ``got`` is not at parity with ``reference``, or None when it is.

    ``tolerance`` defaults to :data:`PARITY_TOLERANCE` (read when called).
    """
    if tolerance is None:
        tolerance = PARITY_TOLERANCE
    if got.shape != reference.shape:
        return f"output shape {got.shape}, scikit-learn's is {reference.shape}"
    if not np.isfinite(got).all():
        return "the output has NaN or infinite values"
    labels, want = got.argmax(axis=1), reference.argmax(axis=1)
    differ = np.flatnonzero(labels != want)
    if differ.size:
        i = int(differ[0])
        return (
            f"labels differ on {differ.size} of {len(want)} rows "
            f"(first: row {i}, {CLASS_NAMES[int(labels[i])]} vs {CLASS_NAMES[int(want[i])]})"
        )
    diff = float(np.abs(got - reference).max())
    if not diff <= tolerance:
        return f"probabilities differ by up to {diff:.3g} (tolerance {tolerance:g})"
    return None
