"""The one inference interface of the predictor, and the holder that swaps models atomically.

The HTTP layer only ever sees :class:`LoadedModel`: registry metadata plus an
:class:`InferenceBackend` that maps a float64 ``(n, 4)`` array (columns in
``schema.FEATURE_NAMES`` order) to a float64 ``(n, 3)`` array of class
probabilities (columns in ``schema.CLASS_NAMES`` order). A faster compiled
backend (ONNX Runtime, ...) is one more class with ``name`` and
``predict_proba`` (see :mod:`mlops_model.serving.onnx_backend`); nothing in the
HTTP layer changes. A backend that stands in for the one asked for says why in
its ``fallback`` attribute (:class:`BackendFallback`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from mlops_model.drift import DriftReference

FloatArray = NDArray[np.float64]

# Trees compare float32 features; larger magnitudes would overflow the cast (and
# make scikit-learn's own input check raise). Every backend clips inputs to this
# before the cast, which keeps every tree decision.
F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True)
class BackendFallback:
    """Why a model is served by scikit-learn although ONNX was asked for."""

    # "unavailable" (skl2onnx/onnxruntime missing), "conversion" (the converter or
    # onnxruntime refused the model) or "parity" (answers differ from scikit-learn's)
    reason: str
    detail: str


@runtime_checkable
class InferenceBackend(Protocol):
    """Something that turns validated feature rows into class probabilities."""

    @property
    def name(self) -> str:
        """Short backend name for /model and metrics, e.g. ``sklearn`` or ``onnx``."""
        ...

    def predict_proba(self, x: FloatArray) -> FloatArray:
        """``x``: C-contiguous float64 ``(n, 4)``, all finite. Returns float64 ``(n, 3)``."""
        ...


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One registered model version, in memory and self-checked, ready to serve."""

    name: str
    version: str
    alias: str
    run_id: str | None
    loaded_at: datetime
    backend: InferenceBackend
    # "registry", or "cache" when a worker started while the registry was unreachable.
    source: str = "registry"
    # The model's own label of each probability column (what its ``predict`` returns,
    # and so what MLflow's scoring server answers): class indices for the trainer's
    # models, class names for a model fitted on names.
    labels: tuple[int | str, ...] = (0, 1, 2)
    # The training distribution of this version (mlops_model.drift), or None and why not.
    drift_reference: DriftReference | None = None
    drift_missing: str | None = None
    # How the backend was made: "prepared" (the ONNX graph checked at registration,
    # opened with onnxruntime alone), "converted" (converted by this predictor) or
    # "sklearn"; and where its files came from: "registry" (downloaded) or "cache"
    # (the host's model cache).
    preparation: str = "converted"
    fetched: str = "registry"

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def backend_fallback(self) -> BackendFallback | None:
        """Set when the backend stands in for ONNX; None when it is the one asked for."""
        fallback = getattr(self.backend, "fallback", None)
        return fallback if isinstance(fallback, BackendFallback) else None

    def predict_proba(self, x: FloatArray) -> FloatArray:
        return self.backend.predict_proba(x)


class ModelHolder:
    """Holds the current :class:`LoadedModel`; swapping is one reference assignment.

    A request reads :attr:`current` once and keeps that reference, so a swap in
    the middle of a request never mixes two models: in-flight requests finish on
    the model they started with, and the old model is freed when the last of
    them drops it.
    """

    __slots__ = ("_current", "_lock")

    def __init__(self, model: LoadedModel | None = None) -> None:
        self._lock = threading.Lock()
        self._current = model

    @property
    def current(self) -> LoadedModel | None:
        # Reading one attribute is atomic; the lock only orders writers.
        return self._current

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Make ``model`` current; return the one it replaced."""
        with self._lock:
            previous, self._current = self._current, model
        return previous
