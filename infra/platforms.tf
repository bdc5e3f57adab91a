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
}
