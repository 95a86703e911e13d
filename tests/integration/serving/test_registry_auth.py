"""The predictor's registry access and the promote CLI with MLflow's basic auth.

Two levels: the exact ``Authorization`` header the alias watcher's REST client
sends, against a tiny local HTTP server that records it; and a real ``mlflow
server --app-name basic-auth`` (an admin, a read-only account) that the REST
client, the model download of ``serving.prepare`` and ``python -m mlops_model``
must get through with the reader's credentials and must not get through
without them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from mlops_model import __main__ as cli
from mlops_model.errors import RegistryUnavailable
from mlops_model.serving import registry_client
from mlops_model.serving.prepare import download
from mlops_model.serving.registry_client import RestRegistry

from tests.support.mlflow_server import MlflowServer
from tests.support.serving import register_version, set_alias, strong_forest

CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)


# --- the header, against a recording HTTP server ------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps({"model_version": {"version": "7", "run_id": "r"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_no_authorization_header_without_credentials(recorder):
    url, seen = recorder
    assert RestRegistry(url).resolve("iris", "champion").version == "7"
    assert seen == [None]


def test_basic_auth_header_from_mlflow_variables(recorder, monkeypatch):
    url, seen = recorder
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p:ss wörd")
    RestRegistry(url).resolve("iris", "champion")
    assert seen == ["Basic " + base64.b64encode("reader:p:ss wörd".encode()).decode()]


def test_a_user_without_password_sends_nothing(recorder, monkeypatch):
    url, seen = recorder
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    RestRegistry(url).resolve("iris", "champion")
    assert seen == [None]


def test_bearer_token_when_no_basic_credentials(recorder, monkeypatch):
    url, seen = recorder
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    registry_client.for_uri(url).resolve("iris", "champion")
    assert seen == ["Bearer t0ken"]


# --- a real MLflow server with basic auth ---------------------------------------

ADMIN_PASSWORD = "admin-password-0123"  # pragma: allowlist secret
READER_PASSWORD = "reader-password-0123"  # pragma: allowlist secret
MODEL = "auth-iris"


@dataclass(frozen=True)
class AuthServer:
    url: str
    version: str


def _api(url: str, path: str, user: str, password: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            "Content-Type": "application/json",
        },
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """MLflow with basic auth: the admin registers a version of MODEL, a reader exists."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    env.update(
        MLFLOW_AUTH_CONFIG_PATH=str(config),
        MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MLFLOW_FLASK_SERVER_SECRET_KEY="unit-test-key",  # pragma: allowlist secret
    )
    server = MlflowServer(root, extra_args=("--app-name", "basic-auth"), env=env)
    url = server.url
    try:
        server.start()
        reader = {"username": "reader", "password": READER_PASSWORD}
        _api(url, "users/create", "admin", ADMIN_PASSWORD, reader)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
            version = register_version(url, MODEL, strong_forest())
            set_alias(url, MODEL, version)
        yield AuthServer(url=url, version=version)
    finally:
        server.stop()


def test_server_refuses_anonymous_requests(auth_server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{auth_server.url}/api/2.0/mlflow/experiments/search")
    assert refused.value.code == 401


def test_alias_lookup_without_credentials_is_refused(auth_server):
    with pytest.raises(RegistryUnavailable, match="HTTP 401"):
        RestRegistry(auth_server.url).resolve(MODEL, "champion")


def test_alias_lookup_with_a_wrong_password_is_refused(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(RegistryUnavailable, match="HTTP 401"):
        RestRegistry(auth_server.url).resolve(MODEL, "champion")


def test_alias_lookup_as_the_reader(auth_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", READER_PASSWORD)
    resolved = RestRegistry(auth_server.url).resolve(MODEL, "champion")
    assert resolved.version == auth_server.version


def test_model_download_as_the_reader(auth_server, monkeypatch, tmp_path):
    """serving.prepare's download uses MLflow's client, which reads the variables itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", READER_PASSWORD)
    model_dir = download(auth_server.url, MODEL, auth_server.version, tmp_path / "model")
    assert (model_dir / "MLmodel").is_file()


def test_model_download_without_credentials_fails(auth_server, tmp_path):
    with pytest.raises(RegistryUnavailable):
        download(auth_server.url, MODEL, auth_server.version, tmp_path / "model")


def _cli(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str, str]:
    """``python -m mlops_model info ...`` in this process (MLflow is imported already);
    the tracking URI it sets globally is put back afterwards."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    capsys.readouterr()
    with _use_tracking_uri(url):
        status = cli.main(["info", "--tracking-uri", url, "--model-name", MODEL, *extra])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_reads_the_password_from_stdin(auth_server, monkeypatch, capsys):
    """What promote.yml runs: the password never on the command line nor in the environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setattr("sys.stdin", io.StringIO(READER_PASSWORD + "\n"))
    status, out, err = _cli(capsys, auth_server.url, "--password-stdin")
    assert status == 0, err
    assert json.loads(out)["aliases"]["champion"] == auth_server.version


def test_cli_takes_mlflow_variables_too(auth_server, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", READER_PASSWORD)
    status, _, err = _cli(capsys, auth_server.url, "--username", "reader")
    assert status == 0, err


def test_cli_without_credentials_fails_with_a_message(auth_server, monkeypatch, capsys):
    status, _, err = _cli(capsys, auth_server.url)
    assert status == 1
    assert err.startswith("error:"), err


def test_cli_refuses_an_empty_password_on_stdin(auth_server, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    status, _, err = _cli(capsys, auth_server.url, "--password-stdin")
    assert status == 1
    assert "standard input holds no password" in err
