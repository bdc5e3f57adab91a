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
use crate::target::Platform;

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
    /// Where rollouts stand: every active one in the regions, or the named service's.
    Status(Box<StatusArgs>),
    /// A service's recent rollout decisions, with their numbers and thresholds.
    History(Box<ServiceArgs>),
    /// What the next tick would decide for a service now, and why (reads only).
    Plan(Box<ServiceArgs>),
    /// Start a rollout of the latest ready revision, or of --revision.
    Start(Box<StartArgs>),
    /// Give the candidate more traffic: --to PERCENT (then judged), or --full (completes now).
    Promote(Box<PromoteArgs>),
    /// Send all traffic back to stable; the candidate is never rolled out again automatically.
    Rollback(Box<ServiceArgs>),
    /// Stop judging a running rollout; traffic stays as it is.
    Pause(Box<ServiceArgs>),
    /// Judge a paused rollout again, from the traffic as it is now.
    Resume(Box<ServiceArgs>),
}

/// How the operator verbs reach Google: the caller's own credentials and the same endpoint
/// settings as `cutover serve` (never the cutover server itself).
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Project of the service(s).
    #[arg(
        long,
        env = "GOOGLE_CLOUD_PROJECT",
        value_name = "GOOGLE_CLOUD_PROJECT"
    )]
    pub project: Option<String>,

    /// Region(s), comma separated (a verb on one service takes one).
    #[arg(
        long,
        env = "CUTOVER_REGIONS",
        value_name = "REGION",
        value_delimiter = ','
    )]
    pub region: Vec<String>,

    /// Where Google's APIs are and which credentials reach them.
    #[command(flatten)]
    pub google: GoogleArgs,

    /// Platforms served, and where the records of App Engine and load-balancer targets live
    /// (the same settings as the server's).
    #[command(flatten)]
    pub platforms: PlatformArgs,

    /// The platform of the service a verb names (`status` without a service lists every
    /// platform of CUTOVER_PLATFORMS, or only this one when given).
    #[arg(long, value_name = "PLATFORM", value_parser = platform)]
    pub platform: Option<Platform>,

    /// Who is acting, when the credentials do not say (user credentials, CUTOVER_AUTH=none);
    /// a service account's own email is used when known.
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,

    /// The smoke path the server uses (`plan` and `start` run the same check).
    #[arg(long, env = "CUTOVER_SMOKE_PATH", value_name = "CUTOVER_SMOKE_PATH", value_parser = smoke_path)]
    pub smoke_path: Option<String>,

    /// The server's policy settings (the service's `cutover.dev/*` overrides apply on top).
    #[command(flatten)]
    pub policy_args: PolicyArgs,

    /// Where a verb's decisions are told (as the server's are), with the caller's credentials.
    #[command(flatten)]
    pub notify: NotifyArgs,
}

impl ClientArgs {
    /// The policy the server would apply (set the same `CUTOVER_*` values as the server).
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        self.policy_args.with_smoke_path(self.smoke_path.as_deref())
    }
}

/// How `status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns, for people.
    Table,
    /// One JSON document, for programs.
    Json,
}

/// `cutover status [SERVICE]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this service (exit 1 if it does not exist).
    pub service: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A verb on one service.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    pub service: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `cutover start SERVICE [--revision R]`.
#[derive(Debug, Args)]
pub struct StartArgs {
    pub service: String,
    /// The revision to roll out [default: the latest ready one]; naming it also replaces a
    /// rollout of another candidate, or rolls out a revision that was rolled back.
    #[arg(long)]
    pub revision: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `cutover promote SERVICE [--to PERCENT | --full]`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    pub service: String,
    /// Give the candidate this share; the step is then judged like any other.
    #[arg(long, value_name = "PERCENT", conflicts_with = "full", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub to: Option<u8>,
    /// 100% now, completing the rollout without judging it further [the default].
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub client: ClientArgs,
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
        match Cli::try_parse_from::<_, std::ffi::OsString>(argv)?.command {
            Command::Serve(args) => Ok(*args),
            _ => unreachable!("the argument list starts with serve"),
        }
    }
}

/// Where Google's APIs are and which credentials reach them: the same settings for `cutover
/// serve` and the operator verbs (tests point both at the fakes).
#[derive(Debug, Args)]
pub struct GoogleArgs {
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

    /// Base URL of the App Engine Admin API (platform app-engine).
    #[arg(
        long,
        env = "CUTOVER_APPENGINE_ENDPOINT",
        value_name = "CUTOVER_APPENGINE_ENDPOINT",
        default_value = "https://appengine.googleapis.com"
    )]
    pub appengine_endpoint: String,

    /// Base URL of the Compute Engine API (platform load-balancer).
    #[arg(
        long,
        env = "CUTOVER_COMPUTE_ENDPOINT",
        value_name = "CUTOVER_COMPUTE_ENDPOINT",
        default_value = "https://compute.googleapis.com"
    )]
    pub compute_endpoint: String,

    /// Base URL of the Firestore API, where the records of app-engine and load-balancer targets live.
    #[arg(
        long,
        env = "CUTOVER_FIRESTORE_ENDPOINT",
        value_name = "CUTOVER_FIRESTORE_ENDPOINT",
        default_value = "https://firestore.googleapis.com"
    )]
    pub firestore_endpoint: String,

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
}

/// Which platforms cutover serves, and where the records of those that cannot carry them live
/// (App Engine services and URL maps keep theirs in Firestore, see `router::recorded`).
#[derive(Debug, Args)]
pub struct PlatformArgs {
    /// Platforms whose targets cutover rolls out, comma separated: cloud-run, app-engine, load-balancer; events naming another platform are refused.
    #[arg(
        long,
        env = "CUTOVER_PLATFORMS",
        value_name = "CUTOVER_PLATFORMS",
        value_delimiter = ',',
        value_parser = platform,
        default_value = "cloud-run"
    )]
    pub platforms: Vec<Platform>,

    /// Project of the Firestore database holding the records of app-engine and load-balancer targets [default: GOOGLE_CLOUD_PROJECT].
    #[arg(
        long,
        env = "CUTOVER_FIRESTORE_PROJECT",
        value_name = "CUTOVER_FIRESTORE_PROJECT"
    )]
    pub firestore_project: Option<String>,

    /// Firestore database (native mode) of those records.
    #[arg(
        long,
        env = "CUTOVER_FIRESTORE_DATABASE",
        value_name = "CUTOVER_FIRESTORE_DATABASE",
        default_value = "(default)"
    )]
    pub firestore_database: String,

    /// Firestore collection of those records (one document per target).
    #[arg(
        long,
        env = "CUTOVER_FIRESTORE_COLLECTION",
        value_name = "CUTOVER_FIRESTORE_COLLECTION",
        default_value = "cutover-rollouts"
    )]
    pub firestore_collection: String,

    /// How App Engine splits a service whose own split names no shardBy: random, cookie (the app must set GOOGAPPUID) or ip (a service's own mode is always kept).
    #[arg(
        long,
        env = "CUTOVER_APPENGINE_SHARD_BY",
        value_name = "CUTOVER_APPENGINE_SHARD_BY",
        default_value = "random"
    )]
    pub appengine_shard_by: String,

    /// Which route of a URL map holds its weighted backends, comma separated MAP=ROUTE with ROUTE default, MATCHER or MATCHER/PRIORITY; needed only for a map with several such routes.
    #[arg(
        long,
        env = "CUTOVER_URL_MAP_ROUTES",
        value_name = "CUTOVER_URL_MAP_ROUTES",
        value_delimiter = ','
    )]
    pub url_map_routes: Vec<String>,
}

impl PlatformArgs {
    /// `CUTOVER_URL_MAP_ROUTES` as (map, route text) pairs; the route is parsed by the
    /// load-balancer router when it is built.
    pub fn url_map_routes(&self) -> Vec<(&str, &str)> {
        self.url_map_routes
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
            .filter_map(|r| r.split_once('='))
            .map(|(m, r)| (m.trim(), r.trim()))
            .collect()
    }

    /// The platforms set, each once, in [`Platform::ALL`]'s order.
    pub fn enabled(&self) -> Vec<Platform> {
        Platform::ALL
            .into_iter()
            .filter(|p| self.platforms.contains(p))
            .collect()
    }

    /// Whether a platform keeping its record in Firestore is enabled.
    pub fn needs_firestore(&self) -> bool {
        self.platforms.iter().any(|p| !p.is_regional())
    }

    /// The Firestore project: its own setting, else the managed project.
    pub fn firestore_project<'a>(&'a self, project: &'a str) -> &'a str {
        self.firestore_project
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .unwrap_or(project)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.platforms.is_empty() {
            return Err(ConfigError {
                var: "CUTOVER_PLATFORMS",
                reason: "names no platform (cloud-run, app-engine, load-balancer)".into(),
            });
        }
        if crate::gcp::appengine::ShardBy::parse(self.appengine_shard_by.trim()).is_none() {
            return Err(ConfigError {
                var: "CUTOVER_APPENGINE_SHARD_BY",
                reason: format!(
                    "{:?} is not a shard mode (cookie, ip, random)",
                    self.appengine_shard_by
                ),
            });
        }
        for r in self.url_map_routes.iter().map(|r| r.trim()) {
            let named = r.split_once('=').map(|(m, route)| (m.trim(), route.trim()));
            if !r.is_empty()
                && !matches!(named, Some((m, route)) if !m.is_empty() && !route.is_empty())
            {
                return Err(ConfigError {
                    var: "CUTOVER_URL_MAP_ROUTES",
                    reason: format!(
                        "{r:?} is not MAP=ROUTE (ROUTE: default, MATCHER or MATCHER/PRIORITY)"
                    ),
                });
            }
        }
        for (var, v) in [
            ("CUTOVER_FIRESTORE_DATABASE", &self.firestore_database),
            ("CUTOVER_FIRESTORE_COLLECTION", &self.firestore_collection),
        ] {
            if v.trim().is_empty() || v.contains('/') {
                return Err(ConfigError {
                    var,
                    reason: format!("{v:?} must be a non-empty id without '/'"),
                });
            }
        }
        Ok(())
    }
}

/// A platform as settings spell it.
fn platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s.trim()).ok_or_else(|| {
        let all: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        format!("{s:?} is not a platform ({})", all.join(", "))
    })
}

/// Push authentication mode (`CUTOVER_PUSH_AUTH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PushAuthMode {
    /// Verify Pub/Sub's OIDC token on every push.
    Google,
    /// Accept pushes without a token (the Pub/Sub emulator sends none).
    None,
}

/// Message format of the chat webhook (`CUTOVER_NOTIFY_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyFormat {
    /// From the URL's host: chat.googleapis.com is Google Chat, hooks.slack.com is Slack.
    Auto,
    /// Google Chat's incoming webhook: `{"text": …}`.
    GoogleChat,
    /// Slack's incoming webhook: `{"text": …, "blocks": […]}`.
    Slack,
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

    /// Where Google's APIs are and which credentials reach them.
    #[command(flatten)]
    pub google: GoogleArgs,

    /// Platforms served, and where the records of App Engine and load-balancer targets live.
    #[command(flatten)]
    pub platforms: PlatformArgs,

    /// Path GET on the candidate's tag URL must answer 2xx before it gets traffic, e.g. /healthz [default: no smoke check].
    #[arg(long, env = "CUTOVER_SMOKE_PATH", value_name = "CUTOVER_SMOKE_PATH", value_parser = smoke_path)]
    pub smoke_path: Option<String>,

    /// The rollout policy's settings.
    #[command(flatten)]
    pub policy_args: PolicyArgs,

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

    /// Where rollout events and chat messages go.
    #[command(flatten)]
    pub notify: NotifyArgs,

    /// Projects, fan-out and the API rate limits.
    #[command(flatten)]
    pub scale: ScaleArgs,

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

/// How far one cutover reaches and how it spreads its work: the projects it evaluates, the
/// evaluations topic ticks fan out on, and the client-side rate limits in front of Google's
/// quotas (`crate::gcp::quota`, where the quotas are cited).
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Projects whose services ticks evaluate and whose builds and alerts are accepted, comma separated [default: GOOGLE_CLOUD_PROJECT].
    #[arg(
        long,
        env = "CUTOVER_PROJECTS",
        value_name = "CUTOVER_PROJECTS",
        value_delimiter = ','
    )]
    pub projects: Vec<String>,

    /// Pub/Sub topic (projects/P/topics/T, or an id in GOOGLE_CLOUD_PROJECT) ticks publish one message per rollout that needs a call (evidence or a write; a step still soaking is decided by the tick) to, pushed to /pubsub/evaluations [default: ticks evaluate in-process].
    #[arg(
        long,
        env = "CUTOVER_EVALUATIONS_TOPIC",
        value_name = "CUTOVER_EVALUATIONS_TOPIC"
    )]
    pub evaluations_topic: Option<String>,

    /// With an evaluations topic: a tick with at most this many rollouts needing a call evaluates them itself (one round of 16 concurrent evaluations costs less than the publish and push hop).
    #[arg(
        long,
        env = "CUTOVER_FANOUT_THRESHOLD",
        value_name = "CUTOVER_FANOUT_THRESHOLD",
        default_value_t = 16
    )]
    pub fanout_threshold: usize,

    /// Key every instance shares (base64, or the raw string; at least 32 bytes) with which a tick seals the service read each evaluation message carries, and an evaluation checks it; a secret, never logged [default: unset: messages carry no read, and each evaluation reads its service].
    #[arg(
        long,
        env = "CUTOVER_EVALUATION_KEY",
        value_name = "CUTOVER_EVALUATION_KEY",
        hide_env_values = true
    )]
    pub evaluation_key: Option<Secret>,

    /// The key CUTOVER_EVALUATION_KEY had before, while a new one rolls out: it verifies carried reads, never seals them [default: unset].
    #[arg(
        long,
        env = "CUTOVER_EVALUATION_KEY_PREVIOUS",
        value_name = "CUTOVER_EVALUATION_KEY_PREVIOUS",
        hide_env_values = true
    )]
    pub evaluation_key_previous: Option<Secret>,

    /// Cloud Run Admin API reads per minute per project and region, for this instance (Google's quota: 1,200 per project and region, shared by every caller).
    #[arg(
        long,
        env = "CUTOVER_RUN_READS_PER_MINUTE",
        value_name = "CUTOVER_RUN_READS_PER_MINUTE",
        default_value_t = 1000
    )]
    pub run_reads_per_minute: u32,

    /// Cloud Run Admin API writes per minute per project and region, for this instance (Google's quota: 60 per project and region).
    #[arg(
        long,
        env = "CUTOVER_RUN_WRITES_PER_MINUTE",
        value_name = "CUTOVER_RUN_WRITES_PER_MINUTE",
        default_value_t = 50
    )]
    pub run_writes_per_minute: u32,

    /// Cloud Monitoring time series queries per minute per project, for this instance (Google's quota: 6,000 per project).
    #[arg(
        long,
        env = "CUTOVER_MONITORING_QUERIES_PER_MINUTE",
        value_name = "CUTOVER_MONITORING_QUERIES_PER_MINUTE",
        default_value_t = 5000
    )]
    pub monitoring_queries_per_minute: u32,

    /// App Engine Admin API calls per minute per project, for this instance (Google publishes no rate quota for this API; a budget of cutover's own).
    #[arg(
        long,
        env = "CUTOVER_APPENGINE_CALLS_PER_MINUTE",
        value_name = "CUTOVER_APPENGINE_CALLS_PER_MINUTE",
        default_value_t = 600
    )]
    pub appengine_calls_per_minute: u32,

    /// Compute Engine API reads (GET) per minute per project, for this instance (Google's quota: 1,500 read requests per project).
    #[arg(
        long,
        env = "CUTOVER_COMPUTE_READS_PER_MINUTE",
        value_name = "CUTOVER_COMPUTE_READS_PER_MINUTE",
        default_value_t = 1200
    )]
    pub compute_reads_per_minute: u32,

    /// Compute Engine API writes and getHealth calls per minute per project, for this instance (Google's quota: 1,500 mutation requests per project).
    #[arg(
        long,
        env = "CUTOVER_COMPUTE_WRITES_PER_MINUTE",
        value_name = "CUTOVER_COMPUTE_WRITES_PER_MINUTE",
        default_value_t = 1200
    )]
    pub compute_writes_per_minute: u32,

    /// Firestore API calls per minute per project of the records' database, for this instance (Firestore has no per-minute request quota; a budget of cutover's own).
    #[arg(
        long,
        env = "CUTOVER_FIRESTORE_CALLS_PER_MINUTE",
        value_name = "CUTOVER_FIRESTORE_CALLS_PER_MINUTE",
        default_value_t = 1200
    )]
    pub firestore_calls_per_minute: u32,
}

impl ScaleArgs {
    /// The rate limits these settings give.
    pub fn limits(&self) -> crate::gcp::quota::Limits {
        crate::gcp::quota::Limits {
            run_reads: self.run_reads_per_minute,
            run_writes: self.run_writes_per_minute,
            monitoring_queries: self.monitoring_queries_per_minute,
            appengine_calls: self.appengine_calls_per_minute,
            compute_reads: self.compute_reads_per_minute,
            compute_writes: self.compute_writes_per_minute,
            firestore_calls: self.firestore_calls_per_minute,
        }
    }

    /// `CUTOVER_EVALUATIONS_TOPIC`, trimmed; `None` when unset or empty (no fan-out).
    pub fn evaluations_topic(&self) -> Option<&str> {
        set(&self.evaluations_topic)
    }

    /// `CUTOVER_EVALUATION_KEY` and `CUTOVER_EVALUATION_KEY_PREVIOUS` as key bytes; `None` when
    /// no key is set (reads are then not carried). Checked by [`ScaleArgs::validate`].
    pub fn evaluation_keys(&self) -> Result<Option<EvaluationKeys>, ConfigError> {
        let key = |var: &'static str, s: &Option<Secret>| {
            s.as_ref()
                .map(|s| s.0.trim())
                .filter(|s| !s.is_empty())
                .map(|s| evaluation_key(s).map_err(|reason| ConfigError { var, reason }))
                .transpose()
        };
        let current = key("CUTOVER_EVALUATION_KEY", &self.evaluation_key)?;
        let previous = key(
            "CUTOVER_EVALUATION_KEY_PREVIOUS",
            &self.evaluation_key_previous,
        )?;
        match (current, previous) {
            (Some(current), previous) => Ok(Some(EvaluationKeys { current, previous })),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ConfigError {
                var: "CUTOVER_EVALUATION_KEY_PREVIOUS",
                reason: "is set without CUTOVER_EVALUATION_KEY (the previous key only verifies what instances still on it sealed; set the new key too)".into(),
            }),
        }
    }

    /// Checks the topic's form, the evaluation keys and that every limit lets something through.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.evaluation_keys()?;
        if let Some(topic) = self.evaluations_topic() {
            check_topic(topic).map_err(|reason| ConfigError {
                var: "CUTOVER_EVALUATIONS_TOPIC",
                reason,
            })?;
        }
        for (var, v) in [
            ("CUTOVER_RUN_READS_PER_MINUTE", self.run_reads_per_minute),
            ("CUTOVER_RUN_WRITES_PER_MINUTE", self.run_writes_per_minute),
            (
                "CUTOVER_MONITORING_QUERIES_PER_MINUTE",
                self.monitoring_queries_per_minute,
            ),
            (
                "CUTOVER_APPENGINE_CALLS_PER_MINUTE",
                self.appengine_calls_per_minute,
            ),
            (
                "CUTOVER_COMPUTE_READS_PER_MINUTE",
                self.compute_reads_per_minute,
            ),
            (
                "CUTOVER_COMPUTE_WRITES_PER_MINUTE",
                self.compute_writes_per_minute,
            ),
            (
                "CUTOVER_FIRESTORE_CALLS_PER_MINUTE",
                self.firestore_calls_per_minute,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError {
                    var,
                    reason: "must be at least 1 (0 would stop every call)".into(),
                });
            }
        }
        Ok(())
    }
}

/// A setting that is a secret: its value never shows in `Debug` (nor in `--help`, whose env
/// values are hidden for it).
#[derive(Clone)]
pub struct Secret(String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `CUTOVER_EVALUATION_KEY` and `CUTOVER_EVALUATION_KEY_PREVIOUS`, as key bytes.
#[derive(Clone, PartialEq)]
pub struct EvaluationKeys {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

/// Never shows the keys.
impl std::fmt::Debug for EvaluationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvaluationKeys(<redacted>)")
    }
}

/// Fewest bytes of an evaluation key: HMAC-SHA256's own output length, below which a key is
/// weaker than the tag it makes.
pub const MIN_EVALUATION_KEY_BYTES: usize = 32;

/// An evaluation key's bytes: `s` decoded when it is standard base64 (what
/// `openssl rand -base64 32` prints), else `s` itself; at least [`MIN_EVALUATION_KEY_BYTES`]
/// either way. The error never quotes the key.
pub fn evaluation_key(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let (bytes, form) = match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(b) => (b, "decoded from base64"),
        Err(_) => (s.as_bytes().to_vec(), "taken as a raw string"),
    };
    if bytes.len() < MIN_EVALUATION_KEY_BYTES {
        return Err(format!(
            "is {} bytes ({form}); at least {MIN_EVALUATION_KEY_BYTES} are needed (e.g. `openssl rand -base64 32`)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A text setting, trimmed; `None` when unset or empty.
fn set(setting: &Option<String>) -> Option<&str> {
    setting.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Where rollout lifecycle events and chat messages go: settings of `cutover serve`, and of the
/// verbs that change a rollout (a person's `promote`, `pause`, … are told like the server's
/// decisions, with that person's credentials).
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Pub/Sub topic for rollout lifecycle events: projects/P/topics/T, or a topic id in GOOGLE_CLOUD_PROJECT [default: no events].
    #[arg(
        long,
        env = "CUTOVER_EVENTS_TOPIC",
        value_name = "CUTOVER_EVENTS_TOPIC"
    )]
    pub events_topic: Option<String>,

    /// Pub/Sub emulator (host:port): events are published there without credentials, as Google's client libraries do.
    #[arg(
        long,
        env = "PUBSUB_EMULATOR_HOST",
        value_name = "PUBSUB_EMULATOR_HOST"
    )]
    pub pubsub_emulator_host: Option<String>,

    /// Incoming webhook (Google Chat or Slack) told about rollbacks, pauses, refusals and completions [default: none]; a secret, only its host is logged.
    #[arg(
        long,
        env = "CUTOVER_NOTIFY_URL",
        value_name = "CUTOVER_NOTIFY_URL",
        hide_env_values = true
    )]
    pub notify_url: Option<String>,

    /// Message format of CUTOVER_NOTIFY_URL: auto (from its host), google-chat or slack.
    #[arg(
        long,
        env = "CUTOVER_NOTIFY_FORMAT",
        value_name = "CUTOVER_NOTIFY_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub notify_format: NotifyFormat,
}

impl NotifyArgs {
    /// `CUTOVER_EVENTS_TOPIC`, trimmed; `None` when unset or empty (no events).
    pub fn events_topic(&self) -> Option<&str> {
        set(&self.events_topic)
    }

    /// `CUTOVER_NOTIFY_URL`, trimmed; `None` when unset or empty (no chat notifications).
    pub fn notify_url(&self) -> Option<&str> {
        set(&self.notify_url)
    }

    /// Checks the topic's and the URL's form (the format is checked with the URL's host when
    /// the notifier starts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(topic) = self.events_topic() {
            check_topic(topic).map_err(|reason| ConfigError {
                var: "CUTOVER_EVENTS_TOPIC",
                reason,
            })?;
        }
        if let Some(url) = self.notify_url() {
            check_notify_url(url).map_err(|reason| ConfigError {
                var: "CUTOVER_NOTIFY_URL",
                reason,
            })?;
        }
        Ok(())
    }
}

/// Generates [`PolicyArgs`] from the table of policy settings
/// (`crate::decision::policy::policy_settings!`): each setting's flag, variable, default and
/// help come from its line there.
macro_rules! policy_args {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $kind:ident = $default:literal, $env:literal $(, $key:literal)?;
    )*) => {
        /// The rollout policy's settings of `cutover serve`, each parsed and checked once.
        #[derive(Debug, Args)]
        pub struct PolicyArgs {
            $(
                $(#[doc = $doc])*
                #[arg(
                    long,
                    env = $env,
                    value_name = $env,
                    default_value = $default,
                    value_parser = <policy::$kind as policy::Value>::parse
                )]
                pub $field: policy::$kind,
            )*
        }

        impl PolicyArgs {
            /// The policy these settings describe (no smoke check; see [`ServeArgs::policy`]).
            fn policy(&self) -> Policy {
                Policy {
                    $( $field: policy::Value::into_field(self.$field.clone()), )*
                    judge: policy::JudgeKind::Sequential,
                    smoke_path: None,
                }
            }
        }
    };
}

policy::policy_settings!(policy_args);

impl PolicyArgs {
    /// The whole policy: these settings, the smoke path (`CUTOVER_SMOKE_PATH`, empty meaning
    /// none), checked together.
    fn with_smoke_path(&self, smoke_path: Option<&str>) -> Result<Policy, ConfigError> {
        let mut p = self.policy();
        p.smoke_path = smoke_path.filter(|p| !p.is_empty()).map(String::from);
        p.check_combined().map_err(|reason| ConfigError {
            var: "CUTOVER_CANARY_MISS_RATE",
            reason,
        })?;
        Ok(p)
    }
}

fn duration(s: &str) -> Result<SignedDuration, String> {
    policy::parse_duration(s)
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

/// `CUTOVER_EVENTS_TOPIC`: `projects/P/topics/T` or a bare topic id `T`, with Pub/Sub's rules
/// for a topic id (3 to 255 of letters, digits and `-_.~+%`, starting with a letter, not with
/// `goog`) and a valid project id.
pub fn check_topic(s: &str) -> Result<(), String> {
    let id = match s.split('/').collect::<Vec<_>>().as_slice() {
        [id] => *id,
        ["projects", project, "topics", id] => {
            crate::ids::ProjectId::parse(project).map_err(|e| format!("{s:?}: project {e}"))?;
            *id
        }
        _ => {
            return Err(format!(
                "{s:?} is neither projects/PROJECT/topics/TOPIC nor a topic id"
            ));
        }
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.~+%".contains(c);
    if !(3..=255).contains(&id.len())
        || !id.starts_with(|c: char| c.is_ascii_alphabetic())
        || !id.chars().all(allowed)
        || id.to_ascii_lowercase().starts_with("goog")
    {
        return Err(format!(
            "topic id {id:?} must be 3 to 255 letters, digits or -_.~+%, start with a letter and not with goog"
        ));
    }
    Ok(())
}

/// `CUTOVER_NOTIFY_URL`: an https URL without user info (http only to a loopback address, for
/// tests). The error never repeats the URL: it is a secret.
pub fn check_notify_url(s: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user info".into());
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        "http" if crate::gcp::is_loopback(&url) => Ok(()),
        _ => Err(format!(
            "must be an https URL (host {})",
            url.host_str().unwrap_or("none")
        )),
    }
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
        self.policy_args.with_smoke_path(self.smoke_path.as_deref())
    }

    /// Checks settings that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.policy()?;
        self.scale.validate()?;
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
        self.notify.validate()?;
        self.platforms.validate()?;
        for (var, url) in [
            ("CUTOVER_RUN_ENDPOINT", &self.google.run_endpoint),
            (
                "CUTOVER_MONITORING_ENDPOINT",
                &self.google.monitoring_endpoint,
            ),
            (
                "CUTOVER_APPENGINE_ENDPOINT",
                &self.google.appengine_endpoint,
            ),
            ("CUTOVER_COMPUTE_ENDPOINT", &self.google.compute_endpoint),
            (
                "CUTOVER_FIRESTORE_ENDPOINT",
                &self.google.firestore_endpoint,
            ),
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
        whole_seconds(self.event_deadline)
    }
}

/// A timeout setting as the std duration the runtime takes: whole seconds, at least one.
pub fn whole_seconds(d: SignedDuration) -> Duration {
    Duration::from_secs(d.as_secs().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The policy settings alone, parsed as `cutover serve` parses them.
    #[derive(Debug, Parser)]
    struct OnlyPolicy {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    /// The scale settings alone, parsed as `cutover serve` parses them.
    #[derive(Debug, Parser)]
    struct OnlyScale {
        #[command(flatten)]
        scale: ScaleArgs,
    }

    fn keys(args: &[&str]) -> Result<Option<EvaluationKeys>, ConfigError> {
        let mut all = vec!["cutover"];
        all.extend_from_slice(args);
        let parsed = OnlyScale::try_parse_from(all).expect("parses");
        parsed.scale.validate()?;
        parsed.scale.evaluation_keys()
    }

    #[test]
    fn an_evaluation_key_is_base64_or_raw_and_at_least_32_bytes() {
        let b64 = "q0vXgWrJ1ByzuNBm0xOlHUKYDTt6/KxQ7UUvL9ar7XA="; // 32 bytes
        let k = keys(&["--evaluation-key", b64]).unwrap().unwrap();
        assert_eq!(k.current.len(), 32, "decoded");
        assert_eq!(k.previous, None);
        let raw = "a passphrase of more than thirty-two bytes";
        let k = keys(&["--evaluation-key", raw]).unwrap().unwrap();
        assert_eq!(k.current, raw.as_bytes(), "taken as it is");
        let k = keys(&["--evaluation-key", &format!("{b64}\n")])
            .unwrap()
            .unwrap();
        assert_eq!(
            k.current.len(),
            32,
            "the newline `openssl` ends with is trimmed"
        );
        assert_eq!(keys(&[]).unwrap(), None, "no key: nothing is carried");
        assert_eq!(keys(&["--evaluation-key", ""]).unwrap(), None);
        for short in [
            "short raw key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNk", // 30 bytes of base64
        ] {
            let e = keys(&["--evaluation-key", short]).unwrap_err();
            assert_eq!(e.var, "CUTOVER_EVALUATION_KEY");
            assert!(!e.to_string().contains(short), "never quoted: {e}");
        }
        let e = keys(&[
            "--evaluation-key",
            b64,
            "--evaluation-key-previous",
            "short",
        ])
        .unwrap_err();
        assert_eq!(e.var, "CUTOVER_EVALUATION_KEY_PREVIOUS");
        let e = keys(&["--evaluation-key-previous", b64]).unwrap_err();
        assert_eq!(
            e.var, "CUTOVER_EVALUATION_KEY_PREVIOUS",
            "a previous key alone"
        );
        let k = keys(&["--evaluation-key", raw, "--evaluation-key-previous", b64])
            .unwrap()
            .unwrap();
        assert_eq!(k.previous.map(|p| p.len()), Some(32));
    }

    #[test]
    fn an_evaluation_key_never_shows_in_debug() {
        let raw = "a passphrase of more than thirty-two bytes";
        let parsed = OnlyScale::try_parse_from([
            "cutover",
            "--evaluation-key",
            raw,
            "--evaluation-key-previous",
            raw,
        ])
        .unwrap();
        let shown = format!("{parsed:?}");
        assert!(!shown.contains("passphrase"), "{shown}");
    }

    #[test]
    fn the_command_line_defaults_are_the_policy_defaults() {
        let unset = OnlyPolicy::try_parse_from(["cutover"]).expect("every setting has a default");
        assert_eq!(unset.policy.policy(), Policy::default());
    }

    #[test]
    fn a_policy_setting_is_parsed_once_with_its_kind_and_named_when_bad() {
        let set = OnlyPolicy::try_parse_from([
            "cutover",
            "--steps=25,100",
            "--step-interval=90s",
            "--max-error-rate=0.02",
            "--latency-percentiles=p99,p50",
        ])
        .unwrap();
        let p = set.policy.policy();
        assert_eq!(p.steps, vec![25, 100]);
        assert_eq!(p.step_interval.as_secs(), 90);
        assert_eq!(p.max_error_rate, 0.02);
        assert_eq!(p.latency_percentiles, vec![0.5, 0.99]);
        for bad in [
            "--step-interval=0s",
            "--max-error-rate=5%",
            "--max-error-ratio=1",
        ] {
            let e = OnlyPolicy::try_parse_from(["cutover", bad]).unwrap_err();
            let flag = bad.split('=').next().unwrap();
            assert!(e.to_string().contains(flag), "{bad}: {e}");
        }
    }
}
