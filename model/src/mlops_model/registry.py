"""The MLflow client of the training side: runs, registered versions, aliases.

Only Model Registry *aliases* are used, never the deprecated stages. What may be
registered and promoted is decided elsewhere: arguments by
:mod:`mlops_model.validation`, the promotion gate by :mod:`mlops_model.gate`; this
module records the gate's outcome as tags and moves aliases.

A :class:`Registry` is a context manager bound to one tracking URI. Entering it
checks that the server answers (a quick ``GET <uri>/health``), bounds MLflow's
HTTP retries and timeouts (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``MLFLOW_HTTP_REQUEST_TIMEOUT``, ...) and passes credentials through
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``; leaving it restores
those variables. An ``https`` server is verified as MLflow's client verifies it
(``MLFLOW_TRACKING_SERVER_CERT_PATH``, see :mod:`mlops_model.tls`). Errors come out
as :class:`~mlops_model.errors.RegistryUnavailable` (naming the URI) or
:class:`~mlops_model.errors.RegistryError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import mlflow
import mlflow.sklearn
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mlops_model import __version__
from mlops_model.auth import basic_auth_header
from mlops_model.data import TARGET_NAME, dataset_digest, load_frame
from mlops_model.drift import DRIFT_REFERENCE_FILE, MODEL_EXTRA_FILES_DIR
from mlops_model.errors import InvalidParameter, RegistryError, RegistryUnavailable
from mlops_model.gate import (
    GATE_MIN_ACCURACY_TAG,
    GATE_PASSED,
    GATE_TAG,
    gate_label,
    gate_passed,
)
from mlops_model.schema import CLASS_NAMES, FINGERPRINT_TAG, SKOPS_TRUSTED_TYPES
from mlops_model.serving.fast_path import FAST_PATH_TAG, FastPathResult, build_fast_path
from mlops_model.tls import tracking_tls_context
from mlops_model.train import ALGORITHM, TrainedModel
from mlops_model.validation import (
    validate_alias,
    validate_fingerprint,
    validate_model_name,
    validate_request_timeout,
    validate_tracking_uri,
)

DATASET_DIGEST_TAG = "mlops.dataset_digest"
CONFUSION_MATRIX_TAG = "mlops.confusion_matrix"
PACKAGE_VERSION_TAG = "mlops.package_version"
MODEL_ARTIFACT_NAME = "model"
CONFUSION_MATRIX_ARTIFACT = "confusion_matrix.json"

DEFAULT_REQUEST_TIMEOUT = 10
DEFAULT_MAX_RETRIES = 1


# ---------------------------------------------------------------- connection


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_reachable(
    tracking_uri: str,
    timeout: float = DEFAULT_REQUEST_TIMEOUT,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Fail fast with :class:`RegistryUnavailable` if an HTTP tracking server does not answer.

    Non-HTTP URIs (``sqlite:``, ``file:``, paths) are local and not checked.
    """
    if not _is_http(tracking_uri):
        return
    url = tracking_uri.rstrip("/") + "/health"
    headers = basic_auth_header(username, password or "") if username is not None else {}
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, headers=headers, method="GET"
    )
    try:
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=timeout, context=tracking_tls_context(url)
        ) as response:
            response.read(64)
    except urllib.error.HTTPError as exc:
        # 4xx means something answered (maybe behind auth); 5xx is a broken server or proxy
        if exc.code >= 500:
            raise RegistryUnavailable(tracking_uri, f"GET {url} answered HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise RegistryUnavailable(tracking_uri, f"GET {url} failed: {exc.reason}") from exc
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        raise RegistryUnavailable(tracking_uri, f"GET {url} failed: {exc}") from exc


def _connection_failure(exc: BaseException) -> bool:
    text = str(exc)
    markers = (
        "Max retries exceeded",
        "Connection refused",
        "ConnectionError",
        "Read timed out",
        "NewConnectionError",
        "failed with exception",
    )
    if any(marker in text for marker in markers):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _connection_failure(cause)


@contextmanager
def translate_errors(tracking_uri: str, action: str) -> Iterator[None]:
    """Turn MLflow/requests/OS errors into this package's exception types."""
    try:
        yield
    except (RegistryError, RegistryUnavailable, InvalidParameter):
        raise
    except MlflowException as exc:
        if not isinstance(exc, RestException) and _connection_failure(exc):
            raise RegistryUnavailable(tracking_uri, f"{action}: {exc.message}") from exc
        raise RegistryError(f"{action} failed on {tracking_uri}: {exc.message}") from exc
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise RegistryUnavailable(tracking_uri, f"{action}: {exc}") from exc


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


# ---------------------------------------------------------------- version view


@dataclass(frozen=True)
class VersionInfo:
    """What the registry knows about one version, as plain data."""

    name: str
    version: str
    run_id: str | None
    fingerprint: str | None
    gate: str | None
    status: str
    source: str
    creation_timestamp: int | None
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    # mlops.fast_path: "passed", "failed: <reason>", or None (never prepared)
    fast_path: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_uri"] = self.model_uri
        return data


# ---------------------------------------------------------------- the registry


class Registry:
    """MLflow tracking + Model Registry at one URI. Use as a context manager."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        username: str | None = None,
        password: str | None = None,
        request_timeout: int = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        validate_tracking_uri(tracking_uri)
        validate_request_timeout(request_timeout)
        self.tracking_uri = tracking_uri.rstrip("/") if _is_http(tracking_uri) else tracking_uri
        self.username = username
        self.password = password
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        self._saved_env: dict[str, str | None] = {}
        self._client: MlflowClient | None = None

    # -- lifecycle

    def _environment(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.request_timeout),
        }
        if self.username is not None:
            env["MLFLOW_TRACKING_USERNAME"] = self.username
            env["MLFLOW_TRACKING_PASSWORD"] = self.password or ""
        return env

    def __enter__(self) -> Registry:
        check_reachable(self.tracking_uri, self.request_timeout, self.username, self.password)
        for key, value in self._environment().items():
            self._saved_env[key] = os.environ.get(key)
            if value is not None:
                os.environ[key] = value
        # the fluent API (start_run, log_model) follows the global tracking URI
        mlflow.set_tracking_uri(self.tracking_uri)
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._client = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("use Registry as a context manager: `with Registry(uri) as reg:`")
        return self._client

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return translate_errors(self.tracking_uri, action)

    # -- reads

    def aliases(self, name: str) -> dict[str, str] | None:
        """Alias -> version of a registered model, or ``None`` if the model does not exist."""
        with self._errors(f"reading registered model {name!r}"):
            try:
                model = self.client.get_registered_model(name)
            except MlflowException as exc:
                if _not_found(exc):
                    return None
                raise
            return {str(alias): str(version) for alias, version in model.aliases.items()}

    def model_exists(self, name: str) -> bool:
        return self.aliases(name) is not None

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version holding ``alias``, or ``None``."""
        return (self.aliases(name) or {}).get(alias)

    def run_metrics(self, run_id: str | None) -> dict[str, float]:
        """Latest metrics of a run; empty if the run is gone."""
        if not run_id:
            return {}
        with self._errors(f"reading run {run_id}"):
            try:
                run = self.client.get_run(run_id)
            except MlflowException as exc:
                if _not_found(exc):
                    return {}
                raise
            return {key: float(value) for key, value in run.data.metrics.items()}

    def _run_tags(self, run_id: str | None) -> dict[str, str]:
        if not run_id:
            return {}
        with self._errors(f"reading run {run_id}"):
            try:
                return dict(self.client.get_run(run_id).data.tags)
            except MlflowException as exc:
                if _not_found(exc):
                    return {}
                raise

    def _search(self, filter_string: str) -> list[ModelVersion]:
        found: list[ModelVersion] = []
        token: str | None = None
        with self._errors("searching model versions"):
            while True:
                page = self.client.search_model_versions(
                    filter_string=filter_string, page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    return found

    def _info(
        self, mv: ModelVersion, aliases: Mapping[str, str] | None, with_metrics: bool = True
    ) -> VersionInfo:
        tags = dict(mv.tags or {})
        version = str(mv.version)
        matrix: list[list[int]] | None = None
        metrics: dict[str, float] = {}
        if with_metrics:
            metrics = self.run_metrics(mv.run_id)
            raw = self._run_tags(mv.run_id).get(CONFUSION_MATRIX_TAG)
            if raw:
                try:
                    matrix = json.loads(raw)
                except ValueError:
                    matrix = None
        return VersionInfo(
            name=str(mv.name),
            version=version,
            run_id=mv.run_id or None,
            fingerprint=tags.get(FINGERPRINT_TAG),
            gate=tags.get(GATE_TAG),
            status=str(mv.status),
            source=str(mv.source),
            creation_timestamp=mv.creation_timestamp,
            aliases=sorted(a for a, v in (aliases or {}).items() if v == version),
            metrics=metrics,
            confusion_matrix=matrix,
            fast_path=tags.get(FAST_PATH_TAG),
        )

    def find_version(self, name: str, fingerprint: str) -> VersionInfo | None:
        """The oldest version of ``name`` tagged with ``fingerprint``, or ``None``."""
        validate_model_name(name)
        validate_fingerprint(fingerprint)
        aliases = self.aliases(name)
        if aliases is None:
            return None
        versions = self._search(f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
        if not versions:
            return None
        oldest = min(versions, key=lambda mv: int(mv.version))
        return self._info(oldest, aliases)

    def version_info(self, name: str, version: str) -> VersionInfo | None:
        aliases = self.aliases(name)
        if aliases is None:
            return None
        with self._errors(f"reading version {version} of {name!r}"):
            try:
                mv = self.client.get_model_version(name, str(version))
            except MlflowException as exc:
                if _not_found(exc):
                    return None
                raise
        return self._info(mv, aliases)

    def list_versions(self, name: str, with_metrics: bool = True) -> list[VersionInfo] | None:
        """All versions, oldest first; ``None`` if the registered model does not exist."""
        validate_model_name(name)
        aliases = self.aliases(name)
        if aliases is None:
            return None
        versions = sorted(self._search(f"name = '{name}'"), key=lambda mv: int(mv.version))
        return [self._info(mv, aliases, with_metrics) for mv in versions]

    def versions_passing_gate(self, name: str) -> list[str]:
        """Versions tagged ``mlops.gate=passed``, oldest first (candidates for promote/rollback)."""
        validate_model_name(name)
        if self.aliases(name) is None:
            return []
        found = self._search(f"name = '{name}' and tags.`{GATE_TAG}` = '{GATE_PASSED}'")
        return [str(v) for v in sorted(int(mv.version) for mv in found)]

    # -- writes

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``name`` at ``version`` (which must exist)."""
        validate_model_name(name)
        checked = validate_alias(alias)
        if checked is None:
            raise InvalidParameter("alias", "alias must not be empty")
        with self._errors(f"setting alias {alias!r} of {name!r} to version {version}"):
            self.client.get_model_version(name, str(version))  # clear error if it does not exist
            self.client.set_registered_model_alias(name, checked, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` of ``name`` (which must hold it)."""
        validate_model_name(name)
        checked = validate_alias(alias)
        if checked is None:
            raise InvalidParameter("alias", "alias must not be empty")
        with self._errors(f"deleting alias {alias!r} of {name!r}"):
            self.client.delete_registered_model_alias(name, checked)

    def _experiment_id(self, experiment_name: str) -> str:
        with self._errors(f"creating experiment {experiment_name!r}"):
            experiment = self.client.get_experiment_by_name(experiment_name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    self.client.restore_experiment(experiment.experiment_id)
                return str(experiment.experiment_id)
            try:
                return str(self.client.create_experiment(experiment_name))
            except MlflowException as exc:  # created concurrently
                again = self.client.get_experiment_by_name(experiment_name)
                if again is None:
                    raise exc from None
                return str(again.experiment_id)

    def _cleanup(self, run_id: str | None, model_id: str | None) -> None:
        """Best effort: leave no half-registered run or logged model behind."""
        for action in (
            (lambda: self.client.delete_logged_model(model_id)) if model_id else None,
            (lambda: self.client.delete_run(run_id)) if run_id else None,
        ):
            if action is None:
                continue
            try:
                action()
            except Exception:  # noqa: S112 - the original error matters more
                continue

    def log_training(
        self,
        *,
        experiment_name: str,
        model_name: str,
        trained: TrainedModel,
        fingerprint: str,
        fast_path: FastPathResult | None = None,
    ) -> tuple[str, str, str]:
        """Log one run with params, metrics, confusion matrix, dataset and model.

        ``fast_path``: the prepared ONNX graph and check rows ride in the model's
        ``extra_files/`` beside the drift reference.

        Returns ``(run_id, model_uri, model_id)``. On any failure the run (and the
        logged model) is deleted before the error propagates.
        """
        experiment_id = self._experiment_id(experiment_name)
        evaluation = trained.evaluation
        digest = dataset_digest()
        tags = {
            FINGERPRINT_TAG: fingerprint,
            DATASET_DIGEST_TAG: digest,
            CONFUSION_MATRIX_TAG: json.dumps(evaluation.confusion_matrix),
            PACKAGE_VERSION_TAG: __version__,
            "mlops.model_name": model_name,
            "mlops.algorithm": ALGORITHM,
        }
        run_id: str | None = None
        model_id: str | None = None
        with (
            self._errors("logging the training run"),
            warnings.catch_warnings(),
            contextlib.ExitStack() as stack,
        ):
            # class indices are integers on purpose; MLflow's schema hint is noise here
            warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
            try:
                with mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=f"{model_name}-{fingerprint[:12]}",
                    tags=tags,
                ) as run:
                    run_id = run.info.run_id
                    mlflow.log_params(
                        {**trained.params.as_mlflow_params(), "dataset_digest": digest}
                    )
                    mlflow.log_metrics(evaluation.metrics())
                    mlflow.log_dict(
                        {"labels": list(CLASS_NAMES), "matrix": evaluation.confusion_matrix},
                        CONFUSION_MATRIX_ARTIFACT,
                    )
                    dataset = from_pandas(load_frame(), targets=TARGET_NAME, name="iris")
                    mlflow.log_input(dataset, context="training", tags={"digest": digest})
                    mlflow.log_dict(trained.drift_reference, DRIFT_REFERENCE_FILE)
                    x_train = trained.split.x_train
                    signature = infer_signature(x_train, trained.model.predict(x_train))
                    # Inside the model's own artifacts too: the predictor downloads (and
                    # caches) exactly those, so it needs no second download to find it.
                    reference_dir = stack.enter_context(
                        tempfile.TemporaryDirectory(prefix="drift-reference-")
                    )
                    reference_file = Path(reference_dir) / DRIFT_REFERENCE_FILE
                    reference_file.write_text(json.dumps(trained.drift_reference, indent=1))
                    info = mlflow.sklearn.log_model(
                        trained.model,
                        name=MODEL_ARTIFACT_NAME,
                        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                        skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
                        signature=signature,
                        input_example=x_train.head(3),
                        pip_requirements=mlflow.sklearn.get_default_pip_requirements(
                            include_skops=True
                        ),
                        tags={FINGERPRINT_TAG: fingerprint},
                        extra_files=[
                            str(reference_file),
                            *(str(f) for f in (fast_path.files if fast_path else [])),
                        ],
                    )
                    model_id = info.model_id
                    return run.info.run_id, info.model_uri, info.model_id
            except BaseException:
                self._cleanup(run_id, model_id)
                raise

    def register_version(
        self,
        *,
        name: str,
        model_uri: str,
        run_id: str,
        model_id: str | None,
        fingerprint: str,
        gate: bool,
        min_accuracy: float,
        fast_path_tag: str | None = None,
    ) -> str:
        """Create a version carrying the fingerprint, gate and fast-path tags from the start."""
        validate_model_name(name)
        tags = {
            FINGERPRINT_TAG: fingerprint,
            GATE_TAG: gate_label(gate),
            GATE_MIN_ACCURACY_TAG: str(min_accuracy),
        }
        if fast_path_tag is not None:
            tags[FAST_PATH_TAG] = fast_path_tag
        with self._errors(f"registering a version of {name!r}"):
            try:
                self.client.create_registered_model(
                    name, description="Iris RandomForest trained by mlops.stack"
                )
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                    raise
            mv = self.client.create_model_version(
                name=name,
                source=model_uri,
                run_id=run_id,
                model_id=model_id,
                tags=tags,
                description=f"fingerprint {fingerprint}",
            )
            return str(mv.version)

    def log_and_register(
        self,
        *,
        name: str,
        experiment_name: str,
        trained: TrainedModel,
        fingerprint: str,
        min_accuracy: float,
    ) -> tuple[str, str]:
        """Log a run and register it; returns ``(version, run_id)``.

        If registration fails after the run was logged, the run and its logged
        model are deleted: no half-registered leftovers. The version is prepared for
        the predictors' fast path first (:mod:`mlops_model.serving.fast_path`).
        """
        with tempfile.TemporaryDirectory(prefix="fast-path-") as tmp:
            fast_path = build_fast_path(trained.model, Path(tmp))
            run_id, model_uri, model_id = self.log_training(
                experiment_name=experiment_name,
                model_name=name,
                trained=trained,
                fingerprint=fingerprint,
                fast_path=fast_path,
            )
        try:
            version = self.register_version(
                name=name,
                model_uri=model_uri,
                run_id=run_id,
                model_id=model_id,
                fingerprint=fingerprint,
                gate=gate_passed(trained.evaluation.metrics(), min_accuracy),
                min_accuracy=min_accuracy,
                fast_path_tag=fast_path.tag,
            )
        except BaseException:
            self._cleanup(run_id, model_id)
            raise
        # a convenience for people browsing runs; the version is complete without it
        with contextlib.suppress(MlflowException):
            self.client.set_tag(run_id, "mlops.registered_version", version)
        return version, run_id

    def prepare_version(self, name: str, version: str) -> str:
        """Prepare a registered version for the fast path; returns its ``mlops.fast_path`` tag.

        For versions registered by other tools: downloads the model, loads it with the
        predictor's skops allow-list, converts and checks it, adds the graph and check
        rows to the model's ``extra_files/`` and tags the version.
        """
        validate_model_name(name)
        with self._errors(f"preparing version {version} of {name!r}"):
            mv = self.client.get_model_version(name, str(version))
            with tempfile.TemporaryDirectory(prefix="fast-path-") as tmp:
                result = self._fast_path_of(name, str(version), Path(tmp))
                if result.passed:
                    self._attach(mv, Path(tmp) / "attach")
            self.client.set_model_version_tag(name, str(version), FAST_PATH_TAG, result.tag)
            return result.tag

    def _fast_path_of(self, name: str, version: str, work: Path) -> FastPathResult:
        import skops.io  # type: ignore[import-untyped]

        from mlops_model.serving.prepare import download
        from mlops_model.serving.sklearn_backend import read_flavors

        model_dir = download(self.tracking_uri, name, version, work / "download")
        try:
            conf = read_flavors(model_dir).get("sklearn") or {}
            if conf.get("serialization_format") != "skops":
                return FastPathResult("not a skops-serialized scikit-learn model")
            estimator = skops.io.load(
                model_dir / str(conf.get("pickled_model", "model.skops")),
                trusted=list(SKOPS_TRUSTED_TYPES),
            )
        except Exception as exc:  # skops and the YAML reader raise many types
            return FastPathResult(f"cannot load the model: {exc}")
        return build_fast_path(estimator, work / "attach" / MODEL_EXTRA_FILES_DIR)

    def _attach(self, mv: ModelVersion, files: Path) -> None:
        """Add ``files`` (an ``extra_files/`` tree) to the version's model artifacts."""
        source = str(mv.source or "")
        # MLflow 3 logged models: the version's source is models:/<model id>
        model_id = getattr(mv, "model_id", None) or (
            source.removeprefix("models:/") if source.startswith("models:/m-") else None
        )
        if model_id:
            self.client.log_model_artifacts(model_id, str(files))
            return
        if source.startswith("runs:/") and mv.run_id:
            path = source.removeprefix("runs:/").partition("/")[2]
            self.client.log_artifacts(mv.run_id, str(files), artifact_path=path or None)
            return
        raise RegistryError(f"cannot add files to a model stored at {source!r}")

    def describe(self, name: str) -> dict[str, Any]:
        """Read-only summary: versions (with metrics, fingerprint, gate, aliases) and aliases."""
        validate_model_name(name)
        aliases = self.aliases(name)
        if aliases is None:
            return {
                "exists": False,
                "model_name": name,
                "versions": [],
                "aliases": {},
                "latest_version": None,
            }
        versions = self.list_versions(name) or []
        return {
            "exists": True,
            "model_name": name,
            "versions": [v.as_dict() for v in versions],
            "aliases": aliases,
            "latest_version": versions[-1].version if versions else None,
        }
