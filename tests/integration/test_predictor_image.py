"""The predictor's OCI image (model/Containerfile), built with podman and run
against the lab's MLflow.

scripts/build_image.sh builds the image offline (wheelhouse, node image as
base, ``--network=none``) or reuses it when its inputs did not change. The
container runs as locked down as a platform can make it: ``--read-only``,
``--cap-drop=ALL``, no new privileges, a non-root user, tmpfs for the model
cache and /tmp, on the lab's network, reading the registry as the ``reader``
account. It must answer /predict and /metrics, pass its own HEALTHCHECK,
follow an alias move, and stop on SIGTERM within its grace period while an
in-flight request still gets its answer.

The alias it follows belongs to a registered model of its own
(``iris-image-test``, versions made from the champion's logged model and
deleted again at the end): the lab's ``iris@champion``, which the lab's
predictors and the other tests watch, is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.lab_http import (
    IRIS_ROWS,
    LAB_CA,
    MLFLOW,
    get_json,
    lab_tls,
    mlflow_auth,
    post_json,
    wait_until,
)
from tests.support.net import free_port, wait_http

from .conftest import ROOT

pytestmark = pytest.mark.nodes

CONTAINER = "image-test-predictor"
NETWORK = "mlops-stack"
# The lab's MLflow as the nodes see it (by container name on the lab network):
# its TLS front, whose certificate names mlflow-1, verified against the lab CA,
# which the container gets read-only at CA_IN_CONTAINER.
TRACKING_URI = "https://mlflow-1:5000"
CA_IN_CONTAINER = "/run/mlops/ca.crt"
MODEL = "iris-image-test"
UID = "10001"
# The image's default grace period (PREDICTOR_GRACEFUL_TIMEOUT) and the stop
# timeout given to podman: gunicorn must be done well before podman kills it.
GRACE = 8
STOP_TIMEOUT = 20
# The image holds Python, its libraries and the venv: half of the node image
# plus the venv would already be more.
MAX_IMAGE_MB = 650


@dataclass
class Image:
    tag: str
    build_seconds: float


@dataclass
class Container:
    base: str
    port: int


def podman(
    *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def registry(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The MLflow REST API as the lab's writer account."""
    req = urllib.request.Request(
        f"{MLFLOW}/api/2.0/mlflow/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={**mlflow_auth("writer"), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10, context=lab_tls()) as resp:
        return json.load(resp)


def lab_champion() -> dict[str, Any] | None:
    url = f"{MLFLOW}/api/2.0/mlflow/registered-models/alias?name=iris&alias=champion"
    try:
        return dict(get_json(url, timeout=5, account="reader")["model_version"])
    except (OSError, ValueError, KeyError):
        return None


def served_versions(base: str) -> set[str]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return set(re.findall(r'(?m)^predictor_model_info\{[^}]*version="([^"]*)"', text))


def logs() -> str:
    proc = podman("logs", CONTAINER, check=False)
    return proc.stdout + proc.stderr


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The converged lab: reused when its MLflow serves the champion (a session
    that converged it already, or a lab left up for a look), converged by the
    session's fixture otherwise."""
    champion = lab_champion()
    network = subprocess.run(["podman", "network", "exists", NETWORK], check=False).returncode
    if champion is None or network != 0:
        request.getfixturevalue("local_stack")
        champion = lab_champion()
    assert champion is not None, "the lab's MLflow does not serve iris@champion"
    return champion


@pytest.fixture(scope="module")
def image() -> Image:
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build_image.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"build_image.sh failed:\n{proc.stderr[-6000:]}"
    return Image(tag=proc.stdout.strip().splitlines()[-1], build_seconds=time.monotonic() - started)


@pytest.fixture(scope="module")
def model(lab: dict[str, Any]) -> Iterator[str]:
    """``iris-image-test`` with two versions of the champion's logged model, alias
    ``champion`` on version 1; deleted (versions and alias with it) afterwards."""
    source = {k: lab[k] for k in ("source", "run_id") if lab.get(k)}
    if re.match(r"models:/(m-[0-9a-f]+)$", lab["source"]):
        source["model_id"] = lab["source"].split("/", 1)[1]
    # left over from an interrupted run, or (404) not
    with contextlib.suppress(urllib.error.HTTPError):
        registry("DELETE", "registered-models/delete", {"name": MODEL})
    registry("POST", "registered-models/create", {"name": MODEL})
    try:
        for _ in range(2):
            registry("POST", "model-versions/create", {"name": MODEL, **source})
        registry(
            "POST", "registered-models/alias", {"name": MODEL, "alias": "champion", "version": "1"}
        )
        yield MODEL
    finally:
        registry("DELETE", "registered-models/delete", {"name": MODEL})


@pytest.fixture(scope="module")
def container(image: Image, model: str) -> Iterator[Container]:
    podman("rm", "-f", "--time", "0", CONTAINER, check=False)
    port = free_port()
    password = (ROOT / "credentials" / "mlflow_reader_password").read_text().strip()
    podman(
        "run", "--detach", "--name", CONTAINER,
        "--network", NETWORK,
        "--publish", f"127.0.0.1:{port}:5001",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt", "no-new-privileges",
        "--user", f"{UID}:{UID}",
        # U: the tmpfs belongs to the container's user
        "--tmpfs", "/var/lib/predictor/cache:rw,mode=0700,U",
        "--tmpfs", "/tmp:rw,mode=1777",
        "--volume", f"{LAB_CA}:{CA_IN_CONTAINER}:ro",
        "--env", f"MLFLOW_TRACKING_URI={TRACKING_URI}",
        "--env", f"MLFLOW_TRACKING_SERVER_CERT_PATH={CA_IN_CONTAINER}",
        "--env", "MLFLOW_TRACKING_USERNAME=reader",
        "--env", "MLFLOW_TRACKING_PASSWORD",
        "--env", f"PREDICTOR_MODEL_NAME={model}",
        "--env", "PREDICTOR_POLL_INTERVAL=2",
        image.tag,
        # the password reaches podman through its environment, not its command line
        env={"MLFLOW_TRACKING_PASSWORD": password},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/ready", timeout=180, alive=running)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"{exc}\n{logs()[-4000:]}")
    try:
        yield Container(base=base, port=port)
    finally:
        podman("rm", "-f", "--time", "0", CONTAINER, check=False)


def running() -> bool:
    proc = podman("inspect", "--format", "{{.State.Running}}", CONTAINER, check=False)
    return proc.stdout.strip() == "true"


# ---------------------------------------------------------------- tests


def test_image_is_small_locked_down_and_labelled(image: Image) -> None:
    info = json.loads(podman("image", "inspect", image.tag).stdout)[0]
    config = info["Config"]
    size_mb = info["Size"] / 1e6
    print(
        f"\npredictor image {image.tag}: {size_mb:.0f} MB, build step {image.build_seconds:.0f} s"
    )
    assert size_mb < MAX_IMAGE_MB
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert config["StopSignal"] == "SIGTERM"
    # podman keeps the HEALTHCHECK of a docker-format image beside the OCI config
    healthcheck = info.get("Healthcheck") or config.get("Healthcheck") or {}
    assert "/ready" in " ".join(healthcheck.get("Test", [])), info.get("Healthcheck")
    labels = config["Labels"]
    for key in ("source", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # no shell, no package manager, no pip, no compiler in the runtime
    absent = ["/bin/sh", "/usr/bin/apt-get", "/usr/bin/dpkg", "/usr/bin/gcc", "/usr/bin/cc"]
    absent += ["/opt/predictor/venv/bin/pip", "/root/.cache/pip", "/var/lib/predictor/.cache"]
    missing = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/predictor/venv/bin/python",
        image.tag, "-c", f"import os; print([p for p in {absent!r} if os.path.lexists(p)])",
    ).stdout.strip()  # fmt: skip
    assert missing == "[]"
    # TLS to a registry works: Debian's CA bundle is there
    cas = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/predictor/venv/bin/python",
        image.tag, "-c",
        "import ssl; print(ssl.create_default_context().cert_store_stats()['x509_ca'])",
    ).stdout.strip()  # fmt: skip
    assert int(cas) > 100, cas


def test_container_serves_predictions_and_passes_its_healthcheck(container: Container) -> None:
    status, body = post_json(f"{container.base}/predict", {"instances": IRIS_ROWS})
    assert status == 200, body
    assert body["predictions"] == ["setosa", "versicolor", "virginica"]
    assert body["model"] == {"name": MODEL, "version": "1", "alias": "champion"}
    health = podman("healthcheck", "run", CONTAINER, check=False)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout} {health.stderr}"
    user = podman("top", CONTAINER, "user", check=False).stdout.split()[1:]
    assert user, "podman top shows no process"
    assert "root" not in user, user


def test_container_exposes_metrics(container: Container) -> None:
    with urllib.request.urlopen(f"{container.base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "predictor_model_info{" in text
    assert served_versions(container.base) == {"1"}


def test_container_follows_an_alias_move(container: Container, model: str) -> None:
    registry(
        "POST", "registered-models/alias", {"name": model, "alias": "champion", "version": "2"}
    )
    wait_until(
        lambda: served_versions(container.base) == {"2"},
        timeout=60,
        interval=0.5,
        what="every worker serves version 2",
    )
    status, body = post_json(f"{container.base}/predict", {"instances": IRIS_ROWS})
    assert status == 200, body
    assert body["model"]["version"] == "2"


def test_sigterm_stops_within_the_grace_period_and_finishes_the_request_in_flight(
    container: Container,
) -> None:
    """A request whose body is still arriving when SIGTERM comes gets its 200."""
    payload = json.dumps({"instances": IRIS_ROWS}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{container.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    stopped: dict[str, Any] = {}

    def stop() -> None:
        started = time.monotonic()
        proc = podman("stop", "--time", str(STOP_TIMEOUT), CONTAINER, check=False, timeout=60)
        stopped.update(seconds=time.monotonic() - started, rc=proc.returncode, err=proc.stderr)

    with socket.create_connection(("127.0.0.1", container.port), timeout=30) as sock:
        sock.sendall(head + payload[:10])
        time.sleep(0.5)  # a worker has the request and waits for the rest of the body
        stopper = threading.Thread(target=stop, daemon=True)
        stopper.start()
        wait_until(
            lambda: "Handling signal: term" in logs(), timeout=15, interval=0.2, what="SIGTERM"
        )
        time.sleep(1.0)  # the workers got SIGTERM from the master too
        sock.sendall(payload[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    stopper.join(STOP_TIMEOUT + 30)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), answer[:500]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["predictions"] == [
        "setosa",
        "versicolor",
        "virginica",
    ]
    assert stopped.get("rc") == 0, stopped
    assert stopped["seconds"] < GRACE + 2, stopped
    state = json.loads(podman("inspect", CONTAINER).stdout)[0]["State"]
    # 0: gunicorn exited by itself; 137 would be podman's SIGKILL after the timeout
    assert state["ExitCode"] == 0, (state, logs()[-3000:])
