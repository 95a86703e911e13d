"""The GCP dynamic inventory, without GCP.

1. The real google.cloud.gcp_compute plugin loads inventories/gcp and fails
   only because there are no credentials (its own message), never for a
   configuration error.
2. Its `groups` and `compose` expressions, run by Ansible's constructed plugin
   over host data shaped like the plugin's output, make exactly the role groups
   and the right connection addresses.
3. The group_vars template the SSH settings (IAP tunnel by instance name) and
   switch MLflow to the GCS bucket.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.gcp import (
    CONFIG,
    GROUP_VARS,
    HOSTS,
    ROOT,
    ansible_tool,
    clean_env,
    constructed_inventory,
)

ROLE_GROUPS = {"mlflow", "predictors", "monitoring", "gateway"}

# ---------------------------------------------------------------- the real plugin


@pytest.mark.parametrize("source", ["inventories/gcp/gcp.yml", "inventories/gcp"])
def test_plugin_fails_only_for_missing_credentials(tmp_path: Path, source: str) -> None:
    result = subprocess.run(
        [ansible_tool("ansible-inventory"), "-i", source, "--graph", "-vvv"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=clean_env(tmp_path),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"parsed without credentials?\n{output[-3000:]}"
    # the file was recognised and handed to the GCP plugin...
    assert "google.cloud.plugins.inventory.gcp_compute" in output, output[-3000:]
    # ...which got as far as asking for credentials: the configuration is valid
    reasons = re.findall(r"Failed to parse inventory with 'auto' plugin: (.*)", output)
    assert reasons, output[-3000:]
    assert all(re.search(r"default credentials were not found", r, re.I) for r in reasons), reasons


def test_config_is_keyless_and_makes_only_role_groups() -> None:
    assert CONFIG.name.endswith(("gcp.yml", "gcp_compute.yml"))
    cfg = yaml.safe_load(CONFIG.read_text())
    assert cfg["plugin"] == "google.cloud.gcp_compute"
    assert cfg["auth_kind"] == "application"
    assert not {"service_account_file", "service_account_contents", "access_token"} & set(cfg)
    assert set(cfg["groups"]) == ROLE_GROUPS
    assert "keyed_groups" not in cfg
    assert cfg["hostnames"] == ["name"], "IAP tunnels and stable names need instance names"
    assert cfg["projects"]
    assert cfg["zones"]


# ---------------------------------------------------------------- groups and compose


def inventory_list(tmp_path: Path, inv: Path, **env: str) -> dict[str, object]:
    result = subprocess.run(
        [ansible_tool("ansible-inventory"), "-i", str(inv), "--list"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=clean_env(tmp_path, **env),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_groups_are_exactly_the_role_labels(tmp_path: Path) -> None:
    listing = inventory_list(tmp_path, constructed_inventory(tmp_path))
    groups = {
        name: set(body.get("hosts", []))
        for name, body in listing.items()
        if name not in {"_meta", "all", "ungrouped"}
    }
    assert groups == {
        "mlflow": {"mlops-mlflow-1"},
        "predictors": {"mlops-predictor-1", "mlops-predictor-2"},
        "monitoring": {"mlops-monitoring-1"},
        "gateway": {"mlops-gateway-1"},
    }


def test_ansible_host_is_public_when_there_is_one_else_private(tmp_path: Path) -> None:
    inv = constructed_inventory(tmp_path)
    hostvars = inventory_list(tmp_path, inv)["_meta"]["hostvars"]
    assert hostvars["mlops-mlflow-1"]["ansible_host"] == "10.20.0.2"
    assert hostvars["mlops-predictor-1"]["ansible_host"] == "10.20.0.3"
    assert hostvars["mlops-gateway-1"]["ansible_host"] == "203.0.113.5"
    assert hostvars["mlops-gateway-1"]["gcp_public_ip"] == "203.0.113.5"
    for name, data in HOSTS.items():
        private = data["networkInterfaces"][0]["networkIP"]
        assert hostvars[name]["mlops_node_address"] == private, "nodes talk on private IPs"
        assert hostvars[name]["gcp_private_ip"] == private

    forced = inventory_list(tmp_path, inv, GCP_INVENTORY_PRIVATE_IP="true")["_meta"]["hostvars"]
    assert forced["mlops-gateway-1"]["ansible_host"] == "10.20.0.6"


def test_gateway_backends_are_the_predictors_private_addresses(tmp_path: Path) -> None:
    """The gateway role builds its backends from group predictors and each host's
    mlops_node_address: on GCP these are the predictors' private IPs."""
    inv = constructed_inventory(tmp_path)
    backends = host_var(
        tmp_path,
        inv,
        "mlops-gateway-1",
        "groups['predictors'] | map('extract', hostvars, 'mlops_node_address') | sort",
    )
    assert backends == ["10.20.0.3", "10.20.0.4"]


def host_var(tmp_path: Path, inv: Path, host: str, expression: str, *extra: str, **env: str) -> str:
    """Template one expression for one host, the way a play would see it."""
    result = subprocess.run(
        [
            ansible_tool("ansible"),
            host,
            "-i",
            str(inv),
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={{{{ {expression} }}}}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=clean_env(
            tmp_path,
            ANSIBLE_LOAD_CALLBACK_PLUGINS="true",
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
            **env,
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    return report["plays"][0]["tasks"][0]["hosts"][host]["msg"]


def test_ssh_goes_through_iap_by_instance_name(tmp_path: Path) -> None:
    inv = constructed_inventory(tmp_path)
    direct = host_var(tmp_path, inv, "mlops-mlflow-1", "ansible_ssh_common_args")
    assert "ProxyCommand" not in direct
    assert "StrictHostKeyChecking=accept-new" in direct

    tunnel = host_var(
        tmp_path, inv, "mlops-mlflow-1", "ansible_ssh_common_args", GCP_SSH_VIA_IAP="true"
    )
    assert "gcloud compute start-iap-tunnel mlops-mlflow-1 %p" in tunnel
    assert "--zone=europe-west1-b" in tunnel
    assert "--project=my-project-123" in tunnel

    user = host_var(tmp_path, inv, "mlops-mlflow-1", "ansible_user", GCP_SSH_USER="sa_1234")
    assert user == "sa_1234"


def test_mlflow_uses_the_bucket_auth_and_grafana_is_required(tmp_path: Path) -> None:
    mlflow_vars = yaml.safe_load((GROUP_VARS / "mlflow.yml").read_text())
    assert mlflow_vars["mlflow_server_artifacts_destination"].startswith("gs://")
    # the production switches are the roles' defaults, shared with the lab
    # (tests/inventory/test_environments.py: no inventory overrides them on GCP)
    roles = ROOT / "collections/ansible_collections/mlops/stack/roles"
    defaults = {
        role: yaml.safe_load((roles / role / "defaults/main.yml").read_text())
        for role in ("mlflow_server", "grafana")
    }
    assert defaults["mlflow_server"]["mlflow_server_auth_enabled"] is True
    assert defaults["grafana"]["grafana_required"] is True

    inv = constructed_inventory(tmp_path)
    destination = host_var(
        tmp_path,
        inv,
        "mlops-mlflow-1",
        "mlflow_server_artifacts_destination",
        GCP_ARTIFACT_BUCKET="my-project-123-mlops-mlflow-artifacts",
    )
    assert destination == "gs://my-project-123-mlops-mlflow-artifacts/mlflow-artifacts"


def test_backups_are_copied_to_the_backup_bucket_under_the_host_name(tmp_path: Path) -> None:
    inv = constructed_inventory(tmp_path)
    upload_to = host_var(
        tmp_path,
        inv,
        "mlops-mlflow-1",
        "mlflow_server_backup_upload_to",
        GCP_BACKUP_BUCKET="my-project-123-mlops-mlflow-backups",
    )
    assert upload_to == "gs://my-project-123-mlops-mlflow-backups/mlops-mlflow-1"


def test_backend_store_comes_from_vault_on_every_controller(tmp_path: Path) -> None:
    """The URI is the Vault file's, whatever one controller's environment says:
    a workstation and a CI runner converge the same backend."""
    inv = constructed_inventory(tmp_path)
    uri = "mlflow_server_backend_store_uri"
    postgres = "postgresql://mlflow:pw@10.20.0.50:5432/mlflow"  # pragma: allowlist secret
    vault = ("-e", f"vault_mlflow_backend_store_uri={postgres}")
    assert host_var(tmp_path, inv, "mlops-mlflow-1", uri, *vault) == postgres
    elsewhere = "sqlite:////tmp/elsewhere.db"
    assert (
        host_var(tmp_path, inv, "mlops-mlflow-1", uri, *vault, MLFLOW_BACKEND_STORE_URI=elsewhere)
        == postgres
    )
