"""The promotion gate: pure policy on metrics, and the tags that record its outcome.

Every registered version carries ``mlops.gate`` (:data:`GATE_PASSED` or
:data:`GATE_FAILED`: the absolute part, :func:`gate_passed`) and the threshold it was
judged by; moving an alias also compares with the version holding it
(:func:`decide_promotion`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GATE_TAG = "mlops.gate"
GATE_PASSED = "passed"
GATE_FAILED = "failed"
GATE_MIN_ACCURACY_TAG = "mlops.gate.min_accuracy"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide_promotion(
    candidate_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    min_accuracy: float,
    force: bool = False,
) -> Decision:
    """The quality gate, a pure function.

    Promote only when the candidate's accuracy reaches ``min_accuracy`` and either
    nobody holds the alias, the candidate is at least as accurate as the holder,
    or ``force`` is set. ``force`` never bypasses ``min_accuracy``.
    """
    accuracy = candidate_metrics.get("accuracy")
    if accuracy is None:
        return Decision(False, "candidate has no accuracy metric")
    if accuracy < min_accuracy:
        return Decision(False, f"accuracy {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}")
    if champion_metrics is None:
        return Decision(
            True, f"accuracy {accuracy:.4f} >= min_accuracy {min_accuracy:.4f}; no current holder"
        )
    champion = champion_metrics.get("accuracy")
    if champion is None:
        return Decision(
            True,
            f"accuracy {accuracy:.4f} >= min_accuracy {min_accuracy:.4f}; "
            "the current holder has no accuracy metric",
        )
    if accuracy >= champion:
        return Decision(
            True, f"accuracy {accuracy:.4f} >= current holder's accuracy {champion:.4f}"
        )
    if force:
        return Decision(
            True,
            f"forced: accuracy {accuracy:.4f} < current holder's accuracy {champion:.4f}",
        )
    return Decision(
        False,
        f"accuracy {accuracy:.4f} < current holder's accuracy {champion:.4f} "
        "(force overrides this)",
    )


def gate_passed(metrics: Mapping[str, float], min_accuracy: float) -> bool:
    """The absolute part of the gate, recorded on every version as ``mlops.gate``."""
    accuracy = metrics.get("accuracy")
    return accuracy is not None and accuracy >= min_accuracy


def gate_label(passed: bool) -> str:
    """The value of the ``mlops.gate`` tag for a gate outcome."""
    return GATE_PASSED if passed else GATE_FAILED
