# Why this file exists: cutover has no timer of its own (it scales to zero and
# works only inside requests), so Cloud Scheduler publishes a tick every minute;
# each tick is pushed to POST /pubsub/ticks, where cutover advances or rolls
# back the rollouts whose step interval or hold time has run out.

resource "google_cloud_scheduler_job" "tick" {
  project     = var.project_id
  region      = coalesce(var.scheduler_region, var.region)
  name        = "${var.service_name}-tick"
  description = "Publishes the tick that drives ${var.service_name}'s rollout steps."
  schedule    = var.tick_schedule
  time_zone   = "Etc/UTC"

  # Publishing to a topic in the same project needs no grant from this
  # configuration: the Cloud Scheduler service agent's own role covers it.
  pubsub_target {
    topic_name = google_pubsub_topic.ticks.id
    data       = base64encode("tick")
    attributes = {
      source = "cloud-scheduler"
    }
  }

  depends_on = [google_project_service.apis]
}
