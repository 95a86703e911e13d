# Every variable that is not a bool carries a validation block: a typo here
# fails at `terraform plan`, not half-way through an apply. Bools need none:
# their type is their whole domain.

variable "project_id" {
  description = "GCP project ID that holds the instances, the network and the artifact bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the subnet, the Cloud NAT and (by default) the artifact bucket."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "zone" {
  description = "Zone of the instances. Must lie in var.region (checked by a precondition)."
  type        = string
  default     = "europe-west1-b"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", var.zone))
    error_message = "zone must look like europe-west1-b."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name, and the value of the `stack` label the GCP inventory filters on."
  type        = string
  default     = "mlops"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-16 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "machine_types" {
  description = "Machine type per role. The MLflow server runs the full mlflow package and the training, so it gets the most memory; the gateway only runs HAProxy."
  type = object({
    mlflow     = optional(string, "e2-standard-2")
    predictors = optional(string, "e2-medium")
    monitoring = optional(string, "e2-medium")
    gateway    = optional(string, "e2-small")
  })
  default = {}

  validation {
    condition = alltrue([
      for t in [var.machine_types.mlflow, var.machine_types.predictors, var.machine_types.monitoring, var.machine_types.gateway] :
      can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", t))
    ])
    error_message = "machine_types values must be GCE machine type names such as e2-medium or n2-standard-4."
  }
}

variable "predictor_count" {
  description = "Number of predictor instances (the rolling update needs at least two to keep serving)."
  type        = number
  default     = 2

  validation {
    condition     = var.predictor_count >= 1 && var.predictor_count <= 10 && floor(var.predictor_count) == var.predictor_count
    error_message = "predictor_count must be a whole number from 1 to 10."
  }
}

variable "admin_cidrs" {
  description = "CIDR ranges allowed to reach SSH (22), MLflow (5000), Prometheus (9090) and Grafana (3000). No default on purpose: name your office or VPN ranges."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0))])
    error_message = "admin_cidrs must hold at least one valid CIDR range, e.g. [\"203.0.113.10/32\"]."
  }

  validation {
    # Rejects 0.0.0.0/0 and ::/0 by name, and any prefix shorter than /8, so
    # the internet cannot be let in as 0.0.0.0/1 + 128.0.0.0/1 either.
    condition = alltrue([
      for c in var.admin_cidrs :
      !contains(["0.0.0.0/0", "::/0"], c) && try(tonumber(split("/", c)[1]) >= 8, false)
    ])
    error_message = "admin_cidrs must not contain 0.0.0.0/0, ::/0 or any range wider than /8: the admin ports are never open to the internet."
  }
}

variable "client_cidrs" {
  description = "CIDR ranges allowed to call the prediction endpoint: the gateway instance over HTTPS on 443, each request with a client key (predictors are reached only through the gateway). Empty: no client rule, the endpoint is reachable only inside the subnet."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs must hold valid CIDR ranges."
  }
}

variable "subnet_cidr" {
  description = "Primary range of the subnet. Traffic between the instances is allowed per port and role (firewall rules by network tag), not for the whole range."
  type        = string
  default     = "10.20.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && try(tonumber(split("/", var.subnet_cidr)[1]) >= 8 && tonumber(split("/", var.subnet_cidr)[1]) <= 29, false)
    error_message = "subnet_cidr must be a valid IPv4 CIDR range between /8 and /29."
  }
}

variable "public_ip_roles" {
  description = "Roles whose instances get a public IP; by default only the gateway, the clients' entry point, whose IP is a reserved static address (the others get an ephemeral one). The others stay private and reach the internet through Cloud NAT; Ansible reaches them through IAP. Firewall rules restrict every public port to admin_cidrs or client_cidrs."
  type        = list(string)
  default     = ["gateway"]

  validation {
    condition     = alltrue([for r in var.public_ip_roles : contains(["mlflow", "predictors", "monitoring", "gateway"], r)])
    error_message = "public_ip_roles may only contain mlflow, predictors, monitoring and gateway."
  }
}

variable "enable_iap_ssh" {
  description = "Allow Identity-Aware Proxy TCP forwarding (Google's range 35.235.240.0/20) to SSH, MLflow, Prometheus and Grafana. This is how CI runners and admins reach private instances."
  type        = bool
  default     = true
}

variable "enable_oslogin" {
  description = "Use OS Login (IAM-controlled SSH). When false, ssh_public_key is installed for ssh_user through instance metadata instead."
  type        = bool
  default     = true
}

variable "ssh_user" {
  description = "Linux user Ansible logs in as. With OS Login it is the POSIX name of the identity holding the key (e.g. sa_<uniqueId> for a service account); without OS Login the metadata key creates this user."
  type        = string
  default     = "ansible"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a valid Linux user name (lowercase, at most 32 characters)."
  }
}

variable "ssh_public_key" {
  description = "Public half of Ansible's SSH key (one line, OpenSSH format). Used only when enable_oslogin is false; with OS Login register it with `gcloud compute os-login ssh-keys add`."
  type        = string
  default     = ""

  validation {
    condition     = var.ssh_public_key == "" || can(regex("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$", var.ssh_public_key))
    error_message = "ssh_public_key must be empty or one OpenSSH public key line (ssh-ed25519, ecdsa-sha2-* or ssh-rsa). Never a private key."
  }
}

variable "ansible_members" {
  description = "IAM principals that run Ansible (e.g. serviceAccount:deployer@PROJECT.iam.gserviceaccount.com, user:alice@example.com). They get OS Login admin and IAP tunnel access on these instances only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.ansible_members : can(regex("^(user|serviceAccount|group):[^@\\s]+@[^@\\s]+$", m))])
    error_message = "ansible_members entries must look like user:NAME@DOMAIN, serviceAccount:NAME@DOMAIN or group:NAME@DOMAIN."
  }
}

variable "image_family" {
  description = "Boot image family. The roles target Debian 12."
  type        = string
  default     = "debian-12"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.image_family))
    error_message = "image_family must be an image family name such as debian-12."
  }
}

variable "image_project" {
  description = "Project that publishes image_family."
  type        = string
  default     = "debian-cloud"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.image_project))
    error_message = "image_project must be a GCP project ID such as debian-cloud."
  }
}

variable "boot_disk_size_gb" {
  description = "Boot disk size of every instance, in GB."
  type        = number
  default     = 20

  validation {
    condition     = var.boot_disk_size_gb >= 10 && var.boot_disk_size_gb <= 500 && floor(var.boot_disk_size_gb) == var.boot_disk_size_gb
    error_message = "boot_disk_size_gb must be a whole number from 10 to 500."
  }
}

variable "mlflow_data_disk_size_gb" {
  description = "Size in GB of the MLflow instance's persistent data disk (its home: the SQLite registry and the auth database). It can grow in place (the role grows the file system); shrinking would replace the disk, which Terraform refuses (prevent_destroy)."
  type        = number
  default     = 20

  validation {
    condition     = var.mlflow_data_disk_size_gb >= 10 && var.mlflow_data_disk_size_gb <= 1000 && floor(var.mlflow_data_disk_size_gb) == var.mlflow_data_disk_size_gb
    error_message = "mlflow_data_disk_size_gb must be a whole number from 10 to 1000."
  }
}

variable "create_artifact_bucket" {
  description = "Create a GCS bucket for MLflow artifacts. When false and artifact_bucket_name is set, that existing bucket is used (and only granted)."
  type        = bool
  default     = true
}

variable "artifact_bucket_name" {
  description = "Name of the MLflow artifact bucket. Empty: <project_id>-<name_prefix>-mlflow-artifacts when created, no bucket otherwise."
  type        = string
  default     = ""

  validation {
    condition     = var.artifact_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.artifact_bucket_name))
    error_message = "artifact_bucket_name must be empty or a valid bucket name (3-63 lowercase letters, digits, dots, hyphens, underscores)."
  }
}

variable "artifact_bucket_location" {
  description = "Location of the artifact bucket. Empty: the region."
  type        = string
  default     = ""

  validation {
    condition     = var.artifact_bucket_location == "" || can(regex("^[A-Za-z0-9-]+$", var.artifact_bucket_location))
    error_message = "artifact_bucket_location must be empty, a region (europe-west1) or a multi-region (EU)."
  }
}

variable "artifact_noncurrent_days" {
  description = "Days a replaced or deleted artifact version is kept before the lifecycle rule deletes it."
  type        = number
  default     = 30

  validation {
    condition     = var.artifact_noncurrent_days >= 1 && floor(var.artifact_noncurrent_days) == var.artifact_noncurrent_days
    error_message = "artifact_noncurrent_days must be a whole number of at least 1."
  }
}

variable "artifact_bucket_force_destroy" {
  description = "Let `terraform destroy` delete the artifact bucket with its objects. Off: the model artifacts survive a destroy (the registry itself survives on the MLflow data disk)."
  type        = bool
  default     = false
}

variable "create_backup_bucket" {
  description = "Create a GCS bucket for the registry's backup archives. When false and backup_bucket_name is set, that existing bucket is used (and only granted)."
  type        = bool
  default     = true
}

variable "backup_bucket_name" {
  description = "Name of the backup bucket. Empty: <project_id>-<name_prefix>-mlflow-backups when created, no bucket otherwise."
  type        = string
  default     = ""

  validation {
    condition     = var.backup_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.backup_bucket_name))
    error_message = "backup_bucket_name must be empty or a valid bucket name (3-63 lowercase letters, digits, dots, hyphens, underscores)."
  }
}

variable "backup_retention_days" {
  description = "Days a backup archive is kept in the backup bucket before the lifecycle rule deletes it."
  type        = number
  default     = 30

  validation {
    condition     = var.backup_retention_days >= 1 && floor(var.backup_retention_days) == var.backup_retention_days
    error_message = "backup_retention_days must be a whole number of at least 1."
  }
}

variable "backup_bucket_force_destroy" {
  description = "Let `terraform destroy` delete the backup bucket with its archives. Off: the backups survive a destroy."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect the instances from deletion (turn off before `terraform destroy`)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- predictor image

variable "create_image_repository" {
  description = "Create the Artifact Registry Docker repository the release workflow pushes the predictor image to (.github/workflows/release.yml)."
  type        = bool
  default     = true
}

variable "image_repository_id" {
  description = "ID of the Artifact Registry repository of the predictor image; empty: <name_prefix>-images."
  type        = string
  default     = ""

  validation {
    condition     = var.image_repository_id == "" || can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.image_repository_id))
    error_message = "image_repository_id must be empty or 1-63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "image_repository_location" {
  description = "Location of the image repository: a region (europe-west1) or a multi-region (europe, us, asia); empty: var.region, where Cloud Run pulls it from."
  type        = string
  default     = ""

  validation {
    condition     = var.image_repository_location == "" || can(regex("^[a-z]+(-[a-z]+[0-9]+)?$", var.image_repository_location))
    error_message = "image_repository_location must be empty, a region such as europe-west1 or a multi-region such as europe."
  }
}

variable "image_publishers" {
  description = "Principals that may push to the image repository (roles/artifactregistry.writer on it, nothing else): the service account the release workflow impersonates through Workload Identity Federation (only jobs of the protected gcp-production environment can), e.g. serviceAccount:deployer@PROJECT.iam.gserviceaccount.com."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.image_publishers : can(regex("^(serviceAccount|user|group|principal|principalSet):.+", m))])
    error_message = "image_publishers must hold IAM members such as serviceAccount:NAME@PROJECT.iam.gserviceaccount.com or principalSet://iam.googleapis.com/..."
  }
}

variable "image_keep_versions" {
  description = "How many of the newest image versions the repository's cleanup policy always keeps; older untagged ones are deleted after 30 days, tagged releases are kept."
  type        = number
  default     = 20

  validation {
    condition     = var.image_keep_versions >= 1 && var.image_keep_versions <= 1000 && floor(var.image_keep_versions) == var.image_keep_versions
    error_message = "image_keep_versions must be a whole number from 1 to 1000."
  }
}
