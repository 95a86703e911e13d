output "instances" {
  description = "Every instance by Ansible group (the `role` label): name, zone, private and public IP."
  value = {
    for role in local.roles : role => [
      for i in google_compute_instance.node : {
        name       = i.name
        zone       = i.zone
        private_ip = i.network_interface[0].network_ip
        public_ip  = try(i.network_interface[0].access_config[0].nat_ip, null)
      } if i.labels.role == role
    ]
  }
}

output "predict_url" {
  description = "The clients' prediction endpoint: the gateway's HAProxy over HTTPS (443; every request needs a client key) on its reserved static IP, which survives the gateway's re-creation (its private IP when the gateway is not in public_ip_roles). Reachable from client_cidrs only."
  value = format(
    "https://%s/predict",
    coalesce(
      one(google_compute_address.gateway[*].address),
      google_compute_instance.node[local.gateway_name].network_interface[0].network_ip,
    ),
  )
}

output "mlflow_private_url" {
  description = "MLflow tracking URI inside the VPC (what the predictors use; HTTPS, MLflow's TLS front). Training on the MLflow instance uses its loopback port."
  value       = "https://${google_compute_instance.node[local.mlflow_name].network_interface[0].network_ip}:5000"
}

output "artifact_bucket" {
  description = "GCS bucket for MLflow artifacts, empty when none. Export it as GCP_ARTIFACT_BUCKET for the GCP inventory."
  value       = local.artifact_bucket_name
}

output "backup_bucket" {
  description = "GCS bucket for the registry's backup archives, empty when none. Export it as GCP_BACKUP_BUCKET for the GCP inventory."
  value       = local.backup_bucket_name
}

output "mlflow_artifacts_destination" {
  description = "Value for mlflow_server_artifacts_destination, empty when there is no bucket."
  value       = local.artifact_bucket_name != "" ? "gs://${local.artifact_bucket_name}/mlflow-artifacts" : ""
}

output "service_accounts" {
  description = "Service accounts attached to the instances."
  value = {
    mlflow = google_service_account.mlflow.email
    nodes  = google_service_account.nodes.email
  }
}

output "network" {
  description = "VPC and subnet names."
  value = {
    network    = google_compute_network.this.name
    subnetwork = google_compute_subnetwork.this.name
    cidr       = google_compute_subnetwork.this.ip_cidr_range
  }
}

output "inventory_environment" {
  description = "Environment for `ansible-playbook -i inventories/gcp` (see docs/gcp.md)."
  value = {
    GCP_PROJECT         = var.project_id
    GCP_ZONE            = var.zone
    GCP_STACK           = var.name_prefix
    GCP_ARTIFACT_BUCKET = local.artifact_bucket_name
    GCP_BACKUP_BUCKET   = local.backup_bucket_name
    GCP_SSH_USER        = var.ssh_user
  }
}

output "predictor_image_repository" {
  description = "Where the release workflow pushes the predictor image (the repository's registry_uri; the image is <this>/predictor); empty without the repository. Set it as the GitHub variable GCP_IMAGE_REPOSITORY."
  value       = try(google_artifact_registry_repository.images[0].registry_uri, "")
}
