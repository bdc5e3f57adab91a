# Why this file exists: configures the google provider once for the whole root
# module. Credentials come from the caller's environment (gcloud application
# default credentials, or a CI identity); nothing secret lives here.

provider "google" {
  project = var.project_id
  region  = var.region
}
