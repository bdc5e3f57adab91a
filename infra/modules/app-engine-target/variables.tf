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

variable "limits" {
  description = "Alert limits (validated by modules/split-alerts): max_error_rate, the 5xx share of requests; max_p99_ms, the p99 latency in ms; duration, how long either must be exceeded before an incident opens (e.g. \"60s\")."
  type        = object({ max_error_rate = number, max_p99_ms = number, duration = string })
}
