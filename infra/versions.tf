# Why this file exists: pins Terraform and the google providers. The provider
# version is the one whose schema .ci/infra-checks.sh validates this directory
# against (npm @cdktf/provider-google and @cdktf/provider-google-beta, see
# .ci/infra-checks.sh); bump all of them together, or the offline schema check
# stops meaning anything. google-beta is used for one resource only
# (google_project_service_identity in project.tf), which GA 6.50.0 lacks.

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "6.50.0"
    }
  }
}
