# Why this file exists: the alerting half of enrolling one App Engine service
# in cutover (platform `app-engine`). Two alert policies watch each version of
# the service separately (a new version at 10% must not hide behind the old
# one's good numbers) and notify cutover's `pubsub` channel; an open incident
# makes cutover roll the rollout back. cutover matches the incident to the
# service by the `gae_app` resource labels every series here is grouped by
# (`module_id` is the service id, `version_id` the version) and by the
# policies' `cutover-service` and `cutover-platform` user labels.
#
# Metrics (Cloud Monitoring's list of Google Cloud metrics, "appengine"):
#   appengine.googleapis.com/http/server/response_count: DELTA INT64 on
#     gae_app, metric label `response_code` (INT64, the HTTP status);
#   appengine.googleapis.com/http/server/response_latencies: DELTA
#     DISTRIBUTION in ms on gae_app, labels `response_code`, `loading`.
#   gae_app's resource labels: project_id, module_id, version_id, zone.
# Unlike Cloud Run's response_code_class ("5xx", a string), App Engine gives
# the code itself as an integer, so 5xx is the range 500..599.
#
# What cutover may do on App Engine (a custom role, not a predefined one) is
# granted once per project in iam.tf: App Engine's IAM exists per project only.
# The policies themselves are modules/split-alerts, shared by every platform.
# The other half, deploying with --no-promote, lives in the service's build
# pipeline (examples/appengine-cloudbuild.yaml).

locals {
  # Requests served by this service's versions.
  requests = join(" AND ", [
    "metric.type = \"appengine.googleapis.com/http/server/response_count\"",
    "resource.type = \"gae_app\"",
    "resource.label.\"module_id\" = \"${var.service}\"",
  ])

  latencies = join(" AND ", [
    "metric.type = \"appengine.googleapis.com/http/server/response_latencies\"",
    "resource.type = \"gae_app\"",
    "resource.label.\"module_id\" = \"${var.service}\"",
  ])
}

module "alerts" {
  source = "../split-alerts"

  project_id       = var.project_id
  name             = var.service
  label            = "App Engine ${var.service}"
  kind             = "App Engine service"
  unit             = "version"
  requests_noun    = "responses"
  latency_noun     = "response latency"
  requests_filter  = local.requests
  latencies_filter = local.latencies
  # response_code is an INT64 label: a numeric range, not a class string.
  server_errors_filter = "metric.label.\"response_code\" >= 500 AND metric.label.\"response_code\" < 600"
  # One time series per version; module_id is kept so that the incident
  # carries the service as a resource label too.
  group_by_fields = ["resource.label.\"module_id\"", "resource.label.\"version_id\""]
  user_labels     = { "cutover-service" = var.service, "cutover-platform" = "app-engine" }

  notification_channel = var.notification_channel
  max_error_rate       = var.limits.max_error_rate
  max_p99_ms           = var.limits.max_p99_ms
  duration             = var.limits.duration
}
