# Why this file exists: every input of the deployment. The first group places
# and sizes it; the second lists the services cutover manages; the third is
# cutover's own settings, one variable per CUTOVER_* environment variable,
# each defaulting to cutover's built-in default (src/config.rs).

# --- Where and what -----------------------------------------------------------

variable "project_id" {
  description = "Project to deploy cutover into. The services it manages run in the same project."
  type        = string
}

variable "region" {
  description = "Region of the cutover service, its image repository and its tick job; also CUTOVER_REGION."
  type        = string
}

variable "service_name" {
  description = "Name of the cutover Cloud Run service; also the prefix of every other resource name here."
  type        = string
  default     = "cutover"

  validation {
    # It is also a service account id (6 to 30 characters) with "-build" appended.
    condition     = can(regex("^[a-z][a-z0-9-]{4,22}[a-z0-9]$", var.service_name))
    error_message = "service_name must be 6 to 24 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "image" {
  description = "Image of the first revision only. Until cloudbuild.yaml has deployed cutover's own image (after which Terraform ignores this), Google's public sample image answers every path, /healthz included, with 200."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "labels" {
  description = "Extra labels for every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- Sizing and exposure of the cutover service -------------------------------

variable "ingress" {
  description = "Cloud Run ingress. INGRESS_TRAFFIC_INTERNAL_ONLY still admits Pub/Sub push from this project."
  type        = string
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_ALL"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_INTERNAL_ONLY, INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER or INGRESS_TRAFFIC_ALL."
  }
}

variable "max_instances" {
  description = "Upper bound on cutover instances. Its load is one tick a minute plus one event per build or incident, so one instance is busy well under 1% of the time; the second is headroom for overlapping deliveries."
  type        = number
  default     = 2

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 10
    error_message = "max_instances must be between 1 and 10."
  }
}

variable "concurrency" {
  description = "Concurrent requests per instance. Requests wait mostly on Google APIs, so a few dozen fit in one instance."
  type        = number
  default     = 20

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be between 1 and 1000."
  }
}

variable "cpu" {
  description = "CPU limit of a cutover instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of a cutover instance."
  type        = string
  default     = "512Mi"
}

variable "request_timeout" {
  description = "Cloud Run request timeout. Keep it above event_deadline + 5s (cutover's own backstop) and below push_ack_deadline."
  type        = string
  default     = "90s"
}

variable "deletion_protection" {
  description = "Refuse to delete the cutover service on destroy, and keep (protect, and abandon on destroy) the Firestore database of cutover's App Engine and load-balancer records. The service keeps no state of its own (Cloud Run rollout state lives in annotations on the managed services), so recreating it loses nothing; the Firestore records are the only copy of those platforms' rollout state."
  type        = bool
  default     = false
}

# --- Event delivery -------------------------------------------------------------

variable "create_cloud_builds_topic" {
  description = "Create the `cloud-builds` topic Cloud Build publishes to. Set to false if the project already has it."
  type        = bool
  default     = true
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before Pub/Sub moves it to the dead-letter topic (5 to 100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "push_ack_deadline" {
  description = <<-EOT
    Ack deadline of the three push subscriptions, in seconds (Pub/Sub allows 10
    to 600); for push it is also the request timeout. It must cover the longest
    answer cutover can give, or Pub/Sub redelivers an event cutover is still
    handling. Worst case, from the push leaving Pub/Sub: a cold start, bounded
    by the startup probe (2 s x 15 = 30 s once the container runs; cutover
    itself listens within about 13 ms, docs/performance.md), then the request,
    bounded by cutover's backstop at event_deadline + 5 s = 55 s (it covers the
    JWKS fetch, at most 5 s, and the 50 s event deadline). 30 + 55 = 85 s; the
    default 120 s leaves 35 s for Cloud Run to place the instance and pull the
    image before the container starts.
  EOT
  type        = number
  default     = 120

  validation {
    condition     = var.push_ack_deadline >= 60 && var.push_ack_deadline <= 600
    error_message = "push_ack_deadline must be between 60 and 600 seconds (above cutover's 55 s answer bound, at most Pub/Sub's maximum)."
  }
}

variable "push_minimum_backoff" {
  description = "Shortest wait before Pub/Sub redelivers a message cutover answered with 503."
  type        = string
  default     = "10s"
}

variable "push_maximum_backoff" {
  description = "Longest wait between redeliveries (at most 600s)."
  type        = string
  default     = "600s"
}

variable "tick_schedule" {
  description = "Cron schedule of the tick, in UTC. cutover's step interval and hold timers are checked at each tick, so they resolve to this granularity."
  type        = string
  default     = "* * * * *"
}

variable "scheduler_region" {
  description = "Region of the Cloud Scheduler job, where Cloud Scheduler is not offered in var.region; null means var.region."
  type        = string
  default     = null
}

# --- Image repository ----------------------------------------------------------

variable "artifact_repository" {
  description = "Artifact Registry repository (in var.region) that cloudbuild.yaml pushes cutover's image to."
  type        = string
  default     = "cutover"
}

variable "images_to_keep" {
  description = "Newest cutover images kept regardless of age, for rollback of cutover itself."
  type        = number
  default     = 10
}

# --- Managed services ------------------------------------------------------------

variable "managed_services" {
  description = <<-EOT
    Cloud Run services that cutover rolls out, keyed by service name. For each:
    runtime_service_account: email of the account the service runs as; cutover
      gets roles/iam.serviceAccountUser on it, and on no other account.
    region: the service's region: alerts cover this region only, and cutover
      evaluates it (CUTOVER_REGIONS). null: alerts cover every region, and the
      service must be in var.region or var.regions, or its rollouts are refused.
    max_error_rate, max_p99_ms: alert limits (null: the cutover defaults below).
    alert_duration: how long a limit must be exceeded before an incident opens.
  EOT
  type = map(object({
    runtime_service_account = string
    region                  = optional(string)
    max_error_rate          = optional(number)
    max_p99_ms              = optional(number)
    alert_duration          = optional(string, "60s")
  }))
  default = {}

  validation {
    condition     = alltrue([for s in values(var.managed_services) : can(regex("^[^@\\s]+@[^@\\s]+\\.gserviceaccount\\.com$", s.runtime_service_account))])
    error_message = "runtime_service_account must be a service account email (...@....gserviceaccount.com)."
  }
}

# --- cutover settings (CUTOVER_*), defaults as in cutover ------------------------

variable "regions" {
  description = "Regions cutover evaluates besides var.region and every managed service's region (CUTOVER_REGIONS is the union of the three, distinct and sorted). Only needed for services deployed to a region not named in managed_services."
  type        = list(string)
  default     = []
}

variable "run_endpoint" {
  description = "CUTOVER_RUN_ENDPOINT: base URL of the Cloud Run Admin API."
  type        = string
  default     = "https://run.googleapis.com"
}

variable "monitoring_endpoint" {
  description = "CUTOVER_MONITORING_ENDPOINT: base URL of the Cloud Monitoring API."
  type        = string
  default     = "https://monitoring.googleapis.com"
}

variable "auth" {
  description = "CUTOVER_AUTH: how cutover gets tokens for Google APIs: auto, metadata or none."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "metadata", "none"], var.auth)
    error_message = "auth must be auto, metadata or none."
  }
}

variable "smoke_path" {
  description = "CUTOVER_SMOKE_PATH: path cutover GETs on the new revision's tag URL before its first step; null means no smoke check. A managed service that requires authentication must then let cutover's account invoke it (roles/run.invoker), which this configuration does not grant."
  type        = string
  default     = null
}

variable "steps" {
  description = "CUTOVER_STEPS: traffic percentages of the new revision, in order, ending at 100."
  type        = list(number)
  default     = [10, 50, 100]

  validation {
    condition     = length(var.steps) > 0 && var.steps[length(var.steps) - 1] == 100 && alltrue([for i, s in var.steps : s > 0 && s <= 100 && (i == 0 || s > var.steps[max(i - 1, 0)])])
    error_message = "steps must be increasing percentages ending at 100."
  }
}

variable "step_interval" {
  description = "CUTOVER_STEP_INTERVAL: time a step must stay healthy before the next one."
  type        = string
  default     = "5m"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.step_interval))
    error_message = "step_interval is a duration as cutover parses it: seconds (90), or units s, m, h, d (90s, 5m, 1h30m)."
  }
}

variable "metrics_delay" {
  description = "CUTOVER_METRICS_DELAY: age metrics must have before cutover trusts them (Cloud Monitoring's ingestion lag)."
  type        = string
  default     = "3m"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.metrics_delay))
    error_message = "metrics_delay is a duration as cutover parses it: seconds (180), or units s, m, h, d (3m)."
  }
}

variable "data_wait" {
  description = "CUTOVER_DATA_WAIT: how long after a minute ends cutover waits for every revision's point of it before judging the minute without one (Cloud Run samples every 60 s, visible up to 180 s later)."
  type        = string
  default     = "4m"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.data_wait))
    error_message = "data_wait is a duration as cutover parses it: seconds (240), or units s, m, h, d (4m)."
  }
}

variable "min_requests" {
  description = "CUTOVER_MIN_REQUESTS: requests the new revision must have served in a step before cutover judges it."
  type        = number
  default     = 100

  validation {
    condition     = var.min_requests >= 0 && floor(var.min_requests) == var.min_requests
    error_message = "min_requests must be a whole number, 0 or more."
  }
}

variable "max_hold" {
  description = "CUTOVER_MAX_HOLD: longest a step may wait for enough requests or healthy metrics before cutover rolls back."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.max_hold))
    error_message = "max_hold is a duration as cutover parses it: seconds (3600), or units s, m, h, d (1h)."
  }
}

variable "max_error_rate" {
  description = "CUTOVER_MAX_ERROR_RATE: highest 5xx fraction of the new revision's requests that lets a step proceed. Also the default alert limit of managed services."
  type        = number
  default     = 0.01

  validation {
    condition     = var.max_error_rate >= 0 && var.max_error_rate <= 1
    error_message = "max_error_rate is a fraction from 0 to 1 (0.01 = 1%)."
  }
}

variable "max_p99_ms" {
  description = "CUTOVER_MAX_P99_MS: highest p99 latency (ms) of the new revision that lets a step proceed. Also the default alert limit of managed services."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_p99_ms > 0
    error_message = "max_p99_ms must be a positive number of milliseconds."
  }
}

variable "max_error_ratio" {
  description = "CUTOVER_MAX_ERROR_RATIO: a step fails when the new revision's 5xx rate is significantly more than this many times the stable revision's (and the difference passes error_rate_floor)."
  type        = number
  default     = 2

  validation {
    condition     = var.max_error_ratio > 1
    error_message = "max_error_ratio must be above 1."
  }
}

variable "error_rate_floor" {
  description = "CUTOVER_ERROR_RATE_FLOOR: smallest 5xx-rate difference from stable that counts as a regression (0.001 = 0.1 percentage point), so a tiny significant difference at huge traffic does not roll back."
  type        = number
  default     = 0.001

  validation {
    condition     = var.error_rate_floor >= 0 && var.error_rate_floor <= 1
    error_message = "error_rate_floor is a fraction from 0 to 1."
  }
}

variable "max_latency_ratio" {
  description = "CUTOVER_MAX_LATENCY_RATIO: a step fails when a compared latency percentile of the new revision is significantly more than this many times the stable revision's."
  type        = number
  default     = 1.25

  validation {
    condition     = var.max_latency_ratio > 1
    error_message = "max_latency_ratio must be above 1."
  }
}

variable "latency_floor_ms" {
  description = "CUTOVER_LATENCY_FLOOR_MS: smallest latency difference from stable (ms) that counts as a regression."
  type        = number
  default     = 10

  validation {
    condition     = var.latency_floor_ms >= 0
    error_message = "latency_floor_ms must not be negative."
  }
}

variable "latency_percentiles" {
  description = "CUTOVER_LATENCY_PERCENTILES: latency percentiles compared with the stable revision, comma separated (p50, p95, p99)."
  type        = string
  default     = "p95"
}

variable "false_alarm_rate" {
  description = "CUTOVER_FALSE_ALARM_RATE: chance a healthy candidate is rolled back over a whole rollout, however often steps are looked at (sequential tests)."
  type        = number
  default     = 0.005

  validation {
    condition     = var.false_alarm_rate > 0 && var.false_alarm_rate <= 0.5
    error_message = "false_alarm_rate must be above 0 and at most 0.5."
  }
}

variable "miss_rate" {
  description = "CUTOVER_MISS_RATE: chance a regressed candidate is passed at the step that gives it 100%."
  type        = number
  default     = 0.01

  validation {
    condition     = var.miss_rate > 0 && var.miss_rate <= 0.5
    error_message = "miss_rate must be above 0 and at most 0.5."
  }
}

variable "canary_miss_rate" {
  description = "CUTOVER_CANARY_MISS_RATE: the same for the absolute limits on the earlier (canary) steps, where little traffic is at stake."
  type        = number
  default     = 0.25

  validation {
    condition     = var.canary_miss_rate >= 0 && var.canary_miss_rate <= 1
    error_message = "canary_miss_rate is a fraction from 0 to 1."
  }
}

variable "bake" {
  description = "CUTOVER_BAKE: after the last step passes, how long the previous stable revision stays tagged and an alert or a failed absolute check rolls back to it; 0 completes at once."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.bake))
    error_message = "bake is a duration as cutover parses it: seconds (600), or units s, m, h, d (10m); 0 for none."
  }
}

variable "mode" {
  description = "CUTOVER_MODE: live (move traffic) or shadow (decide and log every decision, marked shadow, and write nothing to the services). Shadow keeps its rollouts in memory: set max_instances = 1 while shadowing."
  type        = string
  default     = "live"

  validation {
    condition     = contains(["live", "shadow"], var.mode)
    error_message = "mode must be live or shadow."
  }
}

variable "push_auth" {
  description = "CUTOVER_PUSH_AUTH: google (verify the OIDC token of every push) or none. Keep google on Cloud Run: none is for local tests only."
  type        = string
  default     = "google"

  validation {
    condition     = contains(["google", "none"], var.push_auth)
    error_message = "push_auth must be google or none."
  }
}

variable "jwks_url" {
  description = "CUTOVER_JWKS_URL: where cutover fetches the keys that sign Google's OIDC tokens."
  type        = string
  default     = "https://www.googleapis.com/oauth2/v3/certs"
}

variable "push_audience" {
  description = "CUTOVER_PUSH_AUDIENCE and the pushes' token audience; null derives cutover-push/<project>/<region>/<service> (see project.tf)."
  type        = string
  default     = null
}

variable "extra_push_service_accounts" {
  description = "Emails added to CUTOVER_PUSH_SERVICE_ACCOUNTS besides the push identity created here (e.g. while moving subscriptions to a new identity)."
  type        = list(string)
  default     = []
}

variable "event_deadline" {
  description = "CUTOVER_EVENT_DEADLINE: time cutover gives itself per event before answering 503; event_deadline + 5s must stay below request_timeout and push_ack_deadline."
  type        = string
  default     = "50s"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.event_deadline))
    error_message = "event_deadline is a duration as cutover parses it: seconds (50), or units s, m, h, d (50s)."
  }
}

variable "header_read_timeout" {
  description = "CUTOVER_HEADER_READ_TIMEOUT: longest time from a request's first byte to the end of its headers before cutover closes the connection (slow-header clients)."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.header_read_timeout))
    error_message = "header_read_timeout is a duration as cutover parses it: seconds (10), or units s, m, h, d (10s)."
  }
}

variable "idle_timeout" {
  description = "CUTOVER_IDLE_TIMEOUT: longest time a connection stays open without a request (before its first, or between keep-alive requests)."
  type        = string
  default     = "60s"

  validation {
    condition     = can(regex("^([0-9]+|([0-9]+[smhd])+)$", var.idle_timeout))
    error_message = "idle_timeout is a duration as cutover parses it: seconds (60), or units s, m, h, d (60s)."
  }
}

variable "max_connections" {
  description = "CUTOVER_MAX_CONNECTIONS: most open connections per instance; at the cap the oldest connection without a request in progress is closed for a new one. Cloud Run allows at most 1,000 concurrent requests per instance."
  type        = number
  default     = 2000

  validation {
    condition     = var.max_connections >= 1
    error_message = "max_connections must be at least 1."
  }
}

variable "log_format" {
  description = "CUTOVER_LOG_FORMAT: json (structured, for Cloud Logging) or text."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be json or text."
  }
}

# --- Events and notifications (README: Events and notifications) -----------------

variable "events_topic" {
  description = "CUTOVER_EVENTS_TOPIC: where cutover publishes rollout lifecycle events. null (the default): the topic this configuration creates, `<service_name>-events`, with cutover allowed to publish to it. \"\": no events. Anything else: a topic id in this project or projects/P/topics/T created elsewhere; its owner grants cutover's account roles/pubsub.publisher on it."
  type        = string
  default     = null

  validation {
    condition     = var.events_topic == null || var.events_topic == "" || can(regex("^(projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/topics/)?[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$", var.events_topic))
    error_message = "events_topic must be null, \"\", a topic id or projects/PROJECT/topics/TOPIC."
  }
}

variable "notify_url_secret" {
  description = "CUTOVER_NOTIFY_URL, from Secret Manager: the id of a secret in this project whose latest version is the incoming-webhook URL of a Google Chat space or Slack channel. The URL is a credential, so it is neither a Terraform value (it would sit in the state) nor a plain env var (anyone who can read the service would see it); create the secret yourself (README: Events and notifications). null: no chat notifications."
  type        = string
  default     = null

  validation {
    condition     = var.notify_url_secret == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.notify_url_secret))
    error_message = "notify_url_secret must be a Secret Manager secret id (letters, digits, - and _)."
  }
}

variable "evaluation_key_secret" {
  description = "CUTOVER_EVALUATION_KEY, from Secret Manager: the id of a secret in this project whose latest version is the key (base64, at least 32 bytes) with which ticks seal the service read each evaluation message carries and evaluations check it (infra/README.md: Evaluation key). A credential, so neither a Terraform value nor a plain env var. null: messages carry no read, and each fanned-out evaluation reads its service (one API call more)."
  type        = string
  default     = null

  validation {
    condition     = var.evaluation_key_secret == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.evaluation_key_secret))
    error_message = "evaluation_key_secret must be a Secret Manager secret id (letters, digits, - and _)."
  }
}

variable "evaluation_key_previous_secret" {
  description = "CUTOVER_EVALUATION_KEY_PREVIOUS, from Secret Manager: during a key rotation, the id of the secret holding the key evaluation_key_secret held before; it verifies reads sealed by instances still on it, never seals. null: no previous key."
  type        = string
  default     = null

  validation {
    condition     = var.evaluation_key_previous_secret == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.evaluation_key_previous_secret))
    error_message = "evaluation_key_previous_secret must be a Secret Manager secret id (letters, digits, - and _)."
  }
}

variable "notify_format" {
  description = "CUTOVER_NOTIFY_FORMAT: message format of the webhook: auto (chat.googleapis.com is Google Chat, hooks.slack.com is Slack), google-chat or slack."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "google-chat", "slack"], var.notify_format)
    error_message = "notify_format must be auto, google-chat or slack."
  }
}


# --- Platforms other than Cloud Run (issue 15) ----------------------------------
# App Engine versions and global external Application Load Balancer URL maps.
# Neither can carry cutover's record, so enabling either creates a Firestore
# database for it (firestore.tf). The CUTOVER_* settings these variables feed
# are in local.cutover_env (cloud_run.tf).

variable "platforms" {
  description = <<-EOT
    CUTOVER_PLATFORMS: the platforms cutover manages: cloud-run, app-engine,
    load-balancer. A build or alert naming a target of any other platform is
    refused. app-engine and load-balancer are added by themselves when
    app_engine_services or url_maps enrol a target, so this only needs
    changing to drop cloud-run or to enable a platform before enrolling
    anything on it. Any platform besides cloud-run creates the Firestore
    database cutover keeps those targets' records in.
  EOT
  type        = list(string)
  default     = ["cloud-run"]

  validation {
    condition     = length(var.platforms) > 0 && alltrue([for p in var.platforms : contains(["cloud-run", "app-engine", "load-balancer"], p)])
    error_message = "platforms must list one or more of cloud-run, app-engine, load-balancer."
  }
}

variable "app_engine_services" {
  description = <<-EOT
    App Engine services (of this project's App Engine application) that cutover
    rolls out, keyed by service id (`default` or the `service:` of app.yaml).
    For each, the alert policies of modules/app-engine-target (5xx ratio and
    p99 latency per version). max_error_rate, max_p99_ms: alert limits (null:
    the cutover defaults); alert_duration: how long a limit must be exceeded
    before an incident opens. Non-empty enables the app-engine platform.
  EOT
  type = map(object({
    max_error_rate = optional(number)
    max_p99_ms     = optional(number)
    alert_duration = optional(string, "60s")
  }))
  default = {}
}

variable "url_maps" {
  description = <<-EOT
    Global URL maps cutover moves weights on, keyed by the name of the URL map
    to create (modules/url-map-target). For each: stable_backend_service and
    candidate_backend_service, ids or self links of two global backend
    services of the EXTERNAL_MANAGED scheme (created 100 / 0; after that
    cutover owns the weights); path_matcher: null to split the map's default
    route, or {name, hosts} to split that path matcher's default route, with
    default_service serving other hosts; alert limits as in
    app_engine_services. Point the load balancer's target HTTPS proxy at the
    output url_maps[NAME]. Non-empty enables the load-balancer platform.
  EOT
  type = map(object({
    stable_backend_service    = string
    candidate_backend_service = string
    path_matcher = optional(object({
      name  = string
      hosts = list(string)
    }))
    default_service = optional(string)
    max_error_rate  = optional(number)
    max_p99_ms      = optional(number)
    alert_duration  = optional(string, "60s")
  }))
  default = {}
}

variable "firestore_database" {
  description = <<-EOT
    Id of the Firestore database (native mode) created for cutover's records
    of App Engine and load-balancer targets; CUTOVER_FIRESTORE_DATABASE is set
    to it. Not `(default)`: a project running App Engine often has its
    (default) database already, used by the application (and possibly in
    Datastore mode, which cutover cannot use); a database of its own keeps
    cutover's records and the application's data apart, and lets the grant in
    iam.tf be confined to it.
  EOT
  type        = string
  default     = "cutover"

  validation {
    # Database ids: 4-63 characters, lowercase letters, digits and '-',
    # starting with a letter, not ending with '-'.
    condition     = can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be 4 to 63 lowercase letters, digits or '-', starting with a letter and not ending with '-'."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database: a Firestore region (e.g. europe-west1) or multi-region (eur3, nam5). null: var.region, which must then be a Firestore location."
  type        = string
  default     = null
}

variable "firestore_collection" {
  description = "CUTOVER_FIRESTORE_COLLECTION: the collection holding one document (cutover's record) per App Engine service or URL map."
  type        = string
  default     = "cutover-rollouts"

  validation {
    condition     = can(regex("^[^/]{1,1500}$", var.firestore_collection)) && !can(regex("^__.*__$", var.firestore_collection))
    error_message = "firestore_collection must be a Firestore collection id: no '/', not of the form __name__."
  }
}

variable "appengine_shard_by" {
  description = "CUTOVER_APPENGINE_SHARD_BY: how App Engine splits a service whose split names no shardBy (a service's own mode is kept): random (per request, always diverts), cookie (sticky; the application must set the GOOGAPPUID cookie or no diversion occurs) or ip."
  type        = string
  default     = "random"

  validation {
    condition     = contains(["random", "cookie", "ip"], var.appengine_shard_by)
    error_message = "appengine_shard_by must be random, cookie or ip."
  }
}

variable "appengine_endpoint" {
  description = "CUTOVER_APPENGINE_ENDPOINT: base URL of the App Engine Admin API."
  type        = string
  default     = "https://appengine.googleapis.com"
}

variable "compute_endpoint" {
  description = "CUTOVER_COMPUTE_ENDPOINT: base URL of the Compute Engine API."
  type        = string
  default     = "https://compute.googleapis.com"
}

variable "firestore_endpoint" {
  description = "CUTOVER_FIRESTORE_ENDPOINT: base URL of the Firestore API."
  type        = string
  default     = "https://firestore.googleapis.com"
}

variable "projects" {
  description = "CUTOVER_PROJECTS besides project_id: other projects whose Cloud Run services cutover rolls out. It is granted its rollout role and roles/monitoring.viewer in each (iam.tf); builds and alerts from projects not listed are refused."
  type        = list(string)
  default     = []
}

variable "fanout_threshold" {
  description = "CUTOVER_FANOUT_THRESHOLD: a tick with at most this many running rollouts needing a call (evidence or a write) evaluates them itself; above it, it publishes one message per such rollout on the evaluations topic (steps still soaking are decided by the tick)."
  type        = number
  default     = 16
}

variable "run_reads_per_minute" {
  description = "Cloud Run Admin API reads per minute per project and region for all cutover instances together (Google's quota is 1,200; keep room for people). Each instance gets run_reads_per_minute / max_instances (CUTOVER_RUN_READS_PER_MINUTE)."
  type        = number
  default     = 1000
}

variable "run_writes_per_minute" {
  description = "Cloud Run Admin API writes per minute per project and region for all cutover instances together (Google's quota is 60). Each instance gets run_writes_per_minute / max_instances (CUTOVER_RUN_WRITES_PER_MINUTE)."
  type        = number
  default     = 50
}

variable "monitoring_queries_per_minute" {
  description = "Cloud Monitoring time series queries per minute per project for all cutover instances together (Google's quota is 6,000). Each instance gets monitoring_queries_per_minute / max_instances (CUTOVER_MONITORING_QUERIES_PER_MINUTE)."
  type        = number
  default     = 5000
}

variable "appengine_calls_per_minute" {
  description = "App Engine Admin API calls per minute per project for all cutover instances together (Google publishes no rate quota for this API; a budget of cutover's own). Each instance gets appengine_calls_per_minute / max_instances (CUTOVER_APPENGINE_CALLS_PER_MINUTE)."
  type        = number
  default     = 600
}

variable "compute_reads_per_minute" {
  description = "Compute Engine API reads (GET of URL maps, backend services, operations) per minute per project for all cutover instances together (Google's quota is 1,500). Each instance gets compute_reads_per_minute / max_instances (CUTOVER_COMPUTE_READS_PER_MINUTE)."
  type        = number
  default     = 1200
}

variable "compute_writes_per_minute" {
  description = "Compute Engine API writes and getHealth calls per minute per project for all cutover instances together (Google's quota is 1,500). Each instance gets compute_writes_per_minute / max_instances (CUTOVER_COMPUTE_WRITES_PER_MINUTE)."
  type        = number
  default     = 1200
}

variable "firestore_calls_per_minute" {
  description = "Firestore API calls per minute per project of the records' database for all cutover instances together (Firestore has no per-minute request quota; a budget of cutover's own). Each instance gets firestore_calls_per_minute / max_instances (CUTOVER_FIRESTORE_CALLS_PER_MINUTE)."
  type        = number
  default     = 1200
}
