"""Resolve ``models:/<name>@<alias>`` in the MLflow registry, load that version, self-check it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlops_model.schema import CLASS_NAMES, FEATURES
from mlops_model.serving.backends import BACKENDS, ModelLoadError, SklearnBackend
from mlops_model.serving.holder import FloatArray, InferenceBackend, LoadedModel
from mlops_model.serving.settings import Settings

log = logging.getLogger(__name__)

# Registry calls of a predictor must fail fast: an outage must never block a worker
# for MLflow's defaults (120 s timeout, 7 retries with exponential backoff). The
# watcher's poll loop is the retry.
REGISTRY_HTTP_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
}

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


def apply_registry_http_defaults() -> None:
    """Short MLflow HTTP timeouts for this process, unless the operator set them."""
    for key, value in REGISTRY_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


class RegistryUnavailable(Exception):
    """The registry did not answer (connection refused, timeout, 5xx)."""


class AliasNotFound(Exception):
    """The registry answered: no such registered model or alias."""


class SelfCheckError(ModelLoadError):
    """The model loaded but its outputs on the sample rows are not probabilities."""


@dataclass(frozen=True)
class ResolvedVersion:
    name: str
    alias: str
    version: str
    run_id: str | None


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


def _safe(text: str) -> str:
    """A registry name as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


class RegistryLoader:
    """Talks to the MLflow registry for one ``models:/<name>@<alias>``."""

    def __init__(self, settings: Settings) -> None:
        from mlflow.tracking import MlflowClient

        if settings.backend not in BACKENDS:
            raise ValueError(
                f"PREDICTOR_BACKEND={settings.backend!r} is unknown; known: {sorted(BACKENDS)}"
            )
        self.settings = settings
        self._client = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
        )

    def resolve(self) -> ResolvedVersion:
        """The version the alias points at now."""
        from mlflow.exceptions import MlflowException

        s = self.settings
        try:
            mv = self._client.get_model_version_by_alias(s.model_name, s.model_alias)
        except MlflowException as exc:
            code = str(getattr(exc, "error_code", ""))
            if code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
                raise AliasNotFound(f"{s.model_uri}: {exc.message}") from exc
            raise RegistryUnavailable(f"{s.model_uri}: {exc.message}") from exc
        except Exception as exc:  # requests/urllib3 errors that escape MLflow's wrapping
            raise RegistryUnavailable(f"{s.model_uri}: {exc!r}") from exc
        return ResolvedVersion(
            name=s.model_name, alias=s.model_alias, version=str(mv.version), run_id=mv.run_id
        )

    def download(self, resolved: ResolvedVersion, dst: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        uri = f"models:/{resolved.name}/{resolved.version}"
        try:
            # Resolve the storage location with our own client: MLflow's models:/ artifact
            # repository looks versions up in the *global* registry URI, not the one passed.
            location = self._client.get_model_version_download_uri(resolved.name, resolved.version)
            path = download_artifacts(
                artifact_uri=location, dst_path=str(dst), tracking_uri=self.settings.tracking_uri
            )
        except Exception as exc:
            raise RegistryUnavailable(f"downloading {uri} failed: {exc}") from exc
        return Path(path)

    def load(self, resolved: ResolvedVersion) -> LoadedModel:
        """Download, deserialize and self-check one version; never returns an unchecked model.

        With a cache directory, the checked version is kept there as the last known good
        model, for a worker that starts while the registry is unreachable.
        """
        with tempfile.TemporaryDirectory(prefix="predictor-model-") as tmp:
            model_dir = self.download(resolved, Path(tmp))
            model = self._build(resolved, model_dir, source="registry")
            if self.settings.cache_dir:
                try:
                    self._store(resolved, model_dir)
                except OSError as exc:  # the cache is a convenience, never a reason to fail
                    log.warning("could not cache version %s: %s", resolved.version, exc)
        return model

    def load_cached(self) -> LoadedModel | None:
        """The last known good version of this name and alias from the cache, self-checked."""
        if not self.settings.cache_dir:
            return None
        try:
            meta = json.loads(self._pointer().read_text())
            resolved = ResolvedVersion(
                name=self.settings.model_name,
                alias=self.settings.model_alias,
                version=str(meta["version"]),
                run_id=meta.get("run_id"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self._build(resolved, self._version_dir(resolved.version), source="cache")

    def _build(self, resolved: ResolvedVersion, model_dir: Path, source: str) -> LoadedModel:
        from mlflow.models import Model

        try:
            flavors: dict[str, Any] = Model.load(str(model_dir)).flavors
        except Exception as exc:
            raise ModelLoadError(f"no readable MLmodel in version {resolved.version}") from exc
        factory = BACKENDS[self.settings.backend]
        backend = factory(model_dir, flavors, self.settings.skops_trusted_types)
        self_check(backend)
        return LoadedModel(
            name=resolved.name,
            version=resolved.version,
            alias=resolved.alias,
            run_id=resolved.run_id,
            loaded_at=datetime.now(UTC),
            backend=backend,
            source=source,
        )

    # -- last-known-good cache: <cache>/<name>/v<version>/ and <cache>/<name>/<alias>.json ---
    def _model_cache(self) -> Path:
        return Path(self.settings.cache_dir or ".") / _safe(self.settings.model_name)

    def _pointer(self) -> Path:
        return self._model_cache() / f"{_safe(self.settings.model_alias)}.json"

    def _version_dir(self, version: str) -> Path:
        return self._model_cache() / f"v{_safe(version)}"

    def _store(self, resolved: ResolvedVersion, model_dir: Path) -> None:
        """Copy a checked model into the cache; safe with several workers doing the same."""
        home = self._model_cache()
        home.mkdir(parents=True, exist_ok=True)
        target = self._version_dir(resolved.version)
        if not target.exists():
            staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=home))
            try:
                shutil.copytree(model_dir, staging / "model")
                with contextlib.suppress(OSError):  # another worker was first: fine
                    os.rename(staging / "model", target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".pointer-", dir=home)
        with os.fdopen(fd, "w") as out:
            json.dump({"version": resolved.version, "run_id": resolved.run_id}, out)
        os.replace(tmp_name, self._pointer())
        # Drop versions no alias pointer of this model refers to any more.
        wanted = set()
        for pointer in home.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                wanted.add(self._version_dir(str(json.loads(pointer.read_text())["version"])))
        for old in home.glob("v*"):
            if old.is_dir() and old not in wanted:
                shutil.rmtree(old, ignore_errors=True)
