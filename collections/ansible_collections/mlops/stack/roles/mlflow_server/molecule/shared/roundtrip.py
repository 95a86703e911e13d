"""Log a run with an artifact, register a model version, download it back.

Runs on the node with the server's own venv. The artifact URI must be an
``mlflow-artifacts:`` one: the client never touches the server's storage.
"""

import contextlib
import sys
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient

mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("molecule-verify")
with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
    payload = Path(tmp, "model", "weights.txt")
    payload.parent.mkdir()
    payload.write_text("roundtrip\n")
    mlflow.log_param("check", "roundtrip")
    mlflow.log_artifacts(str(payload.parent), artifact_path="model")

client = MlflowClient()
with contextlib.suppress(mlflow.exceptions.MlflowException):
    client.create_registered_model("molecule-verify")
model_uri = f"runs:/{run.info.run_id}/model"
version = client.create_model_version("molecule-verify", model_uri, run.info.run_id)
source = client.get_model_version_download_uri("molecule-verify", version.version)
with tempfile.TemporaryDirectory() as out:
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=out)
    text = Path(local, "weights.txt").read_text()
assert text == "roundtrip\n", text
print("ROUNDTRIP OK", run.info.artifact_uri, "version", version.version, "source", source)
