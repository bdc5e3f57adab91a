//! The rules a rollout follows: steps, soak time, thresholds, and how long to wait for data.
//!
//! Every setting is one line of [`policy_settings!`]: its field, its kind of value, its
//! default as written, its environment variable and, if a service may override it, its
//! `cutover.dev/*` annotation. The [`Policy`] struct, its defaults and the overrides come from
//! that table here; the command line (src/config.rs) comes from the same table. Each kind of
//! value ([`Rate`], [`Ratio`], [`Millis`], [`Interval`], …) is parsed and checked once, where it
//! is read, so the rest of the decision core can trust a [`Policy`]: steps strictly increase
//! and end at 100, durations are positive, rates are in range. An invalid override is an error
//! the decision reports, never a silent fallback to the default.

use std::collections::BTreeMap;

use jiff::SignedDuration;

/// The policy settings, one a line: `field: Kind = "default", "ENV_VAR"`, then the
/// per-service annotation for those a service may override, after the help text people read
/// in `cutover serve --help`. Expands `$then! { … }` with the table, so that every consumer is
/// generated from these lines.
macro_rules! policy_settings {
    ($then:ident) => {
        $then! {
            /// Candidate traffic steps in percent, ending at 100.
            steps: Steps = "10,50,100", "CUTOVER_STEPS", "cutover.dev/steps";
            /// Soak time: data needed per step before it is judged.
            step_interval: Interval = "5m", "CUTOVER_STEP_INTERVAL", "cutover.dev/step-interval";
            /// How late Cloud Run metrics land; judged windows end this long before now.
            metrics_delay: Delay = "3m", "CUTOVER_METRICS_DELAY";
            /// How long after a minute ends its points may still land: a minute some needed revision has not yet written past is judged only after this (Cloud Run samples every 60 s, visible up to 180 s later).
            data_wait: Delay = "4m", "CUTOVER_DATA_WAIT";
            /// Minimum candidate requests in a window to judge it.
            min_requests: Count = "100", "CUTOVER_MIN_REQUESTS", "cutover.dev/min-requests";
            /// How long a due step may stay inconclusive before the rollout pauses.
            max_hold: Interval = "1h", "CUTOVER_MAX_HOLD";
            /// Highest acceptable 5xx ratio (0.01 = 1%).
            max_error_rate: Rate = "0.01", "CUTOVER_MAX_ERROR_RATE", "cutover.dev/max-error-rate";
            /// Highest acceptable p99 latency in milliseconds.
            max_p99_ms: Millis = "1000", "CUTOVER_MAX_P99_MS", "cutover.dev/max-p99-ms";
            /// A candidate with this many times the stable revision's 5xx ratio is a regression the comparison must catch.
            max_error_ratio: Ratio = "2", "CUTOVER_MAX_ERROR_RATIO", "cutover.dev/max-error-ratio";
            /// 5xx increases over stable below this ratio (0.001 = 0.1 percentage point) are never a regression.
            error_rate_floor: Rate = "0.001", "CUTOVER_ERROR_RATE_FLOOR", "cutover.dev/error-rate-floor";
            /// A candidate this many times slower than stable (compared percentiles, rank test) is a regression the comparison must catch.
            max_latency_ratio: Ratio = "1.25", "CUTOVER_MAX_LATENCY_RATIO", "cutover.dev/max-latency-ratio";
            /// Slow-downs below this many milliseconds are never a regression.
            latency_floor_ms: FloorMillis = "10", "CUTOVER_LATENCY_FLOOR_MS", "cutover.dev/latency-floor-ms";
            /// Latency percentiles compared with stable, comma separated (none: only the rank test over the whole histogram).
            latency_percentiles: Percentiles = "p95", "CUTOVER_LATENCY_PERCENTILES", "cutover.dev/latency-percentiles";
            /// Highest chance that a candidate no worse than stable is rolled back during a rollout, however often steps are looked at.
            false_alarm_rate: Risk = "0.005", "CUTOVER_FALSE_ALARM_RATE", "cutover.dev/false-alarm-rate";
            /// Highest chance that a candidate with a regression of the configured size, or at an absolute limit, passes the step leading to 100%.
            miss_rate: Risk = "0.01", "CUTOVER_MISS_RATE", "cutover.dev/miss-rate";
            /// The same for an absolute limit at the earlier steps (at least CUTOVER_MISS_RATE, below 1).
            canary_miss_rate: Rate = "0.25", "CUTOVER_CANARY_MISS_RATE", "cutover.dev/canary-miss-rate";
            /// After the last step passes, how long the previous stable revision stays tagged and an alert or a failed absolute check rolls back to it (0: complete at once).
            bake: Delay = "10m", "CUTOVER_BAKE", "cutover.dev/bake";
            /// live: move traffic; shadow: decide and record every decision, write nothing.
            mode: ModeName = "live", "CUTOVER_MODE", "cutover.dev/mode";
        }
    };
}
pub(crate) use policy_settings;

/// Which judge decides a step (see `docs/judgement.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JudgeKind {
    /// Candidate against stable over the same window, with sequential tests (the default).
    #[default]
    Sequential,
    /// The candidate's own point estimates against the absolute limits only: the judge cutover
    /// had before the comparison with stable. Kept as the baseline `lab simulate` measures
    /// against; not a configuration setting.
    Absolute,
}

/// A kind of policy value: how it is read and checked, the same for the command line, the
/// defaults and the annotations.
pub trait Value: Sized {
    /// What [`Policy`] holds.
    type Field;
    /// Parses and checks a value as written; the error says what is wrong with it.
    fn parse(s: &str) -> Result<Self, String>;
    /// Checks a value the policy holds (one built in code rather than parsed).
    fn check(field: &Self::Field) -> Result<(), String>;
    fn into_field(self) -> Self::Field;
}

/// Declares the kinds of value: each a newtype over what the policy holds, read by its parser.
macro_rules! value_kinds {
    ($($(#[$meta:meta])* $name:ident($field:ty) = $parse:path, $check:expr;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name(pub $field);

        impl Value for $name {
            type Field = $field;
            fn parse(s: &str) -> Result<Self, String> {
                $parse(s).map($name)
            }
            fn check(field: &$field) -> Result<(), String> {
                $check(field)
            }
            fn into_field(self) -> $field {
                self.0
            }
        }
    )*};
}

value_kinds! {
    /// Traffic steps in percent, strictly increasing, ending at 100 (`10,50,100`).
    Steps(Vec<u8>) = parse_steps, |v: &Vec<u8>| validate_steps(v);
    /// A positive duration (`90s`, `5m`, `1h30m`).
    Interval(SignedDuration) = parse_interval, |v: &SignedDuration| positive(*v);
    /// A duration that may be 0.
    Delay(SignedDuration) = parse_duration, |v: &SignedDuration| not_negative(*v);
    /// A whole number.
    Count(u64) = parse_count, |_: &u64| Ok(());
    /// A ratio in [0, 1] (`0.01` = 1%).
    Rate(f64) = parse_rate, |v: &f64| check_rate(*v);
    /// A ratio above 1 (`2` = twice the stable revision's).
    Ratio(f64) = parse_ratio, |v: &f64| check_ratio(*v);
    /// A probability above 0, at most 0.5.
    Risk(f64) = parse_risk, |v: &f64| check_risk(*v);
    /// A positive number of milliseconds.
    Millis(f64) = parse_ms, |v: &f64| check_ms(*v);
    /// A number of milliseconds that may be 0.
    FloorMillis(f64) = parse_floor_ms, |v: &f64| check_floor_ms(*v);
    /// Latency quantiles, ascending (`p95,p99`, or `none`).
    Percentiles(Vec<f64>) = parse_percentiles, |v: &Vec<f64>| check_percentiles(v);
    /// `live` or `shadow`.
    ModeName(Mode) = Mode::parse, |_: &Mode| Ok(());
}

/// Whether cutover moves traffic or only says what it would do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decisions are written: traffic moves and the record is kept on the service.
    #[default]
    Live,
    /// Decisions are made and recorded (marked `"mode":"shadow"`), and nothing is written.
    Shadow,
}

impl Mode {
    /// Parses `live` or `shadow`.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.trim() {
            "live" => Ok(Mode::Live),
            "shadow" => Ok(Mode::Shadow),
            other => Err(format!("{other:?} is not a mode: live or shadow")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Shadow => "shadow",
        }
    }
}

/// The annotation a service sets to choose its own mode.
pub const MODE_KEY: &str = "cutover.dev/mode";

impl Policy {
    /// The mode for a service with these annotations: its `cutover.dev/mode` override, else
    /// this policy's. Read apart from the other overrides, so that a bad one elsewhere does
    /// not turn a shadowed service live; an unreadable mode is shadow (writing nothing is the
    /// side that cannot hurt; the decision reports the bad override).
    pub fn mode_for(&self, annotations: &BTreeMap<String, String>) -> Mode {
        match annotations.get(MODE_KEY) {
            Some(v) => Mode::parse(v).unwrap_or(Mode::Shadow),
            None => self.mode,
        }
    }
}

/// Generates [`Policy`], its defaults, [`OVERRIDE_KEYS`] and [`Policy::with_overrides`] from
/// [`policy_settings!`].
macro_rules! policy {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $kind:ident = $default:literal, $env:literal $(, $key:literal)?;
    )*) => {
        /// How a rollout proceeds and what counts as healthy.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Policy {
            $(
                $(#[doc = $doc])*
                pub $field: <$kind as Value>::Field,
            )*
            /// Which judge decides (the sequential comparison unless a simulation says
            /// otherwise).
            pub judge: JudgeKind,
            /// When set, `GET {candidate tag URL}{path}` must answer 2xx before any traffic
            /// moves.
            pub smoke_path: Option<String>,
        }

        impl Default for Policy {
            /// The defaults of the table, which are also the command line's.
            fn default() -> Self {
                Policy {
                    $(
                        $field: <$kind as Value>::parse($default)
                            .expect(concat!("the default of ", $env, " is valid"))
                            .into_field(),
                    )*
                    judge: JudgeKind::Sequential,
                    smoke_path: None,
                }
            }
        }

        /// Every annotation a service may set to override cutover's defaults.
        pub const OVERRIDE_KEYS: &[&str] = &[$($($key,)?)*];

        impl Policy {
            /// This policy with a service's `cutover.dev/*` overrides applied.
            ///
            /// # Errors
            /// The first override that does not parse or is out of range, naming its
            /// annotation.
            pub fn with_overrides(
                &self,
                annotations: &BTreeMap<String, String>,
            ) -> Result<Policy, PolicyError> {
                let mut p = self.clone();
                $($(
                    if let Some(v) = annotations.get($key) {
                        p.$field = <$kind as Value>::parse(v.trim())
                            .map_err(|r| PolicyError::new($key, r))?
                            .into_field();
                    }
                )?)*
                // Overrides may combine into something invalid (a canary miss rate below the
                // miss rate).
                p.check_combined().map_err(|r| {
                    let key = if annotations.contains_key(CANARY_MISS_RATE_KEY) {
                        CANARY_MISS_RATE_KEY
                    } else {
                        MISS_RATE_KEY
                    };
                    PolicyError::new(key, r)
                })?;
                Ok(p)
            }
        }
    };
}

policy_settings!(policy);

const MISS_RATE_KEY: &str = "cutover.dev/miss-rate";
const CANARY_MISS_RATE_KEY: &str = "cutover.dev/canary-miss-rate";

/// A policy value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PolicyError {
    /// The setting or annotation at fault.
    pub key: String,
    pub reason: String,
}

impl PolicyError {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        PolicyError {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl Policy {
    /// Checks every field of a policy built in code (parsed ones are checked as they are read),
    /// naming the setting at fault.
    pub fn validate(&self) -> Result<(), PolicyError> {
        macro_rules! check_fields {
            ($(
                $(#[doc = $doc:literal])*
                $field:ident: $kind:ident = $default:literal, $env:literal $(, $key:literal)?;
            )*) => {
                $(
                    <$kind as Value>::check(&self.$field).map_err(|r| PolicyError::new($env, r))?;
                )*
            };
        }
        policy_settings!(check_fields);
        self.check_combined()
            .map_err(|r| PolicyError::new("CUTOVER_CANARY_MISS_RATE", r))
    }

    /// Checks what no single value can: the canary miss rate is at least the miss rate.
    pub fn check_combined(&self) -> Result<(), String> {
        check_canary_miss_rate(self.canary_miss_rate, self.miss_rate)
    }

    /// The step after `percent`, or `None` when `percent` is already the last one.
    pub fn next_step(&self, percent: u8) -> Option<u8> {
        self.steps.iter().copied().find(|s| *s > percent)
    }
}

/// Parses a positive duration.
pub fn parse_interval(s: &str) -> Result<SignedDuration, String> {
    let d = parse_duration(s)?;
    if d.is_positive() {
        Ok(d)
    } else {
        Err(format!("{:?} must be positive", s.trim()))
    }
}

fn positive(d: SignedDuration) -> Result<(), String> {
    if d.is_positive() {
        Ok(())
    } else {
        Err("must be positive".into())
    }
}

fn not_negative(d: SignedDuration) -> Result<(), String> {
    if d.is_negative() {
        Err("must not be negative".into())
    } else {
        Ok(())
    }
}

/// Parses a whole number.
pub fn parse_count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}

/// Parses `10,50,100`.
pub fn parse_steps(s: &str) -> Result<Vec<u8>, String> {
    let mut steps = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let n: u8 = part
            .strip_suffix('%')
            .unwrap_or(part)
            .parse()
            .map_err(|_| format!("{part:?} is not a percentage from 1 to 100"))?;
        steps.push(n);
    }
    validate_steps(&steps)?;
    Ok(steps)
}

fn validate_steps(steps: &[u8]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("needs at least one step".into());
    }
    if steps.iter().any(|s| *s == 0 || *s > 100) {
        return Err("each step must be a percentage from 1 to 100".into());
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err("steps must strictly increase".into());
    }
    if steps.last() != Some(&100) {
        return Err("the last step must be 100".into());
    }
    Ok(())
}

/// Parses durations such as `90s`, `5m`, `1h` or `1h30m` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration like 90s, 5m or 1h");
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u32>() {
        return Ok(SignedDuration::from_secs(i64::from(secs)));
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= 366 * 86_400)
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(total))
}

/// Formats a duration the way it is written in configuration (`5m`, `1h30m`, `90s`).
pub fn format_duration(d: SignedDuration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
        secs = -secs;
    }
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Parses a ratio in [0, 1] such as `0.01`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    check_rate(v)?;
    Ok(v)
}

fn check_rate(v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} must be a ratio between 0 and 1 (0.01 = 1%)"))
    }
}

/// Parses a ratio above 1 such as `2` or `1.25`.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    check_ratio(v)?;
    Ok(v)
}

fn check_ratio(v: f64) -> Result<(), String> {
    if v.is_finite() && v > 1.0 && v <= 1000.0 {
        Ok(())
    } else {
        Err(format!(
            "{v} must be a ratio above 1 (2 = twice the stable revision's)"
        ))
    }
}

/// Parses a probability for a false-alarm or miss rate: above 0, at most 0.5.
pub fn parse_risk(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    check_risk(v)?;
    Ok(v)
}

fn check_risk(v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v <= 0.5 {
        Ok(())
    } else {
        Err(format!(
            "{v} must be a probability above 0 and at most 0.5 (0.01 = 1%)"
        ))
    }
}

fn check_canary_miss_rate(canary: f64, miss: f64) -> Result<(), String> {
    if canary.is_finite() && canary >= miss && canary < 1.0 {
        Ok(())
    } else {
        Err(format!(
            "{canary} must be at least the miss rate ({miss}) and below 1"
        ))
    }
}

/// Parses a number of milliseconds that may be 0.
pub fn parse_floor_ms(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of milliseconds"))?;
    check_floor_ms(v)?;
    Ok(v)
}

fn check_floor_ms(v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "{v} must be 0 or a positive number of milliseconds"
        ))
    }
}

/// Parses percentiles such as `p95,p99` (also `95,99.9`) into ascending quantiles; `none` (or
/// an empty value) compares no percentile with stable.
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let digits = part
            .strip_prefix('p')
            .or_else(|| part.strip_prefix('P'))
            .unwrap_or(part);
        let v: f64 = digits
            .parse()
            .map_err(|_| format!("{part:?} is not a percentile like p95 or p99.9"))?;
        // Rounded so that p99.9 is exactly 0.999 (and prints back as p99.9).
        out.push((v * 10_000.0).round() / 1_000_000.0);
    }
    out.sort_by(f64::total_cmp);
    out.dedup();
    check_percentiles(&out)?;
    Ok(out)
}

fn check_percentiles(q: &[f64]) -> Result<(), String> {
    if q.iter().all(|q| q.is_finite() && *q > 0.0 && *q < 1.0) {
        Ok(())
    } else {
        Err("each percentile must be above p0 and below p100".into())
    }
}

/// Formats quantiles back as `p95,p99`.
pub fn format_percentiles(q: &[f64]) -> String {
    if q.is_empty() {
        return "none".into();
    }
    q.iter()
        .map(|q| format!("p{}", fmt_percentile(*q)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `0.99` → `99`, `0.999` → `99.9`.
pub fn fmt_percentile(q: f64) -> String {
    let p = (q * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// Parses a positive number of milliseconds.
pub fn parse_ms(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of milliseconds"))?;
    check_ms(v)?;
    Ok(v)
}

fn check_ms(v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{v} must be a positive number of milliseconds"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_written_in_config() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
        for bad in ["", "m", "5x", "1.5m", "-5m", "5m3", "99999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(format_duration(SignedDuration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(SignedDuration::from_secs(90)), "1m30s");
    }

    #[test]
    fn steps_must_climb_to_100() {
        assert_eq!(parse_steps("10,50,100").unwrap(), vec![10, 50, 100]);
        assert_eq!(parse_steps(" 5%, 25 ,100").unwrap(), vec![5, 25, 100]);
        assert_eq!(parse_steps("100").unwrap(), vec![100]);
        for bad in [
            "",
            "10,50",
            "50,10,100",
            "10,10,100",
            "0,100",
            "10,101",
            "ten,100",
        ] {
            assert!(parse_steps(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn overrides_apply_and_name_the_bad_annotation() {
        let base = Policy::default();
        let mut a = BTreeMap::new();
        a.insert("cutover.dev/steps".to_string(), "25,100".to_string());
        a.insert("cutover.dev/step-interval".to_string(), "10m".to_string());
        a.insert("cutover.dev/max-error-rate".to_string(), "0.05".to_string());
        a.insert("cutover.dev/max-p99-ms".to_string(), "250".to_string());
        a.insert("cutover.dev/min-requests".to_string(), "20".to_string());
        a.insert("other.example.com/x".to_string(), "ignored".to_string());
        a.insert("cutover.dev/max-error-ratio".to_string(), "3".to_string());
        a.insert(
            "cutover.dev/error-rate-floor".to_string(),
            "0.002".to_string(),
        );
        a.insert(
            "cutover.dev/max-latency-ratio".to_string(),
            "1.5".to_string(),
        );
        a.insert("cutover.dev/latency-floor-ms".to_string(), "0".to_string());
        a.insert(
            "cutover.dev/latency-percentiles".to_string(),
            "p99, p50".to_string(),
        );
        a.insert(
            "cutover.dev/false-alarm-rate".to_string(),
            "0.01".to_string(),
        );
        a.insert("cutover.dev/miss-rate".to_string(), "0.05".to_string());
        a.insert(
            "cutover.dev/canary-miss-rate".to_string(),
            "0.5".to_string(),
        );
        let p = base.with_overrides(&a).unwrap();
        assert_eq!(p.max_error_ratio, 3.0);
        assert_eq!(p.error_rate_floor, 0.002);
        assert_eq!(p.max_latency_ratio, 1.5);
        assert_eq!(p.latency_floor_ms, 0.0);
        assert_eq!(p.latency_percentiles, vec![0.5, 0.99]);
        assert_eq!(p.false_alarm_rate, 0.01);
        assert_eq!(p.miss_rate, 0.05);
        assert_eq!(p.canary_miss_rate, 0.5);
        p.check_combined().unwrap();
        assert_eq!(p.steps, vec![25, 100]);
        assert_eq!(p.step_interval.as_secs(), 600);
        assert_eq!(p.max_error_rate, 0.05);
        assert_eq!(p.max_p99_ms, 250.0);
        assert_eq!(p.min_requests, 20);

        a.insert("cutover.dev/max-error-rate".to_string(), "5%".to_string());
        let err = base.with_overrides(&a).unwrap_err();
        assert_eq!(err.key, "cutover.dev/max-error-rate");
        assert!(err.to_string().contains("cutover.dev/max-error-rate"));
    }

    #[test]
    fn statistical_settings_are_range_checked() {
        assert_eq!(parse_percentiles("p95,p99").unwrap(), vec![0.95, 0.99]);
        assert_eq!(parse_percentiles("99.9").unwrap(), vec![0.999]);
        assert!(parse_percentiles("none").unwrap().is_empty());
        assert_eq!(format_percentiles(&[0.5, 0.999]), "p50,p99.9");
        for bad in ["p100", "p0", "fast", "p95,"] {
            assert!(parse_percentiles(bad).is_err(), "{bad:?}");
        }
        assert!(parse_ratio("1").is_err() && parse_ratio("1.01").is_ok());
        assert!(parse_risk("0").is_err() && parse_risk("0.6").is_err());
        assert!(parse_floor_ms("-1").is_err() && parse_floor_ms("0").is_ok());
        let base = Policy::default();
        base.check_combined().unwrap();
        let a = BTreeMap::from([("cutover.dev/miss-rate".to_string(), "0.4".to_string())]);
        let err = base.with_overrides(&a).unwrap_err();
        assert_eq!(
            err.key, "cutover.dev/miss-rate",
            "a miss rate above the canary miss rate"
        );
        let a = BTreeMap::from([("cutover.dev/max-error-ratio".to_string(), "0.5".to_string())]);
        assert_eq!(
            base.with_overrides(&a).unwrap_err().key,
            "cutover.dev/max-error-ratio"
        );
    }

    #[test]
    fn every_override_key_reads_its_setting_and_names_itself_when_bad() {
        let base = Policy::default();
        for key in OVERRIDE_KEYS {
            let a = BTreeMap::from([(key.to_string(), "bogus".to_string())]);
            let err = base.with_overrides(&a).unwrap_err();
            assert_eq!(err.key, *key, "{err}");
        }
        // And each key moves its own setting: all of them together change every field they
        // name (a value other than the default for each).
        let a: BTreeMap<String, String> = [
            ("steps", "20,100"),
            ("step-interval", "7m"),
            ("min-requests", "7"),
            ("max-error-rate", "0.07"),
            ("max-p99-ms", "700"),
            ("max-error-ratio", "7"),
            ("error-rate-floor", "0.007"),
            ("max-latency-ratio", "1.7"),
            ("latency-floor-ms", "7"),
            ("latency-percentiles", "p70"),
            ("false-alarm-rate", "0.07"),
            ("miss-rate", "0.07"),
            ("canary-miss-rate", "0.7"),
            ("bake", "7m"),
            ("mode", "shadow"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("cutover.dev/{k}"), v.to_string()))
        .collect();
        assert_eq!(a.len(), OVERRIDE_KEYS.len());
        assert!(a.keys().all(|k| OVERRIDE_KEYS.contains(&k.as_str())));
        let p = base.with_overrides(&a).unwrap();
        let expected = Policy {
            steps: vec![20, 100],
            step_interval: SignedDuration::from_mins(7),
            min_requests: 7,
            max_error_rate: 0.07,
            max_p99_ms: 700.0,
            max_error_ratio: 7.0,
            error_rate_floor: 0.007,
            max_latency_ratio: 1.7,
            latency_floor_ms: 7.0,
            latency_percentiles: vec![0.7],
            false_alarm_rate: 0.07,
            miss_rate: 0.07,
            canary_miss_rate: 0.7,
            bake: SignedDuration::from_mins(7),
            mode: Mode::Shadow,
            ..base
        };
        assert_eq!(p, expected);
    }

    #[test]
    fn a_policy_built_in_code_is_checked_by_the_same_kinds() {
        Policy::default().validate().unwrap();
        let bad = Policy {
            max_latency_ratio: 0.9,
            ..Policy::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "CUTOVER_MAX_LATENCY_RATIO");
        let bad = Policy {
            max_hold: SignedDuration::ZERO,
            ..Policy::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "CUTOVER_MAX_HOLD");
    }

    #[test]
    fn a_service_chooses_its_own_mode_and_an_unreadable_one_writes_nothing() {
        let live = Policy::default();
        assert_eq!(live.mode, Mode::Live);
        let with = |v: &str| BTreeMap::from([(MODE_KEY.to_string(), v.to_string())]);
        assert_eq!(live.mode_for(&BTreeMap::new()), Mode::Live);
        assert_eq!(live.mode_for(&with("shadow")), Mode::Shadow);
        assert_eq!(live.mode_for(&with("shadwo")), Mode::Shadow);
        let shadow = Policy {
            mode: Mode::Shadow,
            ..Policy::default()
        };
        assert_eq!(shadow.mode_for(&with("live")), Mode::Live);
        assert_eq!(
            live.with_overrides(&with("shadwo")).unwrap_err().key,
            MODE_KEY,
            "the decision still reports the bad annotation"
        );
    }

    #[test]
    fn next_step_walks_the_list() {
        let p = Policy::default();
        assert_eq!(p.next_step(0), Some(10));
        assert_eq!(p.next_step(10), Some(50));
        assert_eq!(
            p.next_step(30),
            Some(50),
            "a percent not in the list moves to the next one above"
        );
        assert_eq!(p.next_step(100), None);
    }
}
