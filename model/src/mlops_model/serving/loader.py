"""Resolve ``models:/<name>@<alias>`` in the MLflow registry, load that version, self-check it.

A serving process imports neither MLflow nor scikit-learn for this when it can
avoid it: the alias lookup is one REST call (:mod:`~mlops_model.serving.registry_client`),
and the download plus the preparation of the backend (skops load, ONNX
conversion, parity check) run in a short-lived child process
(:mod:`~mlops_model.serving.prepare`). The worker then opens what was prepared
(:func:`~mlops_model.serving.backends.build_backend`) and self-checks it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from mlops_model.drift import (
    DRIFT_REFERENCE_FILE,
    MODEL_EXTRA_FILES_DIR,
    DriftReference,
)
from mlops_model.serving.backends import Prepared, build_backend
from mlops_model.serving.checks import self_check
from mlops_model.serving.errors import ModelLoadError, SelfCheckError
from mlops_model.serving.holder import LoadedModel
from mlops_model.serving.prepare import PrepareRequest, fetch_and_prepare
from mlops_model.serving.registry_client import ResolvedVersion, for_uri
from mlops_model.serving.settings import BACKEND_NAMES, Settings

log = logging.getLogger(__name__)


def _safe(text: str) -> str:
    """A registry name as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def read_drift_reference(model_dir: Path) -> tuple[DriftReference | None, str | None]:
    """The version's drift reference, or None and why: a model without one still serves."""
    path = model_dir / MODEL_EXTRA_FILES_DIR / DRIFT_REFERENCE_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None, (
            f"the version has no {MODEL_EXTRA_FILES_DIR}/{DRIFT_REFERENCE_FILE} "
            "(registered without mlops.stack's trainer, or before it wrote one)"
        )
    except (OSError, ValueError) as exc:
        return None, f"unreadable {DRIFT_REFERENCE_FILE}: {exc}"
    try:
        return DriftReference.from_dict(doc), None
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"invalid {DRIFT_REFERENCE_FILE}: {exc}"


class RegistryLoader:
    """Talks to the MLflow registry for one ``models:/<name>@<alias>``."""

    def __init__(self, settings: Settings) -> None:
        if settings.backend not in BACKEND_NAMES:
            raise ValueError(
                f"PREDICTOR_BACKEND={settings.backend!r} is unknown; known: {list(BACKEND_NAMES)}"
            )
        self.settings = settings
        self._resolver = for_uri(settings.tracking_uri)

    def resolve(self) -> ResolvedVersion:
        """The version the alias points at now."""
        return self._resolver.resolve(self.settings.model_name, self.settings.model_alias)

    @property
    def isolated(self) -> bool:
        """Prepare models in a child process (see :mod:`mlops_model.serving.prepare`)."""
        choice = self.settings.prepare_in_subprocess
        return choice if choice is not None else "mlflow" not in sys.modules

    def load(self, resolved: ResolvedVersion) -> LoadedModel:
        """Download, prepare, build and self-check one version; never returns an unchecked model.

        With a cache directory, the checked version is kept there as the last known good
        model, for a worker that starts while the registry is unreachable.
        """
        if not self.settings.cache_dir:
            return self._download_and_build(resolved)
        # The workers of one host share the cache: the first one downloads and
        # prepares the version (a child process, seconds of CPU), the others wait
        # for it and open what it stored, so a host prepares each version once.
        try:
            lock_file = self._open_prepare_lock(resolved.version)
        except OSError as exc:
            log.warning("no shared preparation (%s); preparing in this worker", exc)
            return self._download_and_build(resolved)
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released on close, or when the process dies
            stored = self._version_dir(resolved.version)
            prepared = Prepared.read(stored) if stored.is_dir() else None
            if prepared is not None and prepared.requested == self.settings.backend:
                try:
                    model = self._finish(resolved, stored, prepared, source="registry")
                except (ModelLoadError, SelfCheckError, OSError) as exc:
                    log.warning("stored version %s unusable (%s); preparing again", stored, exc)
                else:
                    self._point_alias_at(resolved)
                    return model
            return self._download_and_build(resolved)

    def _open_prepare_lock(self, version: str) -> TextIO:
        home = self._model_cache()
        home.mkdir(parents=True, exist_ok=True)
        return open(home / f".prepare-v{_safe(version)}.lock", "a")

    def _download_and_build(self, resolved: ResolvedVersion) -> LoadedModel:
        s = self.settings
        with tempfile.TemporaryDirectory(prefix="predictor-model-") as tmp:
            request = PrepareRequest(
                model_dir=str(Path(tmp) / "download"),
                backend=s.backend,
                trusted=list(s.skops_trusted_types),
                download=True,
                tracking_uri=s.tracking_uri,
                name=resolved.name,
                version=resolved.version,
            )
            model_dir = fetch_and_prepare(request, Path(tmp), self.isolated)
            model = self._build(resolved, model_dir, source="registry")
            if s.cache_dir:
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
        prepared = Prepared.read(model_dir)
        if prepared is not None and prepared.requested == self.settings.backend:
            return self._finish(resolved, model_dir, prepared, source)
        # A cached copy from an older predictor, or prepared for another backend
        # setting: prepare a private copy of it again.
        with tempfile.TemporaryDirectory(prefix="predictor-model-") as tmp:
            copy = Path(tmp) / "model"
            shutil.copytree(model_dir, copy)
            request = PrepareRequest(
                model_dir=str(copy),
                backend=self.settings.backend,
                trusted=list(self.settings.skops_trusted_types),
                download=False,
            )
            fetch_and_prepare(request, Path(tmp), self.isolated)
            prepared = Prepared.read(copy)
            if prepared is None:
                raise ModelLoadError(f"version {resolved.version} was not prepared")
            return self._finish(resolved, copy, prepared, source)

    def _finish(
        self, resolved: ResolvedVersion, model_dir: Path, prepared: Prepared, source: str
    ) -> LoadedModel:
        backend = build_backend(model_dir, prepared, self.settings.skops_trusted_types)
        self_check(backend)
        reference, missing = read_drift_reference(model_dir)
        if missing:
            log.warning("version %s serves without drift metrics: %s", resolved.version, missing)
        return LoadedModel(
            name=resolved.name,
            version=resolved.version,
            alias=resolved.alias,
            run_id=resolved.run_id,
            loaded_at=datetime.now(UTC),
            backend=backend,
            source=source,
            labels=tuple(prepared.labels) if prepared.labels else (0, 1, 2),
            drift_reference=reference,
            drift_missing=missing,
        )

    # -- last-known-good cache: <cache>/<name>/v<version>/ and <cache>/<name>/<alias>.json ---
    def _model_cache(self) -> Path:
        return Path(self.settings.cache_dir or ".") / _safe(self.settings.model_name)

    def _pointer(self) -> Path:
        return self._model_cache() / f"{_safe(self.settings.model_alias)}.json"

    def _version_dir(self, version: str) -> Path:
        return self._model_cache() / f"v{_safe(version)}"

    def _point_alias_at(self, resolved: ResolvedVersion) -> None:
        """Make the cached version the alias's last known good one (atomically)."""
        home = self._model_cache()
        fd, tmp_name = tempfile.mkstemp(prefix=".pointer-", dir=home)
        with os.fdopen(fd, "w") as out:
            json.dump({"version": resolved.version, "run_id": resolved.run_id}, out)
        os.replace(tmp_name, self._pointer())

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
        self._point_alias_at(resolved)
        # Drop versions no alias pointer of this model refers to any more.
        wanted = set()
        for pointer in home.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                wanted.add(self._version_dir(str(json.loads(pointer.read_text())["version"])))
        for old in home.glob("v*"):
            if old.is_dir() and old not in wanted:
                shutil.rmtree(old, ignore_errors=True)
