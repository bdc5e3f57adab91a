# Why this file exists: makes sure the Google-managed service agents that iam.tf
# grants roles to exist before anything is granted to them, defines the names
# shared by the other files, and enables every API this deployment uses.
#
# Nothing here is read at plan time: there is no data source, so a plan of a
# fresh project does not call an API that this apply has yet to enable (a
# `data "google_project"` would call Cloud Resource Manager during the first
# plan). The project number is taken from the Pub/Sub service agent's email.

# The Pub/Sub service agent, created now rather than whenever Google gets to it.
# Pub/Sub mints every push's OIDC token and moves dead letters as this agent,
# and iam.tf grants it roles on resources made here; granting to an agent that
# does not exist yet fails ("Service account ... does not exist"), which is why
# a fresh project used to need a second apply. This resource calls Service
# Usage's services.generateServiceIdentity, which creates the agent if needed
# and returns its email; every grant to the agent references that email, so
# Terraform orders each grant after it. Only google-beta has this resource in
# provider 6.50.0, hence the second provider (versions.tf). It has no delete:
# on destroy it is only forgotten (the agent belongs to the project).
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

locals {
  # Google-managed service agents, as IAM members.
  #   Pub/Sub: mints the OIDC tokens on push, forwards to the dead-letter topic.
  pubsub_service_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"
  # Every service agent's email is service-<project number>@...; the number is
  # read from the Pub/Sub agent's, so no project lookup is needed.
  project_number = regex("^service-([0-9]+)@", google_project_service_identity.pubsub.email)[0]
  #   Cloud Monitoring notifications: publishes incidents to a `pubsub` channel.
  #   Google creates it with the project's first `pubsub` channel; the grant to
  #   it in iam.tf waits for the channel (monitoring.tf).
  monitoring_notification_agent = "serviceAccount:service-${local.project_number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"

  # Audiences of the pushes' OIDC tokens: one per endpoint, each the base
  # audience (CUTOVER_PUSH_AUDIENCE) with the endpoint's name appended, e.g.
  # cutover-push/<project>/<region>/<service>/builds. Cloud Run accepts a token
  # whose `aud` is the service's run.app URL or one of its custom_audiences;
  # cutover then requires `<CUTOVER_PUSH_AUDIENCE>/builds` on /pubsub/builds,
  # `.../alerts` on /pubsub/alerts and `.../ticks` on /pubsub/ticks, so a token
  # captured on one endpoint is refused by the two others. The service URL
  # would be a cycle (it exists only after the service, whose env needs the
  # audience), so the base is a fixed string, known at plan time; it names
  # project, region and service, so a token minted for it is of no use against
  # any other Cloud Run service.
  push_audience = coalesce(var.push_audience, "cutover-push/${var.project_id}/${var.region}/${var.service_name}")
  push_audiences = {
    for endpoint in ["builds", "alerts", "ticks", "evaluations"] : endpoint => "${local.push_audience}/${endpoint}"
  }

  labels = merge({ app = "cutover" }, var.labels)

  # CUTOVER_PROJECTS: cutover's own project first, then the others, once each.
  evaluated_projects = distinct(concat([var.project_id], var.projects))
  # The projects cutover is granted its roles in besides its own (iam.tf).
  other_projects = toset([for p in local.evaluated_projects : p if p != var.project_id])

  # CUTOVER_EVENTS_TOPIC: the created topic by default, none when "", else as
  # given. null leaves the variable unset (events off).
  events_topic = var.events_topic == null ? google_pubsub_topic.events[0].id : (var.events_topic == "" ? null : var.events_topic)

  # Every API a resource in this directory (or a step of cloudbuild.yaml) calls.
  required_apis = toset([
    "artifactregistry.googleapis.com",     # the image repository (build.tf)
    "cloudbuild.googleapis.com",           # builds, and the cloud-builds topic's messages
    "cloudresourcemanager.googleapis.com", # project-level IAM grants
    "cloudscheduler.googleapis.com",       # the per-minute tick (scheduler.tf)
    "iam.googleapis.com",                  # service accounts and the custom role
    "logging.googleapis.com",              # build logs (CLOUD_LOGGING_ONLY)
    "monitoring.googleapis.com",           # metrics, alert policies, channel, dashboard
    "pubsub.googleapis.com",               # topics and push subscriptions
    "run.googleapis.com",                  # cutover itself and the services it manages
    "secretmanager.googleapis.com",        # the chat webhook URL (var.notify_url_secret)
    "storage.googleapis.com",              # the build source staging bucket
  ])
}

resource "google_project_service" "apis" {
  # The platforms' APIs (App Engine Admin, Compute Engine, Firestore) only
  # when a platform needs them: local.platform_apis, platforms.tf.
  for_each = setunion(local.required_apis, local.platform_apis)

  project = var.project_id
  service = each.value

  # Leaving the APIs on at `terraform destroy`: other workloads in the project
  # (the managed services first of all) use the same APIs.
  disable_on_destroy         = false
  disable_dependent_services = false
}
