"""Download a model version and prepare it for serving, in a helper process or in this one.

Downloading needs MLflow's artifact client and preparing needs scikit-learn, skops
and skl2onnx (:func:`mlops_model.serving.backends.prepare`): together about 250 MB
of imports that a gunicorn worker serving an ONNX graph never needs again. So a
worker runs this step as a short-lived child process (``python -m
mlops_model.serving.prepare REQUEST RESULT``) and keeps only what it serves; its
peak memory is that of Flask, numpy and onnxruntime. A process that has imported
MLflow already (a test, a notebook, a non-HTTP tracking URI) runs it in-process:
it would save nothing there. ``PREDICTOR_PREPARE_IN_SUBPROCESS`` overrides the choice.

The child inherits the environment (tracking URI, credentials, MLflow HTTP
timeouts), logs to the worker's stderr and reports through a small JSON file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlops_model.errors import RegistryUnavailable
from mlops_model.serving.backends import prepare
from mlops_model.serving.errors import ModelLoadError
from mlops_model.serving.registry_client import apply_registry_http_defaults

log = logging.getLogger(__name__)

# A model download plus conversion takes seconds; this only bounds a stuck child.
CHILD_TIMEOUT = 300.0


@dataclass(frozen=True)
class PrepareRequest:
    """One model directory to produce: downloaded (``download``) or already on disk."""

    model_dir: str  # download: the destination folder; otherwise the model itself
    backend: str
    trusted: list[str] = field(default_factory=list)
    download: bool = True
    tracking_uri: str | None = None
    name: str = ""
    version: str = ""


def download(tracking_uri: str | None, name: str, version: str, dst: Path) -> Path:
    """Download the files of ``models:/<name>/<version>`` into ``dst``; returns the model dir."""
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    uri = f"models:/{name}/{version}"
    dst.mkdir(parents=True, exist_ok=True)
    try:
        # Resolve the storage location with our own client: MLflow's models:/ artifact
        # repository looks versions up in the *global* registry URI, not the one passed.
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        location = client.get_model_version_download_uri(name, version)
        path = download_artifacts(
            artifact_uri=location, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except Exception as exc:
        raise RegistryUnavailable(None, f"downloading {uri} failed: {exc}") from exc
    return Path(path)


def run(request: PrepareRequest) -> Path:
    """Do the work of one request here; returns the prepared model directory."""
    model_dir = Path(request.model_dir)
    if request.download:
        model_dir = download(request.tracking_uri, request.name, request.version, model_dir)
    prepare(model_dir, request.backend, request.trusted)
    return model_dir


def run_isolated(request: PrepareRequest, work: Path, timeout: float = CHILD_TIMEOUT) -> Path:
    """Do the work of one request in a child process; same result and errors as :func:`run`."""
    request_file, result_file = work / "prepare-request.json", work / "prepare-result.json"
    request_file.write_text(json.dumps(asdict(request)))
    result_file.unlink(missing_ok=True)
    # The child must not write metric files into the worker's multiprocess directory.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    argv = [sys.executable, "-m", __name__, str(request_file), str(result_file)]
    try:
        done = subprocess.run(argv, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"preparing the model took longer than {timeout:g} s") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot start the model preparation process: {exc}") from exc
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError):
        raise ModelLoadError(
            f"the model preparation process failed (exit status {done.returncode}); see the log"
        ) from None
    if result.get("ok"):
        return Path(result["model_dir"])
    message = str(result.get("message", "unknown error"))
    if result.get("error") == "registry_unavailable":
        raise RegistryUnavailable(None, message)
    raise ModelLoadError(message)


def fetch_and_prepare(request: PrepareRequest, work: Path, isolate: bool) -> Path:
    return run_isolated(request, work) if isolate else run(request)


def main(argv: list[str] | None = None) -> int:
    """``python -m mlops_model.serving.prepare REQUEST.json RESULT.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(
            "usage: python -m mlops_model.serving.prepare REQUEST.json RESULT.json", file=sys.stderr
        )
        return 2
    apply_registry_http_defaults()
    logging.basicConfig(
        level=logging.INFO,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    request_file, result_file = Path(args[0]), Path(args[1])
    try:
        request = PrepareRequest(**json.loads(request_file.read_text()))
        model_dir = run(request)
        result: dict[str, object] = {"ok": True, "model_dir": str(model_dir)}
    except RegistryUnavailable as exc:
        result = {"ok": False, "error": "registry_unavailable", "message": str(exc)}
    except ModelLoadError as exc:
        result = {"ok": False, "error": "model_load", "message": str(exc)}
    except Exception as exc:  # report anything else as a refused model, with the traceback logged
        log.exception("preparing the model failed")
        result = {"ok": False, "error": "model_load", "message": f"unexpected error: {exc!r}"}
    tmp = result_file.with_name(f".{result_file.name}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
