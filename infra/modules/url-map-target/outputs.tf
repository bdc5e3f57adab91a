# Why this file exists: what a caller wires to the URL map (its target HTTPS
# proxy) and the two alert policies.

output "url_map" {
  description = "Id of the URL map (projects/.../global/urlMaps/NAME): set it as the `url_map` of the load balancer's target HTTPS proxy."
  value       = google_compute_url_map.this.id
}

output "error_ratio_policy" {
  description = "Full name of the 5xx ratio alert policy."
  value       = google_monitoring_alert_policy.error_ratio.name
}

output "p99_latency_policy" {
  description = "Full name of the p99 latency alert policy."
  value       = google_monitoring_alert_policy.p99_latency.name
}
