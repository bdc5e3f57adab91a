# Why this file exists: enrolling one global external Application Load
# Balancer in cutover (platform `load-balancer`): the URL map whose route
# splits traffic between two backend services by weight, and the alert
# policies that watch each backend service separately. cutover moves the
# weights (urlMaps.patch with the map's fingerprint) and rolls back when an
# incident of these policies opens; it matches the incident to the map by the
# `https_lb_rule` resource labels every series is grouped by (`url_map_name`,
# `backend_target_name`) and by the `cutover-service` user label (the map's
# name) and `cutover-platform` label.
#
# Which route carries the split: the map's default route action, or, when
# `path_matcher` is set, that path matcher's default route action (with a
# host rule sending its hosts to it). Either way it holds exactly two
# weighted backend services, created stable = 100 and candidate = 0. Weights
# are 0..1000 and each backend gets weight / (sum of weights) of new requests
# (Compute API, UrlMap: WeightedBackendService.weight).
#
# Blue/green: after a rollout promotes the candidate (0 -> 1000 in cutover's
# steps) the names swap roles: the next release goes to the backend that now
# has weight 0. That is why Terraform keeps no opinion on the weights after
# creation (lifecycle below), and why the pipeline
# (examples/mig-cloudbuild.yaml) looks up which backend is idle rather than
# trusting a fixed name.
#
# Metrics (Cloud Monitoring's list of Google Cloud metrics, "loadbalancing"),
# on resource https_lb_rule (global external Application Load Balancer):
#   loadbalancing.googleapis.com/https/backend_request_count: DELTA INT64,
#     metric label `response_code_class` (INT64: 200, 300, 400, 500; 0 when
#     no response);
#   loadbalancing.googleapis.com/https/backend_latencies: DELTA DISTRIBUTION
#     in ms, from the proxy sending the request to the last byte of the
#     backend's response.
#   Resource labels used: url_map_name, backend_target_name (the backend
#   service's name).
#
# MIG and GKE (NEG) backends, what differs:
# * What a release changes: a MIG behind the idle backend service is rolled
#   to a new instance template (examples/mig-cloudbuild.yaml); on GKE the
#   idle backend service's NEGs point at the pods of a second Deployment,
#   which the pipeline updates (standalone NEGs, the `cloud.google.com/neg`
#   Service annotation, attached to backend services managed here or by your
#   own Terraform; a GKE Ingress or Gateway manages its own URL map and
#   backend services, which cutover must not share with its controller).
# * Readiness: cutover asks backendServices.getHealth for every group of the
#   backend service: instances of a MIG, endpoints (pods) of a NEG. A NEG
#   endpoint appears only once the pod is ready and registered, so a fresh
#   Deployment can show fewer endpoints than replicas for a while.
# * Connection draining (`connection_draining_timeout_sec` of the backend
#   service; for GKE Ingress a BackendConfig) applies when an instance or
#   endpoint leaves a group: a MIG's rolling update, a pod's termination. It
#   does not apply to a weight change. On GKE, pods must outlive the draining
#   timeout (terminationGracePeriodSeconds, a preStop delay), or requests in
#   flight are cut when a Deployment rolls; a MIG's instances are drained by
#   the MIG itself.
# * Session affinity: a backend service is chosen for new traffic only; once
#   a client's request went to a backend service, its later requests follow
#   that backend service's session affinity (WeightedBackendService.weight in
#   the Compute API reference). With affinity on (CLIENT_IP, GENERATED_COOKIE,
#   HTTP_COOKIE, ...) the share a backend really serves lags its weight, and
#   a rollback does not move clients already stuck to the candidate at once
#   (TO CHECK: how long that lasts per affinity type). Without affinity
#   (NONE), each new connection's requests follow the weights.
#
# What cutover may do on Compute Engine (a custom role) is granted once per
# project in iam.tf.

locals {
  # The two weighted backend services at creation: all traffic on stable.
  initial_weights = [
    { backend_service = var.stable_backend_service, weight = 100 },
    { backend_service = var.candidate_backend_service, weight = 0 },
  ]

  requests = join(" AND ", [
    "metric.type = \"loadbalancing.googleapis.com/https/backend_request_count\"",
    "resource.type = \"https_lb_rule\"",
    "resource.label.\"url_map_name\" = \"${var.name}\"",
  ])

  latencies = join(" AND ", [
    "metric.type = \"loadbalancing.googleapis.com/https/backend_latencies\"",
    "resource.type = \"https_lb_rule\"",
    "resource.label.\"url_map_name\" = \"${var.name}\"",
  ])

}

resource "google_compute_url_map" "this" {
  project     = var.project_id
  name        = var.name
  description = "Weighted split between two backend services, moved by cutover."

  # With a path matcher, requests for other hosts go to default_service.
  default_service = var.path_matcher == null ? null : var.default_service

  dynamic "default_route_action" {
    for_each = var.path_matcher == null ? [1] : []
    content {
      dynamic "weighted_backend_services" {
        for_each = local.initial_weights
        content {
          backend_service = weighted_backend_services.value.backend_service
          weight          = weighted_backend_services.value.weight
        }
      }
    }
  }

  dynamic "host_rule" {
    for_each = var.path_matcher == null ? [] : [var.path_matcher]
    content {
      hosts        = host_rule.value.hosts
      path_matcher = host_rule.value.name
    }
  }

  dynamic "path_matcher" {
    for_each = var.path_matcher == null ? [] : [var.path_matcher]
    content {
      name = path_matcher.value.name

      default_route_action {
        dynamic "weighted_backend_services" {
          for_each = local.initial_weights
          content {
            backend_service = weighted_backend_services.value.backend_service
            weight          = weighted_backend_services.value.weight
          }
        }
      }
    }
  }

  lifecycle {
    # cutover owns the split after creation: it patches the weights step by
    # step, and at the end of a rollout the candidate holds all of them.
    # Without this, every later apply would put 100/0 back, undoing a
    # finished rollout (or moving traffic in the middle of one) behind
    # cutover's back; cutover would then see a split nobody recorded and
    # pause. The whole list is ignored, not only the weights: ignoring
    # `weighted_backend_services[i].weight` alone would pair Terraform's
    # backend at index i with whatever weight sits at that index, so a
    # reordered list (by the API or by cutover's patch) would silently move
    # traffic. To change the backends themselves, take these paths out of
    # the list for that apply, between rollouts.
    ignore_changes = [
      default_route_action[0].weighted_backend_services,
      path_matcher[0].default_route_action[0].weighted_backend_services,
    ]

    precondition {
      condition     = var.path_matcher == null || var.default_service != null
      error_message = "default_service is required with path_matcher: it serves the hosts the path matcher does not."
    }
  }
}

# The two alert policies, per backend service behind this map.
module "alerts" {
  source = "../split-alerts"

  project_id           = var.project_id
  name                 = var.name
  label                = "URL map ${var.name}"
  kind                 = "URL map"
  unit                 = "backend service"
  requests_noun        = "backend requests"
  latency_noun         = "backend latency"
  requests_filter      = local.requests
  latencies_filter     = local.latencies
  server_errors_filter = "metric.label.\"response_code_class\" = 500"
  group_by_fields      = ["resource.label.\"url_map_name\"", "resource.label.\"backend_target_name\""]
  user_labels          = { "cutover-service" = var.name, "cutover-platform" = "load-balancer" }

  notification_channel = var.notification_channel
  max_error_rate       = var.limits.max_error_rate
  max_p99_ms           = var.limits.max_p99_ms
  duration             = var.limits.duration
}
