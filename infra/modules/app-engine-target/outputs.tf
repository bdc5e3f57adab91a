# Why this file exists: exposes the two alert policies, for callers that want
# to reference them (e.g. in further notification channels).

output "alert_policies" {
  description = "Full names of the 5xx ratio and p99 latency alert policies."
  value       = [module.alerts.error_ratio_policy, module.alerts.p99_latency_policy]
}
