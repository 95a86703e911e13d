"""Resolve ``models:/<name>@<alias>`` in the MLflow registry, load that version, self-check it.

A version prepared at registration (:mod:`~mlops_model.serving.fast_path`, tag
``mlops.fast_path=passed``) takes the fast path: the worker fetches its ONNX graph
and check rows over REST, opens the graph with onnxruntime and checks it against
those rows, in-process, in well under a second. Everything below is the fallback
for versions without it (or whose graph fails its check here).

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

import numpy as np

from mlops_model.drift import (
    DRIFT_REFERENCE_FILE,
    MODEL_EXTRA_FILES_DIR,
    DriftReference,
)
from mlops_model.serving import alias_state
from mlops_model.serving.backends import (
    ONNX_FILE,
    ORIGIN_REGISTRATION,
    PARITY_FILE,
    PREPARED_FILE,
    Prepared,
    build_backend,
)
from mlops_model.serving.checks import self_check
from mlops_model.serving.errors import ModelLoadError, SelfCheckError
from mlops_model.serving.fast_path import (
    FAST_PATH_CHECKS,
    FAST_PATH_ONNX,
    FAST_PATH_TAG,
    fast_path_passed,
    read_checks,
)
from mlops_model.serving.holder import LoadedModel
from mlops_model.serving.prepare import PrepareRequest, fetch_and_prepare
from mlops_model.serving.registry_client import ResolvedVersion, RestRegistry, for_uri
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
        self._followed = False  # the last resolve() read a fresh host-wide alias file

    def resolve(self) -> ResolvedVersion:
        """The version the alias points at now: from the host's follower, else the registry."""
        s = self.settings
        if s.alias_file and s.alias_poll_interval > 0:
            state = alias_state.read_state(
                Path(s.alias_file), alias_state.stale_after(s.alias_poll_interval)
            )
            if state is not None and (state.name, state.alias) == (s.model_name, s.model_alias):
                self._followed = True
                return state.resolved()
        self._followed = False
        return self._resolver.resolve(s.model_name, s.model_alias)

    def poll_delay(self) -> float:
        """Seconds to the watcher's next check: a local file read is cheap, a request is not."""
        if self._followed:
            return min(alias_state.WORKER_CHECK_INTERVAL, self.settings.poll_interval)
        return self.settings.poll_interval

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
            return self._fast_path(resolved) or self._download_and_build(resolved)
        # The workers of one host share the cache: the first one downloads and
        # prepares the version (a child process, seconds of CPU), the others wait
        # for it and open what it stored, so a host prepares each version once.
        try:
            lock_file = self._open_prepare_lock(resolved.version)
        except OSError as exc:
            log.warning("no shared preparation (%s); preparing in this worker", exc)
            return self._fast_path(resolved) or self._download_and_build(resolved)
        with lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released on close, or when the process dies
            stored = self._version_dir(resolved.version)
            prepared = Prepared.read(stored) if stored.is_dir() else None
            if prepared is not None and prepared.requested == self.settings.backend:
                try:
                    model = self._finish(
                        resolved, stored, prepared, source="registry", fetched="cache"
                    )
                except (ModelLoadError, SelfCheckError, OSError) as exc:
                    log.warning("stored version %s unusable (%s); preparing again", stored, exc)
                    shutil.rmtree(stored, ignore_errors=True)  # or _store would keep it
                else:
                    self._point_alias_at(resolved)
                    return model
            return self._fast_path(resolved) or self._download_and_build(resolved)

    def _open_prepare_lock(self, version: str) -> TextIO:
        home = self._model_cache()
        home.mkdir(parents=True, exist_ok=True)
        return open(home / f".prepare-v{_safe(version)}.lock", "a")

    def _fast_path(self, resolved: ResolvedVersion) -> LoadedModel | None:
        """The version's prepared ONNX graph, checked here; None: take the conversion path.

        Raises :class:`RegistryUnavailable` only when the registry stops answering.
        """
        if self.settings.backend == "sklearn" or not isinstance(self._resolver, RestRegistry):
            return None
        name, version = resolved.name, resolved.version
        tag = self._resolver.version_tags(name, version).get(FAST_PATH_TAG)
        if not fast_path_passed(tag):
            log.info(
                "version %s has no prepared ONNX model (%s=%s): converting it here",
                version,
                FAST_PATH_TAG,
                tag,
            )
            return None
        wanted = [f"{MODEL_EXTRA_FILES_DIR}/{f}" for f in (FAST_PATH_ONNX, FAST_PATH_CHECKS)]
        reference = f"{MODEL_EXTRA_FILES_DIR}/{DRIFT_REFERENCE_FILE}"
        files = self._resolver.model_files(name, version, [*wanted, reference])
        if not all(w in files for w in wanted):
            log.warning("version %s: prepared files not found; converting it here", version)
            return None
        with tempfile.TemporaryDirectory(prefix="predictor-model-") as tmp:
            model_dir = Path(tmp) / "model"
            for relpath, data in files.items():
                (model_dir / relpath).parent.mkdir(parents=True, exist_ok=True)
                (model_dir / relpath).write_bytes(data)
            try:
                model = self._open_prepared(resolved, model_dir)
            except (ModelLoadError, SelfCheckError, OSError) as exc:
                log.warning(
                    "version %s: prepared ONNX model refused (%s); converting", version, exc
                )
                return None
            if self.settings.cache_dir:
                try:
                    self._store(resolved, model_dir)
                except OSError as exc:
                    log.warning("could not cache version %s: %s", version, exc)
        return model

    def _open_prepared(self, resolved: ResolvedVersion, model_dir: Path) -> LoadedModel:
        """Lay the version's files out as a prepared model directory, then build and check it.

        The layout is the one :func:`~mlops_model.serving.backends.prepare` writes, so
        the host cache, and a restart from it, treat both paths alike.
        """
        checks = read_checks(model_dir)
        shutil.copyfile(model_dir / MODEL_EXTRA_FILES_DIR / FAST_PATH_ONNX, model_dir / ONNX_FILE)
        with open(model_dir / PARITY_FILE, "wb") as out:
            np.savez(out, rows=checks.rows, reference=checks.probabilities)
        prepared = Prepared(
            requested=self.settings.backend,
            backend="onnx",
            feature_order=checks.feature_order,
            class_order=checks.class_order,
            labels=checks.labels,
            origin=ORIGIN_REGISTRATION,
        )
        (model_dir / PREPARED_FILE).write_text(prepared.to_json())
        model = self._finish(resolved, model_dir, prepared, source="registry", fetched="registry")
        if model.backend_name != "onnx":  # the graph failed its check: never serve half a model
            raise ModelLoadError("the prepared ONNX model failed its check rows")
        return model

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
        return self._build(
            resolved, self._version_dir(resolved.version), source="cache", fetched="cache"
        )

    def _build(
        self, resolved: ResolvedVersion, model_dir: Path, source: str, fetched: str = "registry"
    ) -> LoadedModel:
        prepared = Prepared.read(model_dir)
        if prepared is not None and prepared.requested == self.settings.backend:
            return self._finish(resolved, model_dir, prepared, source, fetched)
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
            return self._finish(resolved, copy, prepared, source, fetched)

    def _finish(
        self,
        resolved: ResolvedVersion,
        model_dir: Path,
        prepared: Prepared,
        source: str,
        fetched: str = "registry",
    ) -> LoadedModel:
        backend = build_backend(model_dir, prepared, self.settings.skops_trusted_types)
        self_check(backend)
        reference, missing = read_drift_reference(model_dir)
        if missing:
            log.warning("version %s serves without drift metrics: %s", resolved.version, missing)
        if backend.name != "onnx":
            preparation = "sklearn"
        elif prepared.origin == ORIGIN_REGISTRATION:
            preparation = "prepared"
        else:
            preparation = "converted"
        log.info(
            "version %s of %s checked: %s (%s backend), files from the %s",
            resolved.version,
            resolved.name,
            preparation,
            backend.name,
            fetched,
        )
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
            preparation=preparation,
            fetched=fetched,
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
