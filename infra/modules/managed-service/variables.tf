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

variable "max_error_rate" {
  description = "Alert when a revision's 5xx share of requests stays above this fraction for `duration`."
  type        = number
  default     = 0.01

  validation {
    condition     = var.max_error_rate >= 0 && var.max_error_rate <= 1
    error_message = "max_error_rate is a fraction from 0 to 1."
  }
}

variable "max_p99_ms" {
  description = "Alert when a revision's p99 request latency, in milliseconds, stays above this for `duration`."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_p99_ms > 0
    error_message = "max_p99_ms must be positive."
  }
}

variable "duration" {
  description = "How long a condition must hold before an incident opens, e.g. \"60s\"."
  type        = string
  default     = "60s"
}
