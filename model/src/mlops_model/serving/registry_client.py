"""Alias lookups in the MLflow registry, without importing MLflow into a serving process.

The watcher asks "which version does ``<name>@<alias>`` point at" every few seconds.
For an ``http(s)`` tracking URI that is one REST call
(``GET /api/2.0/mlflow/registered-models/alias``), made here with the standard
library; importing MLflow for it would cost a gunicorn worker about 160 MB (MLflow
pulls in pandas, pyarrow, FastAPI, OpenTelemetry, ...). Other URIs (a local
``mlruns`` folder, ``databricks``, ...) go through MLflow's own client.

The REST client honours MLflow's own environment variables: credentials
(``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``),
TLS (``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``) and the request timeout
(``MLFLOW_HTTP_REQUEST_TIMEOUT``); it never retries: the watcher's poll is the retry.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_model.auth import basic_auth_header
from mlops_model.errors import RegistryUnavailable
from mlops_model.serving.errors import AliasNotFound
from mlops_model.tls import tracking_tls_context

# Registry calls of a predictor must fail fast: an outage must never block a worker
# for MLflow's defaults (120 s timeout, 7 retries with exponential backoff). The
# watcher's poll loop is the retry.
REGISTRY_HTTP_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
}
# Error codes of the registry that mean "no such model or alias" (the registry answered).
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})
DEFAULT_TIMEOUT = 5.0


def apply_registry_http_defaults() -> None:
    """Short MLflow HTTP timeouts for this process, unless the operator set them."""
    for key, value in REGISTRY_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class ResolvedVersion:
    name: str
    alias: str
    version: str
    run_id: str | None


class AliasResolver(Protocol):
    def resolve(self, name: str, alias: str) -> ResolvedVersion: ...


class RestRegistry:
    """The alias lookup over MLflow's REST API (``http``/``https`` tracking URIs)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")

    def _timeout(self) -> float:
        raw = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "").strip()
        try:
            return float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            return DEFAULT_TIMEOUT

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "mlops-predictor"}
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if user and password:
            headers.update(basic_auth_header(user, password))
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _tls(self) -> ssl.SSLContext | None:
        return tracking_tls_context(self.tracking_uri)

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.tracking_uri}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self._headers(), method="GET")  # noqa: S310
        with urllib.request.urlopen(  # noqa: S310 - http(s) only, checked in for_uri
            request, timeout=self._timeout(), context=self._tls()
        ) as response:
            return json.loads(response.read())

    def _get_bytes(self, path: str, params: dict[str, str] | None = None) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.tracking_uri}{path}{query}"
        request = urllib.request.Request(url, headers=self._headers(), method="GET")  # noqa: S310
        with urllib.request.urlopen(  # noqa: S310 - http(s) only, checked in for_uri
            request, timeout=self._timeout(), context=self._tls()
        ) as response:
            data: bytes = response.read()
            return data

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        """The tags of one model version (one small request)."""
        where = f"models:/{name}/{version}"
        try:
            body = self._get(
                "/api/2.0/mlflow/model-versions/get", {"name": name, "version": version}
            )
            tags = body["model_version"].get("tags") or []
            return {str(t["key"]): str(t.get("value", "")) for t in tags}
        except urllib.error.HTTPError as exc:
            code, message = _error_of(exc)
            if 400 <= exc.code < 500 and code in NOT_FOUND_CODES:
                return {}  # the download that follows says what is missing
            raise RegistryUnavailable(None, f"{where}: HTTP {exc.code} {code}: {message}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryUnavailable(None, f"{where}: {exc!r}") from None

    def model_files(self, name: str, version: str, relpaths: list[str]) -> dict[str, bytes]:
        """Some files of a version's model, through the server's artifact proxy.

        Only for artifact locations the tracking server serves itself
        (``mlflow-artifacts:``); others return ``{}`` (the caller falls back to MLflow's
        client). A file the server does not hand out is left out of the answer.
        """
        where = f"models:/{name}/{version}"
        try:
            location = str(
                self._get(
                    "/api/2.0/mlflow/model-versions/get-download-uri",
                    {"name": name, "version": version},
                )["artifact_uri"]
            )
        except urllib.error.HTTPError as exc:
            code, message = _error_of(exc)
            raise RegistryUnavailable(None, f"{where}: HTTP {exc.code} {code}: {message}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryUnavailable(None, f"{where}: {exc!r}") from None
        scheme, _, rest = location.partition(":")
        if scheme != "mlflow-artifacts":
            return {}
        # mlflow-artifacts:/<path> or mlflow-artifacts://<host>/<path>: the path is served here
        base = urllib.parse.urlsplit(location).path.strip("/") if rest.startswith("//") else rest
        base = base.strip("/")
        found: dict[str, bytes] = {}
        for relpath in relpaths:
            quoted = urllib.parse.quote(f"{base}/{relpath}")
            try:
                found[relpath] = self._get_bytes(f"/api/2.0/mlflow-artifacts/artifacts/{quoted}")
            except urllib.error.HTTPError:
                # The server answered: the file is missing (a 404, or a 500 from a store
                # that raises for missing objects). The caller then takes the slow path,
                # which does not depend on this file; an outage shows there as well.
                continue
            except (OSError, ValueError) as exc:
                raise RegistryUnavailable(None, f"{where}/{relpath}: {exc!r}") from None
        return found

    def resolve(self, name: str, alias: str) -> ResolvedVersion:
        where = f"models:/{name}@{alias}"
        try:
            body = self._get(
                "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias}
            )
        except urllib.error.HTTPError as exc:
            code, message = _error_of(exc)
            if 400 <= exc.code < 500 and code in NOT_FOUND_CODES:
                raise AliasNotFound(f"{where}: {message}") from None
            raise RegistryUnavailable(None, f"{where}: HTTP {exc.code} {code}: {message}") from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad JSON
            raise RegistryUnavailable(None, f"{where}: {exc!r}") from None
        try:
            mv = body["model_version"]
            return ResolvedVersion(name, alias, str(mv["version"]), mv.get("run_id") or None)
        except (KeyError, TypeError) as exc:
            raise RegistryUnavailable(
                None, f"{where}: unexpected answer {str(body)[:200]}"
            ) from exc


def _error_of(exc: urllib.error.HTTPError) -> tuple[str, str]:
    """MLflow's ``{"error_code": ..., "message": ...}`` of an error answer, if any."""
    try:
        doc = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return str(doc.get("error_code", "")), str(doc.get("message", exc.reason))


class MlflowRegistry:
    """The alias lookup through MLflow's client, for tracking URIs other than http(s)."""

    def __init__(self, tracking_uri: str | None) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve(self, name: str, alias: str) -> ResolvedVersion:
        from mlflow.exceptions import MlflowException

        where = f"models:/{name}@{alias}"
        try:
            mv = self._client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            code = str(getattr(exc, "error_code", ""))
            if code in NOT_FOUND_CODES:
                raise AliasNotFound(f"{where}: {exc.message}") from exc
            raise RegistryUnavailable(None, f"{where}: {exc.message}") from exc
        except Exception as exc:  # requests/urllib3 errors that escape MLflow's wrapping
            raise RegistryUnavailable(None, f"{where}: {exc!r}") from exc
        return ResolvedVersion(name, alias, str(mv.version), mv.run_id or None)


def for_uri(tracking_uri: str | None) -> AliasResolver:
    """The REST client for http(s) URIs, MLflow's client for anything else."""
    if tracking_uri and urllib.parse.urlsplit(tracking_uri).scheme in {"http", "https"}:
        return RestRegistry(tracking_uri)
    return MlflowRegistry(tracking_uri)
