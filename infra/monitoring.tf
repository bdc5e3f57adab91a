# Why this file exists: the Cloud Monitoring side of cutover. Alert policies on
# each managed service (one module instance per entry of var.managed_services)
# notify a `pubsub` channel; its topic is pushed to POST /pubsub/alerts, where
# an open incident rolls the service's rollout back. A dashboard shows the same
# metrics per revision, for a person watching a rollout.

resource "google_monitoring_notification_channel" "cutover" {
  project      = var.project_id
  display_name = "cutover (${google_pubsub_topic.alerts.name})"
  description  = "Delivers alert incidents of cutover-managed services to ${var.service_name}."
  type         = "pubsub"
  labels = {
    topic = google_pubsub_topic.alerts.id
  }
  user_labels = local.labels
}

module "managed_service" {
  source   = "./modules/managed-service"
  for_each = var.managed_services

  project_id           = var.project_id
  service_name         = each.key
  region               = each.value.region
  notification_channel = google_monitoring_notification_channel.cutover.name
  # Alert at the same limits cutover gates a step on, unless overridden.
  max_error_rate = coalesce(each.value.max_error_rate, var.max_error_rate)
  max_p99_ms     = coalesce(each.value.max_p99_ms, var.max_p99_ms)
  duration       = each.value.alert_duration
}

# Request rate, 5xx ratio and p99 latency per revision of every Cloud Run
# service in the project; the dashboard-wide filter picks one service.
resource "google_monitoring_dashboard" "rollouts" {
  project        = var.project_id
  dashboard_json = file("${path.module}/dashboard.json")

  depends_on = [google_project_service.apis]
}
