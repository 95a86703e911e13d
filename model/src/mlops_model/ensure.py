"""The idempotent "ensure this model exists and holds the alias" flow.

Used by the CLI (``python -m mlops_model train``) and by the Ansible module
``mlops.stack.mlflow_model``. Same parameters + same data + same code = same
fingerprint = the existing version is reused, nothing is written.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from mlops_model.errors import InvalidParameter
from mlops_model.gate import GATE_PASSED, Decision, decide_promotion, gate_label, gate_passed
from mlops_model.registry import DEFAULT_REQUEST_TIMEOUT, Registry
from mlops_model.schema import DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from mlops_model.serving.fast_path import FAST_PATH_TAG, fast_path_passed
from mlops_model.train import TrainParams, fingerprint, train
from mlops_model.validation import (
    validate_alias,
    validate_min_accuracy,
    validate_model_name,
    validate_version,
)


@contextlib.contextmanager
def _registry(
    tracking_uri: str, username: str | None, password: str | None, request_timeout: int
) -> Iterator[Registry]:
    """The registry client, with MLflow's prints (run URLs) sent to stderr: stdout is the result."""
    with (
        contextlib.redirect_stdout(sys.stderr),
        Registry(
            tracking_uri, username=username, password=password, request_timeout=request_timeout
        ) as registry,
    ):
        yield registry


def params_from_mapping(values: Mapping[str, Any]) -> TrainParams:
    """Build :class:`TrainParams` from a mapping, ignoring ``None`` for defaulted fields."""
    fields = ("n_estimators", "max_depth", "min_samples_leaf", "random_state", "test_size")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InvalidParameter(unknown[0], f"unknown training parameter(s): {', '.join(unknown)}")
    kwargs = {
        k: values[k] for k in fields if k in values and (values[k] is not None or k == "max_depth")
    }
    return TrainParams(**kwargs)


def ensure_model(
    tracking_uri: str,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = DEFAULT_ALIAS,
    params: TrainParams | None = None,
    min_accuracy: float = 0.9,
    force: bool = False,
    check_mode: bool = False,
    *,
    require_fast_path: bool = False,
    experiment_name: str | None = None,
    username: str | None = None,
    password: str | None = None,
    request_timeout: int = DEFAULT_REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """Ensure a version trained with ``params`` exists; if it passes the gate, it holds ``alias``.

    Steps: validate everything (no network), check the server answers, look for a
    version tagged with this fingerprint; if there is none, train, log and
    register one (tags ``mlops.fingerprint``, ``mlops.gate``); then apply the
    gate (:func:`~mlops_model.gate.decide_promotion`) and move the alias.
    ``alias=None`` or ``""`` registers without touching any alias. With
    ``require_fast_path`` the alias moves only to a version tagged
    ``mlops.fast_path=passed`` (:func:`require_prepared` raises otherwise).

    In check mode nothing is written to MLflow: a would-be new version is trained in
    memory to report its metrics, ``version`` is ``None``.

    Returns a JSON-able dict: changed, created, version, run_id, model_uri,
    metrics, confusion_matrix, fingerprint, gate, alias, alias_before,
    alias_after, promoted, reason, model_name, params, check_mode.
    """
    params = params if params is not None else TrainParams()
    validate_model_name(model_name)
    alias = validate_alias(alias)
    min_accuracy = validate_min_accuracy(min_accuracy)
    fp = fingerprint(params)
    experiment = experiment_name or model_name

    with _registry(tracking_uri, username, password, request_timeout) as registry:
        existing = registry.find_version(model_name, fp)
        alias_before = registry.alias_version(model_name, alias) if alias else None

        confusion: list[list[int]] | None
        if existing is not None:
            created = False
            version: str | None = existing.version
            run_id = existing.run_id
            metrics = existing.metrics
            confusion = existing.confusion_matrix
            gate = existing.gate or gate_label(gate_passed(metrics, min_accuracy))
        else:
            created = True
            trained = train(params)
            metrics = trained.evaluation.metrics()
            confusion = trained.evaluation.confusion_matrix
            gate = gate_label(gate_passed(metrics, min_accuracy))
            if check_mode:
                version, run_id = None, None
            else:
                version, run_id = registry.log_and_register(
                    name=model_name,
                    experiment_name=experiment,
                    trained=trained,
                    fingerprint=fp,
                    min_accuracy=min_accuracy,
                )

        promoted = False
        alias_after = alias_before
        if alias is None:
            decision = Decision(False, "no alias requested")
        elif version is not None and alias_before == version:
            decision = Decision(False, f"alias {alias!r} already points to version {version}")
        else:
            holder_metrics = (
                registry.run_metrics(_run_of(registry, model_name, alias_before))
                if alias_before
                else None
            )
            decision = decide_promotion(metrics, holder_metrics, min_accuracy, force)
            if decision.promote:
                if require_fast_path and version is not None:
                    require_prepared(registry, model_name, version)
                promoted = True
                alias_after = version
                if not check_mode:
                    assert version is not None
                    registry.set_alias(model_name, alias, version)

    return {
        "changed": created or promoted,
        "created": created,
        "check_mode": check_mode,
        "model_name": model_name,
        "version": version,
        "model_uri": f"models:/{model_name}/{version}" if version else None,
        "run_id": run_id,
        "metrics": metrics,
        "confusion_matrix": confusion,
        "fingerprint": fp,
        "gate": gate,
        "alias": alias,
        "alias_before": alias_before,
        "alias_after": alias_after,
        "promoted": promoted,
        "reason": decision.reason,
        "params": params.as_dict(),
    }


def require_prepared(registry: Registry, name: str, version: str) -> None:
    """Raise :class:`InvalidParameter` (``require_fast_path``) unless the version is prepared."""
    info = registry.version_info(name, version)
    tag = info.fast_path if info is not None else None
    if not fast_path_passed(tag):
        why = "was never prepared" if tag is None else f"failed its preparation ({tag})"
        raise InvalidParameter(
            "require_fast_path",
            f"require_fast_path: version {version} of {name!r} {why}: tag "
            f"{FAST_PATH_TAG} is {tag!r}, not 'passed'. Prepare it with "
            f"`python -m mlops_model prepare --name {name} --version {version}`, "
            "or set require_fast_path=false to let the predictors convert it at load",
        )


def prepare_version(
    tracking_uri: str,
    model_name: str,
    version: str,
    *,
    check_mode: bool = False,
    force: bool = False,
    username: str | None = None,
    password: str | None = None,
    request_timeout: int = DEFAULT_REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """Prepare one registered version for the predictors' fast path, idempotently.

    A version already tagged ``mlops.fast_path=passed`` is left alone unless ``force``.
    """
    validate_model_name(model_name)
    version = validate_version(version)
    with _registry(tracking_uri, username, password, request_timeout) as registry:
        info = registry.version_info(model_name, version)
        if info is None:
            raise InvalidParameter("version", f"{model_name!r} has no version {version}")
        before = info.fast_path
        after = before
        changed = force or not fast_path_passed(before)
        if changed and not check_mode:
            after = registry.prepare_version(model_name, version)
    return {
        "changed": changed,
        "model_name": model_name,
        "version": version,
        "fast_path_before": before,
        "fast_path": after,
        "check_mode": check_mode,
    }


def _run_of(registry: Registry, name: str, version: str | None) -> str | None:
    if version is None:
        return None
    info = registry.version_info(name, version)
    return info.run_id if info else None


def model_info(
    tracking_uri: str,
    model_name: str = DEFAULT_MODEL_NAME,
    *,
    username: str | None = None,
    password: str | None = None,
    request_timeout: int = DEFAULT_REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """Read-only: versions and aliases of a registered model (``exists: false`` if unknown)."""
    validate_model_name(model_name)
    with _registry(tracking_uri, username, password, request_timeout) as registry:
        return registry.describe(model_name)


def set_alias(
    tracking_uri: str,
    model_name: str,
    alias: str,
    version: str,
    *,
    check_mode: bool = False,
    require_gate: bool = True,
    require_fast_path: bool = False,
    username: str | None = None,
    password: str | None = None,
    request_timeout: int = DEFAULT_REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """Point ``alias`` at an existing ``version`` (promote or roll back), idempotently.

    With ``require_gate`` the version must carry ``mlops.gate=passed``; with
    ``require_fast_path``, ``mlops.fast_path=passed`` too.
    """
    validate_model_name(model_name)
    checked = validate_alias(alias)
    if checked is None:
        raise InvalidParameter("alias", "alias must not be empty")
    version = validate_version(version)
    with _registry(tracking_uri, username, password, request_timeout) as registry:
        info = registry.version_info(model_name, version)
        if info is None:
            raise InvalidParameter("version", f"{model_name!r} has no version {version}")
        if require_gate and info.gate != GATE_PASSED:
            raise InvalidParameter(
                "version",
                f"version {version} of {model_name!r} did not pass the gate "
                f"(mlops.gate={info.gate!r}); passing versions: "
                f"{registry.versions_passing_gate(model_name)}",
            )
        before = registry.alias_version(model_name, checked)
        changed = before != version
        if changed and require_fast_path:
            require_prepared(registry, model_name, version)
        if changed and not check_mode:
            registry.set_alias(model_name, checked, version)
    return {
        "changed": changed,
        "model_name": model_name,
        "alias": checked,
        "alias_before": before,
        "alias_after": version,
        "version": version,
        "run_id": info.run_id,
        "metrics": info.metrics,
        "fast_path": info.fast_path,
        "check_mode": check_mode,
    }


def remove_alias(
    tracking_uri: str,
    model_name: str,
    alias: str,
    version: str | None = None,
    *,
    check_mode: bool = False,
    username: str | None = None,
    password: str | None = None,
    request_timeout: int = DEFAULT_REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """Ensure ``alias`` is gone, idempotently; with ``version``, only if it points there.

    A model that is not registered holds no alias: nothing changes.
    """
    validate_model_name(model_name)
    checked = validate_alias(alias)
    if checked is None:
        raise InvalidParameter("alias", "alias must not be empty")
    only = validate_version(version) if version is not None else None
    with _registry(tracking_uri, username, password, request_timeout) as registry:
        before = registry.alias_version(model_name, checked)
        changed = before is not None and (only is None or before == only)
        if changed and not check_mode:
            registry.delete_alias(model_name, checked)
    return {
        "changed": changed,
        "model_name": model_name,
        "alias": checked,
        "alias_before": before,
        "alias_after": None if changed else before,
        "check_mode": check_mode,
    }
