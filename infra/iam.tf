# Why this file exists: every IAM grant this deployment makes, and the reason
# for each, in one place. The same grants, as a table, are in README.md (Deploy;
# those of the platforms other than Cloud Run in docs/platforms.md until they
# are folded into it); nothing here is broader than that table. Project-wide
# grants are made only where the API has no narrower resource to grant on (listing services, reading
# time series, writing logs); everything else is granted on the one service,
# service account, topic, subscription, repository or bucket it is needed on.

locals {
  # Runtime service accounts of the managed services: cutover must act as each
  # one to update its service's traffic, and as no other.
  managed_runtime_accounts = toset([for s in values(var.managed_services) : s.runtime_service_account])

  # Custom role ids allow letters, digits, '_' and '.', not '-'.
  rollout_role_id = replace("${var.service_name}_rollout", "-", "_")
}

# ---------------------------------------------------------------------------
# cutover's runtime identity (google_service_account.runtime)
# ---------------------------------------------------------------------------

# Exactly the Run Admin API v2 calls cutover makes, nothing else:
# roles/run.developer would also allow creating and deleting services and
# jobs, and roles/run.viewer cannot update. Revisions are not read through
# their own API (the service's traffic statuses name them), so no
# run.revisions.* permission is included.
resource "google_project_iam_custom_role" "rollout" {
  project     = var.project_id
  role_id     = local.rollout_role_id
  title       = "cutover rollout operator"
  description = "Read Cloud Run services and change their traffic split (used by ${var.service_name})."
  permissions = [
    "run.operations.get",  # operations.get: wait until a traffic patch is done
    "run.services.get",    # services.get: read traffic, revisions and cutover.dev/* annotations
    "run.services.list",   # services.list: find managed services in CUTOVER_REGIONS
    "run.services.update", # services.patch: write traffic and cutover.dev/* annotations
  ]

  depends_on = [google_project_service.apis]
}

# Grant: runtime -> the custom role above, on the project. Why: the services
# cutover manages are created by their own pipelines, after this apply, so
# there is no per-service resource to grant on; and services.list has only a
# project-level scope. The actAs grants below still limit which services'
# traffic cutover can actually change.
resource "google_project_iam_member" "runtime_rollout" {
  project = var.project_id
  role    = google_project_iam_custom_role.rollout.id
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Grant: runtime -> roles/monitoring.viewer, on the project. Why: cutover reads
# run.googleapis.com/request_count and request_latencies with timeSeries.list,
# which is granted per project only.
resource "google_project_iam_member" "runtime_monitoring_viewer" {
  project = var.project_id
  role    = "roles/monitoring.viewer"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Grant: runtime -> roles/iam.serviceAccountUser, on each managed service's
# runtime service account only. Why: Cloud Run requires
# iam.serviceAccounts.actAs on a service's runtime account for any update of
# the service, a traffic-only patch included.
resource "google_service_account_iam_member" "runtime_acts_as_managed" {
  for_each = local.managed_runtime_accounts

  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value}"
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.runtime.email}"
}

# ---------------------------------------------------------------------------
# The push identity (google_service_account.push)
# ---------------------------------------------------------------------------

# Grant: push -> roles/run.invoker, on the cutover service only. Why: Cloud Run
# lets a push in only if the token's principal may invoke the service; this is
# the only invoker binding cutover has (unauthenticated access is off).
resource "google_cloud_run_v2_service_iam_member" "push_invokes_cutover" {
  project  = var.project_id
  location = google_cloud_run_v2_service.cutover.location
  name     = google_cloud_run_v2_service.cutover.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

# ---------------------------------------------------------------------------
# The Pub/Sub service agent (local.pubsub_service_agent, Google-managed)
# ---------------------------------------------------------------------------

# Grant: Pub/Sub agent -> roles/iam.serviceAccountTokenCreator, on the push
# identity only. Why: Pub/Sub mints the OIDC token of every push as the push
# identity.
resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.apis]
}

# Grant: Pub/Sub agent -> roles/pubsub.publisher, on the dead-letter topic
# only. Why: Pub/Sub forwards an undeliverable message to the dead-letter topic
# as its service agent.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

# Grant: Pub/Sub agent -> roles/pubsub.subscriber, on each of the three push
# subscriptions only. Why: to dead-letter a message Pub/Sub must also
# acknowledge it on the source subscription, as its service agent.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_lettered" {
  for_each = google_pubsub_subscription.push

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# ---------------------------------------------------------------------------
# The Monitoring notification service agent (local.monitoring_notification_agent)
# ---------------------------------------------------------------------------

# Grant: Monitoring notification agent -> roles/pubsub.publisher, on the
# alerts topic only. Why: a `pubsub` notification channel publishes incidents
# as this agent. Google creates the agent with the first such channel, hence
# the dependency.
resource "google_pubsub_topic_iam_member" "monitoring_agent_publishes_alerts" {
  project = var.project_id
  topic   = google_pubsub_topic.alerts.name
  role    = "roles/pubsub.publisher"
  member  = local.monitoring_notification_agent

  depends_on = [google_monitoring_notification_channel.cutover]
}

# ---------------------------------------------------------------------------
# The build identity (google_service_account.build), used by cloudbuild.yaml
# ---------------------------------------------------------------------------

# Grant: build -> roles/artifactregistry.writer, on cutover's repository only.
# Why: the build pushes the image it built.
resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.cutover.location
  repository = google_artifact_registry_repository.cutover.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# Grant: build -> roles/storage.objectViewer, on the source staging bucket
# only. Why: Cloud Build fetches the source that `gcloud builds submit`
# uploaded there as the build's identity.
resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Grant: build -> roles/logging.logWriter, on the project. Why: a build run as
# a user-specified service account writes its log to Cloud Logging
# (options.logging: CLOUD_LOGGING_ONLY) as that account; log writing is
# granted per project only.
resource "google_project_iam_member" "build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# Grant: build -> roles/run.developer, on the cutover service only. Why: the
# deploy step updates the service's image (a new revision). The grant is on
# this one service, so the build cannot touch any other service.
resource "google_cloud_run_v2_service_iam_member" "build_deploys_cutover" {
  project  = var.project_id
  location = google_cloud_run_v2_service.cutover.location
  name     = google_cloud_run_v2_service.cutover.name
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.build.email}"
}

# Grant: build -> roles/iam.serviceAccountUser, on cutover's runtime account
# only. Why: deploying a revision that runs as an account requires actAs on it.
resource "google_service_account_iam_member" "build_acts_as_runtime" {
  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.build.email}"
}

# ---------------------------------------------------------------------------
# Events and notifications
# ---------------------------------------------------------------------------

# Grant: cutover -> roles/pubsub.publisher, on the events topic it creates
# only. Why: cutover publishes rollout lifecycle events there
# (CUTOVER_EVENTS_TOPIC).
resource "google_pubsub_topic_iam_member" "runtime_publishes_events" {
  count = var.events_topic == null ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.events[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Grant: cutover -> roles/secretmanager.secretAccessor, on the webhook secret
# only (var.notify_url_secret). Why: Cloud Run reads the secret as cutover's
# runtime account to set CUTOVER_NOTIFY_URL.
resource "google_secret_manager_secret_iam_member" "runtime_reads_notify_url" {
  count = var.notify_url_secret == null ? 0 : 1

  project   = var.project_id
  secret_id = var.notify_url_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"

  depends_on = [google_project_service.apis]
}

# Grant: cutover -> roles/secretmanager.secretAccessor, on the evaluation key
# secrets only (var.evaluation_key_secret, and var.evaluation_key_previous_secret
# during a key rotation), each when set. Why: Cloud Run reads them as cutover's
# runtime account to set CUTOVER_EVALUATION_KEY (the key that seals the service
# reads evaluation messages carry) and CUTOVER_EVALUATION_KEY_PREVIOUS.
resource "google_secret_manager_secret_iam_member" "runtime_reads_evaluation_keys" {
  for_each = {
    for name, secret in {
      current  = var.evaluation_key_secret
      previous = var.evaluation_key_previous_secret
    } : name => secret if secret != null
  }

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"

  depends_on = [google_project_service.apis]
}


# ---------------------------------------------------------------------------
# Platforms other than Cloud Run (platforms.tf): App Engine, URL maps, and
# the Firestore database their records live in. Each exists only when its
# platform is enabled.
# ---------------------------------------------------------------------------

# Exactly the App Engine Admin API v1 calls cutover makes on an App Engine
# service (App Engine Admin API, "Access control": the permission each
# method requires): apps.services.get, apps.services.patch with
# updateMask=split, apps.services.versions.list/get (servingStatus, the
# newest SERVING version, versionUrl for the smoke check), apps.operations.get
# (wait for the split patch). Not roles/appengine.serviceAdmin: that role
# also deletes services and versions, stops and starts versions and deletes
# instances; cutover only moves the split. Not roles/appengine.appAdmin
# either (it deploys and changes the application). Nothing here deploys, so
# cutover needs no actAs on the application's runtime account.
resource "google_project_iam_custom_role" "app_engine_split" {
  count = local.app_engine_enabled ? 1 : 0

  project     = var.project_id
  role_id     = replace("${var.service_name}_app_engine_split", "-", "_")
  title       = "cutover App Engine split operator"
  description = "Read App Engine services and versions and change a service's traffic split (used by ${var.service_name})."
  permissions = [
    "appengine.operations.get",  # apps.operations.get: wait until a split patch is done
    "appengine.services.get",    # apps.services.get: read the split and shardBy
    "appengine.services.update", # apps.services.patch?updateMask=split: write the split
    "appengine.versions.get",    # apps.services.versions.get: one version's servingStatus and versionUrl
    "appengine.versions.list",   # apps.services.versions.list: find the newest SERVING version
  ]

  depends_on = [google_project_service.apis]
}

# Grant: runtime -> the App Engine split role above, on the project. Why: App
# Engine's IAM exists per project only (one application per project; the
# Admin API has no per-service policy), so no narrower resource exists.
resource "google_project_iam_member" "runtime_app_engine_split" {
  count = local.app_engine_enabled ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.app_engine_split[0].id
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Exactly the Compute Engine API v1 calls cutover makes on a URL map (Compute
# Engine API reference, "IAM Permissions" of each method): urlMaps.get,
# urlMaps.patch (which requires compute.urlMaps.get and .update),
# backendServices.get and backendServices.getHealth (both require
# compute.backendServices.get: there is no getHealth permission), and
# globalOperations.get / wait (wait for the patch). compute.backendServices.use
# because a URL map update references the two backend services, and Compute
# checks `use` on resources a write references (TO CHECK against a real
# project: drop it if urlMaps.patch succeeds without it). Not
# roles/compute.loadBalancerAdmin: that role creates and deletes every load
# balancer resource, instance groups included; cutover only moves weights.
resource "google_project_iam_custom_role" "url_map_weights" {
  count = local.load_balancer_enabled ? 1 : 0

  project     = var.project_id
  role_id     = replace("${var.service_name}_url_map_weights", "-", "_")
  title       = "cutover URL map weight operator"
  description = "Read URL maps and backend service health and change a URL map's weighted backend services (used by ${var.service_name})."
  permissions = [
    "compute.backendServices.get",  # backendServices.get (its groups) and getHealth: candidate readiness
    "compute.backendServices.use",  # urlMaps.patch references the weighted backend services
    "compute.globalOperations.get", # globalOperations.get / wait: until a weight patch is done
    "compute.urlMaps.get",          # urlMaps.get: weights and the fingerprint guard
    "compute.urlMaps.update",       # urlMaps.patch: write the weights, fingerprint-guarded
  ]

  depends_on = [google_project_service.apis]
}

# Grant: runtime -> the URL map role above, on the project. Why: the google
# provider (6.50.0) has no IAM resource for a URL map or a global operation,
# and the backend services are the teams' own; the grant lets cutover change
# no resource type but URL maps, and only their content (no create, delete).
resource "google_project_iam_member" "runtime_url_map_weights" {
  count = local.load_balancer_enabled ? 1 : 0

  project = var.project_id
  role    = google_project_iam_custom_role.url_map_weights[0].id
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Grant: runtime -> roles/datastore.user, on the project, conditioned on
# cutover's own Firestore database only. Why: cutover reads, lists and writes
# its record documents (get, list, commit with update-time preconditions,
# possibly deleting a finished record), which is what
# roles/datastore.user is for; roles/datastore.viewer cannot write and
# roles/datastore.owner also administers databases and indexes. Firestore
# grants exist per project, so the IAM condition on the database's resource
# name confines the role to firestore.tf's database: the application's own
# (default) database stays out of reach.
resource "google_project_iam_member" "runtime_firestore_records" {
  count = local.firestore_enabled ? 1 : 0

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.runtime.email}"

  condition {
    title       = "cutover database only"
    description = "Only the Firestore database holding cutover's records."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.cutover[0].name}\""
  }
}


# ---------------------------------------------------------------------------
# Fan-out and the other projects of CUTOVER_PROJECTS
# ---------------------------------------------------------------------------

# Grant: runtime -> roles/pubsub.publisher, on the evaluations topic only. Why:
# a tick publishes one message per running rollout that needs a call there (fan-out).
resource "google_pubsub_topic_iam_member" "runtime_publishes_evaluations" {
  project = var.project_id
  topic   = google_pubsub_topic.evaluations.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# The same rollout role in each other evaluated project (custom roles are per
# project).
resource "google_project_iam_custom_role" "rollout_elsewhere" {
  for_each = local.other_projects

  project     = each.value
  role_id     = local.rollout_role_id
  title       = "cutover rollout operator"
  description = "Read Cloud Run services and change their traffic split (used by ${var.service_name} in ${var.project_id})."
  permissions = google_project_iam_custom_role.rollout.permissions
}

# Grant: runtime -> the rollout role, on each other evaluated project. Why:
# ticks list and evaluate the services there as in cutover's own project.
resource "google_project_iam_member" "runtime_rollout_elsewhere" {
  for_each = local.other_projects

  project = each.value
  role    = google_project_iam_custom_role.rollout_elsewhere[each.value].id
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# Grant: runtime -> roles/monitoring.viewer, on each other evaluated project.
# Why: a step is judged on that project's request_count and request_latencies.
resource "google_project_iam_member" "runtime_monitoring_viewer_elsewhere" {
  for_each = local.other_projects

  project = each.value
  role    = "roles/monitoring.viewer"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}
