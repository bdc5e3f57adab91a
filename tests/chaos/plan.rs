//! What happens in one seed, drawn from the seed alone: which services exist, which revisions
//! are deployed when (healthy, failing, slow, turning bad later, or never becoming Ready), and
//! which Monitoring incidents fire. Drawing the whole scenario up front is what makes a seed
//! repeatable: the run only follows the plan.

use cutover_fakes::RevisionProfile;

/// How a deployed revision behaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    Healthy,
    /// 5xx from the start, at this ratio.
    Errors(f64),
    /// p99 latency (ms) far above the threshold from the start.
    Slow(f64),
    /// Healthy, then failing at `error_ratio` from `after` minutes past its deploy on.
    TurnsBad {
        after: u32,
        error_ratio: f64,
    },
    /// Its container never starts: the revision never becomes Ready.
    Unready,
}

impl Health {
    pub fn profile(&self) -> RevisionProfile {
        match self {
            Health::Healthy | Health::TurnsBad { .. } | Health::Unready => {
                RevisionProfile::healthy()
            }
            Health::Errors(ratio) => RevisionProfile::healthy().with_error_ratio(*ratio),
            Health::Slow(p99) => RevisionProfile::healthy()
                .with_p50_ms(p99 / 4.0)
                .with_p99_ms(*p99),
        }
    }

    /// Minutes after its deploy from which the revision is bad, if it ever is.
    pub fn bad_after(&self) -> Option<u32> {
        match self {
            Health::Errors(_) | Health::Slow(_) => Some(0),
            Health::TurnsBad { after, .. } => Some(*after),
            Health::Healthy | Health::Unready => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Health::Healthy => "healthy".into(),
            Health::Errors(r) => format!("{:.0}% 5xx", r * 100.0),
            Health::Slow(p) => format!("p99 {p:.0} ms"),
            Health::TurnsBad { after, error_ratio } => {
                format!("{:.0}% 5xx after {after} min", error_ratio * 100.0)
            }
            Health::Unready => "never ready".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RevisionPlan {
    pub name: String,
    /// When it is deployed (and its build notification published), in scenario minutes.
    pub at: u32,
    pub health: Health,
}

#[derive(Clone, Debug)]
pub struct AlertPlan {
    pub at: u32,
    pub revision: String,
    /// `open` incidents roll back; `closed` ones must be ignored.
    pub open: bool,
}

#[derive(Clone, Debug)]
pub struct ServicePlan {
    pub name: String,
    pub stable: String,
    pub rps: f64,
    pub revisions: Vec<RevisionPlan>,
    pub alerts: Vec<AlertPlan>,
}

impl ServicePlan {
    /// The last revision deployed that became Ready: where the service's rollouts must end up.
    pub fn final_candidate(&self) -> Option<&RevisionPlan> {
        self.revisions
            .iter()
            .filter(|r| r.health != Health::Unready)
            .max_by_key(|r| r.at)
    }

    /// Every revision of the service in creation order, the stable one first.
    pub fn creation_order(&self) -> Vec<String> {
        let mut revisions: Vec<&RevisionPlan> = self.revisions.iter().collect();
        revisions.sort_by_key(|r| r.at);
        std::iter::once(self.stable.clone())
            .chain(revisions.into_iter().map(|r| r.name.clone()))
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub services: Vec<ServicePlan>,
    /// The last scenario minute with something scheduled.
    pub horizon: u32,
}

const NAMES: &[&str] = &["api", "web", "pay", "cart", "auth", "feed"];
const SUFFIXES: &[&str] = &["bak", "cuv", "dex", "fop", "gir", "hul"];

/// The revision name Cloud Run would give the `n`-th revision of `service`.
fn revision_name(service: &str, n: usize) -> String {
    format!("{service}-{n:05}-{}", SUFFIXES[n % SUFFIXES.len()])
}

fn draw_health(rng: &mut fastrand::Rng, allow_unready: bool) -> Health {
    match rng.u32(0..100) {
        0..=49 => Health::Healthy,
        50..=66 => Health::Errors(0.1 + rng.f64() * 0.4),
        67..=76 => Health::Slow(2000.0 + rng.f64() * 3000.0),
        77..=89 => Health::TurnsBad {
            after: rng.u32(1..12),
            error_ratio: 0.3,
        },
        _ if allow_unready => Health::Unready,
        _ => Health::Healthy,
    }
}

impl Plan {
    /// The scenario of `seed`: `services` services (a range), candidates arriving within the
    /// first `spread` minutes, a second candidate for some, incidents for some bad ones.
    pub fn draw(seed: u64, services: std::ops::RangeInclusive<usize>, spread: u32) -> Plan {
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xc4a05);
        let n = rng.usize(services);
        let mut names: Vec<&str> = NAMES.to_vec();
        rng.shuffle(&mut names);
        let mut out = Vec::new();
        let mut horizon = 0;
        for name in names.into_iter().take(n) {
            let mut revisions = Vec::new();
            let first_at = rng.u32(0..=spread);
            let first = draw_health(&mut rng, false);
            revisions.push(RevisionPlan {
                name: revision_name(name, 2),
                at: first_at,
                health: first,
            });
            // A second deploy for some: mid-rollout (supersede) or later; sometimes one that
            // never becomes Ready, in which case a ready one follows it.
            if rng.u32(0..100) < 45 {
                let at = first_at + rng.u32(2..=spread.max(3) * 2);
                let health = draw_health(&mut rng, true);
                let unready = health == Health::Unready;
                revisions.push(RevisionPlan {
                    name: revision_name(name, 3),
                    at,
                    health,
                });
                if unready {
                    revisions.push(RevisionPlan {
                        name: revision_name(name, 4),
                        at: at + rng.u32(1..=spread.max(2)),
                        health: draw_health(&mut rng, false),
                    });
                }
            }
            let mut alerts = Vec::new();
            for r in &revisions {
                if let Some(after) = r.health.bad_after()
                    && rng.u32(0..100) < 40
                {
                    alerts.push(AlertPlan {
                        at: r.at + after + rng.u32(1..=6),
                        revision: r.name.clone(),
                        open: true,
                    });
                }
                if rng.u32(0..100) < 25 {
                    alerts.push(AlertPlan {
                        at: r.at + rng.u32(0..=8),
                        revision: r.name.clone(),
                        open: false,
                    });
                }
            }
            horizon = horizon
                .max(revisions.iter().map(|r| r.at).max().unwrap_or(0))
                .max(alerts.iter().map(|a| a.at).max().unwrap_or(0));
            out.push(ServicePlan {
                name: name.to_string(),
                stable: revision_name(name, 1),
                rps: 10.0 + rng.f64() * 30.0,
                revisions,
                alerts,
            });
        }
        Plan {
            seed,
            services: out,
            horizon,
        }
    }

    /// Takes release `revision` of `service` out of the plan, with its incidents: its pipeline
    /// refused it (a URL map with no idle backend).
    pub fn withdraw(&mut self, service: &str, revision: &str) {
        for s in self.services.iter_mut().filter(|s| s.name == service) {
            s.revisions.retain(|r| r.name != revision);
            s.alerts.retain(|a| a.revision != revision);
        }
    }

    pub fn describe(&self) -> String {
        let mut lines = vec![format!("seed {}:", self.seed)];
        for s in &self.services {
            let revisions: Vec<String> = s
                .revisions
                .iter()
                .map(|r| format!("{} at {} min ({})", r.name, r.at, r.health.label()))
                .collect();
            let alerts: Vec<String> = s
                .alerts
                .iter()
                .map(|a| {
                    let state = if a.open { "open" } else { "closed" };
                    format!("{state} incident on {} at {} min", a.revision, a.at)
                })
                .collect();
            lines.push(format!(
                "  {} ({:.0} rps, stable {}): {}{}",
                s.name,
                s.rps,
                s.stable,
                revisions.join(", "),
                if alerts.is_empty() {
                    String::new()
                } else {
                    format!("; {}", alerts.join(", "))
                }
            ));
        }
        lines.join("\n")
    }
}
