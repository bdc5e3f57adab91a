# Why this file exists: the Cloud Monitoring side of cutover. Alert policies on
# each managed service (one module instance per entry of var.managed_services)
# notify a `pubsub` channel; its topic is pushed to POST /pubsub/alerts, where
# an open incident rolls the service's rollout back. The same for each enrolled
# App Engine service (per version) and URL map (per backend service; the URL
# map itself is made by its module too). A dashboard shows the Cloud Run
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

locals {
  # Alert limits of every enrolled target, keyed "<platform>/<name>" (a Cloud
  # Run service and an App Engine service may share a name): the limits
  # cutover gates a step on, unless the entry overrides them.
  alert_limits = {
    for key, t in merge(
      { for name, t in var.managed_services : "cloud-run/${name}" => t },
      { for name, t in var.app_engine_services : "app-engine/${name}" => t },
      { for name, t in var.url_maps : "load-balancer/${name}" => t },
      ) : key => {
      max_error_rate = coalesce(t.max_error_rate, var.max_error_rate)
      max_p99_ms     = coalesce(t.max_p99_ms, var.max_p99_ms)
      duration       = t.alert_duration
    }
  }
}

module "managed_service" {
  source   = "./modules/managed-service"
  for_each = var.managed_services

  project_id           = var.project_id
  service_name         = each.key
  region               = each.value.region
  notification_channel = google_monitoring_notification_channel.cutover.name
  # Alert at the same limits cutover gates a step on, unless overridden.
  limits = local.alert_limits["cloud-run/${each.key}"]
}

# Request rate, 5xx ratio and p99 latency per revision of every Cloud Run
# service in the project; the dashboard-wide filter picks one service.
resource "google_monitoring_dashboard" "rollouts" {
  project        = var.project_id
  dashboard_json = file("${path.module}/dashboard.json")

  depends_on = [google_project_service.apis]
}

# Per enrolled App Engine service: alert policies on its versions (gae_app).
module "app_engine_target" {
  source   = "./modules/app-engine-target"
  for_each = var.app_engine_services

  project_id           = var.project_id
  service              = each.key
  notification_channel = google_monitoring_notification_channel.cutover.name
  limits               = local.alert_limits["app-engine/${each.key}"]

  depends_on = [google_project_service.apis]
}

# Per enrolled URL map: the map itself, created with its two weighted backend
# services, and alert policies on each backend service (https_lb_rule).
module "url_map_target" {
  source   = "./modules/url-map-target"
  for_each = var.url_maps

  project_id                = var.project_id
  name                      = each.key
  stable_backend_service    = each.value.stable_backend_service
  candidate_backend_service = each.value.candidate_backend_service
  path_matcher              = each.value.path_matcher
  default_service           = each.value.default_service
  notification_channel      = google_monitoring_notification_channel.cutover.name
  limits                    = local.alert_limits["load-balancer/${each.key}"]

  depends_on = [google_project_service.apis]
}
