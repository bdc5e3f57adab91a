# Why this file exists: pins Terraform and the google provider. The provider
# version is the one whose schema .ci/infra-checks.sh validates this directory
# against (npm @cdktf/provider-google, see .ci/infra-checks.sh); bump both
# together, or the offline schema check stops meaning anything.

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
  }
}
