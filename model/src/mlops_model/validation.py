"""Validation of what callers hand the registry flow: names, aliases, numbers (no network).

Every check raises :class:`~mlops_model.errors.InvalidParameter` naming the field, before
anything is trained or written.
"""

from __future__ import annotations

import math
import re

from mlops_model.errors import InvalidParameter

# Our alias rule is stricter than MLflow's (``^[\w-]*$``, max 256, not ``latest``,
# not ``v<digits>``): it must also start with a letter.
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,254}$")
_RESERVED_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
# MLflow forbids '/' and ':'; we also keep quotes out, names go into filter strings.
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_FINGERPRINT_PATTERN = re.compile(r"[0-9a-f]{64}")


def validate_alias(alias: str | None) -> str | None:
    """Return the alias, ``None`` for "move no alias" (``None`` or ``""``), or raise."""
    if alias is None or alias == "":
        return None
    if not isinstance(alias, str):
        raise InvalidParameter("alias", f"alias must be a string, got {alias!r}")
    if alias.lower() == "latest":
        raise InvalidParameter("alias", "alias 'latest' is reserved by MLflow")
    if _RESERVED_VERSION_ALIAS.match(alias):
        raise InvalidParameter(
            "alias", f"alias {alias!r} is reserved by MLflow (v<digits> names a version)"
        )
    if not ALIAS_PATTERN.match(alias):
        raise InvalidParameter(
            "alias",
            f"alias {alias!r} is invalid: it must match {ALIAS_PATTERN.pattern} "
            "(a letter, then letters, digits, '_' or '-')",
        )
    return alias


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise InvalidParameter(
            "model_name",
            f"model_name {name!r} is invalid: it must match {MODEL_NAME_PATTERN.pattern}",
        )
    return name


def validate_min_accuracy(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameter("min_accuracy", f"min_accuracy must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise InvalidParameter("min_accuracy", f"min_accuracy must be between 0 and 1, got {value}")
    return float(value)


def validate_version(version: str) -> str:
    """A registered version number as MLflow spells it (``" 07"`` -> ``"7"``), or raise."""
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidParameter("version", f"version must be a positive integer, got {text!r}")
    return str(int(text))


def validate_fingerprint(fingerprint: str) -> str:
    """A training fingerprint: a sha256 hex digest (see :func:`mlops_model.train.fingerprint`)."""
    if not _FINGERPRINT_PATTERN.fullmatch(fingerprint):
        raise InvalidParameter("fingerprint", f"not a sha256 hex digest: {fingerprint!r}")
    return fingerprint


def validate_tracking_uri(tracking_uri: str) -> str:
    if not isinstance(tracking_uri, str) or not tracking_uri.strip():
        raise InvalidParameter("tracking_uri", "tracking_uri must not be empty")
    return tracking_uri


def validate_request_timeout(request_timeout: int) -> int:
    """Seconds per HTTP request to MLflow: a whole number, at least 1."""
    if (
        isinstance(request_timeout, bool)
        or not isinstance(request_timeout, int)
        or request_timeout < 1
    ):
        raise InvalidParameter(
            "request_timeout", f"request_timeout must be >= 1, got {request_timeout!r}"
        )
    return request_timeout
