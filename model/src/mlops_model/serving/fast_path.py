"""The fast path: a version carries its ONNX graph, checked once when it is registered.

Converting a forest with skl2onnx and proving parity takes seconds of CPU and the
scikit-learn/skl2onnx imports; none of it depends on the host that serves the
version. So the trainer (:mod:`mlops_model.registry`) and ``python -m mlops_model
prepare`` (for versions registered by other tools) run :func:`build_fast_path` once,
with the predictor's own conversion (:mod:`~mlops_model.serving.conversion`) and
parity check (:mod:`~mlops_model.serving.checks`), and attach to the version:

* ``extra_files/fast-path-model.onnx``: the graph, inside the model's own files, so
  it rides in the download the predictor caches anyway;
* ``extra_files/fast-path-checks.json``: a few rows with scikit-learn's answers, the
  column orders and labels: what a predictor needs to open and check the graph with
  onnxruntime alone (:func:`read_checks`);
* the version tag ``mlops.fast_path``: ``passed``, or ``failed: <reason>`` when the
  conversion or the parity check failed (then no graph is attached).

This module imports neither MLflow nor scikit-learn at module level: the predictor
imports it for the constants and :func:`read_checks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_model.drift import MODEL_EXTRA_FILES_DIR
from mlops_model.serving.checks import parity_error, parity_rows, self_check, self_check_rows
from mlops_model.serving.errors import ModelLoadError

FAST_PATH_TAG = "mlops.fast_path"
FAST_PATH_PASSED = "passed"
FAST_PATH_ONNX = "fast-path-model.onnx"
FAST_PATH_CHECKS = "fast-path-checks.json"
FAST_PATH_FILES = (FAST_PATH_ONNX, FAST_PATH_CHECKS)
# Tag values are short strings in MLflow; a reason longer than this is cut.
_REASON_CHARS = 240
_FORMAT = 1


@dataclass(frozen=True)
class FastPathResult:
    """Outcome of :func:`build_fast_path`: the files to attach, or why there are none."""

    reason: str | None  # None: passed
    files: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.reason is None

    @property
    def tag(self) -> str:
        """The value of the ``mlops.fast_path`` version tag."""
        if self.reason is None:
            return FAST_PATH_PASSED
        return f"failed: {self.reason}"[:_REASON_CHARS]


@dataclass(frozen=True)
class FastPathChecks:
    """What ``fast-path-checks.json`` holds: rows, scikit-learn's answers, column orders."""

    rows: np.ndarray
    probabilities: np.ndarray
    feature_order: list[int] | None
    class_order: list[int] | None
    labels: list[int | str]


def fast_path_passed(tag: str | None) -> bool:
    return tag == FAST_PATH_PASSED


def build_fast_path(
    estimator: Any, out_dir: Path, tolerance: float | None = None
) -> FastPathResult:
    """Convert ``estimator``, prove parity, write the graph and check rows into ``out_dir``.

    Never raises for a model that does not convert or is not at parity: that is a
    result (``failed: <reason>``), recorded on the version, and the predictor then
    converts at load as before.
    """
    from mlops_model.serving.conversion import convert_to_onnx
    from mlops_model.serving.onnx_backend import OnnxBackend
    from mlops_model.serving.sklearn_backend import SklearnBackend

    try:
        sklearn = SklearnBackend(estimator)
        self_check(sklearn)
    except ModelLoadError as exc:
        return FastPathResult(f"not a servable classifier: {exc}")
    try:
        graph = convert_to_onnx(sklearn)
        compiled = OnnxBackend(graph, sklearn.feature_order, sklearn.class_order)
    except Exception as exc:  # the converter raises many types for unsupported models
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return FastPathResult(f"conversion: {type(exc).__name__}: {text}")
    rows = parity_rows()
    try:
        problem = parity_error(
            compiled.predict_proba(rows), sklearn.reference_proba(rows), tolerance
        )
    except Exception as exc:
        problem = f"the compiled model failed on the parity rows: {exc!r}"
    if problem is not None:
        return FastPathResult(f"parity: {problem}")
    check = self_check_rows()
    doc = {
        "format": _FORMAT,
        "rows": check.tolist(),
        "probabilities": sklearn.reference_proba(check).tolist(),
        "feature_order": sklearn.feature_order,
        "class_order": sklearn.class_order,
        "labels": sklearn.column_labels,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_file, checks_file = out_dir / FAST_PATH_ONNX, out_dir / FAST_PATH_CHECKS
    onnx_file.write_bytes(graph)
    # repr of floats round-trips exactly: the predictor compares with the same numbers.
    checks_file.write_text(json.dumps(doc))
    return FastPathResult(None, [onnx_file, checks_file])


def read_checks(model_dir: Path) -> FastPathChecks:
    """The check rows a version carries (``<model>/extra_files/fast-path-checks.json``)."""
    path = model_dir / MODEL_EXTRA_FILES_DIR / FAST_PATH_CHECKS
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != _FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {_FORMAT}")
        rows = np.ascontiguousarray(doc["rows"], dtype=np.float64)
        proba = np.ascontiguousarray(doc["probabilities"], dtype=np.float64)
        if rows.ndim != 2 or proba.ndim != 2 or rows.shape[0] != proba.shape[0] or not len(rows):
            raise ValueError(f"rows {rows.shape} and probabilities {proba.shape} do not match")
        return FastPathChecks(
            rows=rows,
            probabilities=proba,
            feature_order=doc.get("feature_order"),
            class_order=doc.get("class_order"),
            labels=list(doc["labels"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"unusable {FAST_PATH_CHECKS}: {exc}") from exc
