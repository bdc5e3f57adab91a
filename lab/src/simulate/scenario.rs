//! The traffic conditions a simulated rollout runs under (`lab simulate --scenarios`): how
//! production traffic departs from independent Poisson requests with complete data.
//!
//! A scenario is a `+`-joined list of effects, each shared by both revisions unless it says
//! "per revision"; `poisson` (the default) is none of them. The magnitudes and why they were
//! chosen are in `docs/judgement-rows.md`; the names:
//!
//! - `bursts-S`: per revision, a share `S`% of its 5xx arrive in bursts (one bad instance, a
//!   dependency blip) of 1–3 minutes, starting on average every [`BURST_GAP_MIN`] minutes,
//!   with the same mean 5xx ratio as without them;
//! - `common-bursts-S`: the same, but both revisions burst in the same minutes;
//! - `slow-bursts-S`: per revision, [`SLOW_SHARE`] of requests are slow ([`SLOW_FACTOR`]× the
//!   revision's latency) on average, a share `S`% of them in bursts;
//! - `diurnal-rising`, `diurnal-falling`: volume follows a daily sine (peak/trough 3:1), the
//!   rollout starting where it rises (falls) fastest; 5xx ratio and latency follow the load;
//! - `ramp-xK`: volume goes linearly to K× over [`RAMP_MINUTES`] minutes, then stays; 5xx
//!   ratio and latency follow the load;
//! - `late-P`: per read, the newest 1–2 minutes of a revision are not yet visible (all its
//!   series) with probability `P`%; they appear one or two minutes later;
//! - `lag-P`: the same per series (a revision's 5xx point can be there without its 2xx one).

use std::fmt;

/// Mean minutes between the starts of two bursts of one revision.
pub const BURST_GAP_MIN: f64 = 30.0;
/// The share of a revision's requests that are slow, on average, under `slow-bursts-S`.
pub const SLOW_SHARE: f64 = 0.02;
/// How many times slower a slow request is.
pub const SLOW_FACTOR: f64 = 3.0;
/// Minutes over which `ramp-xK` reaches K× the traffic (about one healthy rollout).
pub const RAMP_MINUTES: f64 = 30.0;
/// Peak-to-mean amplitude of the diurnal volume curve (peak/trough = 1.5/0.5 = 3).
pub const DIURNAL_AMPLITUDE: f64 = 0.5;
/// How the 5xx ratio follows the load: ×(1 + this × (volume − 1)).
pub const ERRORS_PER_LOAD: f64 = 0.25;
/// How latency follows the load: ×(1 + this × (volume − 1)).
pub const LATENCY_PER_LOAD: f64 = 0.10;
const DAY_MIN: f64 = 24.0 * 60.0;

/// Bursts of one kind: the share of the events (5xx, or slow requests) they carry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bursts {
    pub share: f64,
}

impl Bursts {
    /// Expected number of bursts in progress in a minute (starts per minute × mean length 2).
    pub fn mean_active() -> f64 {
        2.0 / BURST_GAP_MIN
    }

    /// The rate (of 5xx, or slow share) in a minute with `active` bursts in progress, for a
    /// mean rate `mean`: background `mean × (1 − share)` plus, per burst, what keeps the mean.
    pub fn rate(&self, mean: f64, active: u32) -> f64 {
        mean * (1.0 - self.share) + f64::from(active) * mean * self.share / Self::mean_active()
    }
}

/// Volume drift shared by both revisions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Drift {
    /// Daily sine, starting at the mean and rising (`rising`) or falling.
    Diurnal { rising: bool },
    /// Linear to `factor`× over [`RAMP_MINUTES`], then flat.
    Ramp { factor: f64 },
}

impl Drift {
    /// The volume multiplier at `t` minutes after the build.
    pub fn volume(&self, t: f64) -> f64 {
        match *self {
            Drift::Diurnal { rising } => {
                let phase = if rising { 0.0 } else { std::f64::consts::PI };
                1.0 + DIURNAL_AMPLITUDE * (phase + std::f64::consts::TAU * t / DAY_MIN).sin()
            }
            Drift::Ramp { factor } => 1.0 + (factor - 1.0) * (t / RAMP_MINUTES).clamp(0.0, 1.0),
        }
    }
}

/// Late points: per read, the chance the newest minute is not yet visible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Late {
    pub probability: f64,
    /// Each series late on its own (else all series of a revision together).
    pub per_series: bool,
}

/// A traffic scenario: the effects in force (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub bursts: Option<Bursts>,
    pub common_bursts: Option<Bursts>,
    pub slow_bursts: Option<Bursts>,
    pub drift: Option<Drift>,
    pub late: Option<Late>,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Scenario {
    /// Independent Poisson requests, complete data.
    pub fn poisson() -> Scenario {
        Scenario {
            name: "poisson".into(),
            ..Scenario::default()
        }
    }

    /// Whether requests are independent (no bursts): the detection goals hold only then.
    pub fn independent(&self) -> bool {
        self.bursts.is_none() && self.common_bursts.is_none() && self.slow_bursts.is_none()
    }

    /// `poisson`, or effects joined by `+` (e.g. `bursts-20+late-30`).
    pub fn parse(s: &str) -> Result<Scenario, String> {
        let s = s.trim();
        let mut out = Scenario {
            name: s.to_string(),
            ..Scenario::default()
        };
        let bad = |part: &str| {
            format!(
                "{part:?} is not a scenario (poisson, bursts-S, common-bursts-S, slow-bursts-S, \
                 diurnal-rising, diurnal-falling, ramp-xK, late-P, lag-P; S and P in %; join with +)"
            )
        };
        let percent = |part: &str, v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
                .map(|p| p / 100.0)
                .ok_or_else(|| bad(part))
        };
        for part in s.split('+').map(str::trim) {
            let set_once = |slot: bool| {
                if slot {
                    Err(format!("{s:?}: {part:?} given twice"))
                } else {
                    Ok(())
                }
            };
            if part == "poisson" {
                continue;
            } else if let Some(v) = part.strip_prefix("common-bursts-") {
                set_once(out.common_bursts.is_some())?;
                out.common_bursts = Some(Bursts {
                    share: percent(part, v)?,
                });
            } else if let Some(v) = part.strip_prefix("slow-bursts-") {
                set_once(out.slow_bursts.is_some())?;
                out.slow_bursts = Some(Bursts {
                    share: percent(part, v)?,
                });
            } else if let Some(v) = part.strip_prefix("bursts-") {
                set_once(out.bursts.is_some())?;
                out.bursts = Some(Bursts {
                    share: percent(part, v)?,
                });
            } else if part == "diurnal-rising" || part == "diurnal-falling" {
                set_once(out.drift.is_some())?;
                out.drift = Some(Drift::Diurnal {
                    rising: part == "diurnal-rising",
                });
            } else if let Some(v) = part.strip_prefix("ramp-x") {
                set_once(out.drift.is_some())?;
                let factor = v
                    .parse::<f64>()
                    .ok()
                    .filter(|k| k.is_finite() && *k > 0.0)
                    .ok_or_else(|| bad(part))?;
                out.drift = Some(Drift::Ramp { factor });
            } else if let Some((kind, v)) = part
                .strip_prefix("late-")
                .map(|v| (false, v))
                .or_else(|| part.strip_prefix("lag-").map(|v| (true, v)))
            {
                set_once(out.late.is_some())?;
                out.late = Some(Late {
                    probability: percent(part, v)?,
                    per_series: kind,
                });
            } else {
                return Err(bad(part));
            }
        }
        Ok(out)
    }
}

/// One revision's bursts in progress, minute by minute: a burst starts in a minute with
/// probability 1/[`BURST_GAP_MIN`] and lasts 1, 2 or 3 minutes (equally likely); overlapping
/// bursts add up. Started three minutes before the rollout so the first minutes are in the
/// steady state (the mean holds from minute 0).
pub struct BurstClock {
    rng: fastrand::Rng,
    /// Remaining minutes of each burst in progress.
    running: Vec<u32>,
}

impl BurstClock {
    pub fn new(seed: u64) -> BurstClock {
        let mut c = BurstClock {
            rng: fastrand::Rng::with_seed(seed),
            running: Vec::new(),
        };
        for _ in 0..3 {
            c.next_minute();
        }
        c
    }

    /// The number of bursts in progress in the next minute.
    pub fn next_minute(&mut self) -> u32 {
        self.running.retain_mut(|r| {
            *r -= 1;
            *r > 0
        });
        if self.rng.f64() < 1.0 / BURST_GAP_MIN {
            // Minutes left, this one included: 1, 2 or 3.
            self.running.push(1 + self.rng.u32(0..3));
        }
        self.running.len() as u32
    }
}

/// How the 5xx ratio and the latency follow the volume multiplier `v`.
pub fn load_coupling(v: f64) -> (f64, f64) {
    (
        (1.0 + ERRORS_PER_LOAD * (v - 1.0)).max(0.0),
        (1.0 + LATENCY_PER_LOAD * (v - 1.0)).max(0.05),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_combine() {
        assert_eq!(Scenario::parse("poisson").unwrap(), Scenario::poisson());
        let s = Scenario::parse("bursts-20+late-30").unwrap();
        assert_eq!(s.bursts, Some(Bursts { share: 0.2 }));
        assert_eq!(
            s.late,
            Some(Late {
                probability: 0.3,
                per_series: false
            })
        );
        assert!(!s.independent());
        let s = Scenario::parse("ramp-x3+lag-10+common-bursts-50").unwrap();
        assert_eq!(s.drift, Some(Drift::Ramp { factor: 3.0 }));
        assert!(s.late.unwrap().per_series);
        assert_eq!(s.common_bursts.unwrap().share, 0.5);
        for bad in [
            "burst-20",
            "bursts-200",
            "ramp-x0",
            "late-",
            "diurnal",
            "late-1+lag-2",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bursts_last_one_to_three_minutes_and_keep_the_mean_rate() {
        let mut clock = BurstClock::new(9);
        let minutes = 400_000;
        let active: Vec<u32> = (0..minutes).map(|_| clock.next_minute()).collect();
        let mean_active = active.iter().map(|&a| f64::from(a)).sum::<f64>() / minutes as f64;
        assert!(
            (mean_active / Bursts::mean_active() - 1.0).abs() < 0.03,
            "{mean_active}"
        );
        // A lone burst's length: runs of active minutes between quiet ones.
        let mut runs = Vec::new();
        let mut len = 0;
        for &a in &active {
            if a == 0 {
                if len > 0 {
                    runs.push(len);
                }
                len = 0;
            } else {
                len += 1;
            }
        }
        assert!(runs.iter().all(|&r| r >= 1));
        let short = runs.iter().filter(|&&r| r <= 3).count() as f64 / runs.len() as f64;
        assert!(short > 0.9, "{short}");
        for b in [Bursts { share: 0.2 }, Bursts { share: 0.5 }] {
            let mean = active.iter().map(|&a| b.rate(0.005, a)).sum::<f64>() / minutes as f64;
            assert!((mean / 0.005 - 1.0).abs() < 0.03, "{b:?}: {mean}");
            assert!(b.rate(0.005, 1) > 0.005 * (1.0 + b.share * 5.0));
        }
    }

    #[test]
    fn drift_follows_its_curve() {
        let rising = Drift::Diurnal { rising: true };
        let falling = Drift::Diurnal { rising: false };
        assert!((rising.volume(0.0) - 1.0).abs() < 1e-12);
        assert!(rising.volume(30.0) > 1.05 && falling.volume(30.0) < 0.95);
        assert!((rising.volume(360.0) - 1.5).abs() < 1e-9, "peak after 6 h");
        assert!(
            (falling.volume(360.0) - 0.5).abs() < 1e-9,
            "trough after 6 h"
        );
        let ramp = Drift::Ramp { factor: 3.0 };
        assert_eq!(ramp.volume(0.0), 1.0);
        assert!((ramp.volume(15.0) - 2.0).abs() < 1e-12);
        assert_eq!(ramp.volume(60.0), 3.0);
        let (e, l) = load_coupling(3.0);
        assert!((e - 1.5).abs() < 1e-12 && (l - 1.2).abs() < 1e-12);
    }
}
