# Why this file exists: exposes the two alert policies, for callers that want
# to reference them (e.g. in further notification channels).

output "error_ratio_policy" {
  description = "Full name of the 5xx ratio alert policy."
  value       = google_monitoring_alert_policy.error_ratio.name
}

output "p99_latency_policy" {
  description = "Full name of the p99 latency alert policy."
  value       = google_monitoring_alert_policy.p99_latency.name
}
