"""Every package a role pins is the version of requirements-nodes.txt (the
lab's wheelhouse), and every optional package the roles install is pinned."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "collections" / "ansible_collections" / "mlops" / "stack" / "roles"
PIN = re.compile(r"'([A-Za-z0-9_.\-]+(?:\[[a-z,]+\])?)==([^']+)'")


def wheelhouse_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-nodes.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_the_mlflow_servers_optional_packages_are_pinned_as_in_the_wheelhouse() -> None:
    text = (ROLES / "mlflow_server" / "vars" / "main.yml").read_text()
    block = text[text.index("__mlflow_server_packages:") :].split("\n__", 1)[0]
    quoted = re.findall(r"'([A-Za-z][^']*)'", block)
    unpinned = [q for q in quoted if "==" not in q and not q.startswith("mlflow[auth]")]
    assert not unpinned, f"installed without a version: {unpinned}"
    pins = wheelhouse_pins()
    for name, version in PIN.findall(block):
        assert pins.get(name.lower()) == version, f"{name}=={version} vs requirements-nodes.txt"


def test_the_venv_installer_is_the_wheelhouses_uv() -> None:
    defaults = (ROLES / "python_service" / "defaults" / "main.yml").read_text()
    spec = (ROLES / "python_service" / "meta" / "argument_specs.yml").read_text()
    pinned = re.search(r"^python_service_uv_package: uv==(\S+)$", defaults, re.M)
    assert pinned, "python_service_uv_package is not a uv==VERSION pin"
    assert wheelhouse_pins().get("uv") == pinned.group(1)
    assert f"default: uv=={pinned.group(1)}" in spec
