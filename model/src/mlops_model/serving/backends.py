"""Which backend serves a model: prepare a downloaded model directory, then build it.

``PREDICTOR_BACKEND`` picks one (:data:`~mlops_model.serving.settings.BACKEND_NAMES`):

``auto`` (default)
    ONNX Runtime when the model converts with skl2onnx and passes the parity check
    (identical labels, probabilities within
    :data:`~mlops_model.serving.checks.PARITY_TOLERANCE` on the whole Iris set plus
    random in-range rows); otherwise scikit-learn, with the reason recorded as the
    backend's ``fallback`` (``/model`` and the ``predictor_backend_fallbacks_total``
    metric show it).
``onnx``
    ONNX Runtime or nothing: a version that cannot be compiled is refused.
``sklearn``
    scikit-learn only (the tree-averaging fast path for random forests).

The parts live in their own modules: the backends in
:mod:`~mlops_model.serving.sklearn_backend` and :mod:`~mlops_model.serving.onnx_backend`,
the conversion in :mod:`~mlops_model.serving.conversion`, the self-check and the
parity check (and their rows) in :mod:`~mlops_model.serving.checks`.

The work is split in two, so that a serving process never needs scikit-learn,
skl2onnx or MLflow when ONNX is used (see :mod:`mlops_model.serving.prepare`):
:func:`prepare` runs where scikit-learn is loaded anyway (it loads the skops file,
converts, runs the reference model on the parity rows and writes the ONNX graph and
the reference answers next to the model); :func:`build_backend` runs in the serving
process, opens the ONNX graph with onnxruntime and checks it against the stored
reference answers once more. Both answer in the same form: float64 ``(n, 3)``
probabilities in ``schema.CLASS_NAMES`` order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlops_model.serving.checks import parity_error, parity_rows, self_check
from mlops_model.serving.conversion import convert_to_onnx
from mlops_model.serving.errors import ModelLoadError
from mlops_model.serving.holder import BackendFallback, InferenceBackend
from mlops_model.serving.onnx_backend import OnnxBackend
from mlops_model.serving.settings import BACKEND_NAMES
from mlops_model.serving.sklearn_backend import SklearnBackend, load_sklearn, read_flavors

log = logging.getLogger(__name__)

# Files written next to the MLflow model by prepare().
PREPARED_FILE = "predictor-prepared.json"
ONNX_FILE = "predictor-model.onnx"
PARITY_FILE = "predictor-parity.npz"
ORIGIN_REGISTRATION = "registration"


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` decided for a model directory (``predictor-prepared.json``)."""

    requested: str
    backend: str  # "onnx" or "sklearn"
    fallback: BackendFallback | None = None
    feature_order: list[int] | None = None
    class_order: list[int] | None = None
    # The model's own label of each probability column (None: written by an older predictor)
    labels: list[int | str] | None = None
    # ORIGIN_REGISTRATION: the ONNX graph and its check rows came with the version
    # (mlops_model.serving.fast_path); None: this predictor converted the model.
    origin: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def read(cls, model_dir: Path) -> Prepared | None:
        try:
            doc = json.loads((model_dir / PREPARED_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"unreadable {PREPARED_FILE}: {exc}") from exc
        try:
            fb = doc.get("fallback")
            return cls(
                requested=str(doc["requested"]),
                backend=str(doc["backend"]),
                fallback=BackendFallback(str(fb["reason"]), str(fb["detail"])) if fb else None,
                feature_order=doc.get("feature_order"),
                class_order=doc.get("class_order"),
                labels=doc.get("labels"),
                origin=doc.get("origin"),
            )
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"unexpected {PREPARED_FILE}: {exc!r}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def prepare(
    model_dir: Path,
    requested: str,
    trusted: Sequence[str],
    tolerance: float | None = None,
) -> Prepared:
    """Decide the backend of a downloaded model and write what the serving process needs.

    Loads the skops model (raises :class:`ModelLoadError` when that fails, whatever was
    requested), then for ``auto`` and ``onnx`` converts it, runs both on
    :func:`parity_rows` and keeps the ONNX graph only at parity. Writes
    ``predictor-prepared.json`` and, for ONNX, the graph and the reference answers.
    """
    if requested not in BACKEND_NAMES:
        raise ModelLoadError(f"unknown backend {requested!r}; known: {list(BACKEND_NAMES)}")
    flavors = read_flavors(model_dir)
    sklearn = load_sklearn(model_dir, flavors, trusted)
    self_check(sklearn)  # the reference itself must answer like a 3-class classifier
    fallback: BackendFallback | None = None
    if requested != "sklearn":
        fallback = _compile(model_dir, sklearn, tolerance)
        if fallback is not None and requested == "onnx":
            raise ModelLoadError(f"PREDICTOR_BACKEND=onnx: {fallback.reason}: {fallback.detail}")
    prepared = Prepared(
        requested=requested,
        backend="sklearn" if requested == "sklearn" or fallback else "onnx",
        fallback=fallback,
        feature_order=sklearn.feature_order,
        class_order=sklearn.class_order,
        labels=sklearn.column_labels,
    )
    _write_atomic(model_dir / PREPARED_FILE, prepared.to_json().encode())
    return prepared


def _compile(
    model_dir: Path, sklearn: SklearnBackend, tolerance: float | None
) -> BackendFallback | None:
    """Convert and parity-check; write the graph and reference answers, or say why not."""
    try:
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        import skl2onnx  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError as exc:
        return BackendFallback("unavailable", f"skl2onnx/onnxruntime not installed: {exc}")
    try:
        model = convert_to_onnx(sklearn)
        compiled = OnnxBackend(model, sklearn.feature_order, sklearn.class_order)
    except Exception as exc:  # the converter raises many types for unsupported models
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return BackendFallback("conversion", f"{type(exc).__name__}: {text}"[:500])
    rows = parity_rows()
    reference = sklearn.reference_proba(rows)
    try:
        problem = parity_error(compiled.predict_proba(rows), reference, tolerance)
    except Exception as exc:
        problem = f"the compiled model failed on the parity rows: {exc!r}"
    if problem is not None:
        return BackendFallback("parity", problem)
    _write_atomic(model_dir / ONNX_FILE, model)
    tmp = model_dir / f".{PARITY_FILE}.tmp.npz"
    np.savez(tmp, rows=rows, reference=reference)
    tmp.replace(model_dir / PARITY_FILE)
    return None


def build_backend(
    model_dir: Path,
    prepared: Prepared,
    trusted: Sequence[str],
    tolerance: float | None = None,
) -> InferenceBackend:
    """The serving backend of a prepared model directory.

    ONNX: opens the graph and checks it against the reference answers that
    :func:`prepare` stored (so the serving process needs neither scikit-learn nor
    skl2onnx); a failure there still falls back to scikit-learn.
    """
    fallback = prepared.fallback
    if prepared.backend == "onnx":
        try:
            compiled = OnnxBackend(
                (model_dir / ONNX_FILE).read_bytes(), prepared.feature_order, prepared.class_order
            )
            with np.load(model_dir / PARITY_FILE) as stored:
                rows, reference = stored["rows"], stored["reference"]
            problem = parity_error(compiled.predict_proba(rows), reference, tolerance)
        except ImportError as exc:
            problem, reason = f"onnxruntime not installed: {exc}", "unavailable"
        except (OSError, ValueError, KeyError, ModelLoadError) as exc:
            problem, reason = f"the prepared ONNX model is unusable: {exc}", "conversion"
        else:
            reason = "parity"
        if problem is None:
            return compiled
        if prepared.requested == "onnx":
            raise ModelLoadError(f"PREDICTOR_BACKEND=onnx: {problem}")
        fallback = BackendFallback(reason, problem)
    sklearn = load_sklearn(model_dir, read_flavors(model_dir), trusted)
    sklearn.fallback = fallback
    if fallback is not None:
        log.warning(
            "serving with scikit-learn instead of ONNX (%s): %s", fallback.reason, fallback.detail
        )
    return sklearn
