//! cutover's lab: what runs cutover for people rather than for Cloud Run.
//!
//! - [`demo`]: `lab demo`, a whole rollout loop on one machine against the fakes.
//! - [`simulate`]: `lab simulate`, Monte Carlo of whole rollouts through cutover's decision code,
//!   over candidates, traffic scenarios and per-minute series, checked against goals (its
//!   submodules).
//! - [`screenshot`]: `lab demo --screenshot`, the status page in headless Chromium.
//! - [`local`]: cutover's settings and clock for running against `cutover-fakes`.
//! - [`cli`]: the `lab` command line.
//!
//! The binaries `bench` (docs/performance.md) and `probe` (docs/reliability.md) live in
//! `src/bin/`.

pub mod cli;
pub mod demo;
pub mod local;
pub mod screenshot;
pub mod simulate;
