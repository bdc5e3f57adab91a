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

/// Every override key, for documentation and for telling them apart from cutover's record.
pub const OVERRIDE_KEYS: &[&str] = &[
    OVERRIDE_STEPS,
    OVERRIDE_STEP_INTERVAL,
    OVERRIDE_MAX_ERROR_RATE,
    OVERRIDE_MAX_P99_MS,
    OVERRIDE_MIN_REQUESTS,
];

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
        let p = base.with_overrides(&a).unwrap();
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
