"""Contract: ``/invocations`` answers like the pinned ``mlflow models serve``.

Both servers serve the same registered version (trained and registered by the
trainer's own code, integer class labels): the real ``mlflow models serve
--env-manager local -w 1`` of the pinned MLflow, and the predictor app. Every
request of :data:`CASES` (each JSON wrapper, CSV, content-type variants, malformed
bodies, wrong column counts, ``params``) goes to both; the test compares the
status, the ``error_code`` and the predictions, never the message text.

Where MLflow's pandas parsing coerces a value the predictor's shared validation
refuses (null/NaN, booleans, numeric strings, short CSV rows) the answers differ on
purpose: :data:`DEVIATIONS` lists those, with both sides' answers, and the test
holds both servers to them (a change in MLflow's behaviour shows up here too).

Needs no podman nodes: part of the fast run. ~30 s (mostly MLflow's start).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_model.serving.app import create_app, get_service
from mlops_model.serving.protocols.mlflow_scoring import MLFLOW_VERSION
from mlops_model.serving.settings import Settings

from tests.support.mlflow_server import MlflowServer
from tests.support.net import free_port, wait_http
from tests.support.process import start_in_session, stop_group

MODEL = "contract-iris"
ALIAS = "champion"
C = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
R, V, M = [5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [6.0, 2.9, 4.5, 1.5]
J = "application/json"


def rec(row: list[Any]) -> dict[str, Any]:
    return dict(zip(C, row, strict=True))


def csv(header: list[str], *rows: list[Any], eol: str = "\n") -> str:
    return eol.join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + eol


def split(**extra: Any) -> dict[str, Any]:
    return {"dataframe_split": {"columns": C, "data": [R, V, M]}, **extra}


# name -> (Content-Type or None for no header, body: JSON value, str or bytes)
CASES: dict[str, tuple[str | None, Any]] = {
    # the four wrappers, in their shapes
    "split": (J, split()),
    "split_reordered_columns": (J, {"dataframe_split": {"columns": C[::-1], "data": [R[::-1]]}}),
    "split_with_index": (J, {"dataframe_split": {"index": [5, 7], "columns": C, "data": [R, V]}}),
    "split_extra_column": (J, {"dataframe_split": {"columns": [*C, "x"], "data": [[*R, 1]]}}),
    "records": (J, {"dataframe_records": [rec(R), rec(V), rec(M)]}),
    "records_extra_key": (J, {"dataframe_records": [{**rec(R), "x": 1}]}),
    "records_integers": (J, {"dataframe_records": [rec([5, 3, 1, 0])]}),
    "instances_objects": (J, {"instances": [rec(R), rec(V)]}),
    "instances_columns": (J, {"instances": {k: [a, b] for k, a, b in zip(C, R, V, strict=True)}}),
    "instances_object_extra_key": (J, {"instances": [{**rec(R), "x": 1}]}),
    "inputs_objects": (J, {"inputs": [rec(R), rec(M)]}),
    "inputs_columns": (J, {"inputs": {k: [a] for k, a in zip(C, R, strict=True)}}),
    "inputs_one_row_object": (J, {"inputs": rec(V)}),
    # params: the model declares none; MLflow ignores them
    "params_object": (J, split(params={"a": 1})),
    "params_number": (J, split(params=5)),
    "params_null": (J, split(params=None)),
    "extra_top_level_key": (J, split(foo=1)),
    # tensors without column names: the model's signature is named columns
    "instances_lists": (J, {"instances": [R, V]}),
    "inputs_lists": (J, {"inputs": [R, V, M]}),
    "instances_flat_row": (J, {"instances": R}),
    "instances_scalar": (J, {"instances": 5}),
    "split_without_columns": (J, {"dataframe_split": {"data": [R, V]}}),
    "records_of_lists": (J, {"dataframe_records": [R]}),
    "instances_nan_literal": (J, b'{"instances": [[NaN, 3.5, 1.4, 0.2]]}'),
    # wrong column counts
    "split_three_columns": (J, {"dataframe_split": {"columns": C[:3], "data": [R[:3]]}}),
    "split_short_row": (J, {"dataframe_split": {"columns": C, "data": [R[:3]]}}),
    "split_duplicate_column": (J, {"dataframe_split": {"columns": [*C[:3], C[0]], "data": [R]}}),
    "instances_three_values": (J, {"instances": [R[:3]]}),
    "instances_five_values": (J, {"instances": [[*R, 1.0]]}),
    "instances_ragged": (J, {"instances": [R, R[:3]]}),
    "records_zero_value": (J, {"dataframe_records": [rec(R) | {"petal_width": 0}]}),
    "records_without_a_column": (J, {"dataframe_records": [dict(list(rec(R).items())[:3])]}),
    "instances_object_missing_key": (J, {"instances": [dict(list(rec(R).items())[:3])]}),
    "instances_objects_differ": (J, {"instances": [rec(R), {"sepal_length": 1.0}]}),
    "inputs_columns_missing": (J, {"inputs": {k: [a] for k, a in zip(C[:3], R, strict=False)}}),
    "inputs_columns_uneven": (J, {"inputs": {C[0]: [1, 2], C[1]: [1], C[2]: [1], C[3]: [1]}}),
    # empty inputs
    "split_no_rows": (J, {"dataframe_split": {"columns": C, "data": []}}),
    "records_empty": (J, {"dataframe_records": []}),
    "records_empty_record": (J, {"dataframe_records": [{}]}),
    "instances_empty": (J, {"instances": []}),
    "inputs_empty_object": (J, {"inputs": {}}),
    # malformed bodies
    "split_not_an_object": (J, {"dataframe_split": [R]}),
    "split_without_data": (J, {"dataframe_split": {"columns": C}}),
    "split_data_not_a_list": (J, {"dataframe_split": {"columns": C, "data": 5}}),
    "split_data_of_scalars": (J, {"dataframe_split": {"columns": C, "data": R}}),
    "records_not_a_list": (J, {"dataframe_records": 5}),
    "records_text_value": (J, {"dataframe_records": [{**rec(R), "petal_width": "abc"}]}),
    "records_nested_value": (J, {"dataframe_records": [{**rec(R), "petal_width": [1]}]}),
    "split_text_value": (J, {"dataframe_split": {"columns": C, "data": [[5.1, "a", 1.4, 0.2]]}}),
    "instances_text_value": (J, {"instances": [[5.1, "a", 1.4, 0.2]]}),
    "inputs_text_value": (J, {"inputs": {**rec(R), "petal_width": "abc"}}),
    "two_wrappers": (J, {"inputs": [rec(R)], "instances": [rec(R)]}),
    "no_wrapper": (J, {"foo": [R]}),
    "empty_object": (J, {}),
    "list_body": (J, [R]),
    "string_body": (J, "x"),
    "invalid_json": (J, b"{nope"),
    "empty_body": (J, b""),
    "not_utf8_json": (J, b'{"inputs": [{"sepal_length": 5.1}], "x": "\xe9"}'),
    "value_beyond_float32": (J, {"dataframe_split": {"columns": C, "data": [[1e300, *R[1:]]]}}),
    "value_beyond_float64": (
        J,
        b'{"dataframe_split": {"columns": ["sepal_length",'
        b' "sepal_width", "petal_length", "petal_width"], "data": [[1e400, 3.5, 1.4, 0.2]]}}',
    ),
    # content types
    "charset_utf8": ("application/json; charset=UTF-8", split()),
    "charset_spaced": (" application/json ;  charset=utf-8 ", split()),
    "charset_latin1": ("application/json; charset=latin-1", split()),
    "charset_quoted": ('application/json; charset="utf-8"', split()),
    "unknown_parameter": ("application/json; foo=bar", split()),
    "empty_parameter": ("application/json;", split()),
    "text_plain": ("text/plain", split()),
    "upper_case_type": ("Application/JSON", split()),
    "empty_content_type": ("", split()),
    "form_type": ("application/x-www-form-urlencoded", split()),
    # CSV
    "csv": ("text/csv", csv(C, R, V, M)),
    "csv_charset": ("text/csv; charset=utf-8", csv(C, R)),
    "csv_reordered": ("text/csv", csv(C[::-1], R[::-1])),
    "csv_crlf": ("text/csv", csv(C, R, V, eol="\r\n")),
    "csv_no_final_newline": ("text/csv", csv(C, R).rstrip("\n")),
    "csv_blank_lines": ("text/csv", csv(C) + "\n" + csv(C, R).split("\n", 1)[1] + "\n"),
    "csv_byte_order_mark": ("text/csv", "\ufeff" + csv(C, R)),
    "csv_quoted_header": ("text/csv", ",".join(f'"{c}"' for c in C) + "\n5.1,3.5,1.4,0.2\n"),
    "csv_quoted_value": ("text/csv", ",".join(C) + '\n"5.1",3.5,1.4,0.2\n'),
    "csv_exponent": ("text/csv", ",".join(C) + "\n5.1e0,3.5,1.4,2E-1\n"),
    "csv_integers": ("text/csv", csv(C, [5, 3, 1, 0])),
    "csv_index_column": ("text/csv", csv(["", *C], [0, *R])),
    "csv_extra_column": ("text/csv", csv([*C, "x"], [*R, "abc"])),
    "csv_no_header": ("text/csv", ",".join(map(str, R)) + "\n" + ",".join(map(str, V)) + "\n"),
    "csv_three_columns": ("text/csv", csv(C[:3], R[:3])),
    "csv_spaced_header": ("text/csv", ", ".join(C) + "\n" + ",".join(map(str, R)) + "\n"),
    "csv_semicolons": ("text/csv", ";".join(C) + "\n" + ";".join(map(str, R)) + "\n"),
    "csv_text_value": ("text/csv", ",".join(C) + "\n5.1,abc,1.4,0.2\n"),
    "csv_infinity": ("text/csv", ",".join(C) + "\ninf,3.5,1.4,0.2\n"),
    "csv_empty": ("text/csv", ""),
    "csv_header_only": ("text/csv", csv(C)),
    "csv_not_utf8": ("text/csv", csv(C, R).encode() + b"\xe9"),
}

# name -> (MLflow's status and error_code or None, ours): deliberate differences, each
# a value MLflow coerces through pandas that the predictor's shared rules refuse.
DEVIATIONS: dict[str, tuple[Any, Any]] = {
    "records_null_value": ((200, None), (400, "BAD_REQUEST")),
    "records_boolean_value": ((200, None), (400, "BAD_REQUEST")),
    "records_numeric_text": ((200, None), (400, "BAD_REQUEST")),
    "split_numeric_text": ((200, None), (400, "BAD_REQUEST")),
    "csv_missing_value": ((200, None), (400, "BAD_REQUEST")),
    "csv_short_row": ((200, None), (400, "BAD_REQUEST")),
    "csv_nan": ((200, None), (400, "BAD_REQUEST")),
}
DEVIATION_CASES: dict[str, tuple[str | None, Any]] = {
    "records_null_value": (J, {"dataframe_records": [{**rec(R), "petal_width": None}]}),
    "records_boolean_value": (J, {"dataframe_records": [{**rec(R), "petal_width": True}]}),
    "records_numeric_text": (J, {"dataframe_records": [{**rec(R), "petal_width": "0.2"}]}),
    "split_numeric_text": (J, {"dataframe_split": {"columns": C, "data": [[5.1, "3.5", 1.4, 0]]}}),
    "csv_missing_value": ("text/csv", ",".join(C) + "\n5.1,,1.4,0.2\n"),
    "csv_short_row": ("text/csv", ",".join(C) + "\n5.1,3.5,1.4\n"),
    "csv_nan": ("text/csv", ",".join(C) + "\nnan,3.5,1.4,0.2\n"),
}


def encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class Answer:
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        try:
            self.json: Any = json.loads(body)
        except ValueError:
            self.json = None

    @property
    def error_code(self) -> str | None:
        return self.json.get("error_code") if isinstance(self.json, dict) else None

    @property
    def predictions(self) -> Any:
        return self.json.get("predictions") if isinstance(self.json, dict) else None

    def __repr__(self) -> str:
        return f"{self.status} {self.body[:300]!r}"


def post_http(url: str, content_type: str | None, body: bytes) -> Answer:
    req = urllib.request.Request(url, data=body, method="POST")
    # urllib adds a form Content-Type to a POST without one: always set it explicitly
    req.add_header("Content-Type", "" if content_type is None else content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Answer(resp.status, resp.headers.get("Content-Type", ""), resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers.get("Content-Type", ""), exc.read())


@pytest.fixture(scope="module")
def registered(mlflow_server: MlflowServer) -> str:
    """The trainer's own version (integer labels, the trainer's signature), aliased."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlops_model.ensure import ensure_model
    from mlops_model.train import TrainParams

    result = ensure_model(mlflow_server.url, MODEL, ALIAS, TrainParams(n_estimators=30))
    assert result.get("alias_after") is not None, result
    return str(result["alias_after"])


@pytest.fixture(scope="module")
def mlflow_serve(
    mlflow_server: MlflowServer, registered: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The pinned ``mlflow models serve`` on the same version, one worker."""
    work = tmp_path_factory.mktemp("mlflow-serve")
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREDICTOR_", "MLFLOW_", "PROMETHEUS_"))
    }
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    env.update(MLFLOW_TRACKING_URI=mlflow_server.url)
    log = work / "serve.log"
    argv = [
        str(bin_dir / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL}/{registered}",
        "--env-manager", "local", "-w", "1",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    proc = start_in_session(argv, env, work, log)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/ping", 240, alive=lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"mlflow models serve did not start: {exc}\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop_group(proc, term_wait=20.0)


@pytest.fixture(scope="module")
def predictor(mlflow_server: MlflowServer, registered: str) -> Iterator[Any]:
    """The predictor app (its WSGI front layer included) serving the same version."""
    settings = Settings(
        model_name=MODEL, model_alias=ALIAS, tracking_uri=mlflow_server.url, poll_interval=3600
    )
    app = create_app(settings, autostart=False)
    service = get_service(app)
    assert service.start(wait=120), service.watcher.last_error
    assert service.holder.current is not None
    assert service.holder.current.version == registered
    try:
        yield app.test_client()
    finally:
        service.stop(timeout=5)


def ours(client: Any, path: str, content_type: str | None, body: bytes) -> Answer:
    headers = {} if content_type is None else {"Content-Type": content_type}
    resp = client.post(path, data=body, headers=headers)
    return Answer(resp.status_code, resp.headers.get("Content-Type", ""), resp.data)


def test_every_request_answers_like_mlflow_models_serve(mlflow_serve: str, predictor: Any) -> None:
    differences: list[str] = []
    successes = 0
    for name, (content_type, body) in CASES.items():
        raw = encode(body)
        theirs = post_http(f"{mlflow_serve}/invocations", content_type, raw)
        mine = ours(predictor, "/invocations", content_type, raw)
        if theirs.status >= 500:
            differences.append(f"{name}: MLflow itself failed: {theirs}")
            continue
        if mine.status != theirs.status:
            differences.append(f"{name}: status {mine.status} != MLflow's {theirs.status}")
        elif theirs.status == 200:
            successes += 1
            if mine.predictions != theirs.predictions:
                differences.append(f"{name}: {mine.predictions} != {theirs.predictions}")
        elif theirs.status != 415 and mine.error_code != theirs.error_code:
            differences.append(f"{name}: error_code {mine.error_code} != {theirs.error_code}")
        if mine.status != 200 and not (isinstance(mine.json, dict) and mine.json.get("message")):
            differences.append(f"{name}: our error is not JSON with a message: {mine}")
    assert not differences, "\n".join(differences)
    assert successes >= 20, successes  # the run compared real predictions


def test_the_known_deviations_are_what_they_say(mlflow_serve: str, predictor: Any) -> None:
    found = {}
    for name, (content_type, body) in DEVIATION_CASES.items():
        raw = encode(body)
        theirs = post_http(f"{mlflow_serve}/invocations", content_type, raw)
        mine = ours(predictor, "/invocations", content_type, raw)
        found[name] = ((theirs.status, theirs.error_code), (mine.status, mine.error_code))
    assert found == DEVIATIONS


def test_ping_health_and_version_answer_like_mlflow(mlflow_serve: str, predictor: Any) -> None:
    for path in ("/ping", "/health"):
        with urllib.request.urlopen(f"{mlflow_serve}{path}", timeout=10) as resp:
            assert resp.status == 200
        assert predictor.get(path).status_code == 200, path
    with urllib.request.urlopen(f"{mlflow_serve}/version", timeout=10) as resp:
        theirs = resp.read().decode()
    mine = predictor.get("/version")
    assert mine.status_code == 200
    assert mine.get_data(as_text=True) == theirs == MLFLOW_VERSION


def test_a_large_batch_answers_alike(mlflow_serve: str, predictor: Any) -> None:
    import numpy as np

    rng = np.random.default_rng(16)
    rows = np.round(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], (500, 4)), 1)
    raw = json.dumps({"dataframe_split": {"columns": C, "data": rows.tolist()}}).encode()
    theirs = post_http(f"{mlflow_serve}/invocations", J, raw)
    mine = ours(predictor, "/invocations", J, raw)
    assert theirs.status == mine.status == 200
    assert mine.predictions == theirs.predictions
