"""MLflow's scoring protocol (``mlflow models serve``), for the Iris model's signature.

What MLflow's scoring server of the pinned MLflow answers, written anew without
pandas: the content-type rules (``application/json`` or ``text/csv``, UTF-8 only,
no parameter but ``charset``: otherwise 415), the four JSON wrappers
(``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``; exactly one,
other keys and ``params`` ignored since the model declares no parameters), CSV with
a header row, and its error codes: ``BAD_REQUEST`` for a body that does not parse
as a table, ``INVALID_PARAMETER_VALUE`` for a table the model signature refuses (a
required column missing, or data without column names: MLflow's signature of the
model is named columns, so a bare ``[[5.1, 3.5, 1.4, 0.2]]`` tensor is refused there
as here). The answer is ``{"predictions": [...]}`` with the model's own labels.

Where MLflow's pandas parsing coerces a value the predictor's shared rules refuse
(null/NaN, booleans, numeric strings, a short or long CSV row), this module answers
``400 BAD_REQUEST`` (see the OpenAPI document); limits answer 413.
"""

from __future__ import annotations

import csv
import io
import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from mlops_model.schema import FEATURE_NAMES
from mlops_model.serving.errors import ClientError
from mlops_model.serving.holder import F32_MAX, FloatArray, LoadedModel
from mlops_model.serving.metrics import Metrics
from mlops_model.serving.validation import number_rows, parse_json

# The MLflow release whose scoring server this module answers like (its /version).
MLFLOW_VERSION = "3.17.2"
JSON = "application/json"
CSV = "text/csv"
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_LIMIT_EXCEEDED = "RESOURCE_LIMIT_EXCEEDED"
WRAPPERS: tuple[str, ...] = ("dataframe_split", "dataframe_records", "instances", "inputs")
_FEATURES = list(FEATURE_NAMES)
_GET_FEATURES = operator.itemgetter(*FEATURE_NAMES)
_CSV_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_ONE_WRAPPER = "the body must be a JSON object with exactly one of the fields " + ", ".join(
    WRAPPERS
)

Table = tuple[list[Any], list[Any]]  # (column names, row-major rows)


def _bad(message: str) -> ClientError:
    return ClientError(400, BAD_REQUEST, message)


def _invalid(message: str) -> ClientError:
    return ClientError(400, INVALID_PARAMETER_VALUE, message)


def media_kind(content_type: str | None) -> str:
    """``json`` or ``csv`` for an accepted Content-Type; 415 otherwise (MLflow's rules)."""
    parts = [p.strip() for p in (content_type or "").split(";")]
    params = dict(p.partition("=")[::2] for p in parts[1:])
    if params.get("charset", "utf-8").lower() != "utf-8":
        raise ClientError(415, BAD_REQUEST, "the scoring server only supports UTF-8")
    unknown = sorted(set(params) - {"charset"})
    if unknown:
        raise ClientError(
            415, BAD_REQUEST, f"unrecognized content type parameters: {', '.join(unknown)}"
        )
    if parts[0] == JSON:
        return "json"
    if parts[0] == CSV:
        return "csv"
    raise ClientError(
        415,
        BAD_REQUEST,
        f"Content-Type must be {JSON} or {CSV} (parquet is not supported), "
        f"got {content_type or 'none'!r}",
    )


def features(raw: bytes, kind: str, max_rows: int) -> FloatArray:
    """A request body of kind ``json`` or ``csv`` -> validated float64 ``(n, 4)`` features."""
    if kind == "csv":
        columns, rows = _csv_table(raw)
        return _finish(_select(columns, rows, max_rows), _csv_numbers)
    try:
        body = parse_json(raw)
    except ClientError as exc:
        raise _bad(exc.detail) from None
    if type(body) is not dict:
        raise _bad(f"{_ONE_WRAPPER}; got a JSON {type(body).__name__}")
    present = [k for k in WRAPPERS if k in body]
    if len(present) != 1:
        raise _bad(f"{_ONE_WRAPPER}; got the fields {sorted(body)}")
    key = present[0]
    data = body[key]
    if key == "dataframe_split":
        table = _split(data)
    elif key == "dataframe_records":
        table = _records(data)
    else:
        table = _tensor(key, data)
    return _finish(_select(*table, max_rows), _json_numbers)


# ---------------------------------------------------------------- wrappers -> tables


def _split(data: Any) -> Table:
    if type(data) is not dict:
        raise _bad("'dataframe_split' must be an object with 'columns' and 'data'")
    if "data" not in data:
        raise _bad("'dataframe_split' has no 'data' field")
    rows, columns = data["data"], data.get("columns")
    if type(rows) is not list or not all(type(r) is list for r in rows):
        raise _bad("'dataframe_split.data' must be a list of rows (lists of values)")
    widths = set(map(len, rows))
    if columns is None:
        if len(widths) > 1:
            raise _bad("the rows of 'dataframe_split.data' differ in length")
        raise _invalid("'dataframe_split' has no 'columns': the model needs named columns")
    if type(columns) is not list or not all(type(c) is str for c in columns):
        raise _bad("'dataframe_split.columns' must be a list of column names")
    if widths - {len(columns)}:
        raise _bad(f"a row of 'dataframe_split.data' does not have {len(columns)} values")
    return columns, rows


def _dict_rows(rows: list[dict[str, Any]]) -> Table:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    names = list(columns)
    return names, [[row.get(c) for c in names] for row in rows]


def _records(data: Any) -> Table:
    if type(data) is not list:
        raise _bad("'dataframe_records' must be a list of records (objects)")
    if not all(type(r) is dict for r in data):
        raise _invalid("'dataframe_records' must be records with the column names as keys")
    return _dict_rows(data)


def _tensor(key: str, data: Any) -> Table:
    if type(data) is dict:
        if not data:
            raise _invalid(f"'{key}' is empty")
        values = list(data.values())
        if all(type(v) is list for v in values):
            if len(set(map(len, values))) != 1:
                raise _invalid(f"the columns of '{key}' differ in length")
            return list(data), [list(r) for r in zip(*values, strict=True)]
        if any(type(v) is list for v in values):
            raise _invalid(f"'{key}' mixes lists and single values")
        return list(data), [values]
    if type(data) is list and data and all(type(r) is dict for r in data):
        keys = set(data[0])
        if any(set(r) != keys for r in data):
            raise _bad(f"the objects in '{key}' do not all have the same keys")
        return _dict_rows(data)
    # A bare tensor: MLflow refuses it for a model with a column signature; first
    # what does not even make a tensor (ragged rows, strings that are no numbers).
    if type(data) is list and all(type(r) is list for r in data):
        if len(set(map(len, data))) > 1:
            raise _bad(f"the rows of '{key}' differ in length")
        for row in data:
            for value in row:
                if type(value) is str and not _CSV_NUMBER.fullmatch(value):
                    raise _bad(f"could not convert string to float: {value[:40]!r}")
    raise _invalid(
        f"'{key}' holds data without column names; the model needs the columns "
        f"{', '.join(FEATURE_NAMES)} (use named objects, or dataframe_split)"
    )


def _csv_table(raw: bytes) -> Table:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(f"the body is not valid UTF-8: {exc}") from None
    try:
        lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise _bad(f"the body is not valid CSV: {exc}") from None
    if not lines:
        raise _bad("the CSV body is empty: a header row with the column names is needed")
    columns, rows = lines[0], lines[1:]
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise _bad(f"CSV row {i + 1} has {len(row)} values, the header {len(columns)}")
    return columns, rows


# ---------------------------------------------------------------- tables -> features


def _select(columns: list[Any], rows: list[Any], max_rows: int) -> list[Any]:
    """The feature columns of a table, in schema order; MLflow's signature rules."""
    if columns != _FEATURES:
        if len(set(columns)) != len(columns):
            raise _invalid("duplicate column names")
        missing = [f for f in FEATURE_NAMES if f not in columns]
        if missing:
            raise _invalid(
                f"missing column(s) {', '.join(missing)}; the model needs "
                f"{', '.join(FEATURE_NAMES)} (got {', '.join(map(str, columns)) or 'none'})"
            )
        pick = operator.itemgetter(*(columns.index(f) for f in FEATURE_NAMES))
        rows = [list(pick(r)) for r in rows]
    if not rows:
        raise _bad("the input has no rows")
    if len(rows) > max_rows:
        raise ClientError(
            413,
            RESOURCE_LIMIT_EXCEEDED,
            f"the input has {len(rows)} rows, more than the limit of {max_rows}",
        )
    return rows


def _where(i: int, j: int) -> str:
    return f"row {i} column {FEATURE_NAMES[j]}"


def _json_numbers(rows: list[Any]) -> FloatArray:
    try:
        return number_rows(rows, _where)
    except ClientError as exc:
        raise _bad(exc.detail) from None


def _csv_numbers(rows: list[Any]) -> FloatArray:
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if not _CSV_NUMBER.fullmatch(value):
                raise _bad(f"{_where(i, j)} is {value[:40]!r}, not a number")
    return np.array(rows, dtype=np.float64)


def _finish(rows: list[Any], convert: Callable[[list[Any]], FloatArray]) -> FloatArray:
    x = convert(rows)
    # scikit-learn refuses values beyond float32 (MLflow answers BAD_REQUEST): so do we.
    if not float(np.abs(x).max()) <= F32_MAX:
        raise _bad("a value is infinite or too large for float32")
    return x


# ---------------------------------------------------------------- answers


def predictions(model: LoadedModel, x: FloatArray, metrics: Metrics) -> bytes:
    """The body of a successful ``/invocations``: the model's own label per row."""
    best = model.predict_proba(x).argmax(axis=1)
    metrics.observe_prediction(x, best)
    labels = model.labels
    return orjson.dumps({"predictions": [labels[i] for i in best.tolist()]})


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error_code": code, "message": message})
