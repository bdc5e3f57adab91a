# Why this file exists: the cutover service itself, on Cloud Run, with every
# setting cutover reads from its environment. Who may call it is in iam.tf.

locals {
  # Every region cutover must evaluate: its own (CUTOVER_REGION, the default
  # region of a build without a region substitution), var.regions, and the
  # region of every managed service. A rollout can only finish in a region
  # that ticks look at: a build for any other region would start a rollout
  # (first step applied) that no tick ever judged again. Distinct and sorted,
  # so the value (and the revision it is part of) only changes when the set does.
  cutover_regions = sort(distinct(concat(
    [var.region],
    var.regions,
    [for s in values(var.managed_services) : s.region if s.region != null],
  )))

  # Environment of the cutover container: one entry per variable cutover reads
  # (src/config.rs). .ci/infra-checks.sh fails if a name here is not read by
  # cutover, or if cutover reads a CUTOVER_* name that is missing here.
  # Not set on purpose: PORT (Cloud Run sets it from the container port) and
  # GCE_METADATA_HOST (a test hook; on Cloud Run the metadata server is local).
  # Entries whose value is null are left out, so cutover applies its own default.
  cutover_env = {
    GOOGLE_CLOUD_PROJECT        = var.project_id
    CUTOVER_REGION              = var.region
    CUTOVER_REGIONS             = join(",", local.cutover_regions)
    CUTOVER_RUN_ENDPOINT        = var.run_endpoint
    CUTOVER_MONITORING_ENDPOINT = var.monitoring_endpoint
    CUTOVER_APPENGINE_ENDPOINT  = var.appengine_endpoint
    CUTOVER_COMPUTE_ENDPOINT    = var.compute_endpoint
    CUTOVER_FIRESTORE_ENDPOINT  = var.firestore_endpoint
    # The platforms (platforms.tf) and where the records of App Engine and
    # load-balancer targets live: the database firestore.tf creates, in this
    # project; unset while only Cloud Run is enabled.
    CUTOVER_PLATFORMS            = join(",", local.platforms)
    CUTOVER_FIRESTORE_PROJECT    = local.firestore_enabled ? var.project_id : null
    CUTOVER_FIRESTORE_DATABASE   = local.firestore_enabled ? google_firestore_database.cutover[0].name : null
    CUTOVER_FIRESTORE_COLLECTION = var.firestore_collection
    CUTOVER_APPENGINE_SHARD_BY   = var.appengine_shard_by
    # The route each enrolled URL map splits: its path matcher's default route
    # when it has one (modules/url-map-target puts the weights there), else
    # the map's default route action (cutover finds a map's one weighted route
    # by itself; naming it keeps a later second weighted route from stopping
    # the rollout).
    CUTOVER_URL_MAP_ROUTES = join(",", [
      for name, m in var.url_maps : "${name}=${m.path_matcher == null ? "default" : m.path_matcher.name}"
    ])
    CUTOVER_AUTH                  = var.auth
    CUTOVER_SMOKE_PATH            = var.smoke_path
    CUTOVER_STEPS                 = join(",", [for s in var.steps : tostring(s)])
    CUTOVER_STEP_INTERVAL         = var.step_interval
    CUTOVER_METRICS_DELAY         = var.metrics_delay
    CUTOVER_DATA_WAIT             = var.data_wait
    CUTOVER_MIN_REQUESTS          = tostring(var.min_requests)
    CUTOVER_MAX_HOLD              = var.max_hold
    CUTOVER_MAX_ERROR_RATE        = tostring(var.max_error_rate)
    CUTOVER_MAX_P99_MS            = tostring(var.max_p99_ms)
    CUTOVER_MAX_ERROR_RATIO       = tostring(var.max_error_ratio)
    CUTOVER_ERROR_RATE_FLOOR      = tostring(var.error_rate_floor)
    CUTOVER_MAX_LATENCY_RATIO     = tostring(var.max_latency_ratio)
    CUTOVER_LATENCY_FLOOR_MS      = tostring(var.latency_floor_ms)
    CUTOVER_LATENCY_PERCENTILES   = var.latency_percentiles
    CUTOVER_FALSE_ALARM_RATE      = tostring(var.false_alarm_rate)
    CUTOVER_MISS_RATE             = tostring(var.miss_rate)
    CUTOVER_CANARY_MISS_RATE      = tostring(var.canary_miss_rate)
    CUTOVER_BAKE                  = var.bake
    CUTOVER_MODE                  = var.mode
    CUTOVER_PUSH_AUTH             = var.push_auth
    CUTOVER_JWKS_URL              = var.jwks_url
    CUTOVER_PUSH_AUDIENCE         = local.push_audience
    CUTOVER_PUSH_SERVICE_ACCOUNTS = join(",", concat([google_service_account.push.email], var.extra_push_service_accounts))
    CUTOVER_EVENT_DEADLINE        = var.event_deadline
    CUTOVER_HEADER_READ_TIMEOUT   = var.header_read_timeout
    CUTOVER_IDLE_TIMEOUT          = var.idle_timeout
    CUTOVER_MAX_CONNECTIONS       = tostring(var.max_connections)
    CUTOVER_LOG_FORMAT            = var.log_format
    CUTOVER_EVENTS_TOPIC          = local.events_topic
    CUTOVER_NOTIFY_FORMAT         = var.notify_format
    CUTOVER_PROJECTS              = join(",", local.evaluated_projects)
    CUTOVER_EVALUATIONS_TOPIC     = google_pubsub_topic.evaluations.id
    CUTOVER_FANOUT_THRESHOLD      = tostring(var.fanout_threshold)
    # The budgets are for all instances together: each instance gets its share.
    CUTOVER_RUN_READS_PER_MINUTE          = tostring(max(1, floor(var.run_reads_per_minute / var.max_instances)))
    CUTOVER_RUN_WRITES_PER_MINUTE         = tostring(max(1, floor(var.run_writes_per_minute / var.max_instances)))
    CUTOVER_MONITORING_QUERIES_PER_MINUTE = tostring(max(1, floor(var.monitoring_queries_per_minute / var.max_instances)))
    CUTOVER_APPENGINE_CALLS_PER_MINUTE    = tostring(max(1, floor(var.appengine_calls_per_minute / var.max_instances)))
    CUTOVER_COMPUTE_READS_PER_MINUTE      = tostring(max(1, floor(var.compute_reads_per_minute / var.max_instances)))
    CUTOVER_COMPUTE_WRITES_PER_MINUTE     = tostring(max(1, floor(var.compute_writes_per_minute / var.max_instances)))
    CUTOVER_FIRESTORE_CALLS_PER_MINUTE    = tostring(max(1, floor(var.firestore_calls_per_minute / var.max_instances)))
  }

  # Settings read from Secret Manager (the latest version of each secret), left
  # out when null. The webhook URL and the evaluation keys are credentials: as
  # plain env vars, anyone allowed to read the service's configuration would
  # see them.
  cutover_secret_env = {
    CUTOVER_NOTIFY_URL              = var.notify_url_secret
    CUTOVER_EVALUATION_KEY          = var.evaluation_key_secret
    CUTOVER_EVALUATION_KEY_PREVIOUS = var.evaluation_key_previous_secret
  }
}

resource "google_cloud_run_v2_service" "cutover" {
  project     = var.project_id
  name        = var.service_name
  location    = var.region
  description = "cutover: progressive, metrics-gated rollouts of Cloud Run services."
  labels      = local.labels

  # Pub/Sub push to a run.app URL in the same project counts as internal
  # traffic, so nothing outside Google's network reaches cutover at all; the
  # IAM check (run.invoker, iam.tf) still applies on top.
  ingress = var.ingress

  # Unauthenticated access off: every request must carry a token of a
  # principal holding roles/run.invoker on this service (only the push
  # identity, see iam.tf). No allUsers binding exists anywhere.
  invoker_iam_disabled = false

  # The three per-endpoint push audiences (see project.tf) must be accepted by
  # Cloud Run's own token check as well as by cutover's. The base audience
  # (CUTOVER_PUSH_AUDIENCE) is not among them: no subscription mints tokens
  # for it and cutover accepts none on any endpoint, so admitting it would
  # only let Cloud Run pass tokens that cutover then refuses.
  custom_audiences = sort(values(local.push_audiences))

  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.runtime.email
    labels                           = local.labels
    max_instance_request_concurrency = var.concurrency
    # Above CUTOVER_EVENT_DEADLINE plus cutover's 5 s backstop, so cutover
    # always answers (2xx or 503) before Cloud Run cuts the request off; below
    # the push ack deadline (pubsub.tf).
    timeout = var.request_timeout

    scaling {
      # Scale to zero: events arrive at least once a minute (the tick), and a
      # cold start is far shorter than the push retry backoff.
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      name  = "cutover"
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU only while a request is in flight: cutover does all its work
        # inside the push request that carries the event.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        timeout_seconds   = 1
        failure_threshold = 15
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
      }

      dynamic "env" {
        for_each = { for name, value in local.cutover_env : name => value if value != null }
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = { for name, secret in local.cutover_secret_env : name => secret if secret != null }
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  lifecycle {
    # After the first apply, cloudbuild.yaml owns what `gcloud run services
    # update --image` writes; without these, every later apply (enrolling a
    # service needs one) would undo it and make a pointless new revision.
    # Why each one, from the provider's schema (infra/README.md, "A second
    # plan after a deploy"):
    ignore_changes = [
      # The image of each release; otherwise the next apply rolls cutover back
      # to var.image.
      template[0].containers[0].image,
      # Optional, not Computed, not merged: gcloud's client-name/version and
      # any other tool's revision annotations would show as a diff. None is
      # set here.
      template[0].annotations,
      # gcloud labels every revision it makes with a random nonce (how it finds
      # the revision it created); the map is Optional, not Computed, so the
      # nonce would be a diff. Only that key is ignored: var.labels still apply.
      template[0].labels["client.knative.dev/nonce"],
      # Set by `gcloud run deploy --revision-suffix` or `--tag`; Optional, not
      # Computed.
      template[0].revision,
      # gcloud sets both (v1's run.googleapis.com/client-name and
      # client-version annotations); Optional, not Computed.
      client,
      client_version,
    ]
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.runtime_reads_notify_url,
  ]
}
