# Why this file exists: configures the google providers once for the whole root
# module. Credentials come from the caller's environment (gcloud application
# default credentials, or a CI identity); nothing secret lives here.

provider "google" {
  project = var.project_id
  region  = var.region
}

# Only for google_project_service_identity (project.tf), which is not in GA.
provider "google-beta" {
  project = var.project_id
  region  = var.region
}
