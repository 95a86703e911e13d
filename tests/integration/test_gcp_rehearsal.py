"""The GCP path, rehearsed on the lab: the real google.cloud.gcp_compute plugin
reads inventories/gcp/gcp.yml (only its project and zone filled in, as the
workflows do) with instance data as the Compute API returns it, served from
the plugin's own inventory cache, describing the lab nodes with their `role`
labels. SSH goes through inventories/gcp's own connection settings: the IAP
tunnel by instance name (a stand-in for `gcloud compute start-iap-tunnel`
that connects to the named node), host keys under the instance name, the
deployer's user and key from the environment. Every variable of
inventories/gcp/group_vars is in force but the listed differences
(docs/environments.md), and the secrets come from a Vault-style file, as on
GCP. site.yml must converge the lab this way with nothing to change, and a
rolling restart must drain each predictor through a task delegated to the gateway."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import NODES, ROOT, Stack, parse_recap

pytestmark = pytest.mark.nodes

PROJECT = "rehearsal-project"
ZONE = "europe-west1-b"
PLUGIN = "google.cloud.gcp_compute"
# The lab's values of the listed differences (docs/environments.md) that are
# not connection settings: the wheelhouse, the Grafana package source, where
# MLflow keeps its data. The connection settings stay inventories/gcp's own.
LAB_VALUES = {
    "mlops_pip_find_links": "/opt/mlops-wheelhouse",
    "mlops_pip_no_index": True,
    "grafana_required": False,
    "mlflow_server_artifacts_destination": "/var/lib/mlflow/artifacts",
    "mlflow_server_backup_upload_to": "",
    "mlflow_server_data_device": "",
    # where the lab publishes the gateway: the CA names its revocation list there
    "gateway_public_url": "https://127.0.0.1:8443",
}


def lab_inventory() -> dict:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def role_of(node: str, listing: dict) -> str:
    roles = [
        g
        for g in ("mlflow", "predictors", "monitoring", "gateway")
        if node in listing.get(g, {}).get("hosts", [])
    ]
    assert len(roles) == 1, f"{node} must hold exactly one role label, as on GCP: {roles}"
    return roles[0]


def instance(node: str, role: str) -> dict:
    """One instance as the aggregated-list API returns it, in the form the
    plugin keeps in its cache (it shortens `zone` and adds `project` and
    `image` before it stores a listing, and reads the cache back as is)."""
    base = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}"
    return {
        "kind": "compute#instance",
        "name": node,
        "selfLink": f"{base}/instances/{node}",
        "zone": ZONE,
        "zone_selflink": base,
        "project": PROJECT,
        "image": None,
        "status": "RUNNING",
        "labels": {"stack": "mlops", "role": role},
        # private only, as terraform makes every instance but the gateway;
        # the node's name resolves to it on the lab network
        "networkInterfaces": [{"networkIP": node, "name": "nic0"}],
    }


@pytest.fixture(scope="module")
def rehearsal(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("gcp-rehearsal")
    inventory = work / "inventory"
    shutil.copytree(ROOT / "inventories" / "gcp", inventory)
    config = yaml.safe_load((inventory / "gcp.yml").read_text())
    config |= {
        "projects": [PROJECT],
        "zones": [ZONE],
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(work / "cache"),
        "cache_timeout": 86400,
    }
    config_path = inventory / "gcp.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    listing = lab_inventory()
    hostvars = listing["_meta"]["hostvars"]
    instances = [instance(node, role_of(node, listing)) for node in NODES]
    key = f"{PLUGIN}_k" + hashlib.sha256(f"{PLUGIN}{config_path}".encode()).hexdigest()[:6]
    (work / "cache").mkdir()
    (work / "instances.json").write_text(json.dumps({PROJECT: {ZONE: instances}}))
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/support/inventory_cache.py"),
            str(work / "cache"),
            key,
            str(work / "instances.json"),
        ],
        cwd=ROOT,
        check=True,
        timeout=120,
    )

    table = {
        node: {"port": hostvars[node]["local_nodes_ssh_port"], "zone": ZONE, "project": PROJECT}
        for node in NODES
    }
    (work / "iap.json").write_text(json.dumps(table))
    bin_dir = work / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(
        f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests/support/iap_tunnel.py"} "$@"\n'
    )
    gcloud.chmod(0o755)

    credentials = ROOT / "credentials"
    vault = {
        f"vault_{name}": (credentials / name).read_text().strip()
        for name in (
            "mlflow_admin_password",
            "mlflow_secret_key",
            "mlflow_writer_password",
            "mlflow_reader_password",
            "grafana_admin_password",
            "grafana_secret_key",
        )
    }
    vault["vault_mlflow_backend_store_uri"] = "sqlite:////var/lib/mlflow/mlflow.db"
    # the gateway's certificate and keys as a user brings them: the lab's own
    gateway_key = (credentials / "gateway-client-key").read_text().strip()
    client = {"name": "default", "key": gateway_key, "rate_limit": 20000}
    vault["vault_gateway_client_keys"] = [client]
    # Empty: the project CA's certificate that the lab already serves, so that
    # "nothing to change" holds (a PEM given here would be the same certificate,
    # but the gateway then no longer serves the CA's revocation list)
    vault["vault_gateway_tls_certificate"] = ""
    vault["vault_gateway_tls_private_key"] = ""
    # and Grafana's: the project CA's certificate the lab already holds
    vault["vault_grafana_tls_certificate"] = ""
    vault["vault_grafana_tls_private_key"] = ""
    # and MLflow's: the project CA's certificate the lab's front already serves
    vault["vault_mlflow_tls_certificate"] = ""
    vault["vault_mlflow_tls_private_key"] = ""
    (work / "vault.yml").write_text(yaml.safe_dump(vault))
    (work / "lab_values.yml").write_text(yaml.safe_dump(LAB_VALUES))

    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        IAP_STANDIN_TABLE=str(work / "iap.json"),
        IAP_STANDIN_LOG=str(work / "iap.log"),
        GCP_SSH_VIA_IAP="true",
        GCP_SSH_USER="ansible",
        GCP_SSH_PRIVATE_KEY_FILE=str(ROOT / ".work" / "ssh" / "id_ed25519"),
        GCP_ARTIFACT_BUCKET="rehearsal-bucket",
        GCP_BACKUP_BUCKET="rehearsal-backups",
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        # fresh master connections and known hosts: nothing learnt over the
        # lab's own connections may help
        ANSIBLE_SSH_ARGS=(
            f"-C -o ControlMaster=auto -o ControlPersist=300s"
            f" -o ControlPath={work}/cp-%C -o UserKnownHostsFile={work}/known_hosts"
        ),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        NO_GCE_CHECK="true",
        CLOUDSDK_CONFIG=str(work / "gcloud-config"),
    )
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        env.pop(name, None)
    return {"work": work, "inventory": inventory, "env": env, "listing": listing}


def test_the_plugin_makes_exactly_the_groups_the_playbooks_use(rehearsal: dict) -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-inventory")),
            "-i",
            str(rehearsal["inventory"]),
            "--list",
        ],
        cwd=ROOT,
        env=rehearsal["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    groups = {
        name: set(body.get("hosts", []))
        for name, body in data.items()
        if name not in {"_meta", "all", "ungrouped"} and body.get("hosts")
    }
    lab = rehearsal["listing"]
    assert groups == {
        g: set(lab[g]["hosts"]) for g in ("mlflow", "predictors", "monitoring", "gateway")
    }
    hostvars = data["_meta"]["hostvars"]

    def plain(value: object) -> object:
        # --list marks values that came from outside as {"__ansible_unsafe": ...}
        return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value

    assert {h: plain(v["gcp_zone"]) for h, v in hostvars.items()} == dict.fromkeys(NODES, ZONE)
    assert {h: plain(v["mlops_node_address"]) for h, v in hostvars.items()} == {n: n for n in NODES}


def rehearse(rehearsal: dict, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook through the GCP inventory, its connection settings and the Vault file."""
    work = rehearsal["work"]
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            playbook,
            "-i",
            str(rehearsal["inventory"]),
            "-e",
            f"@{work / 'vault.yml'}",
            "-e",
            f"@{work / 'lab_values.yml'}",
            *args,
        ],
        cwd=ROOT,
        env=rehearsal["env"],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_site_converges_the_lab_through_the_gcp_inventory(rehearsal: dict) -> None:
    work = rehearsal["work"]
    proc = rehearse(rehearsal, "site.yml")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    recap = parse_recap(proc.stdout)
    # the nodes, and the controller that builds the model wheel
    assert set(recap.changed) == {*NODES, "localhost"}, output[-3000:]
    # the lab already holds the production settings: nothing to change
    changed = {h: n for h, n in recap.changed.items() if n}
    assert changed == {}, output[-8000:]

    # every node was reached through its own tunnel...
    tunnels = {line.split()[0] for line in (work / "iap.log").read_text().splitlines()}
    assert tunnels == set(NODES)
    # ...and a rolling restart drains each predictor on the gateway, from the gateway
    proc = rehearse(rehearsal, "playbooks/predictor.yml", "-e", "predictor_rolling_restart=true")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    gateway = rehearsal["listing"]["gateway"]["hosts"][0]
    for predictor in rehearsal["listing"]["predictors"]["hosts"]:
        assert re.search(
            rf"TASK \[mlops\.stack\.gateway : Set the server's state on each gateway \(drain\)\]"
            rf"[^\n]*\n(ok|changed): \[{predictor} -> {gateway}",
            proc.stdout,
        ), f"{predictor} was not drained on {gateway}"
    # one host key learnt per instance (recorded under its name, HostKeyAlias)
    known = (work / "known_hosts").read_text().splitlines()
    assert len(known) == len(NODES), known
