"""bench/serve_bench.py without servers: reading wrk, checking answers, the FAIL rules.

The wrk outputs in tests/unit/wrk/ are real ones (wrk 4.1.0, Debian), taken against a small
local server that answered 200, answered 500, closed its keep-alive connections
(read errors) and answered after wrk's timeout; wrk prints the "Non-2xx" and
"Socket errors" lines only when their counts are not zero.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import serve_bench as sb

WRK = Path(__file__).with_name("wrk")


def wrk_output(name: str) -> str:
    """A captured wrk output, verbatim, from tests/unit/wrk/."""
    return (WRK / f"{name}.txt").read_text()


WRK_CLEAN = wrk_output("clean")
WRK_NON_2XX = wrk_output("non_2xx")
WRK_READ_ERRORS = wrk_output("read_errors")
WRK_TIMEOUTS = wrk_output("timeouts")


# ------------------------------------------------------------------ wrk


def test_clean_run_is_read_and_measurable():
    stats = sb.parse_wrk(WRK_CLEAN)
    assert stats["requests_per_s"] == 45.45
    assert stats["requests"] == 50
    assert stats["p50_ms"] == pytest.approx(43.96)
    assert stats["p99_ms"] == pytest.approx(44.17)
    assert stats["non_2xx"] == 0
    assert stats["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert sb.wrk_problems(stats) == []


def test_non_2xx_answers_fail_the_run():
    stats = sb.parse_wrk(WRK_NON_2XX)
    assert stats["non_2xx"] == 46
    assert sb.wrk_problems(stats) == ["46 non-2xx answers of 46 requests"]


def test_read_errors_fail_the_run():
    stats = sb.parse_wrk(WRK_READ_ERRORS)
    assert stats["socket_errors"] == {"connect": 0, "read": 2156, "write": 0, "timeout": 0}
    assert sb.wrk_problems(stats) == [
        "no request completed",
        "socket errors: connect 0, read 2156, write 0, timeout 0",
    ]


def test_timeouts_fail_the_run():
    stats = sb.parse_wrk(WRK_TIMEOUTS)
    assert stats["socket_errors"]["timeout"] == 2
    assert sb.wrk_problems(stats) == ["socket errors: connect 0, read 0, write 0, timeout 2"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        WRK_CLEAN.replace("Requests/sec:", "Requests per second:"),
        # an error line in a form the parser does not know is never read as "no errors"
        WRK_CLEAN + "  Socket errors: connect=1 read=0\n",
        WRK_CLEAN + "  Non-2xx or 3xx responses: many\n",
    ],
    ids=["empty", "no-rate", "socket-errors-unknown-form", "non-2xx-unknown-form"],
)
def test_output_not_understood_fails_rather_than_passes(text):
    with pytest.raises(sb.RunFailed):
        sb.parse_wrk(text)


# ------------------------------------------------------------------ answers

ONE_SETOSA = sb.Expected((frozenset({"setosa"}),))
TWO_ROWS = sb.expected_answers([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])


def answer(predictions) -> bytes:
    return json.dumps({"predictions": predictions}).encode()


def test_expected_labels_are_the_models_and_a_tie_allows_both():
    assert TWO_ROWS.allowed == (frozenset({"setosa"}), frozenset({"virginica"}))
    tie = sb.expected_answers([[0.5, 0.5, 0.0]])
    assert tie.allowed == (frozenset({"setosa", "versicolor"}),)
    for label in ("setosa", "versicolor"):
        sb.check_answer("predict", 200, answer([label]), tie)
    with pytest.raises(sb.WrongAnswer):
        sb.check_answer("predict", 200, answer(["virginica"]), tie)


def v2_answer(labels, *, name="predictions") -> bytes:
    n = len(labels)
    outputs = [
        {"name": name, "datatype": "BYTES", "shape": [n], "data": labels},
        {"name": "probabilities", "datatype": "FP64", "shape": [n, 3], "data": [0.0] * 3 * n},
    ]
    return json.dumps({"model_name": "iris", "model_version": "1", "outputs": outputs}).encode()


def test_right_answers_pass():
    sb.check_answer("predict", 200, answer(["setosa", "virginica"]), TWO_ROWS)
    sb.check_answer("mlflow", 200, answer([0, 2]), TWO_ROWS)
    sb.check_answer("v2", 200, v2_answer(["setosa", "virginica"]), TWO_ROWS)
    # the ceiling answers its constant whatever the rows
    sb.check_answer("hello", 200, b'{"predictions":["setosa"]}', TWO_ROWS)


@pytest.mark.parametrize(
    ("protocol", "status", "raw", "reason"),
    [
        ("predict", 500, answer(["setosa", "virginica"]), "status 500"),
        ("predict", 200, b"<html>oops</html>", "not JSON"),
        ("predict", 200, b'{"error": "x"}', "no list of predictions"),
        ("predict", 200, b'["setosa", "virginica"]', "no list of predictions"),
        ("predict", 200, answer(["setosa"]), "1 predictions for 2 rows"),
        ("predict", 200, answer(["setosa", "setosa", "setosa"]), "3 predictions for 2 rows"),
        ("predict", 200, answer(["setosa", "setosa"]), "1 of 2 labels are not the model's"),
        ("predict", 200, answer([0, 2]), "0 is not a label the predict protocol answers"),
        ("predict", 200, answer(["Setosa", "virginica"]), "is not a label"),
        # a V2 answer is read from its outputs, not from a top-level list
        ("predict", 200, v2_answer(["setosa", "virginica"]), "no list of predictions"),
        ("mlflow", 200, answer(["setosa", "virginica"]), "is not a label the mlflow protocol"),
        ("mlflow", 200, answer([True, 2]), "True is not a label"),
        ("mlflow", 200, answer([0, 3]), "3 is not a label"),
        ("mlflow", 200, answer([2, 0]), "2 of 2 labels are not the model's"),
        ("v2", 200, answer(["setosa", "virginica"]), "no list of predictions"),
        ("v2", 200, v2_answer(["setosa", "virginica"], name="labels"), "no list of predictions"),
        ("v2", 200, b'{"outputs": {"name": "predictions"}}', "no list of predictions"),
        ("v2", 200, b'{"error": "model not found"}', "no list of predictions"),
        ("v2", 200, v2_answer(["virginica", "setosa"]), "2 of 2 labels are not the model's"),
        ("v2", 200, v2_answer([0, 2]), "0 is not a label the v2 protocol answers"),
        ("v2", 200, v2_answer(["setosa"]), "1 predictions for 2 rows"),
        ("v2", 404, b'{"error": "x"}', "status 404"),
        ("hello", 200, b'{"predictions":["virginica"]}', "constant"),
        ("hello", 404, b"not found", "status 404"),
    ],
)
def test_wrong_answers_are_caught(protocol, status, raw, reason):
    with pytest.raises(sb.WrongAnswer, match=reason):
        sb.check_answer(protocol, status, raw, TWO_ROWS)


def test_each_protocol_gets_the_same_rows_in_its_own_body():
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
    found = {protocol: json.loads(body) for protocol, body in sb.bodies(rows).items()}
    assert set(found) == set(sb.PATHS)
    assert found["predict"] == found["hello"] == {"instances": rows}
    assert found["mlflow"]["dataframe_split"]["data"] == rows
    (tensor,) = found["v2"]["inputs"]
    assert (tensor["datatype"], tensor["shape"]) == ("FP64", [2, 4])
    assert tensor["data"] == rows[0] + rows[1]


def test_ours_is_measured_in_every_protocol_with_single_rows():
    ours = {name: (rows, protocol) for name, rows, protocol in sb.PLAN["ours"]}
    assert ours == {
        "single": ("single", "predict"),
        "batch": ("batch", "predict"),
        "invocations": ("single", "mlflow"),
        "v2": ("single", "v2"),
    }
    assert sb.PATHS["v2"] == f"/v2/models/{sb.MODEL_NAME}/infer"
    # the peers keep their one endpoint each
    assert {p for _, _, p in sb.PLAN["mlflow"]} == {"mlflow"}
    assert {p for _, _, p in sb.PLAN["hello"]} == {"hello"}


# ------------------------------------------------------------------ ratios and FAIL


def single(rps: float, endpoint: str = "/predict") -> dict[str, Any]:
    return {"requests_per_s": rps, "rows_per_s": rps, "p50_ms": 1.0, "p99_ms": 1000 / rps,
            "rows_per_request": 1, "endpoint": endpoint}  # fmt: skip


def result(
    target: str, rps: float, failures: tuple[str, ...] = (), protocols: tuple[float, float] = ()
) -> sb.Result:
    """A run of ``target``; ours also gets /invocations and V2 rows at ``protocols`` req/s."""
    res = sb.Result(target, 2)
    res.cases = {
        "single": single(rps),
        "batch": {"requests_per_s": rps / 10, "rows_per_s": rps * 100, "p50_ms": 10.0,
                  "p99_ms": 10_000 / rps, "rows_per_request": 1000, "endpoint": "/predict"},
    }  # fmt: skip
    if target == "ours":
        invocations, v2 = protocols or (rps, rps)
        res.cases["invocations"] = single(invocations, "/invocations")
        res.cases["v2"] = single(v2, "/v2/models/iris/infer")
    res.workers = [{"pid": 1, "vm_hwm_kib": 100 * 1024}, {"pid": 2, "vm_hwm_kib": 90 * 1024}]
    res.failures = list(failures)
    return res


def test_ratios_and_targets_from_clean_runs():
    runs = (("ours", 1000), ("ours-nodrift", 1010), ("mlflow", 20), ("hello", 1100))
    results = {t: result(t, rps) for t, rps in runs}
    r = sb.ratios(results)
    assert set(r) == {ratio.key for ratio in sb.RATIOS}
    assert r["single_rps_vs_mlflow"] == pytest.approx(50)
    assert r["single_p99_mlflow_over_ours"] == pytest.approx(50)
    assert r["rss_vs_mlflow"] == pytest.approx(1.0)
    met = {c["target"]: c["met"] for c in sb.verdicts(r)}
    assert met == {
        "single_rps_vs_mlflow": True,
        "single_rps_vs_hello": True,
        "single_p99_mlflow_over_ours": True,
        "batch_rows_vs_mlflow": True,
        "rss_vs_mlflow": False,  # same RSS: not <= 0.60
        "invocations_rps_vs_predict": True,
        "v2_rps_vs_predict": True,
        "drift_single_rps_vs_off": True,  # 1000 / 1010: within 5%
    }
    # drift metrics that cost more than 5% of the single-row figure miss the target
    results["ours-nodrift"] = result("ours-nodrift", 1100)
    met = {c["target"]: c["met"] for c in sb.verdicts(sb.ratios(results))}
    assert met["drift_single_rps_vs_off"] is False


def test_each_protocol_is_compared_with_predict_in_the_table(tmp_path: Path, capsys):
    results = {"ours": result("ours", 1000, protocols=(950, 700))}
    r = sb.ratios(results)
    assert r == {
        "invocations_rps_vs_predict": pytest.approx(0.95),
        "v2_rps_vs_predict": pytest.approx(0.70),
    }
    met = {c["target"]: c["met"] for c in sb.verdicts(r)}
    assert met == {"invocations_rps_vs_predict": True, "v2_rps_vs_predict": False}

    # a missed target is printed as such; like every performance target, informational
    assert sb.conclude(results, 2, {}, {"loadavg": (0, 0, 0)}, tmp_path / "b.json") == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split()[:2]): line.split() for line in lines if line.startswith("ours ")}
    assert set(rows) == {
        ("ours", "/predict"),
        ("ours", "/invocations"),
        ("ours", "/v2/models/iris/infer"),
    }
    # server, endpoint, "1 row" (two words), req/s, then req/s over /predict's
    assert rows["ours", "/invocations"][4:6] == ["950.0", "0.95"]
    assert rows["ours", "/v2/models/iris/infer"][4:6] == ["700.0", "0.70"]
    verdicts = [line.strip() for line in lines if line.lstrip().startswith(("met", "MISSED"))]
    assert "MISSED  single-row requests/s, ours V2 infer / /predict: 0.70 (target >= 0.8)" in (
        verdicts
    )
    assert "met     single-row requests/s, ours /invocations / /predict: 0.95 (target >= 0.8)" in (
        verdicts
    )


def test_a_protocol_row_that_failed_fails_ours_and_exit_1(tmp_path: Path, capsys):
    ours = result("ours", 1000)
    del ours.cases["v2"]  # drive_case records no numbers for a case that failed
    ours.failures = ["v2 run (wrk): 12 non-2xx answers of 900 requests"]
    status = sb.conclude({"ours": ours}, 2, {}, {"loadavg": (0, 0, 0)}, tmp_path / "b.json")
    printed = capsys.readouterr()
    assert status == 1
    assert "FAIL  ours: v2 run (wrk): 12 non-2xx answers of 900 requests" in printed.out
    assert (
        "invocations_rps_vs_predict, v2_rps_vs_predict, drift_single_rps_vs_off not computed"
        in printed.out
    )
    assert not json.loads((tmp_path / "b.json").read_text())["ratios"]
    assert "serve_bench: FAIL: ours" in printed.err


def test_a_failed_target_gives_no_ratio_and_exit_1(tmp_path: Path, capsys):
    results = {
        "ours": result("ours", 1000),
        "mlflow": result("mlflow", 20, ("single run (wrk): 46 non-2xx answers of 46 requests",)),
        "hello": result("hello", 1100),
    }
    r = sb.ratios(results)
    assert set(r) == {
        "single_rps_vs_hello",
        "batch_rows_vs_hello",
        "rss_vs_hello",
        "invocations_rps_vs_predict",
        "v2_rps_vs_predict",
    }
    assert [c["target"] for c in sb.verdicts(r)] == [
        "single_rps_vs_hello",
        "invocations_rps_vs_predict",
        "v2_rps_vs_predict",
    ]

    out = tmp_path / "bench.json"
    status = sb.conclude(results, 2, {}, {"loadavg": (0, 0, 0)}, out)
    printed = capsys.readouterr()
    assert status == 1
    assert "FAIL  mlflow: single run (wrk): 46 non-2xx answers of 46 requests" in printed.out
    assert "serve_bench: FAIL: mlflow" in printed.err
    lines = printed.out.splitlines()
    assert not [line for line in lines if line.startswith("mlflow ")], "a row of the failed run"
    numbers = [line for line in lines if re.fullmatch(r"\s+\w+\s+-?[\d.]+", line)]
    assert numbers, "no ratio printed at all"
    assert not [line for line in numbers if "mlflow" in line], "a ratio from the failed run"
    verdict_lines = [line for line in lines if line.lstrip().startswith(("met", "MISSED"))]
    assert not [line for line in verdict_lines if "mlflow" in line]
    assert "workers per server: ours 2, mlflow 2" in printed.out
    assert (
        "no ratio from a failed target: single_rps_vs_mlflow, single_p99_mlflow_over_ours, "
        "batch_rows_vs_mlflow, rss_vs_mlflow not computed"
    ) in printed.out
    report = json.loads(out.read_text())
    assert report["failed"] == {"mlflow": results["mlflow"].failures}
    assert not report["results"]["mlflow"]["ok"]
    assert "single_rps_vs_mlflow" not in report["ratios"]


def test_clean_results_exit_0(tmp_path: Path, capsys):
    results = {t: result(t, rps) for t, rps in (("ours", 1000), ("mlflow", 20), ("hello", 1100))}
    assert sb.conclude(results, 2, {}, {"loadavg": (0, 0, 0)}, tmp_path / "b.json") == 0
    assert "FAIL" not in capsys.readouterr().out


def test_a_target_without_workers_fails_and_reports_no_rss(tmp_path: Path):
    res = sb.Result("ours", 2)
    res.fail("did not start: boom")
    status = sb.conclude({"ours": res}, 2, {}, {"loadavg": (0, 0, 0)}, tmp_path / "b.json")
    assert status == 1
    # no NaN: strict JSON readers refuse it
    report = json.loads((tmp_path / "b.json").read_text(), parse_constant=pytest.fail)
    assert report["results"]["ours"]["peak_rss_per_worker_mib"] is None


# ------------------------------------------------------------------ workers


def test_worker_count_is_the_roles_unless_set():
    defaults = yaml.safe_load((sb.ROLE / "defaults/main.yml").read_text())
    assert sb.worker_count({}) == int(defaults["predictor_workers"])
    assert sb.worker_count({"PREDICTOR_WORKERS": "3"}) == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_a_worker_count_that_cannot_be_mirrored_is_refused(value, capsys, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("the benchmark started instead of refusing the count")

    monkeypatch.setattr(sb, "MlflowServer", started)
    with pytest.raises(SystemExit) as exc:
        sb.main(["--set", f"PREDICTOR_WORKERS={value}"])
    assert exc.value.code == 2
    assert "PREDICTOR_WORKERS" in capsys.readouterr().err


def test_mlflow_serve_gets_our_worker_count(monkeypatch, tmp_path: Path):
    started: list[list[str]] = []

    class Recorded:
        pid = 0

        def __init__(self, name, argv, env, workdir):
            started.append(argv)

        def stopped_on_error(self):
            return contextlib.nullcontext()

    monkeypatch.setattr(sb, "Service", Recorded)
    monkeypatch.setattr(sb, "wait_until", lambda *args, **kwargs: None)
    sb.start_mlflow_serve("http://127.0.0.1:1", tmp_path, 3)
    argv = started[0]
    assert argv[argv.index("--workers") + 1] == "3"
    assert "-w" not in argv
