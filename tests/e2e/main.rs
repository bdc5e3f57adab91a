//! End-to-end tests: the real cutover server, over real HTTP, against the in-process fakes of
//! Cloud Run, App Engine, Compute URL maps and Cloud Monitoring (and, in `emulator`, the real
//! Pub/Sub emulator; in `platforms`, the real Firestore emulator).
//!
//! All in one test binary so the fakes and helpers compile once.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod auth;
mod bake;
mod buildsteps;
mod carry;
mod config;
mod emulator;
mod events;
mod fanout;
mod faults;
mod hardening;
mod inputs;
mod logging;
mod notify;
mod operate;
mod platforms;
mod rollouts;
mod shadow;
mod status_page;
mod transport;
