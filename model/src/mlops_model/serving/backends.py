"""Inference backends: a scikit-learn model as an :class:`InferenceBackend`, plain or compiled.

``PREDICTOR_BACKEND`` picks one (:data:`BACKENDS`):

``auto`` (default)
    ONNX Runtime when the model converts with skl2onnx and passes the parity check
    (identical labels, probabilities within :data:`PARITY_TOLERANCE` on the whole
    Iris set plus random in-range rows); otherwise scikit-learn, with the reason
    recorded as the backend's :attr:`~SklearnBackend.fallback` (``/model`` and the
    ``predictor_backend_fallbacks_total`` metric show it).
``onnx``
    ONNX Runtime or nothing: a version that cannot be compiled is refused.
``sklearn``
    scikit-learn only (the tree-averaging fast path for random forests).

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
from typing import Any

import numpy as np

from mlops_model.schema import CLASS_NAMES, FEATURE_NAMES, FEATURES
from mlops_model.serving.holder import BackendFallback, FloatArray, InferenceBackend
from mlops_model.serving.settings import BACKEND_NAMES

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = BACKEND_NAMES

# Trees compare float32 features; larger magnitudes would overflow the cast (and
# make scikit-learn's own input check raise). Clipping keeps every tree decision.
_F32_MAX = float(np.finfo(np.float32).max)

# skl2onnx target: ai.onnx.ml 3 is the first TreeEnsembleClassifier with double
# thresholds and weights (``*_as_tensor``), which the double input below needs;
# the default domain at 21 is within what skl2onnx 1.20 tests (22) and every
# onnxruntime >= 1.20 runs.
TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}
# Parity of the compiled model with scikit-learn: labels identical, probabilities
# at most this far apart, on the Iris set plus PARITY_RANDOM_ROWS random rows.
PARITY_TOLERANCE = 1e-5
PARITY_RANDOM_ROWS = 1000
PARITY_SEED = 8
# ONNX Runtime's tree ensemble sums in double and returns float32; rounding its
# answer to 7 decimals removes the float32 noise (0.61, not 0.6100000143051147)
# and stays within 1e-7 of scikit-learn's float64 answer.
PROBABILITY_DECIMALS = 7
_SCALE = np.float64(10**PROBABILITY_DECIMALS)

# Files written next to the MLflow model by prepare().
PREPARED_FILE = "predictor-prepared.json"
ONNX_FILE = "predictor-model.onnx"
PARITY_FILE = "predictor-parity.npz"


class ModelLoadError(Exception):
    """The model version exists but cannot be turned into a backend."""


# --------------------------------------------------------------------------- sklearn


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
        x32 = np.clip(x, -_F32_MAX, _F32_MAX).astype(np.float32)
        k = self._n_classes
        trees = self._trees
        acc: FloatArray = np.array(trees[0].predict(x32)[:, :k], dtype=np.float64)
        for tree in trees[1:]:
            acc += tree.predict(x32)[:, :k]
        acc /= len(trees)
        return acc

    def reference_proba(self, x: FloatArray) -> FloatArray:
        """scikit-learn's own ``predict_proba`` (the slow, general path)."""
        xc = np.clip(x, -_F32_MAX, _F32_MAX)
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


# --------------------------------------------------------------------------- onnx


class OnnxBackend:
    """A compiled model run by ONNX Runtime, one intra-op thread.

    Why one thread: gunicorn runs as many single-threaded workers as there are
    cores, each answering one request at a time. More intra-op threads per session
    would oversubscribe the cores (each worker's pool competing with the other
    workers), cost a thread hand-off on every call that is larger than the work
    itself (about 10 µs for one row through 100 trees), and make the summation
    order over trees depend on how a batch is split, so one row alone and the same
    row inside a batch could differ in the last bits. One thread is deterministic.

    The input goes in as float64 holding float32-rounded values: scikit-learn's
    trees compare ``float32(x)`` with float64 thresholds, and the converted trees
    keep float64 thresholds, so every split decides as in scikit-learn.
    """

    name = "onnx"
    fallback: BackendFallback | None = None

    def __init__(
        self,
        model: bytes,
        feature_order: Sequence[int] | None = None,
        class_order: Sequence[int] | None = None,
    ) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no per-session info lines in the log
        try:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot open the converted model: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(double)":
            raise ModelLoadError(f"unexpected ONNX inputs {[(i.name, i.type) for i in inputs]}")
        probabilities = [o.name for o in outputs if o.name == "probabilities"]
        if not probabilities:
            raise ModelLoadError(f"no 'probabilities' output in {[o.name for o in outputs]}")
        self.session = session
        self._input = inputs[0].name
        self._outputs = probabilities
        self._run = session.run
        self._feature_order = None if feature_order is None else list(feature_order)
        self._class_order = None if class_order is None else list(class_order)

    def predict_proba(self, x: FloatArray) -> FloatArray:
        # Plain ufuncs, not np.clip/np.round: their Python wrappers cost more than
        # the whole tree ensemble on one row.
        x_in = np.minimum(np.maximum(x, -_F32_MAX), _F32_MAX).astype(np.float32)
        x_in = x_in.astype(np.float64)
        if self._feature_order is not None:
            x_in = np.ascontiguousarray(x_in[:, self._feature_order])
        (proba,) = self._run(self._outputs, {self._input: x_in})
        out: FloatArray = np.rint(proba * _SCALE) / _SCALE  # float32 * float64 -> float64
        if self._class_order is not None:
            out = np.ascontiguousarray(out[:, self._class_order])
        return out


def convert_to_onnx(backend: SklearnBackend) -> bytes:
    """The model as a serialized ONNX graph (skl2onnx); raises what the converter raises."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]

    estimator = backend.estimator
    no_zipmap = {"zipmap": False}  # probabilities as a plain (n, classes) tensor
    options: dict[int, dict[str, Any]] = {id(estimator): no_zipmap}
    steps = getattr(estimator, "steps", None)
    if steps:  # a Pipeline: the option belongs to its final classifier
        options[id(steps[-1][1])] = no_zipmap
    sample = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float64)
    onx = to_onnx(estimator, sample, options=options, target_opset=TARGET_OPSET)
    data: bytes = onx.SerializeToString()
    return data


def parity_rows(n_random: int = PARITY_RANDOM_ROWS, seed: int = PARITY_SEED) -> FloatArray:
    """The whole Iris data set plus random rows inside each feature's observed range."""
    from mlops_model.data import load_features

    iris = load_features()[0].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    lows = np.array([f.minimum for f in FEATURES])
    highs = np.array([f.maximum for f in FEATURES])
    random_rows = rng.uniform(lows, highs, size=(n_random, len(FEATURES)))
    return np.ascontiguousarray(np.vstack([iris, random_rows]))


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


# --------------------------------------------------------------------------- prepare / build


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` decided for a model directory (``predictor-prepared.json``)."""

    requested: str
    backend: str  # "onnx" or "sklearn"
    fallback: BackendFallback | None = None
    feature_order: list[int] | None = None
    class_order: list[int] | None = None

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
    if requested not in BACKENDS:
        raise ModelLoadError(f"unknown backend {requested!r}; known: {list(BACKENDS)}")
    flavors = read_flavors(model_dir)
    sklearn = load_sklearn(model_dir, flavors, trusted)
    from mlops_model.serving.checks import self_check

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
