# Why this file exists: the topics and push subscriptions that carry cutover's
# three event streams (builds, alerts, ticks) to its three endpoints, and the
# dead-letter topic that keeps what cutover could not take after
# var.max_delivery_attempts tries.

# Cloud Build publishes every build's status changes to the topic named
# `cloud-builds` in the build's project. Created here unless it already exists
# (then set create_cloud_builds_topic = false, or import it, see README.md).
resource "google_pubsub_topic" "cloud_builds" {
  #checkov:skip=CKV_GCP_83:Build status messages carry build metadata only (ids, substitutions, image names); Google-managed encryption is enough and a CMEK would have to be readable by Cloud Build's own publisher.
  count = var.create_cloud_builds_topic ? 1 : 0

  project = var.project_id
  name    = "cloud-builds"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# Cloud Monitoring publishes alert incidents here (the `pubsub` notification
# channel in monitoring.tf).
resource "google_pubsub_topic" "alerts" {
  #checkov:skip=CKV_GCP_83:Incident messages hold alert policy and metric metadata only; Google-managed encryption is enough.
  project = var.project_id
  name    = "${var.service_name}-alerts"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# Cloud Scheduler publishes one tick a minute here (scheduler.tf).
resource "google_pubsub_topic" "ticks" {
  #checkov:skip=CKV_GCP_83:Tick messages have a fixed, non-sensitive body; Google-managed encryption is enough.
  project = var.project_id
  name    = "${var.service_name}-ticks"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# Ticks publish one message per running rollout that needs a call here (fan-out); the push
# subscription below hands each to any cutover instance (/pubsub/evaluations).
resource "google_pubsub_topic" "evaluations" {
  #checkov:skip=CKV_GCP_83:Evaluation messages name a service and nothing else; Google-managed encryption is enough.
  project = var.project_id
  name    = "${var.service_name}-evaluations"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# Where Pub/Sub moves a message that cutover did not acknowledge after
# var.max_delivery_attempts deliveries.
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Holds copies of the three streams above, which carry no sensitive data; Google-managed encryption is enough.
  project = var.project_id
  name    = "${var.service_name}-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# A topic without a subscription drops what is published to it: this pull
# subscription keeps dead-lettered messages for a week, for a person to read
# (`gcloud pubsub subscriptions pull`) and, if wanted, republish.
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.service_name}-dead-letter"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = "" # never expire, however long it stays empty
  }
}

locals {
  cloud_builds_topic = var.create_cloud_builds_topic ? google_pubsub_topic.cloud_builds[0].id : "projects/${var.project_id}/topics/cloud-builds"

  # One push subscription per endpoint. Retention is how long an event is still
  # worth delivering: a build completion starts a rollout even hours later, an
  # incident matters for a day, a tick is stale after a few minutes (600s is
  # Pub/Sub's minimum).
  #
  # The builds subscription takes successful builds only. Cloud Build publishes
  # on every status change (QUEUED, WORKING, then SUCCESS or a failure), with
  # the status in the message attribute `status` ("The build's unique ID and
  # the build's status can be found in the message.attributes field",
  # cloud.google.com/build/docs/subscribe-build-notifications; the attribute
  # keys are `buildId` and `status`). cutover acts on SUCCESS only, so the
  # filter saves it 2-3 deliveries per build; Pub/Sub acknowledges what the
  # filter drops, without counting it as a delivery attempt. A filter cannot
  # be changed in place: changing it replaces the subscription.
  push_subscriptions = {
    builds = { topic = local.cloud_builds_topic, path = "/pubsub/builds", retention = "604800s", filter = "attributes.status = \"SUCCESS\"" }
    alerts = { topic = google_pubsub_topic.alerts.id, path = "/pubsub/alerts", retention = "86400s", filter = null }
    ticks  = { topic = google_pubsub_topic.ticks.id, path = "/pubsub/ticks", retention = "600s", filter = null }
    # An evaluation is stale once the next tick has published its own.
    evaluations = { topic = google_pubsub_topic.evaluations.id, path = "/pubsub/evaluations", retention = "600s", filter = null }
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  project = var.project_id
  name    = "${var.service_name}-${each.key}"
  topic   = each.value.topic
  labels  = local.labels

  # For a push subscription the ack deadline is also the push request's
  # timeout; it must cover the longest time cutover can take to answer, or
  # Pub/Sub redelivers while cutover is still working (see var.push_ack_deadline).
  ack_deadline_seconds       = var.push_ack_deadline
  message_retention_duration = each.value.retention
  filter                     = each.value.filter

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.cutover.uri}${each.value.path}"

    oidc_token {
      service_account_email = google_service_account.push.email
      # One audience per endpoint (project.tf): a token captured on one
      # endpoint is refused by the others.
      audience = local.push_audiences[each.key]
    }
  }

  # cutover answers 503 on a transient failure; Pub/Sub then redelivers with
  # exponential backoff between these bounds instead of at once.
  retry_policy {
    minimum_backoff = var.push_minimum_backoff
    maximum_backoff = var.push_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire: the alerts subscription may be idle for months
  }

  # Pushes start as soon as the subscription exists: have the grants that make
  # them succeed in place first (token minting, invoking, dead-lettering).
  depends_on = [
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
    google_cloud_run_v2_service_iam_member.push_invokes_cutover,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
  ]
}

# cutover publishes each rollout's lifecycle events here (CUTOVER_EVENTS_TOPIC,
# README: Events and notifications), unless var.events_topic names another
# topic or turns events off.
resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Events carry cutover's decision records (service and revision names, request counts, rates, reasons), the same as its logs; Google-managed encryption is enough.
  count = var.events_topic == null ? 1 : 0

  project = var.project_id
  name    = "${var.service_name}-events"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

