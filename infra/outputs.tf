# Why this file exists: what a person or a pipeline needs after `terraform
# apply`: where cutover runs, who it runs as, and the exact command that builds
# and deploys cutover's own image.

output "service_url" {
  description = "run.app URL of cutover (internal ingress: reachable by Pub/Sub, not from the internet)."
  value       = google_cloud_run_v2_service.cutover.uri
}

output "push_audience" {
  description = "Base audience of the pushes' OIDC tokens, as set in CUTOVER_PUSH_AUDIENCE; each endpoint's tokens carry it with the endpoint's name appended (push_audiences)."
  value       = local.push_audience
}

output "push_audiences" {
  description = "Audience of the OIDC tokens pushed to each endpoint (builds, alerts, ticks)."
  value       = local.push_audiences
}

output "cutover_regions" {
  description = "Regions cutover evaluates (CUTOVER_REGIONS): var.region, var.regions and every managed service's region."
  value       = local.cutover_regions
}

output "runtime_service_account" {
  description = "Email cutover runs as."
  value       = google_service_account.runtime.email
}

output "push_service_account" {
  description = "Email of the push identity (the only invoker of cutover)."
  value       = google_service_account.push.email
}

output "build_service_account" {
  description = "Email cloudbuild.yaml runs as."
  value       = google_service_account.build.email
}

output "image_repository" {
  description = "Artifact Registry path cutover's image is pushed to."
  value       = "${google_artifact_registry_repository.cutover.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.cutover.repository_id}"
}

output "notification_channel" {
  description = "Full name of the `pubsub` notification channel; alert policies of managed services notify it."
  value       = google_monitoring_notification_channel.cutover.name
}

output "dashboard" {
  description = "Id of the rollout dashboard (Monitoring > Dashboards > \"cutover rollouts\")."
  value       = google_monitoring_dashboard.rollouts.id
}

output "dead_letter_subscription" {
  description = "Pull subscription holding messages cutover could not take."
  value       = google_pubsub_subscription.dead_letter.name
}

output "build_command" {
  description = "Builds, tests and deploys cutover (run from the repository root)."
  value = join(" ", [
    "gcloud builds submit",
    "--project=${var.project_id}",
    "--region=${var.region}",
    "--config=cloudbuild.yaml",
    "--service-account=${google_service_account.build.id}",
    "--gcs-source-staging-dir=gs://${google_storage_bucket.build_source.name}/source",
    "--substitutions=_REGION=${var.region},_REPOSITORY=${google_artifact_registry_repository.cutover.repository_id},_SERVICE=${google_cloud_run_v2_service.cutover.name}",
    ".",
  ])
}

output "platforms" {
  description = "Platforms cutover manages (CUTOVER_PLATFORMS): var.platforms plus those of enrolled App Engine services and URL maps."
  value       = local.platforms
}

output "url_maps" {
  description = "Id of each URL map created for var.url_maps, by name: the `url_map` of its load balancer's target HTTPS proxy."
  value       = { for name, m in module.url_map_target : name => m.url_map }
}

output "firestore_database" {
  description = "Firestore database holding cutover's App Engine and load-balancer records (CUTOVER_FIRESTORE_DATABASE); null when only Cloud Run is enabled."
  value       = local.firestore_enabled ? google_firestore_database.cutover[0].name : null
}
