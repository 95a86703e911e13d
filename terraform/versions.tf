terraform {
  # Validation, optional() attribute defaults and preconditions are used; 1.5 is
  # the oldest release this configuration is checked against.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Pinned to one minor release: there is no lock file in git (see
      # .gitignore), so the constraint alone decides what `init` installs.
      version = "~> 7.44.0"
    }
  }

  # Partial configuration: bucket and prefix come from backend.hcl (git-ignored),
  #   terraform init -backend-config=backend.hcl
  # see backend.hcl.example. State never lives in this repository.
  backend "gcs" {}
}
