# Why this file exists: the alerting half of enrolling one Cloud Run service in
# cutover. Two alert policies watch each revision of the service separately (a
# new revision at 10% must not hide behind the old one's good numbers) and
# notify cutover's `pubsub` channel; an open incident makes cutover roll the
# rollout back. cutover matches the incident to the service by the
# `service_name` resource label (every series here is grouped by it) and by the
# policy's `cutover-service` user label.
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

  # One time series per revision; service_name is kept so that the incident
  # carries it as a resource label.
  per_revision = [
    "resource.label.\"service_name\"",
    "resource.label.\"revision_name\"",
  ]

  user_labels = {
    "cutover-service" = var.service_name
  }
}

resource "google_monitoring_alert_policy" "error_ratio" {
  project      = var.project_id
  display_name = "cutover: ${var.service_name} 5xx ratio per revision above ${var.max_error_rate}"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = local.user_labels

  notification_channels = [var.notification_channel]

  conditions {
    display_name = "5xx / all requests of one revision > ${var.max_error_rate}"

    condition_threshold {
      filter                  = "${local.requests} AND metric.label.\"response_code_class\" = \"5xx\""
      denominator_filter      = local.requests
      comparison              = "COMPARISON_GT"
      threshold_value         = var.max_error_rate
      duration                = var.duration
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = local.per_revision
      }

      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = local.per_revision
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
    subject   = "cutover: ${var.service_name} is failing requests"
    content   = "A revision of `${var.service_name}` answers more than ${var.max_error_rate * 100}% of its requests with 5xx. cutover rolls back an ongoing rollout of this service when this incident opens."
  }
}

resource "google_monitoring_alert_policy" "p99_latency" {
  project      = var.project_id
  display_name = "cutover: ${var.service_name} p99 latency per revision above ${var.max_p99_ms} ms"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = local.user_labels

  notification_channels = [var.notification_channel]

  conditions {
    display_name = "p99 request latency of one revision > ${var.max_p99_ms} ms"

    condition_threshold {
      filter                  = local.latencies
      comparison              = "COMPARISON_GT"
      threshold_value         = var.max_p99_ms
      duration                = var.duration
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"

      # Keep each instance's latency distribution (ALIGN_DELTA) and take the
      # 99th percentile of all of a revision's requests together.
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
        group_by_fields      = local.per_revision
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
    subject   = "cutover: ${var.service_name} is slow"
    content   = "A revision of `${var.service_name}` has a p99 request latency above ${var.max_p99_ms} ms. cutover rolls back an ongoing rollout of this service when this incident opens."
  }
}
