# Why this file exists: the cutover service itself, on Cloud Run, with every
# setting cutover reads from its environment. Who may call it is in iam.tf.

locals {
  # Environment of the cutover container: one entry per variable cutover reads
  # (src/config.rs). .ci/infra-checks.sh fails if a name here is not read by
  # cutover, or if cutover reads a CUTOVER_* name that is missing here.
  # Not set on purpose: PORT (Cloud Run sets it from the container port) and
  # GCE_METADATA_HOST (a test hook; on Cloud Run the metadata server is local).
  # Entries whose value is null are left out, so cutover applies its own default.
  cutover_env = {
    GOOGLE_CLOUD_PROJECT          = var.project_id
    CUTOVER_REGION                = var.region
    CUTOVER_REGIONS               = join(",", length(var.regions) > 0 ? var.regions : [var.region])
    CUTOVER_RUN_ENDPOINT          = var.run_endpoint
    CUTOVER_MONITORING_ENDPOINT   = var.monitoring_endpoint
    CUTOVER_AUTH                  = var.auth
    CUTOVER_SMOKE_PATH            = var.smoke_path
    CUTOVER_STEPS                 = join(",", [for s in var.steps : tostring(s)])
    CUTOVER_STEP_INTERVAL         = var.step_interval
    CUTOVER_METRICS_DELAY         = var.metrics_delay
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
    CUTOVER_PUSH_AUTH             = var.push_auth
    CUTOVER_JWKS_URL              = var.jwks_url
    CUTOVER_PUSH_AUDIENCE         = local.push_audience
    CUTOVER_PUSH_SERVICE_ACCOUNTS = join(",", concat([google_service_account.push.email], var.extra_push_service_accounts))
    CUTOVER_EVENT_DEADLINE        = var.event_deadline
    CUTOVER_LOG_FORMAT            = var.log_format
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

  # The push audience (see project.tf) must be accepted by Cloud Run's own
  # token check as well as by cutover's.
  custom_audiences = [local.push_audience]

  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.runtime.email
    labels                           = local.labels
    max_instance_request_concurrency = var.concurrency
    # Above CUTOVER_EVENT_DEADLINE, so cutover always answers (2xx or 503)
    # before Cloud Run cuts the request off.
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
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  lifecycle {
    # After the first apply the image is owned by cloudbuild.yaml, which
    # deploys each new build with `gcloud run services update --image`;
    # without this, the next apply would roll cutover back to var.image.
    ignore_changes = [
      template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  depends_on = [google_project_service.apis]
}
