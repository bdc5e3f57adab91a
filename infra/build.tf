# Why this file exists: what cloudbuild.yaml needs to build and ship cutover:
# the Artifact Registry repository its image is pushed to, and a bucket that
# `gcloud builds submit` stages the source in (a dedicated bucket, so the build
# identity can be granted read access to it and to nothing else in Storage).

resource "google_artifact_registry_repository" "cutover" {
  #checkov:skip=CKV_GCP_84:The repository holds cutover's public-source container image only; Google-managed encryption is enough.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
  format        = "DOCKER"
  description   = "Container images of cutover, pushed by cloudbuild.yaml."
  labels        = local.labels

  # Every build pushes a new tag ($BUILD_ID); a tag never moves once pushed,
  # so the revision a tag was deployed as can always be traced back.
  docker_config {
    immutable_tags = true
  }

  # Keep the newest images for rollback, delete the rest after 30 days.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.images_to_keep
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "build_source" {
  #checkov:skip=CKV_GCP_62:Holds only transient source tarballs of cutover, deleted after a week; Cloud Audit Logs already record who wrote or read them.
  #checkov:skip=CKV_GCP_78:Each upload is a new object under a new name and is deleted after a week; versions would only keep deleted tarballs longer.
  project  = var.project_id
  name     = "${var.project_id}-${var.service_name}-source" # at most 30+24+8 = 62 of 63 characters
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Staged sources are disposable: let `terraform destroy` remove the bucket
  # with whatever tarballs are left in it.
  force_destroy = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}
