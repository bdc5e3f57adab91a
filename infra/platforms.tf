# Why this file exists: which platforms cutover manages (issue 15: Cloud Run,
# App Engine versions, global external Application Load Balancer URL maps),
# derived from the variables, and the environment those platforms add to
# cutover's. The platforms' other parts live with their kind: the Firestore
# database in firestore.tf, the custom roles and grants in iam.tf, the alert
# policies in monitoring.tf, the APIs in project.tf.

locals {
  # CUTOVER_PLATFORMS: var.platforms plus every platform a target is enrolled
  # on (like CUTOVER_REGIONS and managed_services): an enrolled App Engine
  # service or URL map on a platform cutover refuses would be a target whose
  # alerts and builds are all refused.
  platforms = distinct(concat(
    var.platforms,
    length(var.app_engine_services) > 0 ? ["app-engine"] : [],
    length(var.url_maps) > 0 ? ["load-balancer"] : [],
  ))

  app_engine_enabled    = contains(local.platforms, "app-engine")
  load_balancer_enabled = contains(local.platforms, "load-balancer")
  # Cloud Run keeps cutover's record in the service's own annotations; every
  # other platform keeps it in Firestore.
  firestore_enabled = local.app_engine_enabled || local.load_balancer_enabled

  # APIs the enabled platforms need, on top of local.required_apis.
  platform_apis = toset(concat(
    local.app_engine_enabled ? ["appengine.googleapis.com"] : [],
    local.load_balancer_enabled ? ["compute.googleapis.com"] : [],
    local.firestore_enabled ? ["firestore.googleapis.com"] : [],
  ))

  # ==========================================================================
  # TO MOVE AT MERGE: the settings of the new platforms, for local.cutover_env
  # (cloud_run.tf). They are kept out of it until cutover reads them, because
  # .ci/infra-checks.sh (env-agreement) fails on a name cutover does not read.
  # Once src/config.rs has them, replace the block with
  #   cutover_env = merge({ ...as today... }, local.platform_env)
  # or move the entries over, and fix any name the code settled differently.
  # Null values are left out of the environment (cutover's own default).
  # ==========================================================================
  platform_env = {
    CUTOVER_PLATFORMS            = join(",", local.platforms)
    CUTOVER_FIRESTORE_DATABASE   = local.firestore_enabled ? google_firestore_database.cutover[0].name : null
    CUTOVER_FIRESTORE_COLLECTION = var.firestore_collection
    CUTOVER_APPENGINE_ENDPOINT   = var.appengine_endpoint
    CUTOVER_COMPUTE_ENDPOINT     = var.compute_endpoint
    CUTOVER_FIRESTORE_ENDPOINT   = var.firestore_endpoint
  }
}
