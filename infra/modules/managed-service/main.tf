# Why this file exists: the alerting half of enrolling one Cloud Run service in
# cutover. Two alert policies watch each revision of the service separately (a
# new revision at 10% must not hide behind the old one's good numbers) and
# notify cutover's `pubsub` channel; an open incident makes cutover roll the
# rollout back. cutover matches the incident to the service by the
# `service_name` resource label (every series here is grouped by it) and by the
# policy's `cutover-service` user label.
# The policies themselves are modules/split-alerts, shared by every platform.
# The other half, deploying with --no-traffic, lives in the service's build
# pipeline (examples/app-cloudbuild.yaml).

locals {
  # Requests served by this service's revisions (in one region, if given).
  requests = join(" AND ", compact([
    "metric.type = \"run.googleapis.com/request_count\"",
    "resource.type = \"cloud_run_revision\"",
    "resource.label.\"service_name\" = \"${var.service_name}\"",
    var.region == null ? "" : "resource.label.\"location\" = \"${var.region}\"",
  ]))

  latencies = join(" AND ", compact([
    "metric.type = \"run.googleapis.com/request_latencies\"",
    "resource.type = \"cloud_run_revision\"",
    "resource.label.\"service_name\" = \"${var.service_name}\"",
    var.region == null ? "" : "resource.label.\"location\" = \"${var.region}\"",
  ]))

}

module "alerts" {
  source = "../split-alerts"

  project_id           = var.project_id
  name                 = var.service_name
  label                = var.service_name
  kind                 = "service"
  unit                 = "revision"
  requests_noun        = "requests"
  latency_noun         = "request latency"
  requests_filter      = local.requests
  latencies_filter     = local.latencies
  server_errors_filter = "metric.label.\"response_code_class\" = \"5xx\""
  # One time series per revision; service_name is kept so that the incident
  # carries it as a resource label.
  group_by_fields = ["resource.label.\"service_name\"", "resource.label.\"revision_name\""]
  user_labels     = { "cutover-service" = var.service_name }

  notification_channel = var.notification_channel
  max_error_rate       = var.limits.max_error_rate
  max_p99_ms           = var.limits.max_p99_ms
  duration             = var.limits.duration
}

# The policies were this module's own before they moved to split-alerts: the
# same policies, kept (not replaced) in existing deployments.
moved {
  from = google_monitoring_alert_policy.error_ratio
  to   = module.alerts.google_monitoring_alert_policy.error_ratio
}

moved {
  from = google_monitoring_alert_policy.p99_latency
  to   = module.alerts.google_monitoring_alert_policy.p99_latency
}
