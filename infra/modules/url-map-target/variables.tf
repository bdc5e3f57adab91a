# Why this file exists: the inputs of one URL map cutover moves weights on:
# its name, the two backend services, which route carries the split, the
# channel to notify and the limits to alert on.

variable "project_id" {
  description = "Project of the load balancer."
  type        = string
}

variable "name" {
  description = "Name of the global URL map to create. Also the `url_map_name` resource label of its metrics and the value of the `cutover-service` user label on both policies."
  type        = string

  validation {
    # Compute resource names (RFC 1035), also a valid user label value.
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be a Compute Engine resource name: a lowercase letter, then lowercase letters, digits or '-', at most 63 characters."
  }
}

variable "stable_backend_service" {
  description = "Id or self link of the global backend service serving all traffic when the map is created (weight 100)."
  type        = string
}

variable "candidate_backend_service" {
  description = "Id or self link of the second global backend service, created at weight 0: the first release goes to it."
  type        = string
}

variable "path_matcher" {
  description = "null: the split is the map's default route action (every host, every path). Otherwise the split is the default route action of a path matcher with this name, serving these hosts; other hosts go to default_service."
  type = object({
    name  = string
    hosts = list(string)
  })
  default = null
}

variable "default_service" {
  description = "With path_matcher only: id or self link of the backend service (or bucket) for hosts the path matcher does not serve."
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
