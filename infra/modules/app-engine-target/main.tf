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

  # response_code is an INT64 label: a numeric range, not a class string.
  server_errors = "metric.label.\"response_code\" >= 500 AND metric.label.\"response_code\" < 600"

  # One time series per version; module_id is kept so that the incident
  # carries the service as a resource label too.
  per_version = [
    "resource.label.\"module_id\"",
    "resource.label.\"version_id\"",
  ]

  user_labels = {
    "cutover-service"  = var.service
    "cutover-platform" = "app-engine"
  }
}

resource "google_monitoring_alert_policy" "error_ratio" {
  project      = var.project_id
  display_name = "cutover: App Engine ${var.service} 5xx ratio per version above ${var.max_error_rate}"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = local.user_labels

  notification_channels = [var.notification_channel]

  conditions {
    display_name = "5xx / all responses of one version > ${var.max_error_rate}"

    condition_threshold {
      filter                  = "${local.requests} AND ${local.server_errors}"
      denominator_filter      = local.requests
      comparison              = "COMPARISON_GT"
      threshold_value         = var.max_error_rate
      duration                = var.duration
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = local.per_version
      }

      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = local.per_version
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "cutover: App Engine ${var.service} is failing requests"
    content   = "A version of App Engine service `${var.service}` answers more than ${var.max_error_rate * 100}% of its requests with 5xx. cutover rolls back an ongoing rollout of this service when this incident opens."
  }
}

resource "google_monitoring_alert_policy" "p99_latency" {
  project      = var.project_id
  display_name = "cutover: App Engine ${var.service} p99 latency per version above ${var.max_p99_ms} ms"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = local.user_labels

  notification_channels = [var.notification_channel]

  conditions {
    display_name = "p99 response latency of one version > ${var.max_p99_ms} ms"

    condition_threshold {
      filter                  = local.latencies
      comparison              = "COMPARISON_GT"
      threshold_value         = var.max_p99_ms
      duration                = var.duration
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"

      # Keep each instance's latency distribution (ALIGN_DELTA) and take the
      # 99th percentile of all of a version's responses together.
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
        group_by_fields      = local.per_version
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "cutover: App Engine ${var.service} is slow"
    content   = "A version of App Engine service `${var.service}` has a p99 response latency above ${var.max_p99_ms} ms. cutover rolls back an ongoing rollout of this service when this incident opens."
  }
}
