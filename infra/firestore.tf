# Why this file exists: where cutover keeps its record of App Engine and
# load-balancer targets. Cloud Run services carry the record in their own
# annotations, written in the same etag-guarded patch as the traffic; App
# Engine services and URL maps take no arbitrary annotations, so the record
# is a Firestore document per target, written with an update-time
# precondition (the store's optimistic lock). Created only when one of those
# platforms is enabled (local.firestore_enabled, platforms.tf).

resource "google_firestore_database" "cutover" {
  count = local.firestore_enabled ? 1 : 0

  project     = var.project_id
  name        = var.firestore_database
  location_id = coalesce(var.firestore_location, var.region)
  # Native mode: documents, the REST commit with currentDocument.updateTime
  # preconditions that cutover's record store is written against.
  type = "FIRESTORE_NATIVE"

  # The records of ongoing rollouts are the only copy of what cutover is in
  # the middle of (the intent written before a split moves); with
  # deletion_protection they survive a `terraform destroy`, which then only
  # forgets the database.
  delete_protection_state = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy         = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.apis]
}
