# Bare GCP instances for the MLOps stack. Terraform creates the network, the
# firewall, the service accounts, the artifact and backup buckets and the instances; every
# piece of software comes from Ansible (no startup script). The `role` label of
# each instance is the Ansible group the GCP inventory (inventories/gcp/gcp.yml)
# puts it in: mlflow, predictors, monitoring, gateway. Clients reach the model
# through the gateway only (HAProxy, HTTPS on 443, a client key on every
# request), which spreads requests over the predictors inside the subnet.

provider "google" {
  project = var.project_id
  region  = var.region
  zone    = var.zone
}

locals {
  roles = ["mlflow", "predictors", "monitoring", "gateway"]

  # Labels of the artifact bucket. Every instance carries the same two plus its
  # `role` (written out in the instance resource, where the tests read them).
  # `stack` is what the inventory filters on.
  common_labels = {
    stack      = var.name_prefix
    managed-by = "terraform"
  }

  # Network tags: firewall rules target these.
  node_tag = "${var.name_prefix}-node"

  mlflow_name     = "${var.name_prefix}-mlflow-1"
  predictor_names = [for i in range(var.predictor_count) : format("%s-predictor-%d", var.name_prefix, i + 1)]
  monitoring_name = "${var.name_prefix}-monitoring-1"
  gateway_name    = "${var.name_prefix}-gateway-1"
  instance_names  = concat([local.mlflow_name], local.predictor_names, [local.monitoring_name, local.gateway_name])
  # name => role (the Ansible group); every instance comes from this map
  nodes = merge(
    { (local.mlflow_name) = { role = "mlflow" } },
    { for name in local.predictor_names : name => { role = "predictors" } },
    { (local.monitoring_name) = { role = "monitoring" } },
    { (local.gateway_name) = { role = "gateway" } },
  )
  private_only_any = length(setsubtract(local.roles, var.public_ip_roles)) > 0

  image = "projects/${var.image_project}/global/images/family/${var.image_family}"

  # OS Login on: keys live in IAM and metadata keys are ignored. OS Login off:
  # the one Ansible key is installed through instance metadata.
  oslogin_metadata = var.enable_oslogin ? "TRUE" : "FALSE"
  ssh_keys         = var.enable_oslogin || var.ssh_public_key == "" ? "" : "${var.ssh_user}:${var.ssh_public_key}"

  artifact_bucket_name = (
    var.artifact_bucket_name != "" ? var.artifact_bucket_name :
    var.create_artifact_bucket ? "${var.project_id}-${var.name_prefix}-mlflow-artifacts" : ""
  )
  artifact_bucket_location = var.artifact_bucket_location != "" ? var.artifact_bucket_location : var.region
  backup_bucket_name = (
    var.backup_bucket_name != "" ? var.backup_bucket_name :
    var.create_backup_bucket ? "${var.project_id}-${var.name_prefix}-mlflow-backups" : ""
  )

  # One OS Login / IAP grant per (instance, principal) pair.
  login_grants = {
    for pair in setproduct(local.instance_names, var.ansible_members) :
    "${pair[0]} ${pair[1]}" => { instance = pair[0], member = pair[1] }
  }
}

# ---------------------------------------------------------------- network

resource "google_compute_network" "this" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "this" {
  name                     = "${var.name_prefix}-subnet"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }

  lifecycle {
    precondition {
      condition     = startswith(var.zone, "${var.region}-")
      error_message = "zone must be a zone of region (e.g. europe-west1-b in europe-west1)."
    }
  }
}

# Instances without a public IP still need apt and PyPI: Cloud NAT gives them
# egress only. It exists only when some role is private.
resource "google_compute_router" "this" {
  count   = local.private_only_any ? 1 : 0
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  count                              = local.private_only_any ? 1 : 0
  name                               = "${var.name_prefix}-nat"
  router                             = google_compute_router.this[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.this.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# ---------------------------------------------------------------- firewall
# A custom VPC denies all ingress by default; these rules are the only ways in.

resource "google_compute_firewall" "admin_ssh" {
  name          = "${var.name_prefix}-admin-ssh"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "admin_mlflow" {
  name          = "${var.name_prefix}-admin-mlflow"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = ["${var.name_prefix}-mlflow"]

  allow {
    protocol = "tcp"
    ports    = ["5000"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "admin_monitoring" {
  name          = "${var.name_prefix}-admin-monitoring"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = ["${var.name_prefix}-monitoring"]

  allow {
    protocol = "tcp"
    ports    = ["9090", "3000"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# The prediction endpoint: the gateway's HAProxy over HTTPS (443) and nothing
# else; it answers only requests with a client key. Nothing listens for plain
# HTTP, so no rule opens 80 or 8080.
# Predictors (5001) are reached only through the gateway; the gateway's stats
# and metrics (8404) only from the monitoring instance (rules below).
resource "google_compute_firewall" "client_endpoint" {
  count         = length(var.client_cidrs) > 0 ? 1 : 0
  name          = "${var.name_prefix}-client-endpoint"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  source_ranges = var.client_cidrs
  target_tags   = ["${var.name_prefix}-gateway"]

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Traffic between the nodes: each port the stack uses, from the role that uses
# it, by network tag (every instance carries local.node_tag and its role tag).
# Nothing else crosses between instances: no SSH (Ansible comes in through the
# IAP rule), no UDP, no ICMP, no port a role does not serve.
#   predictors -> mlflow 5000        tracking and registry API, artifact proxy
#   monitoring -> mlflow 5005        Prometheus scrapes MLflow's metrics listener
#   gateway, monitoring -> predictors 5001   requests and health checks; scrapes
#   monitoring -> every node 9100    node exporter
#   monitoring -> gateway 8404       HAProxy's Prometheus metrics
resource "google_compute_firewall" "internal_mlflow" {
  name        = "${var.name_prefix}-internal-mlflow"
  network     = google_compute_network.this.id
  direction   = "INGRESS"
  source_tags = ["${var.name_prefix}-predictors"]
  target_tags = ["${var.name_prefix}-mlflow"]

  allow {
    protocol = "tcp"
    ports    = ["5000"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "internal_mlflow_metrics" {
  name        = "${var.name_prefix}-internal-mlflow-metrics"
  network     = google_compute_network.this.id
  direction   = "INGRESS"
  source_tags = ["${var.name_prefix}-monitoring"]
  target_tags = ["${var.name_prefix}-mlflow"]

  allow {
    protocol = "tcp"
    ports    = ["5005"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "internal_predictors" {
  name        = "${var.name_prefix}-internal-predictors"
  network     = google_compute_network.this.id
  direction   = "INGRESS"
  source_tags = ["${var.name_prefix}-gateway", "${var.name_prefix}-monitoring"]
  target_tags = ["${var.name_prefix}-predictors"]

  allow {
    protocol = "tcp"
    ports    = ["5001"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "internal_node_exporter" {
  name        = "${var.name_prefix}-internal-node-exporter"
  network     = google_compute_network.this.id
  direction   = "INGRESS"
  source_tags = ["${var.name_prefix}-monitoring"]
  target_tags = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = ["9100"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "internal_gateway_metrics" {
  name        = "${var.name_prefix}-internal-gateway-metrics"
  network     = google_compute_network.this.id
  direction   = "INGRESS"
  source_tags = ["${var.name_prefix}-monitoring"]
  target_tags = ["${var.name_prefix}-gateway"]

  allow {
    protocol = "tcp"
    ports    = ["8404"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

# Identity-Aware Proxy TCP forwarding: Google's fixed forwarding range, and
# access is still decided per principal by roles/iap.tunnelResourceAccessor.
resource "google_compute_firewall" "iap" {
  count         = var.enable_iap_ssh ? 1 : 0
  name          = "${var.name_prefix}-iap"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  source_ranges = ["35.235.240.0/20"]
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = ["22", "5000", "9090", "3000"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# ---------------------------------------------------------------- identities
# Two service accounts instead of the default compute one: only the MLflow
# server writes artifacts, so only it can touch the bucket, and only its
# objects (roles/storage.objectUser: create, read, list and delete objects;
# unlike objectAdmin, no say over who may access them). No project-level
# role at all: no Ops Agent is installed (metrics go to Prometheus), so
# logging/monitoring writer would be unused privilege.

resource "google_service_account" "mlflow" {
  account_id   = "${var.name_prefix}-mlflow"
  display_name = "MLflow server (${var.name_prefix})"
  description  = "Attached to the MLflow instance; objectUser on the artifact bucket only."
}

resource "google_service_account" "nodes" {
  account_id   = "${var.name_prefix}-nodes"
  display_name = "Predictors, monitoring, gateway (${var.name_prefix})"
  description  = "Attached to the predictor, monitoring and gateway instances; holds no role."
}

# ---------------------------------------------------------------- artifacts

resource "google_storage_bucket" "artifacts" {
  # checkov:skip=CKV_GCP_62: access logs would need a second bucket; Cloud Audit Logs (Data Access) are the documented way to audit this bucket
  count                       = var.create_artifact_bucket ? 1 : 0
  name                        = local.artifact_bucket_name
  location                    = local.artifact_bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.artifact_bucket_force_destroy
  labels                      = local.common_labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.artifact_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle {
    # The computed name (<project_id>-<name_prefix>-mlflow-artifacts) can pass
    # GCS's 63-character limit with a long project ID and prefix; fail at plan
    # time, before anything is created, instead of half-way through an apply.
    precondition {
      condition     = length(local.artifact_bucket_name) <= 63
      error_message = "The artifact bucket name ${local.artifact_bucket_name} is longer than 63 characters, the limit of a GCS bucket name: set artifact_bucket_name to a shorter name, or shorten name_prefix."
    }
  }
}

resource "google_storage_bucket_iam_member" "mlflow_artifacts" {
  count  = local.artifact_bucket_name != "" ? 1 : 0
  bucket = var.create_artifact_bucket ? google_storage_bucket.artifacts[0].name : local.artifact_bucket_name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.mlflow.email}"
}

# ---------------------------------------------------------------- registry backups
# The MLflow instance's backup timer copies each archive of the registry here
# (mlflow_server_backup_upload_to), off the instance and its disks. The MLflow
# service account may only add objects (roles/storage.objectCreator: no read,
# no overwrite, no delete), so a compromised MLflow host cannot destroy the
# backups it wrote. The lifecycle rule deletes archives after
# backup_retention_days; an operator restores from here (docs/gcp.md).

resource "google_storage_bucket" "backups" {
  # checkov:skip=CKV_GCP_62: access logs would need a second bucket; Cloud Audit Logs (Data Access) are the documented way to audit this bucket
  count                       = var.create_backup_bucket ? 1 : 0
  name                        = local.backup_bucket_name
  location                    = local.artifact_bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.backup_bucket_force_destroy
  labels                      = local.common_labels

  # an archive deleted by hand stays recoverable for a day
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.backup_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # No length check as on the artifact bucket: the longest computed name,
  # <project_id (30)>-<name_prefix (16)>-mlflow-backups, has 62 characters.
}

resource "google_storage_bucket_iam_member" "mlflow_backups" {
  count  = local.backup_bucket_name != "" ? 1 : 0
  bucket = var.create_backup_bucket ? google_storage_bucket.backups[0].name : local.backup_bucket_name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.mlflow.email}"
}

# ---------------------------------------------------------------- MLflow data, gateway address
# MLflow's state (the SQLite registry and the auth database under
# /var/lib/mlflow) lives on a persistent disk of its own, not on the boot
# disk: replacing or destroying the MLflow instance leaves it, and the next
# instance gets it back under the same device name (the mlflow_server role
# mounts /dev/disk/by-id/google-mlflow-data at its home). Two guards keep
# Terraform from deleting it: prevent_destroy makes any plan that would
# destroy or replace it fail, and deletion_policy = "PREVENT" is the
# provider's own guard. google_compute_disk has no deletion_protection
# argument (only instances do); deletion_policy is the provider's deletion
# protection for disks.
resource "google_compute_disk" "mlflow_data" {
  # checkov:skip=CKV_GCP_37: encrypted at rest with Google-managed keys; customer-supplied keys would have to be handed to Terraform in clear text
  name            = "${var.name_prefix}-mlflow-data"
  zone            = var.zone
  type            = "pd-balanced"
  size            = var.mlflow_data_disk_size_gb
  labels          = merge(local.common_labels, { role = "mlflow" })
  deletion_policy = "PREVENT"

  lifecycle {
    prevent_destroy = true
  }
}

# The clients' endpoint keeps its address when the gateway instance is
# replaced: a reserved static external IP, attached to the gateway's
# interface. It exists only when the gateway has a public IP.
resource "google_compute_address" "gateway" {
  count        = contains(var.public_ip_roles, "gateway") ? 1 : 0
  name         = "${local.gateway_name}-ip"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  labels       = merge(local.common_labels, { role = "gateway" })
}

# ---------------------------------------------------------------- instances
# One resource for every node, driven by local.nodes (name => role): the
# `role` label is the Ansible group the GCP inventory puts the instance in, and
# the tests read the role literals from local.nodes to compare them with the
# inventory groups and the playbooks. Only the MLflow node's service account
# may touch the artifact bucket. The instances hold no state of their own (the
# registry is on the data disk, artifacts in the bucket), so they stay
# replaceable; var.deletion_protection protects them as well when wanted.
resource "google_compute_instance" "node" {
  # checkov:skip=CKV_GCP_38: boot disks are encrypted at rest with Google-managed keys; customer-supplied keys would have to be handed to Terraform in clear text
  # checkov:skip=CKV_GCP_40: a public IP exists only for the roles in var.public_ip_roles (default: gateway, the client entry point); the firewall limits every port to admin_cidrs or client_cidrs
  for_each                  = local.nodes
  name                      = each.key
  machine_type              = var.machine_types[each.value.role]
  zone                      = var.zone
  tags                      = [local.node_tag, "${var.name_prefix}-${each.value.role}"]
  labels                    = { role = each.value.role, stack = var.name_prefix, managed-by = "terraform" }
  can_ip_forward            = false
  allow_stopping_for_update = true
  deletion_protection       = var.deletion_protection

  # Project-wide keys blocked, serial console off, OS Login as configured.
  metadata = {
    enable-oslogin         = local.oslogin_metadata
    block-project-ssh-keys = "TRUE"
    serial-port-enable     = "FALSE"
    ssh-keys               = local.ssh_keys
  }

  boot_disk {
    initialize_params {
      image = local.image
      size  = var.boot_disk_size_gb
      type  = "pd-balanced"
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.this.id

    # The gateway's public IP is the reserved address; other public roles get
    # an ephemeral one.
    dynamic "access_config" {
      for_each = contains(var.public_ip_roles, each.value.role) ? [1] : []
      content {
        nat_ip       = each.value.role == "gateway" ? one(google_compute_address.gateway[*].address) : null
        network_tier = "PREMIUM"
      }
    }
  }

  # MLflow's data disk, under a stable device name: the guest sees it as
  # /dev/disk/by-id/google-mlflow-data (mlflow_server_data_device in
  # inventories/gcp/group_vars/mlflow.yml).
  dynamic "attached_disk" {
    for_each = each.value.role == "mlflow" ? [google_compute_disk.mlflow_data.self_link] : []
    content {
      source      = attached_disk.value
      device_name = "mlflow-data"
      mode        = "READ_WRITE"
    }
  }

  service_account {
    email  = each.value.role == "mlflow" ? google_service_account.mlflow.email : google_service_account.nodes.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }
}

# ---------------------------------------------------------------- access for Ansible
# Granted on these instances only, never project-wide.

resource "google_compute_instance_iam_member" "os_admin_login" {
  for_each      = var.enable_oslogin ? local.login_grants : {}
  zone          = var.zone
  instance_name = each.value.instance
  role          = "roles/compute.osAdminLogin"
  member        = each.value.member

  depends_on = [google_compute_instance.node]
}

resource "google_iap_tunnel_instance_iam_member" "tunnel" {
  for_each = var.enable_iap_ssh ? local.login_grants : {}
  zone     = var.zone
  instance = each.value.instance
  role     = "roles/iap.tunnelResourceAccessor"
  member   = each.value.member

  depends_on = [google_compute_instance.node]
}

# OS Login to an instance that runs as a service account also requires
# actAs on that service account.
resource "google_service_account_iam_member" "mlflow_user" {
  for_each           = var.enable_oslogin ? toset(var.ansible_members) : toset([])
  service_account_id = google_service_account.mlflow.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

resource "google_service_account_iam_member" "nodes_user" {
  for_each           = var.enable_oslogin ? toset(var.ansible_members) : toset([])
  service_account_id = google_service_account.nodes.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# ---------------------------------------------------------------- predictor image
# The Docker repository the release workflow pushes the predictor image to
# (tags: the collection version and the commit). Tags are immutable: a
# release never changes under a deployment that pinned it. Only the
# principals in image_publishers may push (on this repository, no project
# role); Cloud Run in the same project pulls with its own service agent.

locals {
  image_repository_id       = var.image_repository_id != "" ? var.image_repository_id : "${var.name_prefix}-images"
  image_repository_location = var.image_repository_location != "" ? var.image_repository_location : var.region
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: encrypted at rest with Google-managed keys; the image holds no secret (credentials come at run time) and a customer-managed key would be one more thing to rotate and lose
  count                  = var.create_image_repository ? 1 : 0
  repository_id          = local.image_repository_id
  location               = local.image_repository_location
  format                 = "DOCKER"
  description            = "OCI images of the mlops-stack predictor (${var.name_prefix})"
  labels                 = local.common_labels
  cleanup_policy_dry_run = false

  docker_config {
    immutable_tags = true
  }

  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_keep_versions
    }
  }

  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }
}

resource "google_artifact_registry_repository_iam_member" "image_publishers" {
  for_each   = var.create_image_repository ? toset(var.image_publishers) : toset([])
  project    = google_artifact_registry_repository.images[0].project
  location   = google_artifact_registry_repository.images[0].location
  repository = google_artifact_registry_repository.images[0].name
  role       = "roles/artifactregistry.writer"
  member     = each.value
}
