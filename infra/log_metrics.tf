# Why this file exists: metrics about cutover itself, counted from its own log
# lines (log-based metrics), where Cloud Monitoring users look for them: how
# many decisions of each kind it makes, which services it rolls back, and how
# many lifecycle events or chat notifications it failed to deliver. Each
# decision is one structured line (jsonPayload.message = "decision", typed
# fields, see README.md "Logs"), so the filters and labels read its fields.
# infra/dashboard.json charts all three.

locals {
  # cutover's own log lines: its revisions' container output.
  cutover_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.service_name}\""
}

# Every decision, by kind (start, advance, hold, pause, rollback, bake,
# complete, refused, ...): a burst of `hold` or `refused` wants a look.
resource "google_logging_metric" "decisions" {
  project     = var.project_id
  name        = "cutover_decisions"
  description = "Decisions cutover made, by kind (jsonPayload.decision) and mode (live or shadow)."
  filter      = "${local.cutover_logs} AND jsonPayload.message=\"decision\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "cutover decisions"
    labels {
      key         = "decision"
      value_type  = "STRING"
      description = "The decision's kind."
    }
    labels {
      key         = "mode"
      value_type  = "STRING"
      description = "live, or shadow (decided and logged, nothing written)."
    }
  }
  label_extractors = {
    decision = "EXTRACT(jsonPayload.decision)"
    mode     = "EXTRACT(jsonPayload.mode)"
  }

  depends_on = [google_project_service.apis]
}

# Rollbacks that moved traffic (the write was applied), by service
# ("region/name"): shadow-mode rollbacks write nothing and are not counted.
resource "google_logging_metric" "rollbacks" {
  project     = var.project_id
  name        = "cutover_rollbacks"
  description = "Rollbacks cutover applied, by service (region/name)."
  filter      = "${local.cutover_logs} AND jsonPayload.message=\"decision\" AND jsonPayload.decision=\"rollback\" AND jsonPayload.write=\"applied\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "cutover rollbacks"
    labels {
      key         = "service"
      value_type  = "STRING"
      description = "The rolled-back service, as region/name."
    }
  }
  label_extractors = {
    service = "REGEXP_EXTRACT(jsonPayload.service, \"^[^/]+/(.+)$\")"
  }

  depends_on = [google_project_service.apis]
}

# Lifecycle events (Pub/Sub) and chat notifications given up on: cutover logs
# each one it loses as one line with notify = "lost" and its channel.
resource "google_logging_metric" "publish_failures" {
  project     = var.project_id
  name        = "cutover_publish_failures"
  description = "Lifecycle events and chat notifications cutover could not deliver, by channel (events or chat)."
  filter      = "${local.cutover_logs} AND jsonPayload.notify=\"lost\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "cutover publish failures"
    labels {
      key         = "channel"
      value_type  = "STRING"
      description = "events (the Pub/Sub topic) or chat (the webhook)."
    }
  }
  label_extractors = {
    channel = "EXTRACT(jsonPayload.channel)"
  }

  depends_on = [google_project_service.apis]
}
