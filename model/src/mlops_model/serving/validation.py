"""Request body -> float64 feature array, without pandas, with precise client errors.

Accepted bodies::

    {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}                  positional rows
    {"instances": [{"sepal_length": 5.1, ...}, ...]}            named rows, any key order
    {"sepal_length": 5.1, "sepal_width": 3.5, ...}              one named row

The common case runs at C speed (orjson parses, ``set(map(type, ...))`` checks the
rows and values, one ``np.array`` call converts); only a body that fails those
checks is parsed again by the standard library or walked in Python, to name the
offending row and field.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from typing import Any

import numpy as np
import orjson

from mlops_model.schema import FEATURE_NAMES
from mlops_model.serving.errors import ClientError
from mlops_model.serving.holder import FloatArray

_WIDTH = len(FEATURE_NAMES)
_FEATURE_SET = frozenset(FEATURE_NAMES)
_NUMBER_TYPES = frozenset({int, float})  # exact types: bool is an int subclass, and refused
_GET_FEATURES = operator.itemgetter(*FEATURE_NAMES)
_EXPECTED_ROW = (
    f"a list of {_WIDTH} numbers ({', '.join(FEATURE_NAMES)}) or an object with those keys"
)


class _NonFiniteLiteral:
    """What the parser makes of the NaN / Infinity / -Infinity literals Python's json accepts."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


def parse_json(raw: bytes) -> Any:
    """Parse a request body; NaN and Infinity literals survive as markers, refused later.

    orjson parses every valid body (same values as the standard library, floats
    correctly rounded); what it refuses (NaN/Infinity literals, numbers beyond
    float64, deep nesting, lone surrogates, invalid JSON) goes to the standard
    parser, which accepts the same documents as before and explains the others.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw, parse_constant=_NonFiniteLiteral)
    except RecursionError:
        raise ClientError(400, "invalid_json", "the body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise ClientError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, _NonFiniteLiteral):
        return value.literal
    return type(value).__name__


def _described(value: Any) -> str:
    """``string "abc"``, ``boolean true``, ``null``, ``array``: what the client sent."""
    kind = json_type(value)
    if value is None or isinstance(value, list | dict | _NonFiniteLiteral):
        return kind
    text = json.dumps(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _bad_value(where: str, value: Any) -> ClientError:
    if isinstance(value, _NonFiniteLiteral):
        return ClientError(
            400, "not_finite", f"{where} is {value.literal}: NaN and infinite values are refused"
        )
    return ClientError(400, "invalid_value", f"{where} must be a number, got {_described(value)}")


def to_features(payload: Any, max_rows: int) -> FloatArray:
    """Validate a parsed body into a C-contiguous float64 ``(n, 4)`` array of finite values."""
    if type(payload) is not dict:
        raise ClientError(
            400,
            "invalid_shape",
            f'the body must be a JSON object ({{"instances": [...]}} or one named row), '
            f"got {json_type(payload)}",
        )
    if "instances" not in payload:
        return _named([payload], single=True)
    extra = sorted(payload.keys() - {"instances"}) if len(payload) > 1 else None
    if extra:
        raise ClientError(
            400, "unknown_field", f"unknown top-level field '{extra[0]}': only 'instances' is read"
        )
    rows = payload["instances"]
    if type(rows) is not list:
        raise ClientError(
            400, "invalid_shape", f"'instances' must be an array of rows, got {json_type(rows)}"
        )
    n = len(rows)
    if n == 0:
        raise ClientError(400, "empty_batch", "'instances' is empty: send at least one row")
    if n > max_rows:
        raise ClientError(
            413, "too_many_rows", f"'instances' has {n} rows, more than the limit of {max_rows}"
        )
    kinds = set(map(type, rows))
    if kinds == {list}:
        return _positional(rows)
    if kinds == {dict}:
        return _named(rows, single=False)
    first = type(rows[0])
    for i, row in enumerate(rows):
        if type(row) not in (list, dict):
            raise ClientError(
                400,
                "invalid_row",
                f"instances[{i}] must be {_EXPECTED_ROW}, got {json_type(row)}",
            )
        if type(row) is not first:
            raise ClientError(
                400,
                "invalid_row",
                f"instances[{i}] is an {json_type(row)} but instances[0] is an "
                f"{json_type(rows[0])}: use one row style per request",
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _positional(rows: list[list[Any]]) -> FloatArray:
    if set(map(len, rows)) != {_WIDTH}:
        for i, row in enumerate(rows):
            if len(row) != _WIDTH:
                raise ClientError(
                    400,
                    "wrong_row_length",
                    f"instances[{i}] has {len(row)} values, expected {_WIDTH}: "
                    f"{', '.join(FEATURE_NAMES)}",
                )
    return number_rows(rows, lambda i, j: f"instances[{i}][{j}] ({FEATURE_NAMES[j]})")


def number_rows(rows: list[list[Any]], where: Any) -> FloatArray:
    """Rows of equal width -> float64 array; every value a finite JSON number.

    ``where(i, j)`` names a value in the error (the shared rule of every protocol:
    booleans, strings, nulls, NaN and infinities are refused with 400).
    """
    if not set(map(type, itertools.chain.from_iterable(rows))) <= _NUMBER_TYPES:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if type(value) not in _NUMBER_TYPES:
                    raise _bad_value(where(i, j), value)
    return _finish(rows, where)


def _named(rows: list[dict[str, Any]], single: bool) -> FloatArray:
    def where(i: int, j: int) -> str:
        return f"'{FEATURE_NAMES[j]}'" if single else f"instances[{i}].{FEATURE_NAMES[j]}"

    if not all(row.keys() == _FEATURE_SET for row in rows):
        for i, row in enumerate(rows):
            missing = [f for f in FEATURE_NAMES if f not in row]
            unknown = sorted(k for k in row if k not in _FEATURE_SET)
            if not (missing or unknown):
                continue
            row_name = "the body" if single else f"instances[{i}]"
            if unknown:
                raise ClientError(
                    400,
                    "unknown_feature",
                    f"{row_name} has unknown feature '{unknown[0]}'"
                    + (f" and is missing '{missing[0]}'" if missing else "")
                    + f"; the features are {', '.join(FEATURE_NAMES)}",
                )
            raise ClientError(
                400,
                "missing_feature",
                f"{row_name} is missing feature '{missing[0]}'; "
                f"the features are {', '.join(FEATURE_NAMES)}",
            )
    values = list(map(_GET_FEATURES, rows))
    if not set(map(type, itertools.chain.from_iterable(values))) <= _NUMBER_TYPES:
        for i, row_values in enumerate(values):
            for j, value in enumerate(row_values):
                if type(value) not in _NUMBER_TYPES:
                    raise _bad_value(where(i, j), value)
    return _finish(values, where)


def _finish(rows: list[Any], where: Any) -> FloatArray:
    try:
        x = np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float64's range
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                try:
                    float(value)
                except OverflowError:
                    raise ClientError(
                        400, "not_finite", f"{where(i, j)} is too large for a 64-bit float"
                    ) from None
        raise  # pragma: no cover
    # One reduction: the sum of finite values is finite unless it overflows, and only
    # then (or for a real NaN/Infinity) is the array searched element by element.
    if math.isfinite(x.sum()):
        return x
    finite = np.isfinite(x)
    if not finite.all():
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        shown = "NaN" if math.isnan(x[i, j]) else ("Infinity" if x[i, j] > 0 else "-Infinity")
        raise ClientError(
            400,
            "not_finite",
            f"{where(i, j)} is {shown} (too large for a 64-bit float): "
            "NaN and infinite values are refused",
        )
    return x
