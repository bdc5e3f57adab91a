# Why this file exists: the inputs of one managed service's alerting: which
# service, which channel to notify, and the limits to alert on.

variable "project_id" {
  description = "Project the managed service runs in."
  type        = string
}

variable "service_name" {
  description = "Name of the managed Cloud Run service. Also the value of the `cutover-service` user label on both policies, which is how cutover matches an incident to the service."
  type        = string

  validation {
    # user label values: lowercase letters, digits, '_' and '-', at most 63
    condition     = can(regex("^[a-z][a-z0-9_-]{0,62}$", var.service_name))
    error_message = "service_name must be a Cloud Run service name (lowercase letters, digits and '-', at most 63 characters)."
  }
}

variable "region" {
  description = "Region of the service, to alert on that region's revisions only; null alerts on the service in every region."
  type        = string
  default     = null
}

variable "notification_channel" {
  description = "Full name (projects/.../notificationChannels/...) of the `pubsub` channel whose topic cutover is subscribed to."
  type        = string
}

variable "limits" {
  description = "Alert limits (validated by modules/split-alerts): max_error_rate, the 5xx share of requests; max_p99_ms, the p99 latency in ms; duration, how long either must be exceeded before an incident opens (e.g. \"60s\")."
  type        = object({ max_error_rate = number, max_p99_ms = number, duration = string })
}
