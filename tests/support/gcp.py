"""What the google.cloud.gcp_compute plugin builds from inventories/gcp/gcp.yml,
without Google: host data shaped like the plugin's, run through gcp.yml's own
`groups` and `compose` by Ansible's constructed plugin, beside a copy of the
real inventories/gcp/group_vars. Shared by the inventory and workflow tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "gcp"
CONFIG = INVENTORY / "gcp.yml"
GROUP_VARS = INVENTORY / "group_vars"

# Anything that could hand the plugin real credentials, or make google-auth
# probe a metadata server, is removed from the environment.
CREDENTIAL_ENV = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
    "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
    "GCP_AUTH_KIND",
    "GCP_SERVICE_ACCOUNT_FILE",
    "GCP_SERVICE_ACCOUNT_CONTENTS",
    "GCE_CREDENTIALS_FILE_PATH",
    "GCP_ACCESS_TOKEN",
)


def ansible_tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    path = str(beside) if beside.exists() else shutil.which(name)
    assert path, f"{name} missing: pip install -r requirements.txt"
    return path


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    env.update(
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        # no gcloud configuration (and so no application default credentials)
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        # never probe the GCE metadata server: this machine is not on GCP
        NO_GCE_CHECK="true",
        ANSIBLE_NOCOLOR="1",
    )
    if (ROOT / "ansible.cfg").exists():
        env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.update(extra)
    return env


def instance(role: str | None, private: str, public: str | None = None) -> dict[str, object]:
    """Host variables as the gcp_compute plugin hands them to compose/groups
    (zone and project shortened, as the plugin does)."""
    interface: dict[str, object] = {"networkIP": private}
    if public:
        interface["accessConfigs"] = [{"natIP": public, "type": "ONE_TO_ONE_NAT"}]
    data: dict[str, object] = {
        "networkInterfaces": [interface],
        "zone": "europe-west1-b",
        "project": "my-project-123",
        "status": "RUNNING",
    }
    if role is not None:
        data["labels"] = {"role": role, "stack": "mlops"}
    return data


# terraform's defaults: only the gateway has a public IP (public_ip_roles).
HOSTS = {
    "mlops-mlflow-1": instance("mlflow", "10.20.0.2"),
    "mlops-predictor-1": instance("predictors", "10.20.0.3"),
    "mlops-predictor-2": instance("predictors", "10.20.0.4"),
    "mlops-monitoring-1": instance("monitoring", "10.20.0.5"),
    "mlops-gateway-1": instance("gateway", "10.20.0.6", "203.0.113.5"),
    "someone-else": instance("bastion", "10.20.0.9", "203.0.113.9"),
    "unlabelled": instance(None, "10.20.0.10"),
}


def constructed_inventory(tmp_path: Path) -> Path:
    """gcp.yml's own groups/compose, run by the constructed plugin over HOSTS,
    with gcp.yml's group_vars beside it."""
    cfg = yaml.safe_load(CONFIG.read_text())
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "01-hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": HOSTS}}))
    constructed = {
        "plugin": "ansible.builtin.constructed",
        "strict": True,
        "groups": cfg["groups"],
        "compose": cfg["compose"],
    }
    (inv / "02-gcp.constructed.yml").write_text(yaml.safe_dump(constructed))
    shutil.copytree(GROUP_VARS, inv / "group_vars")
    # what the plugin adds with vars_prefix gcp_
    host_vars = inv / "host_vars"
    host_vars.mkdir()
    for name, data in HOSTS.items():
        # (`name` only prefixed: unprefixed it is a reserved variable name)
        prefixed = {"gcp_" + key: value for key, value in {**data, "name": name}.items()}
        (host_vars / f"{name}.yml").write_text(yaml.safe_dump(prefixed))
    return inv
