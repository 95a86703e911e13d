"""What the lab's predictors serve, seen from outside, and how long a promotion takes to
reach all of them (for the rollout suite and bench/scale_predictors.py)."""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from tests.support.lab_http import MLFLOW, get_json

MODEL_INFO = re.compile(r'(?m)^predictor_model_info\{[^}]*version="([^"]*)"')
# train.yml options for a candidate beside the stack's default model: 50 trees of
# depth 3 pass the gate (accuracy 0.967 on the Iris test split), and a new
# fingerprint means a new version
CANDIDATE_PARAMS = ("-e", "train_n_estimators=50", "-e", "train_max_depth=3")


def champion(model: str = "iris", alias: str = "champion") -> str | None:
    """The version the alias points at (as the reader), None when the registry does not say."""
    url = f"{MLFLOW}/api/2.0/mlflow/registered-models/alias?name={model}&alias={alias}"
    try:
        return str(get_json(url, timeout=5, account="reader")["model_version"]["version"])
    except (OSError, ValueError, KeyError):
        return None


def model_versions(model: str = "iris") -> list[dict[str, Any]]:
    """The registry's versions of the model (as the reader), oldest first."""
    query = urllib.parse.quote(f"name='{model}'")
    url = f"{MLFLOW}/api/2.0/mlflow/model-versions/search?filter={query}&max_results=200"
    versions = get_json(url, account="reader").get("model_versions", [])
    return sorted(versions, key=lambda v: int(v["version"]))


def metrics_text(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        return resp.read().decode()


def served_versions(base: str) -> set[str] | None:
    """The versions the predictor's live workers serve (from predictor_model_info)."""
    try:
        text = metrics_text(base)
    except OSError:
        return None
    return set(MODEL_INFO.findall(text))


def fleet_serves(bases: Iterable[str], version: str) -> bool:
    return all(served_versions(base) == {version} for base in bases)


class FleetWatch(threading.Thread):
    """Times a promotion from outside: when the registry alias points at the
    target, and when every worker of every predictor serves it (0.25 s polls)."""

    def __init__(self, bases: Iterable[str], target: str) -> None:
        super().__init__(name="fleet-watch", daemon=True)
        self.bases = tuple(bases)
        self.target = target
        self.alias_moved: float | None = None
        self.fleet_serving: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set() and self.fleet_serving is None:
            now = time.monotonic()
            if self.alias_moved is None and champion() == self.target:
                self.alias_moved = now
            if self.alias_moved is not None and fleet_serves(self.bases, self.target):
                self.fleet_serving = time.monotonic()
            self._halt.wait(0.25)

    def stop(self) -> float | None:
        """Seconds from the alias move to the whole fleet serving the target."""
        self._halt.set()
        self.join(10)
        if self.alias_moved is None or self.fleet_serving is None:
            return None
        return round(self.fleet_serving - self.alias_moved, 2)
