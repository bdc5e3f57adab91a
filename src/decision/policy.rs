//! The rules a rollout follows: steps, soak time, thresholds, and how long to wait for data.
//!
//! Defaults come from cutover's configuration; a service may override some of them with
//! `cutover.dev/*` annotations. Everything is validated here, once, so the rest of the decision
//! core can trust a [`Policy`]: steps strictly increase and end at 100, durations are positive,
//! rates are in range. An invalid override is an error the decision reports, never a silent
//! fallback to the default.

use std::collections::BTreeMap;

use jiff::SignedDuration;

/// Annotation keys a service may set to override cutover's defaults.
pub const OVERRIDE_STEPS: &str = "cutover.dev/steps";
pub const OVERRIDE_STEP_INTERVAL: &str = "cutover.dev/step-interval";
pub const OVERRIDE_MAX_ERROR_RATE: &str = "cutover.dev/max-error-rate";
pub const OVERRIDE_MAX_P99_MS: &str = "cutover.dev/max-p99-ms";
pub const OVERRIDE_MIN_REQUESTS: &str = "cutover.dev/min-requests";
pub const OVERRIDE_MAX_ERROR_RATIO: &str = "cutover.dev/max-error-ratio";
pub const OVERRIDE_ERROR_RATE_FLOOR: &str = "cutover.dev/error-rate-floor";
pub const OVERRIDE_MAX_LATENCY_RATIO: &str = "cutover.dev/max-latency-ratio";
pub const OVERRIDE_LATENCY_FLOOR_MS: &str = "cutover.dev/latency-floor-ms";
pub const OVERRIDE_LATENCY_PERCENTILES: &str = "cutover.dev/latency-percentiles";
pub const OVERRIDE_FALSE_ALARM_RATE: &str = "cutover.dev/false-alarm-rate";
pub const OVERRIDE_MISS_RATE: &str = "cutover.dev/miss-rate";
pub const OVERRIDE_CANARY_MISS_RATE: &str = "cutover.dev/canary-miss-rate";

/// Every override key, for documentation and for telling them apart from cutover's record.
pub const OVERRIDE_KEYS: &[&str] = &[
    OVERRIDE_STEPS,
    OVERRIDE_STEP_INTERVAL,
    OVERRIDE_MAX_ERROR_RATE,
    OVERRIDE_MAX_P99_MS,
    OVERRIDE_MIN_REQUESTS,
    OVERRIDE_MAX_ERROR_RATIO,
    OVERRIDE_ERROR_RATE_FLOOR,
    OVERRIDE_MAX_LATENCY_RATIO,
    OVERRIDE_LATENCY_FLOOR_MS,
    OVERRIDE_LATENCY_PERCENTILES,
    OVERRIDE_FALSE_ALARM_RATE,
    OVERRIDE_MISS_RATE,
    OVERRIDE_CANARY_MISS_RATE,
];

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

/// How a rollout proceeds and what counts as healthy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Candidate traffic percentages, strictly increasing, ending at 100.
    pub steps: Vec<u8>,
    /// How much data a step needs before it is judged (its soak time).
    pub step_interval: SignedDuration,
    /// How late metrics land; the judged window ends this long before now.
    pub metrics_delay: SignedDuration,
    /// Fewer candidate requests than this in the window is "not enough data".
    pub min_requests: u64,
    /// How long a due step may stay inconclusive before the rollout pauses.
    pub max_hold: SignedDuration,
    /// 5xx / all above this fails the step.
    pub max_error_rate: f64,
    /// p99 latency (ms) above this fails the step.
    pub max_p99_ms: f64,
    /// A candidate whose 5xx rate is this many times the stable revision's is a regression the
    /// comparison must catch (the alternative of its sequential test). Above 1.
    pub max_error_ratio: f64,
    /// Practical floor of the 5xx comparison: an increase over stable smaller than this ratio
    /// (0.001 = 0.1 percentage point) is never treated as a regression.
    pub error_rate_floor: f64,
    /// A candidate this many times slower than stable (at a compared percentile, or overall for
    /// the rank test) is a regression the comparison must catch. Above 1.
    pub max_latency_ratio: f64,
    /// Practical floor of the latency comparison: a slow-down smaller than this many
    /// milliseconds is never treated as a regression.
    pub latency_floor_ms: f64,
    /// Latency quantiles compared with stable (0.95 = p95), ascending; may be empty.
    pub latency_percentiles: Vec<f64>,
    /// Highest chance that a candidate no worse than stable (and within the limits) is rolled
    /// back during one rollout, however many times its steps are looked at.
    pub false_alarm_rate: f64,
    /// Highest chance that a candidate with a regression of the configured size, or sitting at
    /// an absolute limit, passes the step that leads to 100% (and any step's informative
    /// comparison with stable).
    pub miss_rate: f64,
    /// The same for an absolute limit at the earlier (canary) steps, where a wrong pass only
    /// moves the candidate to the next judged step. At least `miss_rate`.
    pub canary_miss_rate: f64,
    /// Which judge decides (the sequential comparison unless a simulation says otherwise).
    pub judge: JudgeKind,
    /// When set, `GET {candidate tag URL}{path}` must answer 2xx before any traffic moves.
    pub smoke_path: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            steps: vec![10, 50, 100],
            step_interval: SignedDuration::from_mins(5),
            metrics_delay: SignedDuration::from_mins(3),
            min_requests: 100,
            max_hold: SignedDuration::from_hours(1),
            max_error_rate: 0.01,
            max_p99_ms: 1000.0,
            max_error_ratio: 2.0,
            error_rate_floor: 0.001,
            max_latency_ratio: 1.25,
            latency_floor_ms: 10.0,
            latency_percentiles: vec![0.95],
            false_alarm_rate: 0.005,
            miss_rate: 0.01,
            canary_miss_rate: 0.25,
            judge: JudgeKind::Sequential,
            smoke_path: None,
        }
    }
}

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
    /// Checks every field, naming the one at fault.
    pub fn validate(&self) -> Result<(), PolicyError> {
        validate_steps(&self.steps).map_err(|r| PolicyError::new("steps", r))?;
        if !self.step_interval.is_positive() {
            return Err(PolicyError::new("step interval", "must be positive"));
        }
        if self.metrics_delay.is_negative() {
            return Err(PolicyError::new("metrics delay", "must not be negative"));
        }
        if !self.max_hold.is_positive() {
            return Err(PolicyError::new("max hold", "must be positive"));
        }
        check_rate(self.max_error_rate).map_err(|r| PolicyError::new("max error rate", r))?;
        check_ms(self.max_p99_ms).map_err(|r| PolicyError::new("max p99 ms", r))?;
        check_ratio(self.max_error_ratio).map_err(|r| PolicyError::new("max error ratio", r))?;
        check_rate(self.error_rate_floor).map_err(|r| PolicyError::new("error rate floor", r))?;
        check_ratio(self.max_latency_ratio)
            .map_err(|r| PolicyError::new("max latency ratio", r))?;
        check_floor_ms(self.latency_floor_ms)
            .map_err(|r| PolicyError::new("latency floor ms", r))?;
        check_percentiles(&self.latency_percentiles)
            .map_err(|r| PolicyError::new("latency percentiles", r))?;
        check_risk(self.false_alarm_rate).map_err(|r| PolicyError::new("false alarm rate", r))?;
        check_risk(self.miss_rate).map_err(|r| PolicyError::new("miss rate", r))?;
        check_canary_miss_rate(self.canary_miss_rate, self.miss_rate)
            .map_err(|r| PolicyError::new("canary miss rate", r))?;
        Ok(())
    }

    /// This policy with a service's `cutover.dev/*` overrides applied.
    ///
    /// # Errors
    /// The first override that does not parse or is out of range, naming its annotation.
    pub fn with_overrides(
        &self,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Policy, PolicyError> {
        let mut p = self.clone();
        let get = |k: &str| annotations.get(k).map(|v| v.trim());
        if let Some(v) = get(OVERRIDE_STEPS) {
            p.steps = parse_steps(v).map_err(|r| PolicyError::new(OVERRIDE_STEPS, r))?;
        }
        if let Some(v) = get(OVERRIDE_STEP_INTERVAL) {
            p.step_interval =
                parse_duration(v).map_err(|r| PolicyError::new(OVERRIDE_STEP_INTERVAL, r))?;
            if !p.step_interval.is_positive() {
                return Err(PolicyError::new(OVERRIDE_STEP_INTERVAL, "must be positive"));
            }
        }
        if let Some(v) = get(OVERRIDE_MAX_ERROR_RATE) {
            p.max_error_rate =
                parse_rate(v).map_err(|r| PolicyError::new(OVERRIDE_MAX_ERROR_RATE, r))?;
        }
        if let Some(v) = get(OVERRIDE_MAX_P99_MS) {
            p.max_p99_ms = parse_ms(v).map_err(|r| PolicyError::new(OVERRIDE_MAX_P99_MS, r))?;
        }
        if let Some(v) = get(OVERRIDE_MIN_REQUESTS) {
            p.min_requests = v.parse().map_err(|_| {
                PolicyError::new(
                    OVERRIDE_MIN_REQUESTS,
                    format!("{v:?} is not a whole number"),
                )
            })?;
        }
        if let Some(v) = get(OVERRIDE_MAX_ERROR_RATIO) {
            p.max_error_ratio =
                parse_ratio(v).map_err(|r| PolicyError::new(OVERRIDE_MAX_ERROR_RATIO, r))?;
        }
        if let Some(v) = get(OVERRIDE_ERROR_RATE_FLOOR) {
            p.error_rate_floor =
                parse_rate(v).map_err(|r| PolicyError::new(OVERRIDE_ERROR_RATE_FLOOR, r))?;
        }
        if let Some(v) = get(OVERRIDE_MAX_LATENCY_RATIO) {
            p.max_latency_ratio =
                parse_ratio(v).map_err(|r| PolicyError::new(OVERRIDE_MAX_LATENCY_RATIO, r))?;
        }
        if let Some(v) = get(OVERRIDE_LATENCY_FLOOR_MS) {
            p.latency_floor_ms =
                parse_floor_ms(v).map_err(|r| PolicyError::new(OVERRIDE_LATENCY_FLOOR_MS, r))?;
        }
        if let Some(v) = get(OVERRIDE_LATENCY_PERCENTILES) {
            p.latency_percentiles = parse_percentiles(v)
                .map_err(|r| PolicyError::new(OVERRIDE_LATENCY_PERCENTILES, r))?;
        }
        if let Some(v) = get(OVERRIDE_FALSE_ALARM_RATE) {
            p.false_alarm_rate =
                parse_risk(v).map_err(|r| PolicyError::new(OVERRIDE_FALSE_ALARM_RATE, r))?;
        }
        if let Some(v) = get(OVERRIDE_MISS_RATE) {
            p.miss_rate = parse_risk(v).map_err(|r| PolicyError::new(OVERRIDE_MISS_RATE, r))?;
        }
        if let Some(v) = get(OVERRIDE_CANARY_MISS_RATE) {
            p.canary_miss_rate =
                parse_rate(v).map_err(|r| PolicyError::new(OVERRIDE_CANARY_MISS_RATE, r))?;
        }
        // Overrides may combine into something invalid (a canary miss rate below the miss rate).
        if let Err(r) = check_canary_miss_rate(p.canary_miss_rate, p.miss_rate) {
            let key = if annotations.contains_key(OVERRIDE_CANARY_MISS_RATE) {
                OVERRIDE_CANARY_MISS_RATE
            } else {
                OVERRIDE_MISS_RATE
            };
            return Err(PolicyError::new(key, r));
        }
        Ok(p)
    }

    /// The step after `percent`, or `None` when `percent` is already the last one.
    pub fn next_step(&self, percent: u8) -> Option<u8> {
        self.steps.iter().copied().find(|s| *s > percent)
    }
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
        a.insert(OVERRIDE_STEPS.to_string(), "25,100".to_string());
        a.insert(OVERRIDE_STEP_INTERVAL.to_string(), "10m".to_string());
        a.insert(OVERRIDE_MAX_ERROR_RATE.to_string(), "0.05".to_string());
        a.insert(OVERRIDE_MAX_P99_MS.to_string(), "250".to_string());
        a.insert(OVERRIDE_MIN_REQUESTS.to_string(), "20".to_string());
        a.insert("other.example.com/x".to_string(), "ignored".to_string());
        a.insert(OVERRIDE_MAX_ERROR_RATIO.to_string(), "3".to_string());
        a.insert(OVERRIDE_ERROR_RATE_FLOOR.to_string(), "0.002".to_string());
        a.insert(OVERRIDE_MAX_LATENCY_RATIO.to_string(), "1.5".to_string());
        a.insert(OVERRIDE_LATENCY_FLOOR_MS.to_string(), "0".to_string());
        a.insert(
            OVERRIDE_LATENCY_PERCENTILES.to_string(),
            "p99, p50".to_string(),
        );
        a.insert(OVERRIDE_FALSE_ALARM_RATE.to_string(), "0.01".to_string());
        a.insert(OVERRIDE_MISS_RATE.to_string(), "0.05".to_string());
        a.insert(OVERRIDE_CANARY_MISS_RATE.to_string(), "0.5".to_string());
        let p = base.with_overrides(&a).unwrap();
        assert_eq!(p.max_error_ratio, 3.0);
        assert_eq!(p.error_rate_floor, 0.002);
        assert_eq!(p.max_latency_ratio, 1.5);
        assert_eq!(p.latency_floor_ms, 0.0);
        assert_eq!(p.latency_percentiles, vec![0.5, 0.99]);
        assert_eq!(p.false_alarm_rate, 0.01);
        assert_eq!(p.miss_rate, 0.05);
        assert_eq!(p.canary_miss_rate, 0.5);
        p.validate().unwrap();
        assert_eq!(p.steps, vec![25, 100]);
        assert_eq!(p.step_interval.as_secs(), 600);
        assert_eq!(p.max_error_rate, 0.05);
        assert_eq!(p.max_p99_ms, 250.0);
        assert_eq!(p.min_requests, 20);

        a.insert(OVERRIDE_MAX_ERROR_RATE.to_string(), "5%".to_string());
        let err = base.with_overrides(&a).unwrap_err();
        assert_eq!(err.key, OVERRIDE_MAX_ERROR_RATE);
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
        base.validate().unwrap();
        let a = BTreeMap::from([(OVERRIDE_MISS_RATE.to_string(), "0.4".to_string())]);
        let err = base.with_overrides(&a).unwrap_err();
        assert_eq!(
            err.key, OVERRIDE_MISS_RATE,
            "a miss rate above the canary miss rate"
        );
        let a = BTreeMap::from([(OVERRIDE_MAX_ERROR_RATIO.to_string(), "0.5".to_string())]);
        assert_eq!(
            base.with_overrides(&a).unwrap_err().key,
            OVERRIDE_MAX_ERROR_RATIO
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
