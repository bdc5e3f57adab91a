# Why this file exists: the inputs of one App Engine service's alerting: which
# service, which channel to notify, and the limits to alert on.

variable "project_id" {
  description = "Project of the App Engine application (one application per project)."
  type        = string
}

variable "service" {
  description = "App Engine service id (`default` or the `service:` of its app.yaml): the `module_id` resource label of its metrics, and the value of the `cutover-service` user label on both policies."
  type        = string

  validation {
    # Service ids: lowercase letters, digits and '-', at most 63 characters;
    # also a valid user label value.
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.service))
    error_message = "service must be an App Engine service id (lowercase letters, digits and '-', at most 63 characters)."
  }
}

variable "notification_channel" {
  description = "Full name (projects/.../notificationChannels/...) of the `pubsub` channel whose topic cutover is subscribed to."
  type        = string
}

variable "max_error_rate" {
  description = "Alert when a version's 5xx share of responses stays above this fraction for `duration`."
  type        = number
  default     = 0.01

  validation {
    condition     = var.max_error_rate >= 0 && var.max_error_rate <= 1
    error_message = "max_error_rate is a fraction from 0 to 1."
  }
}

variable "max_p99_ms" {
  description = "Alert when a version's p99 response latency, in milliseconds, stays above this for `duration`."
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
