//! cutover: progressive, metrics-gated rollouts for Google Cloud Run.
//!
//! The loop, end to end:
//! 1. A push request arrives ([`server`]); [`events`] decodes it into a trigger for one service.
//! 2. [`reconcile`] observes the service through a [`router::TrafficRouter`], gathers evidence
//!    from a [`metrics::MetricsSource`] when a step is due, and asks [`decision::decide`].
//! 3. The decision (pure: no I/O, no clock) is written back as one etag-guarded update of the
//!    traffic and cutover's record annotations; a conflict means someone wrote first, so the
//!    reconciler observes again and decides again.
//!
//! Module map:
//! - [`config`]: every setting, from the environment, validated at start-up.
//! - [`server`], [`error`]: the HTTP edge and the one place that picks ack vs nack.
//! - [`events`]: Pub/Sub push envelopes, Cloud Build and Monitoring payloads, push auth.
//! - [`decision`]: the rules (policy, record, judge, decide).
//! - [`ids`], [`target`]: checked identifiers and free text, and the service they name (leaves).
//! - [`reconcile`]: the imperative shell around the rules; [`flight`] keeps it to one
//!   evaluation per service at a time.
//! - [`router`], [`metrics`]: the two platform seams, with Cloud Run and Cloud Monitoring.
//! - [`notify`]: lifecycle events on Pub/Sub and chat messages, from the decisions, off their
//!   path.
//! - [`operate`]: the operator verbs (`cutover status`, `promote`, …), a client of the same
//!   reconciler with the caller's credentials.
//! - [`logs`]: log lines as Cloud Logging reads them (typed fields, the request's trace).
//! - [`gcp`]: Google REST wire types and calls; [`failure`]: what a failure means, decided once.
//!
//! Not here: the fakes of Google's APIs (crate `cutover-fakes`, `fakes/`, a dev-dependency) and
//! the demo, simulator, bench and probes (crate `cutover-lab`, `lab/`).

pub mod clock;
pub mod config;
pub mod decision;
pub mod error;
pub mod events;
pub mod failure;
pub mod flight;
pub mod gcp;
pub mod ids;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod operate;
pub mod reconcile;
pub mod router;
pub mod server;
pub mod target;
