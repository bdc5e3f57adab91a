# Why this file exists: declares the provider this module needs. The exact
# version is pinned once, by the root module (infra/versions.tf).

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, < 7.0.0"
    }
  }
}
