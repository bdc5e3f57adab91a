//! cutover on this machine, against the fakes: its settings and its clock.
//!
//! The demo and the bench start the real server (in-process, or as the binary) pointed at a
//! [`FakeGcp`] with the flags the fakes crate spells out; here they become cutover's own
//! settings, and a fake's clock becomes cutover's clock over the same time.

use cutover::clock::Clock;
use cutover::config::ServeArgs;
use cutover_fakes::{FakeClock, FakeGcp};

/// `cutover serve` settings for `project`/`region` on `fake`, plus `extra` flags (which win).
pub fn serve_args<S: AsRef<str>>(
    fake: &FakeGcp,
    project: &str,
    region: &str,
    extra: &[S],
) -> Result<ServeArgs, String> {
    ServeArgs::from_flags(cutover_fakes::flags::flags_with(
        fake, project, region, extra,
    ))
    .map_err(|e| e.to_string())
}

/// cutover's clock reading the same time as `clock` (a manual one moves for both).
pub fn clock(clock: &FakeClock) -> Clock {
    clock.shared().map_or(Clock::System, Clock::Manual)
}
