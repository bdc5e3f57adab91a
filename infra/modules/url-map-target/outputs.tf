# Why this file exists: what a caller wires to the URL map (its target HTTPS
# proxy) and the two alert policies.

output "url_map" {
  description = "Id of the URL map (projects/.../global/urlMaps/NAME): set it as the `url_map` of the load balancer's target HTTPS proxy."
  value       = google_compute_url_map.this.id
}

output "alert_policies" {
  description = "Full names of the 5xx ratio and p99 latency alert policies."
  value       = [module.alerts.error_ratio_policy, module.alerts.p99_latency_policy]
}
