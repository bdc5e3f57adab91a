//! The goals a cell of `lab simulate` is checked against (issues 5 and 13), chosen by what the
//! candidate is, and how a miss is reported (which goal, by how much).
//!
//! - No worse than stable (healthy, near a limit but within it), under any scenario: rolled back
//!   in at most 0.5% of runs (a false alarm).
//! - A regression the relative comparison is sized for (5xx ≥ `max_error_ratio` ×, p95
//!   ≥ `max_latency_ratio` ×), with independent requests: reaches 100% in at most 1%; rolled back
//!   before 50% in ≥ 99% at ≥ 100 req/s (5xx ≥ 5× already at ≥ 10 req/s). Smaller ones carry no
//!   detection goal (`below regression size`); under bursts none either (the cost is measured).
//! - Over an absolute limit (`near-…-xF`, F > 1), at ≥ 100 req/s: rolled back in ≥ 95%.
//! - Latency ≥ ×1.5 appearing only at full load, independent requests, at ≥ 100 req/s: rolled
//!   back in ≥ 95%.
//! - Everywhere: no promotion on fewer than the minimum requests.

use cutover::decision::Policy;

use super::candidate::Change;
use super::{Cell, Summary};

/// What a goal measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    RolledBack,
    RolledBackBefore50,
    Reached100,
}

impl Measure {
    fn of(self, s: &Summary) -> f64 {
        match self {
            Measure::RolledBack => s.rolled_back,
            Measure::RolledBackBefore50 => s.rolled_back_before_50,
            Measure::Reached100 => s.reached_100,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Measure::RolledBack => "rolled back",
            Measure::RolledBackBefore50 => "rolled back before 50%",
            Measure::Reached100 => "reached 100%",
        }
    }
}

/// One goal: `measure` at most (or at least) `bound`.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub measure: Measure,
    pub at_most: bool,
    pub bound: f64,
}

impl Goal {
    fn at_most(measure: Measure, bound: f64) -> Goal {
        Goal {
            measure,
            at_most: true,
            bound,
        }
    }

    fn at_least(measure: Measure, bound: f64) -> Goal {
        Goal {
            measure,
            at_most: false,
            bound,
        }
    }

    /// How this goal reads, e.g. `rolled back ≤ 0.5%`.
    pub fn describe(&self) -> String {
        let op = if self.at_most { "≤" } else { "≥" };
        format!("{} {op} {}", self.measure.name(), pct(self.bound))
    }

    /// `None` if met, else what was measured and by how much it misses.
    pub fn miss(&self, s: &Summary) -> Option<String> {
        let v = self.measure.of(s);
        let off = if self.at_most {
            v - self.bound
        } else {
            self.bound - v
        };
        (off > 1e-12).then(|| {
            format!(
                "{} (measured {}, off by {} points)",
                self.describe(),
                pct(v),
                num(off * 100.0)
            )
        })
    }
}

/// The goals of one cell, or why it has none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Goals {
    pub goals: Vec<Goal>,
    /// Why a detection goal does not apply (e.g. `below regression size`).
    pub note: Option<String>,
}

impl Goals {
    pub fn of(cell: &Cell, policy: &Policy) -> Goals {
        let c = &cell.candidate;
        let rps = cell.rps;
        let independent = cell.scenario.independent();
        let mut out = Goals::default();
        if c.is_no_worse() {
            out.goals
                .push(Goal::at_most(Measure::RolledBack, policy.false_alarm_rate));
            return out;
        }
        match c.change {
            Change::Errors(_) | Change::P99(_) | Change::Latency(_) => {
                let (errors, latency) = c.relative_size().unwrap_or((1.0, 1.0));
                let sized = errors >= policy.max_error_ratio - 1e-9
                    || latency >= policy.max_latency_ratio - 1e-9;
                if !sized {
                    out.note = Some("below regression size".into());
                } else if !independent {
                    out.note = Some("no goal under bursts (cost measured)".into());
                } else {
                    out.goals.push(Goal::at_most(Measure::Reached100, 0.01));
                    if rps >= 100.0 || (errors >= 5.0 && rps >= 10.0) {
                        out.goals
                            .push(Goal::at_least(Measure::RolledBackBefore50, 0.99));
                    }
                }
            }
            Change::NearErrors(_) | Change::NearP99(_) => {
                if rps >= 100.0 {
                    out.goals.push(Goal::at_least(Measure::RolledBack, 0.95));
                } else {
                    out.note = Some("over a limit: goal from 100 req/s".into());
                }
            }
            Change::Load {
                latency, growing, ..
            } => {
                if latency >= 1.5 && !growing && independent && rps >= 100.0 {
                    out.goals.push(Goal::at_least(Measure::RolledBack, 0.95));
                } else {
                    out.note = Some("load-dependent: no goal here (measured)".into());
                }
            }
            Change::Tail(_) => out.note = Some("tail only: no goal (measured)".into()),
            Change::Healthy => {}
        }
        out
    }

    /// Which goals `s` misses (empty: all met), with the zero-promotions-without-data goal.
    pub fn missed(&self, s: &Summary) -> Vec<String> {
        let mut out: Vec<String> = self.goals.iter().filter_map(|g| g.miss(s)).collect();
        if s.promoted_without_min_data > 0 {
            out.push(format!(
                "{} promotions without the minimum data",
                s.promoted_without_min_data
            ));
        }
        out
    }

    /// The goals column: `met`, `MISSED: …` or the note (with `met` if other goals hold).
    pub fn status(&self, s: &Summary) -> String {
        let missed = self.missed(s);
        match (&self.note, missed.is_empty()) {
            (_, false) => format!("MISSED: {}", missed.join("; ")),
            (Some(n), true) => n.clone(),
            (None, true) => "met".into(),
        }
    }
}

/// A share as a percentage with enough precision to show it (0.0005 is "0.05%", never "0.1%").
pub fn pct(x: f64) -> String {
    format!("{}%", num(x * 100.0))
}

/// A number with up to three significant digits, at least one decimal, trailing zeros dropped.
pub fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (2 - x.abs().log10().floor() as i32).clamp(1, 12) as usize;
    let s = format!("{x:.digits$}");
    let s = s.trim_end_matches('0');
    let s = s.strip_suffix('.').unwrap_or(s);
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(rps: f64, c: &str, s: &str) -> Cell {
        Cell::parse(rps, c, s).unwrap()
    }

    fn summary(rolled_back: f64, before_50: f64, reached_100: f64) -> Summary {
        Summary {
            runs: 1000,
            rolled_back,
            rolled_back_before_50: before_50,
            reached_100,
            ..Summary::default()
        }
    }

    #[test]
    fn percentages_keep_their_precision() {
        assert_eq!(pct(0.0005), "0.05%");
        assert_eq!(pct(0.005), "0.5%");
        assert_eq!(pct(0.0123), "1.23%");
        assert_eq!(pct(0.99), "99%");
        assert_eq!(pct(1.0), "100%");
        assert_eq!(pct(0.0), "0%");
    }

    #[test]
    fn goals_follow_what_the_candidate_is() {
        let p = Policy::default();
        let g = Goals::of(&cell(1000.0, "healthy", "bursts-50"), &p);
        assert_eq!(g.goals, vec![Goal::at_most(Measure::RolledBack, 0.005)]);
        let g = Goals::of(&cell(100.0, "5xx-x1.5", "poisson"), &p);
        assert!(g.goals.is_empty());
        assert_eq!(g.status(&summary(0.0, 0.0, 1.0)), "below regression size");
        let g = Goals::of(&cell(100.0, "5xx-x2", "poisson"), &p);
        assert_eq!(g.goals.len(), 2);
        let s = g.status(&summary(0.98, 0.97, 0.0));
        assert!(
            s.starts_with("MISSED: rolled back before 50% ≥ 99% (measured 97%, off by 2 points)"),
            "{s}"
        );
        let g = Goals::of(&cell(100.0, "5xx-x2", "bursts-20"), &p);
        assert!(g.goals.is_empty() && g.note.is_some());
        let g = Goals::of(&cell(100.0, "near-5xx-x1.3", "poisson"), &p);
        assert_eq!(g.goals, vec![Goal::at_least(Measure::RolledBack, 0.95)]);
        assert!(
            Goals::of(&cell(10.0, "near-5xx-x1.3", "poisson"), &p)
                .goals
                .is_empty()
        );
        let g = Goals::of(&cell(100.0, "full-latency-x1.5", "poisson"), &p);
        assert_eq!(g.goals, vec![Goal::at_least(Measure::RolledBack, 0.95)]);
        assert_eq!(
            Goals::of(&cell(100.0, "p99-x1.5", "poisson"), &p)
                .goals
                .len(),
            2,
            "p99 ×1.5 is p95 ×1.33"
        );
        assert!(
            Goals::of(&cell(100.0, "p99-x1.3", "poisson"), &p)
                .goals
                .is_empty()
        );
    }
}
