"""Static tests of terraform/: formatting, checkov, variable validation, and the
contract between the instance labels, the GCP inventory groups and the playbooks.

Nothing here reaches the provider registry or GCP: `terraform plan` runs on a
copy of variables.tf alone (no provider, no backend, no state), which is enough
to evaluate the real validation rules.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
GCP_INVENTORY = ROOT / "inventories" / "gcp" / "gcp.yml"
GCP_GROUP_VARS = ROOT / "inventories" / "gcp" / "group_vars"
PLAYBOOKS = ROOT / "playbooks"
ROLES = ROOT / "collections" / "ansible_collections" / "mlops" / "stack" / "roles"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

ROLE_GROUPS = {"mlflow", "predictors", "monitoring", "gateway"}
# Which playbook converges which group (DESIGN.md, data flow).
PLAYBOOK_GROUP = {
    "mlflow.yml": "mlflow",
    "predictor.yml": "predictors",
    "monitoring.yml": "monitoring",
    "gateway.yml": "gateway",
    "backup.yml": "mlflow",
    "restore.yml": "mlflow",
}
ADMIN_PORTS = {"22", "5000", "9090", "3000"}
# The gateway's HAProxy over HTTPS: the only port clients reach, on the only
# public role. Its old plain-HTTP port is bound nowhere and opened to no one.
CLIENT_PORT = "443"
PLAIN_HTTP_CLIENT_PORT = "8080"
PREDICTOR_PORT = "5001"
OPEN_WORLD = {"0.0.0.0/0", "::/0"}

HCL_OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=False)


def terraform_bin() -> str:
    path = shutil.which("terraform")
    if path is None:
        pytest.skip(
            "terraform binary not found on PATH: fmt and validation tests need Terraform >= 1.5"
        )
    return path


def load_hcl(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f, serialization_options=HCL_OPTIONS)


def blocks(kind: str) -> list[dict[str, Any]]:
    """All top-level blocks of one kind (resource, variable, ...) across terraform/*.tf."""
    out: list[dict[str, Any]] = []
    for tf in sorted(TF.glob("*.tf")):
        out.extend(load_hcl(tf).get(kind, []))
    return out


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in blocks("resource"):
        for t, named in block.items():
            if t == rtype:
                found.update(named)
    return found


def tcp_port_allowed(allow: dict[str, Any], port: str) -> bool:
    """Whether one firewall `allow` block lets TCP `port` in: by its number, inside
    a range ("8000-8100"), or with no ports at all (every port of the protocol)."""
    if allow["protocol"] not in {"tcp", "all"}:
        return False
    if "ports" not in allow:
        return True
    for entry in allow["ports"]:
        low, _, high = str(entry).partition("-")
        if int(low) <= int(port) <= int(high or low):
            return True
    return False


def instance_role_labels() -> dict[str, str]:
    """Role label of every instance; a for_each instance takes its roles from local.nodes."""
    instances = resources("google_compute_instance")
    assert instances, "no google_compute_instance in terraform/"
    labels: dict[str, str] = {}
    for name, body in instances.items():
        role = body["labels"]["role"]
        if role == "${each.value.role}":
            assert body["for_each"] == "${local.nodes}", name
            main = (TF / "main.tf").read_text()
            block = main[main.index("nodes = merge(") :]
            block = block[: block.index("\n  )")]
            for i, node_role in enumerate(re.findall(r'role = "([a-z_]+)"', block)):
                labels[f"{name}[{i}]"] = node_role
        else:
            labels[name] = role
    return labels


def local_values() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in blocks("locals"):
        found.update(block)
    return found


def variables() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in blocks("variable"):
        found.update(block)
    return found


def inventory_groups() -> dict[str, str]:
    """Group name -> the `role` label value its condition selects, from gcp.yml."""
    cfg = yaml.safe_load(GCP_INVENTORY.read_text())
    groups = {}
    for name, condition in (cfg.get("groups") or {}).items():
        match = re.search(r"labels\.role\b.*==\s*['\"]([^'\"]+)['\"]", condition)
        assert match, f"inventory group {name} is not selected by the role label: {condition!r}"
        groups[name] = match.group(1)
    return groups


def playbook_targets(tmp_path: Path) -> dict[str, set[str]]:
    """Playbook file name -> the groups its plays reach, as ansible-playbook --list-hosts
    resolves them on an inventory with one host per role group: imported plays and
    templated patterns included. A pattern that matches no group fails."""
    inventory = tmp_path / "groups.yml"
    inventory.write_text(
        yaml.safe_dump(
            {"all": {"children": {g: {"hosts": {f"{g}--host": {}}} for g in ROLE_GROUPS}}}
        )
    )
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_NOCOLOR="1")
    targets: dict[str, set[str]] = {}
    for path in sorted(PLAYBOOKS.glob("*.yml")):
        proc = subprocess.run(
            [ANSIBLE_PLAYBOOK, "--list-hosts", "-i", str(inventory), str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        unmatched = re.findall(
            r"Could not match supplied host pattern, ignoring: (\S+)", proc.stderr
        )
        assert not unmatched, f"playbooks/{path.name} targets unknown groups: {unmatched}"
        hosts = re.findall(r"^ {6}(\S+)$", proc.stdout, re.M)
        targets[path.name] = {
            h.removesuffix("--host") for h in hosts if h.endswith("--host") or h == "localhost"
        }
    return targets


# ---------------------------------------------------------------- tools


def test_terraform_fmt() -> None:
    terraform = terraform_bin()
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform fmt wants changes:\n{result.stdout}{result.stderr}"


def test_examples_are_formatted(tmp_path: Path) -> None:
    """fmt ignores *.example: check them under a name it reads."""
    terraform = terraform_bin()
    for example in ("terraform.tfvars.example", "backend.hcl.example"):
        shutil.copy(TF / example, tmp_path / (example.split(".")[0] + ".tfvars"))
    result = subprocess.run(
        [terraform, "fmt", "-check", "-diff", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"an example file is not terraform-formatted:\n{result.stdout}"


def test_checkov_reports_no_failed_check() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "checkov.sh"), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"checkov failed (rc {result.returncode}):\n{output}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = {
        k: sum(r["summary"][k] for r in reports)
        for k in ("passed", "failed", "skipped", "parsing_errors")
    }
    failed = [
        c["check_id"] + " " + c["resource"]
        for r in reports
        for c in r["results"].get("failed_checks", [])
    ]
    assert summary["failed"] == 0, f"checkov failed checks: {failed}"
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary


def test_every_checkov_skip_is_justified() -> None:
    skips = []
    for tf in TF.glob("*.tf"):
        for line in tf.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(.+)$", line)
                assert match, f"{tf.name}: malformed skip {line.strip()!r}"
                assert len(match.group(2).split()) >= 5, (
                    f"{tf.name}: skip without a real reason: {line.strip()!r}"
                )
                skips.append(match.group(1))
    # CKV_GCP_2 is the 0.0.0.0/0 SSH check: it must never be silenced.
    assert "CKV_GCP_2" not in skips


# ---------------------------------------------------------------- labels, groups, playbooks


def test_role_labels_are_the_inventory_groups() -> None:
    labels = instance_role_labels()
    assert set(labels.values()) == ROLE_GROUPS
    groups = inventory_groups()
    assert set(groups) == ROLE_GROUPS, "the GCP inventory must make exactly the role groups"
    assert all(group == label for group, label in groups.items()), (
        f"group name != role label: {groups}"
    )
    assert set(groups.values()) == set(labels.values())
    assert "keyed_groups" not in yaml.safe_load(GCP_INVENTORY.read_text()), (
        "keyed_groups would add groups"
    )


def test_inventory_filters_on_the_stack_label() -> None:
    cfg = yaml.safe_load(GCP_INVENTORY.read_text())
    prefix_default = variables()["name_prefix"]["default"]
    assert f"labels.stack = {prefix_default}" in cfg["filters"]
    for body in resources("google_compute_instance").values():
        assert body["labels"]["stack"] == "${var.name_prefix}"


def test_playbooks_target_the_role_groups(tmp_path: Path) -> None:
    targets = playbook_targets(tmp_path)
    groups = set(inventory_groups())
    for playbook, group in PLAYBOOK_GROUP.items():
        if playbook in targets:
            assert group in targets[playbook], (
                f"playbooks/{playbook} must target {group}: {targets[playbook]}"
            )
    targeted = set().union(*targets.values()) if targets else set()
    unknown = targeted - groups - {"all", "localhost", "ungrouped"}
    assert not unknown, f"playbooks target groups the GCP inventory never makes: {unknown}"
    if "mlflow.yml" in targets:
        untargeted = groups - targeted
        assert not untargeted, f"inventory groups no playbook converges: {untargeted}"


# ---------------------------------------------------------------- firewall, instances


def test_no_admin_port_is_open_to_the_world() -> None:
    variables_ = variables()
    for name, rule in resources("google_compute_firewall").items():
        ports: set[str] = set()
        all_ports = False
        for allow in rule.get("allow", []):
            if "ports" in allow:
                ports.update(allow["ports"])
            else:
                all_ports = True
        if not (all_ports or ports & ADMIN_PORTS):
            continue
        sources = rule.get("source_ranges")
        if sources is None:
            # Without source_ranges, GCP takes 0.0.0.0/0 unless the rule names
            # source instances (tags or service accounts): only those then.
            assert rule.get("source_tags") or rule.get("source_service_accounts"), (
                f"{name}: no source at all means the whole internet"
            )
            continue
        if isinstance(sources, str):
            match = re.fullmatch(r"\$\{var\.(\w+)\}", sources)
            assert match, f"{name}: source_ranges must be a list or one variable: {sources!r}"
            var = variables_[match.group(1)]
            assert not OPEN_WORLD & set(var.get("default") or []), (
                f"{name}: {match.group(1)} defaults to the world"
            )
            conditions = " ".join(v["condition"] for v in var.get("validation", []))
            assert "0.0.0.0/0" in conditions, (
                f"{name}: {match.group(1)} must reject 0.0.0.0/0 by validation"
            )
        else:
            assert not OPEN_WORLD & set(sources), (
                f"{name} opens {ports or 'all ports'} to the world"
            )


def test_instances_are_hardened_and_install_nothing() -> None:
    for name, body in resources("google_compute_instance").items():
        shielded = body["shielded_instance_config"][0]
        assert shielded["enable_secure_boot"] is True, name
        assert shielded["enable_vtpm"] is True, name
        assert shielded["enable_integrity_monitoring"] is True, name
        metadata = body["metadata"]
        assert "enable-oslogin" in metadata, name
        assert metadata["block-project-ssh-keys"] == "TRUE", name
        assert metadata["serial-port-enable"] == "FALSE", name
        # software comes from Ansible, never from a startup script
        assert "startup-script" not in metadata, name
        assert "metadata_startup_script" not in body, name
        service_account = body["service_account"][0]["email"]
        assert "google_service_account." in service_account, (
            f"{name} must not use the default service account"
        )
        # a public IP only through var.public_ip_roles, never unconditionally
        interface = body["network_interface"][0]
        assert "access_config" not in interface, f"{name}: unconditional public IP"


def test_every_role_has_a_machine_type_and_may_be_public() -> None:
    """local.roles, the machine_types object and public_ip_roles' validation name the same roles."""
    assert set(local_values()["roles"]) == ROLE_GROUPS
    variables_ = variables()
    machine_types = re.findall(r"(\w+)\s*=\s*optional\(", variables_["machine_types"]["type"])
    assert set(machine_types) == ROLE_GROUPS, "machine_types needs one entry per role"
    conditions = " ".join(v["condition"] for v in variables_["machine_types"]["validation"])
    assert {r for r in ROLE_GROUPS if f"var.machine_types.{r}" in conditions} == ROLE_GROUPS
    allowed = " ".join(v["condition"] for v in variables_["public_ip_roles"]["validation"])
    assert {r for r in ROLE_GROUPS if f'"{r}"' in allowed} == ROLE_GROUPS


def test_the_gateway_is_the_only_public_entry_point() -> None:
    """By default only the gateway has a public IP, and clients reach only its HTTPS
    port 443: 8080 (the old plain-HTTP endpoint) is opened to no one."""
    assert variables()["public_ip_roles"]["default"] == ["gateway"], (
        "only the gateway gets a public IP by default; mlflow, monitoring and the "
        "predictors stay private (Cloud NAT for egress, IAP for Ansible)"
    )
    instance = resources("google_compute_instance")["node"]
    assert "${var.name_prefix}-${each.value.role}" in instance["tags"], (
        "each instance carries its role tag, which the client rule targets"
    )

    firewalls = resources("google_compute_firewall")
    client_rules = {
        name: rule
        for name, rule in firewalls.items()
        if "client_cidrs" in str(rule.get("source_ranges"))
    }
    assert set(client_rules) == {"client_endpoint"}, client_rules
    rule = client_rules["client_endpoint"]
    assert rule["source_ranges"] == "${var.client_cidrs}"
    assert rule["direction"] == "INGRESS"
    assert rule["target_tags"] == ["${var.name_prefix}-gateway"], (
        "clients reach the gateway, never the predictors directly"
    )
    assert [(a["protocol"], a.get("ports")) for a in rule["allow"]] == [("tcp", [CLIENT_PORT])]

    # Nothing listens for plain HTTP: no rule opens 8080, to any source (a
    # port range or a rule without ports would open it too).
    for name, rule in firewalls.items():
        for allow in rule.get("allow", []):
            assert not tcp_port_allowed(allow, PLAIN_HTTP_CLIENT_PORT), (
                f"{name} opens {PLAIN_HTTP_CLIENT_PORT}: the gateway serves clients on "
                f"{CLIENT_PORT} (HTTPS) only"
            )

    # Nothing outside the VPC reaches a predictor's own port: only rules whose
    # sources are instances (network tags) may open it.
    for name, rule in firewalls.items():
        if "source_ranges" not in rule:
            continue
        for allow in rule.get("allow", []):
            assert "ports" in allow, f"{name} opens every port from outside the subnet"
            assert PREDICTOR_PORT not in allow["ports"], f"{name} opens {PREDICTOR_PORT}"


def test_private_roles_get_cloud_nat() -> None:
    """Predictors, MLflow and monitoring have no public IP: Cloud NAT gives them egress."""
    nat = resources("google_compute_router_nat")["this"]
    assert nat["count"] == "${local.private_only_any ? 1 : 0}"
    locals_ = local_values()
    assert locals_["private_only_any"] == (
        "${length(setsubtract(local.roles, var.public_ip_roles)) > 0}"
    )
    private_by_default = set(locals_["roles"]) - set(variables()["public_ip_roles"]["default"])
    assert private_by_default == ROLE_GROUPS - {"gateway"}


def test_service_accounts_hold_no_project_role() -> None:
    assert not resources("google_project_iam_member"), (
        "no project-wide role for the instance service accounts"
    )
    assert not resources("google_project_iam_binding")
    bucket_grants = resources("google_storage_bucket_iam_member")
    assert all("google_service_account.mlflow" in g["member"] for g in bucket_grants.values())


def test_mlflow_gets_object_user_not_object_admin() -> None:
    """MLflow creates, reads, lists and deletes artifacts: objectUser. objectAdmin
    would also let it change who may access them (object ACLs and IAM policies)."""
    grant = resources("google_storage_bucket_iam_member")["mlflow_artifacts"]
    assert grant["role"] == "roles/storage.objectUser"
    assert "google_storage_bucket.artifacts" in grant["bucket"]


def test_artifact_bucket_is_private_and_versioned() -> None:
    bucket = resources("google_storage_bucket")["artifacts"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True


def test_backup_bucket_is_private_and_expires_its_archives() -> None:
    bucket = resources("google_storage_bucket")["backups"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    assert bucket["force_destroy"] == "${var.backup_bucket_force_destroy}"
    rules = [
        (
            {k: v for k, v in rule["condition"][0].items() if k != "__is_block__"},
            rule["action"][0]["type"],
        )
        for rule in bucket["lifecycle_rule"]
    ]
    # archives older than the retention go, and a replaced or deleted one a day later
    assert ({"age": "${var.backup_retention_days}"}, "Delete") in rules, rules
    assert ({"days_since_noncurrent_time": 1, "with_state": "ARCHIVED"}, "Delete") in rules, rules
    assert len(rules) == 2, rules


def test_only_mlflow_writes_backups_and_may_only_add_them() -> None:
    """objectCreator: create objects, nothing else. A compromised MLflow host
    can neither read the other archives nor overwrite or delete one."""
    grants = {
        name: grant
        for name, grant in resources("google_storage_bucket_iam_member").items()
        if "backup" in grant["bucket"]
    }
    assert list(grants) == ["mlflow_backups"], grants
    grant = grants["mlflow_backups"]
    assert grant["role"] == "roles/storage.objectCreator"
    assert grant["member"] == "serviceAccount:${google_service_account.mlflow.email}"
    assert not resources("google_storage_bucket_iam_binding")
    assert not resources("google_storage_bucket_iam_policy")


def test_backend_is_partial_gcs_and_nothing_secret_is_tracked() -> None:
    versions = load_hcl(TF / "versions.tf")["terraform"][0]
    assert versions["backend"] == [{"gcs": {"__is_block__": True}}], (
        "backend must be `gcs {}`, filled by backend.hcl"
    )
    assert "google" in versions["required_providers"][0]
    assert re.search(r"\d+\.\d+", versions["required_providers"][0]["google"]["version"])
    assert ">= 1.5" in versions["required_version"]
    for provider in blocks("provider"):
        for body in provider.values():
            assert "credentials" not in body, (
                "credentials come from ADC, never from the configuration"
            )
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not found: cannot check what git ignores")
    for path in (
        "terraform/terraform.tfstate",
        "terraform/x.tfstate.backup",
        "terraform/terraform.tfvars",
        "terraform/backend.hcl",
        "terraform/.terraform/providers",
        "terraform/plan.tfplan",
    ):
        ignored = subprocess.run([git, "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
    tracked = subprocess.run(
        [git, "ls-files", "terraform"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    bad = [
        f
        for f in tracked.stdout.split()
        if re.search(r"(\.tfstate|\.tfvars|backend\.hcl|\.json|\.pem|\.key)$", f)
    ]
    assert not bad, f"state, variables or keys tracked in git: {bad}"


# ---------------------------------------------------------------- internal traffic


def role_defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def tag_roles(tag: str) -> set[str]:
    """The roles whose instances carry a network tag (see the instance's `tags`)."""
    if tag == "${local.node_tag}":
        return set(ROLE_GROUPS)
    match = re.fullmatch(r"\$\{var\.name_prefix\}-(\w+)", tag)
    assert match, f"unknown network tag {tag!r}"
    assert match.group(1) in ROLE_GROUPS, f"unknown network tag {tag!r}"
    return {match.group(1)}


def test_internal_traffic_is_limited_to_the_stacks_ports() -> None:
    """Between instances, each port the stack uses is open only from the role
    that uses it; nothing else (no SSH, no all-ports rule for the subnet)."""
    mlflow = role_defaults("mlflow_server")
    predictor = role_defaults("predictor")
    node_exporter = role_defaults("node_exporter")
    gateway = role_defaults("gateway")
    prometheus = role_defaults("prometheus")
    node_exporter_port = str(node_exporter["node_exporter_web_listen_address"]).rsplit(":", 1)[1]
    # Prometheus scrapes the ports the roles listen on, the gateway forwards to the predictors'
    assert prometheus["prometheus_mlflow_port"] == mlflow["mlflow_server_metrics_port"]
    assert prometheus["prometheus_predictor_port"] == predictor["predictor_port"]
    assert str(prometheus["prometheus_node_exporter_port"]) == node_exporter_port
    assert prometheus["prometheus_gateway_port"] == gateway["gateway_stats_port"]
    assert gateway["gateway_backend_default_port"] == predictor["predictor_port"]

    expected = {
        ("predictors", "mlflow", str(mlflow["mlflow_server_port"])),
        ("monitoring", "mlflow", str(mlflow["mlflow_server_metrics_port"])),
        ("gateway", "predictors", str(predictor["predictor_port"])),
        ("monitoring", "predictors", str(predictor["predictor_port"])),
        ("monitoring", "gateway", str(gateway["gateway_stats_port"])),
        *(("monitoring", role, node_exporter_port) for role in ROLE_GROUPS),
    }

    allowed: set[tuple[str, str, str]] = set()
    for name, rule in resources("google_compute_firewall").items():
        assert rule.get("target_tags"), f"{name}: a rule without target_tags hits every instance"
        for allow in rule.get("allow", []):
            assert allow.get("ports"), f"{name} opens every {allow['protocol']} port"
        sources = rule.get("source_ranges")
        if sources is not None:
            assert sources != ["${var.subnet_cidr}"], (
                f"{name}: the whole subnet is a source; name the roles by network tag"
            )
            continue
        assert "source_service_accounts" not in rule, f"{name}: the rules use network tags"
        assert rule.get("source_tags"), f"{name}: no source means 0.0.0.0/0"
        for allow in rule["allow"]:
            assert allow["protocol"] == "tcp", f"{name}: only TCP between the nodes"
            for source in rule["source_tags"]:
                for target in rule["target_tags"]:
                    for src in tag_roles(source):
                        for dst in tag_roles(target):
                            allowed.update((src, dst, port) for port in allow["ports"])

    unused = sorted(allowed - expected)
    assert not unused, f"open between nodes but unused: {unused}"
    assert not expected - allowed, f"used but not open: {sorted(expected - allowed)}"
    assert not any(port == "22" for _, _, port in allowed), "SSH between nodes"


# ---------------------------------------------------------------- gateway address


def test_gateway_has_a_reserved_static_address() -> None:
    """predict_url stays valid when the gateway instance is re-created."""
    address = resources("google_compute_address")["gateway"]
    assert address["address_type"] == "EXTERNAL"
    assert address["count"] == '${contains(var.public_ip_roles, "gateway") ? 1 : 0}', (
        "the address exists exactly when the gateway has a public IP"
    )
    interface = resources("google_compute_instance")["node"]["network_interface"][0]
    access = interface["dynamic"][0]["access_config"]["content"][0]
    nat_ip = access.get("nat_ip", "")
    message = f"the gateway's access_config must use the reserved address: nat_ip = {nat_ip!r}"
    assert "google_compute_address.gateway" in nat_ip, message
    assert 'each.value.role == "gateway"' in nat_ip, message
    assert access["network_tier"] == address["network_tier"]
    predict_url = next(b["predict_url"] for b in blocks("output") if "predict_url" in b)["value"]
    assert "google_compute_address.gateway" in predict_url, predict_url
    assert "access_config" not in predict_url, "predict_url must not read the ephemeral NAT IP"


# ---------------------------------------------------------------- MLflow data disk


def mlflow_data_attachment() -> dict[str, Any]:
    instance = resources("google_compute_instance")["node"]
    attached = [d["attached_disk"] for d in instance.get("dynamic", []) if "attached_disk" in d]
    assert len(attached) == 1, "the MLflow instance needs its data disk as an attached_disk"
    return attached[0]


def test_mlflow_data_is_on_a_protected_persistent_disk() -> None:
    """The registry outlives the MLflow instance, and Terraform never deletes it."""
    disks = resources("google_compute_disk")
    assert set(disks) == {"mlflow_data"}, disks
    disk = disks["mlflow_data"]
    assert "count" not in disk, "the data disk is always made"
    assert "for_each" not in disk, "the data disk is always made"
    assert disk["lifecycle"][0].get("prevent_destroy") is True, "lifecycle.prevent_destroy"
    # google_compute_disk has no deletion_protection; deletion_policy is its guard
    assert "deletion_protection" not in disk
    assert disk["deletion_policy"] == "PREVENT"
    assert disk["zone"] == "${var.zone}", "the disk lives in the instances' zone"
    assert disk["size"] == "${var.mlflow_data_disk_size_gb}"
    size = variables()["mlflow_data_disk_size_gb"]
    assert size["type"] == "number"
    assert size["default"] >= 10
    assert size["validation"]

    attachment = mlflow_data_attachment()
    assert attachment["for_each"] == (
        '${each.value.role == "mlflow" ? [google_compute_disk.mlflow_data.self_link] : []}'
    ), "attached to the MLflow instance, and only to it"
    content = attachment["content"][0]
    assert content["source"] == "${attached_disk.value}"
    assert content.get("mode", "READ_WRITE") == "READ_WRITE"
    device_name = content["device_name"]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", device_name), f"stable device name: {device_name!r}"

    # Ansible mounts it by the name the guest sees it under
    mlflow_vars = yaml.safe_load((GCP_GROUP_VARS / "mlflow.yml").read_text())
    assert mlflow_vars["mlflow_server_data_device"] == f"/dev/disk/by-id/google-{device_name}"


def test_mlflow_server_mounts_its_data_disk_first() -> None:
    """The role formats and mounts the device at its home before anything else."""
    role = ROLES / "mlflow_server"
    assert role_defaults("mlflow_server")["mlflow_server_data_device"] == "", (
        "no data disk by default (the lab has none)"
    )
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    option = spec["argument_specs"]["main"]["options"]["mlflow_server_data_device"]
    assert option["type"] == "str"
    assert option["default"] == ""
    assert option["description"]

    main = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    # only the variable checks (assertions, nothing written) come before it
    if main[0].get("ansible.builtin.import_tasks") == "preflight.yml":
        checks = yaml.safe_load((role / "tasks" / "preflight.yml").read_text())
        assert "ansible.builtin.assert" in str(checks)
        assert not [
            k
            for k in str(checks).split("'")
            if k.startswith("ansible.builtin.") and k not in {"ansible.builtin.assert"}
        ], "the preflight writes nothing"
        main = main[1:]
    first = main[0]
    key = next(
        k for k in first if k in {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}
    )
    assert "mlflow_server_data_device" in str(first.get("when")), (
        "the data disk tasks run only when a device is set"
    )
    included = first[key]["file"] if isinstance(first[key], dict) else first[key]
    tasks = yaml.safe_load((role / "tasks" / str(included)).read_text())
    modules = [next(k for k in t if "." in k) for t in tasks]
    assert "community.general.filesystem" in modules
    assert "ansible.posix.mount" in modules
    mkfs = tasks[modules.index("community.general.filesystem")]["community.general.filesystem"]
    mount = tasks[modules.index("ansible.posix.mount")]["ansible.posix.mount"]
    assert modules.index("community.general.filesystem") < modules.index("ansible.posix.mount")
    assert mkfs["dev"] == "{{ mlflow_server_data_device }}"
    assert mkfs["fstype"] == "ext4"
    assert not mkfs.get("force"), "never format over an existing file system"
    assert mount["path"] == "{{ mlflow_server_home }}"
    assert mount["src"] == "{{ mlflow_server_data_device }}"
    assert mount["state"] == "mounted"
    assert mount["fstype"] == "ext4"


# ---------------------------------------------------------------- variables


def test_every_typed_variable_is_validated() -> None:
    """A bool needs no validation (its type is its whole domain); everything else has one."""
    missing = [
        name
        for name, var in variables().items()
        if "type" in var and var["type"] != "bool" and not var.get("validation")
    ]
    assert not missing, f"variables without validation: {missing}"


def test_admin_cidrs_default_and_validation() -> None:
    admin = variables()["admin_cidrs"]
    assert not OPEN_WORLD & set(admin.get("default") or []), (
        "admin_cidrs must not default to the world"
    )
    conditions = " ".join(v["condition"] for v in admin["validation"])
    assert "0.0.0.0/0" in conditions


VALID = {"project_id": "my-project-123", "admin_cidrs": '["203.0.113.10/32"]'}


def plan_variables(
    tmp_path: Path, overrides: dict[str, str], extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`terraform plan` on variables.tf alone (plus `extra` files that need no
    provider): evaluates every validation rule, offline."""
    terraform = terraform_bin()
    workdir = tmp_path / "vars"
    workdir.mkdir(exist_ok=True)
    shutil.copy(TF / "variables.tf", workdir / "variables.tf")
    for name, text in (extra or {}).items():
        (workdir / name).write_text(text)
    args = [
        terraform,
        f"-chdir={workdir}",
        "plan",
        "-input=false",
        "-no-color",
        "-lock=false",
        "-refresh=false",
    ]
    for key, value in {**VALID, **overrides}.items():
        args += ["-var", f"{key}={value}"]
    env = {
        "TF_IN_AUTOMATION": "1",
        "TF_DATA_DIR": str(workdir / ".terraform"),
        "CHECKPOINT_DISABLE": "1",
    }
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def bucket_name_check_config() -> str:
    """The bucket's name and its length precondition, out of main.tf, on an
    output: `terraform plan` evaluates it offline beside variables.tf."""
    bucket = resources("google_storage_bucket")["artifacts"]
    assert bucket["name"] == "${local.artifact_bucket_name}"
    [precondition] = bucket["lifecycle"][0]["precondition"]
    condition = precondition["condition"]
    assert "length(local.artifact_bucket_name)" in condition, condition
    assert "63" in condition, condition

    def expression(value: str) -> str:
        assert value.startswith("${"), value
        assert value.endswith("}"), value
        return value[2:-1]

    return (
        "locals {\n"
        f"  artifact_bucket_name = {expression(local_values()['artifact_bucket_name'])}\n"
        "}\n"
        'output "artifact_bucket_name" {\n'
        "  value = local.artifact_bucket_name\n"
        "  precondition {\n"
        f"    condition     = {expression(condition)}\n"
        f"    error_message = {json.dumps(precondition['error_message'])}\n"
        "  }\n"
        "}\n"
    )


@pytest.mark.parametrize(
    ("overrides", "fails"),
    [
        ({}, False),
        # 30 + 1 + 16 + "-mlflow-artifacts" = 64 characters
        ({"project_id": "my-very-long-project-id-123456", "name_prefix": "mlops-production"}, True),
        ({"project_id": "my-very-long-project-id-123456", "name_prefix": "mlops-producti"}, False),
        (
            {
                "project_id": "my-very-long-project-id-123456",
                "name_prefix": "mlops-production",
                "artifact_bucket_name": "mlops-artifacts",
            },
            False,
        ),
    ],
)
def test_a_too_long_bucket_name_fails_the_plan(
    tmp_path: Path, overrides: dict[str, str], fails: bool
) -> None:
    result = plan_variables(tmp_path, overrides, extra={"bucket.tf": bucket_name_check_config()})
    output = " ".join((result.stdout + result.stderr).split())
    if fails:
        assert result.returncode != 0, f"accepted {overrides}"
        assert "longer than 63 characters" in output, output
    else:
        assert result.returncode == 0, output


def test_valid_variables_pass_validation(tmp_path: Path) -> None:
    result = plan_variables(
        tmp_path,
        {
            "client_cidrs": '["0.0.0.0/0"]',  # a public prediction endpoint is a deliberate choice
            "ssh_public_key": "ssh-ed25519 " + "A" * 68 + " ansible@ci",
            "ansible_members": '["serviceAccount:deployer@my-project-123.iam.gserviceaccount.com"]',
            "machine_types": '{mlflow = "n2-standard-4", gateway = "e2-micro"}',
            "public_ip_roles": '["gateway", "monitoring"]',
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"admin_cidrs": '["0.0.0.0/0"]'}, "must not contain 0.0.0.0/0"),
        ({"admin_cidrs": '["203.0.113.10/32", "::/0"]'}, "must not contain 0.0.0.0/0"),
        ({"admin_cidrs": '["0.0.0.0/1", "128.0.0.0/1"]'}, "must not contain 0.0.0.0/0"),
        ({"admin_cidrs": "[]"}, "at least one valid CIDR"),
        ({"admin_cidrs": '["office"]'}, "at least one valid CIDR"),
        ({"project_id": "My_Project"}, "project_id must be"),
        ({"zone": "europe-west1"}, "zone must look like"),
        ({"predictor_count": "0"}, "predictor_count must be"),
        ({"predictor_count": "1.5"}, "predictor_count must be"),
        ({"public_ip_roles": '["bastion"]'}, "public_ip_roles may only"),
        # pragma: allowlist nextline secret
        ({"ssh_public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "Never a private key"),
        ({"client_cidrs": '["10.0.0.0/33"]'}, "client_cidrs must hold valid"),
        ({"ansible_members": '["deployer@example.com"]'}, "ansible_members entries"),
        ({"machine_types": '{predictors = "big one"}'}, "machine_types values"),
        ({"machine_types": '{gateway = "big one"}'}, "machine_types values"),
        ({"mlflow_data_disk_size_gb": "5"}, "mlflow_data_disk_size_gb must be"),
        ({"mlflow_data_disk_size_gb": "20.5"}, "mlflow_data_disk_size_gb must be"),
        ({"backup_retention_days": "0"}, "backup_retention_days must be"),
        ({"backup_retention_days": "7.5"}, "backup_retention_days must be"),
        ({"backup_bucket_name": "Registry_Backups"}, "backup_bucket_name must be"),
    ],
)
def test_invalid_variables_are_rejected(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    result = plan_variables(tmp_path, overrides)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, f"accepted {overrides}"
    assert "Invalid value for variable" in output, output
    assert message in output, output
