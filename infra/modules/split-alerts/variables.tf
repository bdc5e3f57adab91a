# Why this file exists: the inputs of one target's two alert policies: what to
# count and group by (from the calling module), how to name it in titles, the
# channel to notify and the limits to alert on.

variable "project_id" {
  description = "Project of the target and its metrics."
  type        = string
}

variable "name" {
  description = "The target's own name (service, URL map), as it appears in the incident text."
  type        = string
}

variable "label" {
  description = "How the policies' titles name the target, e.g. \"checkout\" or \"App Engine default\"."
  type        = string
}

variable "kind" {
  description = "What the target is, in the incident text: \"service\", \"App Engine service\", \"URL map\"."
  type        = string
}

variable "unit" {
  description = "What takes a share of the traffic, one time series each: \"revision\", \"version\", \"backend service\"."
  type        = string
}

variable "requests_noun" {
  description = "What the request count counts, in texts: \"requests\", \"responses\", \"backend requests\"."
  type        = string
}

variable "latency_noun" {
  description = "What the latency distribution measures, in texts: \"request latency\", \"backend latency\"."
  type        = string
}

variable "requests_filter" {
  description = "Monitoring filter selecting the target's request count (every response)."
  type        = string
}

variable "server_errors_filter" {
  description = "Clause added (AND) to requests_filter to select the 5xx responses only."
  type        = string
}

variable "latencies_filter" {
  description = "Monitoring filter selecting the target's latency distribution."
  type        = string
}

variable "group_by_fields" {
  description = "Fields making one time series per unit; they become the incident's resource labels, by which cutover finds the target."
  type        = list(string)
}

variable "user_labels" {
  description = "User labels of both policies (`cutover-service`, and `cutover-platform` for targets other than Cloud Run)."
  type        = map(string)
}

variable "notification_channel" {
  description = "Full name (projects/.../notificationChannels/...) of the `pubsub` channel whose topic cutover is subscribed to."
  type        = string
}

variable "max_error_rate" {
  description = "Alert when a unit's 5xx share of requests stays above this fraction for `duration`."
  type        = number
  default     = 0.01

  validation {
    condition     = var.max_error_rate >= 0 && var.max_error_rate <= 1
    error_message = "max_error_rate is a fraction from 0 to 1."
  }
}

variable "max_p99_ms" {
  description = "Alert when a unit's p99 latency, in milliseconds, stays above this for `duration`."
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
