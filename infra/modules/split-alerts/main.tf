# Why this file exists: the two alert policies every kind of target cutover
# rolls out gets (a Cloud Run service, an App Engine service, a URL map),
# written once. Both are grouped per unit that takes a share of the traffic
# (revision, version, backend service), so the new unit's numbers are its own
# and a candidate at 10% cannot hide behind the stable one's; both notify
# cutover's `pubsub` channel, where an open incident rolls the rollout back.
# The calling module says what to count: the metric filters, the error
# clause, the fields to group by (which become the incident's resource
# labels, how cutover finds the target) and the user labels.

locals {
  # The limit as a percentage, for the texts.
  error_percent = var.max_error_rate * 100
}

resource "google_monitoring_alert_policy" "error_ratio" {
  project      = var.project_id
  display_name = "cutover: ${var.label} 5xx ratio per ${var.unit} above ${var.max_error_rate}"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = var.user_labels

  notification_channels = [var.notification_channel]

  conditions {
    display_name = "5xx / all ${var.requests_noun} of one ${var.unit} > ${var.max_error_rate}"

    condition_threshold {
      filter                  = "${var.requests_filter} AND ${var.server_errors_filter}"
      denominator_filter      = var.requests_filter
      comparison              = "COMPARISON_GT"
      threshold_value         = var.max_error_rate
      duration                = var.duration
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = var.group_by_fields
      }

      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = var.group_by_fields
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
    subject   = "cutover: ${var.label} is failing requests"
    content   = "A ${var.unit} of `${var.name}` answers more than ${local.error_percent}% of its ${var.requests_noun} with 5xx. cutover rolls back an ongoing rollout of this ${var.kind} when this incident opens."
  }
}

resource "google_monitoring_alert_policy" "p99_latency" {
  project      = var.project_id
  display_name = "cutover: ${var.label} p99 latency per ${var.unit} above ${var.max_p99_ms} ms"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = var.user_labels

  notification_channels = [var.notification_channel]

  conditions {
    display_name = "p99 ${var.latency_noun} of one ${var.unit} > ${var.max_p99_ms} ms"

    condition_threshold {
      filter                  = var.latencies_filter
      comparison              = "COMPARISON_GT"
      threshold_value         = var.max_p99_ms
      duration                = var.duration
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"

      # Keep each series' latency distribution (ALIGN_DELTA) and take the
      # 99th percentile of all of a unit's requests together.
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
        group_by_fields      = var.group_by_fields
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
    subject   = "cutover: ${var.label} is slow"
    content   = "A ${var.unit} of `${var.name}` has a p99 ${var.latency_noun} above ${var.max_p99_ms} ms. cutover rolls back an ongoing rollout of this ${var.kind} when this incident opens."
  }
}
