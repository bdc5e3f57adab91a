# Why this file exists: looks up the project (its number is part of the email of
# every Google-managed service agent granted something in iam.tf), defines the
# names shared by the other files, and enables every API this deployment uses.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # Google-managed service agents. Google creates them in the project when the
  # API is first enabled or used; they are never created here, only granted.
  #   Pub/Sub: mints the OIDC tokens on push, forwards to the dead-letter topic.
  pubsub_service_agent = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  #   Cloud Monitoring notifications: publishes incidents to a `pubsub` channel.
  monitoring_notification_agent = "serviceAccount:service-${local.project_number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"

  # Audience of the OIDC token on every push. Cloud Run accepts a token whose
  # `aud` is the service's run.app URL or one of its `custom_audiences`; cutover
  # additionally checks `aud` against CUTOVER_PUSH_AUDIENCE. Using the service
  # URL would be a cycle (the URL exists only after the service, whose env needs
  # the audience), so a custom audience string, fixed at plan time, is set in
  # three places: the service's custom_audiences, CUTOVER_PUSH_AUDIENCE and each
  # subscription's oidc_token.audience. It names project, region and service, so
  # a token minted for it is of no use against any other Cloud Run service.
  push_audience = coalesce(var.push_audience, "cutover-push/${var.project_id}/${var.region}/${var.service_name}")

  labels = merge({ app = "cutover" }, var.labels)

  # Every API a resource in this directory (or a step of cloudbuild.yaml) calls.
  required_apis = toset([
    "artifactregistry.googleapis.com",     # the image repository (build.tf)
    "cloudbuild.googleapis.com",           # builds, and the cloud-builds topic's messages
    "cloudresourcemanager.googleapis.com", # project lookup and project-level IAM
    "cloudscheduler.googleapis.com",       # the per-minute tick (scheduler.tf)
    "iam.googleapis.com",                  # service accounts and the custom role
    "logging.googleapis.com",              # build logs (CLOUD_LOGGING_ONLY)
    "monitoring.googleapis.com",           # metrics, alert policies, channel, dashboard
    "pubsub.googleapis.com",               # topics and push subscriptions
    "run.googleapis.com",                  # cutover itself and the services it manages
    "storage.googleapis.com",              # the build source staging bucket
  ])
}

resource "google_project_service" "apis" {
  for_each = local.required_apis

  project = var.project_id
  service = each.value

  # Leaving the APIs on at `terraform destroy`: other workloads in the project
  # (the managed services first of all) use the same APIs.
  disable_on_destroy         = false
  disable_dependent_services = false
}
