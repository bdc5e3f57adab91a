# Why this file exists: the three identities this deployment creates. Each one
# does one job, so each grant in iam.tf can be read as "this identity, for that
# job". None of them has a key; Google mints short-lived tokens for them.

# cutover's runtime identity: what the running service calls Google APIs as.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = var.service_name
  display_name = "cutover runtime"
  description  = "Runs the ${var.service_name} Cloud Run service: reads metrics, moves traffic of managed services."

  depends_on = [google_project_service.apis]
}

# The push identity: Pub/Sub signs each push to cutover with an OIDC token
# for this account, and it is the only account allowed to invoke cutover.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.service_name}-push"
  display_name = "cutover Pub/Sub push"
  description  = "Identity of the Pub/Sub push subscriptions that deliver events to ${var.service_name}."

  depends_on = [google_project_service.apis]
}

# The build identity: runs cloudbuild.yaml (test, build, push, deploy cutover).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.service_name}-build"
  display_name = "cutover build"
  description  = "Runs cloudbuild.yaml for ${var.service_name}: pushes its image and deploys new revisions of it."

  depends_on = [google_project_service.apis]
}
