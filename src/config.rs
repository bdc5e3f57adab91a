//! Every setting cutover reads, from the environment (Cloud Run passes configuration as env
//! vars), with flags of the same meaning for local use.
//!
//! One clap struct documents each variable and its default (`cutover serve --help` lists them
//! all). Values are parsed and validated here, at start-up: a bad value stops cutover with a
//! message naming the variable, rather than surfacing at the first rollout.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jiff::SignedDuration;

use crate::decision::policy::{self, Policy};
use crate::gcp::token::AuthMode;

/// cutover: progressive, metrics-gated rollouts for Cloud Run, driven by Pub/Sub.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Pub/Sub push endpoints (what runs on Cloud Run).
    Serve(Box<ServeArgs>),
}

impl ServeArgs {
    /// The settings `cutover serve FLAGS…` runs with (the environment fills what the flags leave
    /// out, as at start-up); the lab and the tests start cutover this way against the fakes.
    pub fn from_flags<S: Into<std::ffi::OsString> + Clone>(
        flags: impl IntoIterator<Item = S>,
    ) -> Result<ServeArgs, clap::Error> {
        let argv = ["cutover".into(), "serve".into()]
            .into_iter()
            .chain(flags.into_iter().map(Into::into));
        let Command::Serve(args) = Cli::try_parse_from::<_, std::ffi::OsString>(argv)?.command;
        Ok(*args)
    }
}

/// Push authentication mode (`CUTOVER_PUSH_AUTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PushAuthMode {
    /// Verify Pub/Sub's OIDC token on every push.
    Google,
    /// Accept pushes without a token (the Pub/Sub emulator sends none).
    None,
}

/// Log output format (`CUTOVER_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, as Cloud Logging reads it.
    Json,
    /// Human-readable lines.
    Text,
}

/// Settings of `cutover serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (Cloud Run sets it).
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Project of the managed services [default: from the metadata server].
    #[arg(
        long,
        env = "GOOGLE_CLOUD_PROJECT",
        value_name = "GOOGLE_CLOUD_PROJECT"
    )]
    pub project: Option<String>,

    /// Default region, for builds without a region substitution [default: from the metadata server].
    #[arg(long, env = "CUTOVER_REGION", value_name = "CUTOVER_REGION")]
    pub region: Option<String>,

    /// Regions whose services ticks evaluate, comma separated [default: the default region].
    #[arg(
        long,
        env = "CUTOVER_REGIONS",
        value_name = "CUTOVER_REGIONS",
        value_delimiter = ','
    )]
    pub regions: Vec<String>,

    /// Base URL of the Cloud Run Admin API.
    #[arg(
        long,
        env = "CUTOVER_RUN_ENDPOINT",
        value_name = "CUTOVER_RUN_ENDPOINT",
        default_value = "https://run.googleapis.com"
    )]
    pub run_endpoint: String,

    /// Base URL of the Cloud Monitoring API.
    #[arg(
        long,
        env = "CUTOVER_MONITORING_ENDPOINT",
        value_name = "CUTOVER_MONITORING_ENDPOINT",
        default_value = "https://monitoring.googleapis.com"
    )]
    pub monitoring_endpoint: String,

    /// Credentials for Google APIs: application default credentials then the metadata server
    /// (auto), the metadata server only, or none (fakes and emulators).
    #[arg(
        long,
        env = "CUTOVER_AUTH",
        value_name = "CUTOVER_AUTH",
        value_enum,
        default_value = "auto"
    )]
    pub auth: AuthMode,

    /// Metadata server host (also read by Google's auth library).
    #[arg(long, env = "GCE_METADATA_HOST", value_name = "GCE_METADATA_HOST", default_value = crate::gcp::metadata::DEFAULT_HOST)]
    pub metadata_host: String,

    /// Path GET on the candidate's tag URL must answer 2xx before it gets traffic, e.g. /healthz [default: no smoke check].
    #[arg(long, env = "CUTOVER_SMOKE_PATH", value_name = "CUTOVER_SMOKE_PATH", value_parser = smoke_path)]
    pub smoke_path: Option<String>,

    /// Candidate traffic steps in percent, ending at 100.
    #[arg(long, env = "CUTOVER_STEPS", value_name = "CUTOVER_STEPS", default_value = "10,50,100", value_parser = steps)]
    pub steps: Steps,

    /// Soak time: data needed per step before it is judged.
    #[arg(long, env = "CUTOVER_STEP_INTERVAL", value_name = "CUTOVER_STEP_INTERVAL", default_value = "5m", value_parser = duration)]
    pub step_interval: SignedDuration,

    /// How late Cloud Run metrics land; judged windows end this long before now.
    #[arg(long, env = "CUTOVER_METRICS_DELAY", value_name = "CUTOVER_METRICS_DELAY", default_value = "3m", value_parser = duration)]
    pub metrics_delay: SignedDuration,

    /// Minimum candidate requests in a window to judge it.
    #[arg(
        long,
        env = "CUTOVER_MIN_REQUESTS",
        value_name = "CUTOVER_MIN_REQUESTS",
        default_value_t = 100
    )]
    pub min_requests: u64,

    /// How long a due step may stay inconclusive before the rollout pauses.
    #[arg(long, env = "CUTOVER_MAX_HOLD", value_name = "CUTOVER_MAX_HOLD", default_value = "1h", value_parser = duration)]
    pub max_hold: SignedDuration,

    /// Highest acceptable 5xx ratio (0.01 = 1%).
    #[arg(long, env = "CUTOVER_MAX_ERROR_RATE", value_name = "CUTOVER_MAX_ERROR_RATE", default_value_t = 0.01, value_parser = rate)]
    pub max_error_rate: f64,

    /// Highest acceptable p99 latency in milliseconds.
    #[arg(long, env = "CUTOVER_MAX_P99_MS", value_name = "CUTOVER_MAX_P99_MS", default_value_t = 1000.0, value_parser = ms)]
    pub max_p99_ms: f64,

    /// A candidate with this many times the stable revision's 5xx ratio is a regression the comparison must catch.
    #[arg(long, env = "CUTOVER_MAX_ERROR_RATIO", value_name = "CUTOVER_MAX_ERROR_RATIO", default_value_t = 2.0, value_parser = ratio)]
    pub max_error_ratio: f64,

    /// 5xx increases over stable below this ratio (0.001 = 0.1 percentage point) are never a regression.
    #[arg(long, env = "CUTOVER_ERROR_RATE_FLOOR", value_name = "CUTOVER_ERROR_RATE_FLOOR", default_value_t = 0.001, value_parser = rate)]
    pub error_rate_floor: f64,

    /// A candidate this many times slower than stable (compared percentiles, rank test) is a regression the comparison must catch.
    #[arg(long, env = "CUTOVER_MAX_LATENCY_RATIO", value_name = "CUTOVER_MAX_LATENCY_RATIO", default_value_t = 1.25, value_parser = ratio)]
    pub max_latency_ratio: f64,

    /// Slow-downs below this many milliseconds are never a regression.
    #[arg(long, env = "CUTOVER_LATENCY_FLOOR_MS", value_name = "CUTOVER_LATENCY_FLOOR_MS", default_value_t = 10.0, value_parser = floor_ms)]
    pub latency_floor_ms: f64,

    /// Latency percentiles compared with stable, comma separated (none: only the rank test over the whole histogram).
    #[arg(long, env = "CUTOVER_LATENCY_PERCENTILES", value_name = "CUTOVER_LATENCY_PERCENTILES", default_value = "p95", value_parser = percentiles)]
    pub latency_percentiles: Percentiles,

    /// Highest chance that a candidate no worse than stable is rolled back during a rollout, however often steps are looked at.
    #[arg(long, env = "CUTOVER_FALSE_ALARM_RATE", value_name = "CUTOVER_FALSE_ALARM_RATE", default_value_t = 0.005, value_parser = risk)]
    pub false_alarm_rate: f64,

    /// Highest chance that a candidate with a regression of the configured size, or at an absolute limit, passes the step leading to 100%.
    #[arg(long, env = "CUTOVER_MISS_RATE", value_name = "CUTOVER_MISS_RATE", default_value_t = 0.01, value_parser = risk)]
    pub miss_rate: f64,

    /// The same for an absolute limit at the earlier steps (at least CUTOVER_MISS_RATE, below 1).
    #[arg(long, env = "CUTOVER_CANARY_MISS_RATE", value_name = "CUTOVER_CANARY_MISS_RATE", default_value_t = 0.25, value_parser = rate)]
    pub canary_miss_rate: f64,

    /// Push authentication: verify Pub/Sub's OIDC token (google) or not (none).
    #[arg(
        long,
        env = "CUTOVER_PUSH_AUTH",
        value_name = "CUTOVER_PUSH_AUTH",
        value_enum,
        default_value = "google"
    )]
    pub push_auth: PushAuthMode,

    /// Where Google's token signing keys are published.
    #[arg(
        long,
        env = "CUTOVER_JWKS_URL",
        value_name = "CUTOVER_JWKS_URL",
        default_value = "https://www.googleapis.com/oauth2/v3/certs"
    )]
    pub jwks_url: String,

    /// Base of the expected `aud` of push tokens: /pubsub/builds expects `<this>/builds`, /pubsub/alerts `<this>/alerts`, /pubsub/ticks `<this>/ticks` (required with CUTOVER_PUSH_AUTH=google).
    #[arg(
        long,
        env = "CUTOVER_PUSH_AUDIENCE",
        value_name = "CUTOVER_PUSH_AUDIENCE"
    )]
    pub push_audience: Option<String>,

    /// Service accounts allowed to push, comma separated.
    #[arg(
        long,
        env = "CUTOVER_PUSH_SERVICE_ACCOUNTS",
        value_name = "CUTOVER_PUSH_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    pub push_service_accounts: Vec<String>,

    /// Longest time from a request's first byte to the end of its headers; the connection is closed after it.
    #[arg(long, env = "CUTOVER_HEADER_READ_TIMEOUT", value_name = "CUTOVER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: SignedDuration,

    /// Longest time a connection stays open without a request (before its first one, or between keep-alive requests).
    #[arg(long, env = "CUTOVER_IDLE_TIMEOUT", value_name = "CUTOVER_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub idle_timeout: SignedDuration,

    /// Most open connections; at the cap the oldest connection without a request in progress is closed for a new one (lowered to fit the file descriptor limit).
    #[arg(
        long,
        env = "CUTOVER_MAX_CONNECTIONS",
        value_name = "CUTOVER_MAX_CONNECTIONS",
        default_value_t = 2000
    )]
    pub max_connections: usize,

    /// Time budget for handling one event; keep it below the subscription's ack deadline.
    #[arg(long, env = "CUTOVER_EVENT_DEADLINE", value_name = "CUTOVER_EVENT_DEADLINE", default_value = "50s", value_parser = duration)]
    pub event_deadline: SignedDuration,

    /// Log format.
    #[arg(
        long,
        env = "CUTOVER_LOG_FORMAT",
        value_name = "CUTOVER_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

/// Validated traffic steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Steps(pub Vec<u8>);

fn steps(s: &str) -> Result<Steps, String> {
    policy::parse_steps(s).map(Steps)
}

fn duration(s: &str) -> Result<SignedDuration, String> {
    policy::parse_duration(s)
}

fn rate(s: &str) -> Result<f64, String> {
    policy::parse_rate(s)
}

fn ms(s: &str) -> Result<f64, String> {
    policy::parse_ms(s)
}

fn ratio(s: &str) -> Result<f64, String> {
    policy::parse_ratio(s)
}

fn floor_ms(s: &str) -> Result<f64, String> {
    policy::parse_floor_ms(s)
}

fn risk(s: &str) -> Result<f64, String> {
    policy::parse_risk(s)
}

/// `CUTOVER_SMOKE_PATH`: an absolute path (a leading `/` is added to a value starting with a
/// letter or digit), optionally with a query, that cannot change which host the smoke check
/// reaches once appended to the candidate's tag URL: no `//` at its start (a scheme-relative
/// reference), no `@` (user info), no backslash, `#`, whitespace, control or non-ASCII characters.
/// Empty means no smoke check.
fn smoke_path(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    let path = if s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        format!("/{s}")
    } else {
        s.to_string()
    };
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(format!(
            "{s:?} must be an absolute path such as /healthz (one leading /)"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:?".contains(c);
    if let Some(bad) = path.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{s:?} contains {bad:?}; a smoke path may hold letters, digits and -._~%!$&'()*+,;=:/? only"
        ));
    }
    Ok(path)
}

/// Validated latency percentiles (quantiles, ascending).
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

fn percentiles(s: &str) -> Result<Percentiles, String> {
    policy::parse_percentiles(s).map(Percentiles)
}

/// A setting that parses but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ServeArgs {
    /// The rollout policy these settings describe.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let p = Policy {
            steps: self.steps.0.clone(),
            step_interval: self.step_interval,
            metrics_delay: self.metrics_delay,
            min_requests: self.min_requests,
            max_hold: self.max_hold,
            max_error_rate: self.max_error_rate,
            max_p99_ms: self.max_p99_ms,
            max_error_ratio: self.max_error_ratio,
            error_rate_floor: self.error_rate_floor,
            max_latency_ratio: self.max_latency_ratio,
            latency_floor_ms: self.latency_floor_ms,
            latency_percentiles: self.latency_percentiles.0.clone(),
            false_alarm_rate: self.false_alarm_rate,
            miss_rate: self.miss_rate,
            canary_miss_rate: self.canary_miss_rate,
            judge: policy::JudgeKind::Sequential,
            smoke_path: self.smoke_path.clone().filter(|p| !p.is_empty()),
        };
        let fail = |var, reason: &str| ConfigError {
            var,
            reason: reason.to_string(),
        };
        if !p.step_interval.is_positive() {
            return Err(fail("CUTOVER_STEP_INTERVAL", "must be positive"));
        }
        if !p.max_hold.is_positive() {
            return Err(fail("CUTOVER_MAX_HOLD", "must be positive"));
        }
        if !(p.canary_miss_rate >= p.miss_rate && p.canary_miss_rate < 1.0) {
            return Err(fail(
                "CUTOVER_CANARY_MISS_RATE",
                "must be at least CUTOVER_MISS_RATE and below 1",
            ));
        }
        p.validate().map_err(|e| ConfigError {
            var: "CUTOVER_*",
            reason: e.to_string(),
        })?;
        Ok(p)
    }

    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.policy()?;
        if self.push_auth == PushAuthMode::Google {
            if self
                .push_audience
                .as_deref()
                .is_none_or(|a| a.trim().is_empty())
            {
                return Err(ConfigError {
                    var: "CUTOVER_PUSH_AUDIENCE",
                    reason: "is required with CUTOVER_PUSH_AUTH=google (the URL or audience the push subscriptions put in their OIDC tokens); set CUTOVER_PUSH_AUTH=none only for the emulator".into(),
                });
            }
            if self
                .push_service_accounts
                .iter()
                .all(|s| s.trim().is_empty())
            {
                return Err(ConfigError {
                    var: "CUTOVER_PUSH_SERVICE_ACCOUNTS",
                    reason: "is required with CUTOVER_PUSH_AUTH=google (the push subscriptions' service account emails)".into(),
                });
            }
        }
        if !self.event_deadline.is_positive() {
            return Err(ConfigError {
                var: "CUTOVER_EVENT_DEADLINE",
                reason: "must be positive".into(),
            });
        }
        if self.push_auth == PushAuthMode::Google {
            crate::events::auth::check_jwks_url(self.jwks_url.trim()).map_err(|reason| {
                ConfigError {
                    var: "CUTOVER_JWKS_URL",
                    reason,
                }
            })?;
        }
        for (var, d) in [
            ("CUTOVER_HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("CUTOVER_IDLE_TIMEOUT", self.idle_timeout),
        ] {
            if !d.is_positive() {
                return Err(ConfigError {
                    var,
                    reason: "must be positive".into(),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError {
                var: "CUTOVER_MAX_CONNECTIONS",
                reason: "must be at least 1".into(),
            });
        }
        for (var, url) in [
            ("CUTOVER_RUN_ENDPOINT", &self.run_endpoint),
            ("CUTOVER_MONITORING_ENDPOINT", &self.monitoring_endpoint),
            ("CUTOVER_JWKS_URL", &self.jwks_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError {
                    var,
                    reason: format!("{url:?} is not an http(s) URL"),
                });
            }
        }
        Ok(())
    }

    /// The per-event deadline as a std duration.
    pub fn event_deadline(&self) -> Duration {
        Duration::from_secs(self.event_deadline.as_secs().max(1) as u64)
    }
}
