//! The operator verbs of the `cutover` binary: `status`, `history`, `plan`, `start`, `promote`,
//! `rollback`, `pause`, `resume`.
//!
//! They talk to Cloud Run and Cloud Monitoring directly, with the caller's own credentials, so
//! IAM on each service decides who may do what and the cutover server need not be reachable.
//! Every state-changing verb is an operator trigger for the decision core, applied by the same
//! [`Reconciler`] as the server's events: one etag-guarded write of traffic and record, and on a
//! conflict a fresh read and a fresh decision. Nothing here writes by any other path.
//!
//! - [`actor`]: who is acting (the credentials' account when known, else `--actor`).
//! - [`show`]: what `status`, `history` and `plan` print (table or JSON).
//! - [`wiring`]: every platform's router from the settings (the server builds its own the same
//!   way); `--platform` names the platform of the service a verb is about.

pub mod actor;
pub mod show;
pub mod wiring;

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::config::{ClientArgs, Command};
use crate::decision::{Kind, OperatorAction, Policy, Trigger};
use crate::gcp::monitoring::MonitoringClient;
use crate::gcp::{Google, TokenSource};
use crate::ids::{ProjectId, ServiceName};
use crate::metrics::cloud_monitoring::CloudMonitoring;
use crate::operate::wiring::{LiveRouter, listed_regions, live_router};
use crate::reconcile::{DecisionRecord, Reconciler, SmokeCheck};
use crate::router::{RouterError, TrafficRouter};
use crate::target::{Platform, ServiceRef};

/// Exit code of a verb that was refused (the rollout's state does not allow it).
pub const REFUSED: u8 = 2;

/// Time budget of one verb (reads, evidence, the write and its retries).
const DEADLINE: Duration = Duration::from_secs(60);

/// What a verb needs: the reconciler over Cloud Run and Cloud Monitoring, and where to look.
struct Client {
    reconciler: Reconciler<LiveRouter, CloudMonitoring>,
    project: String,
    regions: Vec<String>,
    policy: Policy,
    http: reqwest::Client,
    args: ClientArgs,
}

impl Client {
    fn new(args: ClientArgs, clock: Clock) -> anyhow::Result<Client> {
        let policy = args.policy()?;
        let project = args
            .project
            .clone()
            .filter(|p| !p.trim().is_empty())
            .context("no project: pass --project or set GOOGLE_CLOUD_PROJECT")?;
        let regions: Vec<String> = args
            .region
            .iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("HTTP client")?;
        let tokens = TokenSource::new(args.google.auth, args.google.metadata_host.trim())
            .map_err(|e| anyhow::anyhow!("CUTOVER_AUTH: {e}"))?;
        let google = Google::new(http.clone(), tokens);
        let router = live_router(&google, &args.google, &args.platforms, &project, &clock)?;
        let metrics = CloudMonitoring::new(MonitoringClient::new(
            google,
            &args.google.monitoring_endpoint,
        ));
        let smoke = SmokeCheck::new(policy.smoke_path.clone()).map_err(anyhow::Error::msg)?;
        let reconciler = Reconciler::new(router, metrics, smoke, policy.clone(), clock);
        Ok(Client {
            reconciler,
            project,
            regions,
            policy,
            http,
            args,
        })
    }

    /// The one service a verb names: of `--platform` (Cloud Run by default), in the one region
    /// given when its platform has regions.
    fn target(&self, service: &str) -> anyhow::Result<ServiceRef> {
        let platform = self.args.platform.unwrap_or(Platform::CloudRun);
        if !platform.is_regional() {
            let checked = ProjectId::parse(&self.project).and_then(|p| {
                Ok(ServiceRef::global(
                    platform,
                    p,
                    ServiceName::parse(service)?,
                ))
            });
            return checked.map_err(|e| anyhow::anyhow!("{service}: {e}"));
        }
        if self.regions.is_empty() {
            bail!("no region: pass --region or set CUTOVER_REGIONS");
        }
        let [region] = self.regions.as_slice() else {
            bail!(
                "{service}: name exactly one region (--region), not {}",
                self.regions.join(",")
            );
        };
        ServiceRef::checked(&self.project, region, service)
            .map_err(|e| anyhow::anyhow!("{service}: {e}"))
    }
}

impl Client {
    /// The regions `status` lists: those of `--platform`, else every enabled platform's
    /// (Cloud Run's regions, and `global` for App Engine and load balancers).
    fn listed_regions(&self) -> anyhow::Result<Vec<String>> {
        let all = match self.args.platform {
            Some(p) if !p.is_regional() => vec![crate::target::GLOBAL.to_string()],
            Some(_) => self.regions.clone(),
            None => listed_regions(&self.regions, &self.args.platforms),
        };
        if all.is_empty() {
            bail!("no region: pass --region or set CUTOVER_REGIONS");
        }
        Ok(all)
    }

    /// Reads one service; one that does not exist is an error saying so.
    async fn observe(&self, service: &str) -> anyhow::Result<crate::decision::Observed> {
        let target = self.target(service)?;
        let read = self
            .reconciler
            .router
            .observe(&target, deadline())
            .await
            .map_err(|e| not_found(&target, e))?;
        Ok(read.observed)
    }
}

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

/// A read that found no such service says so plainly.
fn not_found(target: &ServiceRef, e: impl Into<anyhow::Error>) -> anyhow::Error {
    let e = e.into();
    match e.downcast_ref::<RouterError>() {
        Some(r) if r.kind() == crate::failure::ErrorKind::NotFound => {
            anyhow::anyhow!("service {target} does not exist")
        }
        _ => e.context(format!("reading {target}")),
    }
}

/// What a verb's decisions are handed to once decided and written (the binary tells them to
/// Pub/Sub and chat, as the server tells its own).
pub type Told<'a> = &'a (dyn Fn(&DecisionRecord) + Sync);

/// Runs one operator verb, printing its result on stdout; the process's exit code (0 done,
/// [`REFUSED`] refused), or an error (exit 1). Each decision of a verb that changes a rollout
/// is also handed to `told`.
pub async fn run(command: Command, clock: Clock, told: Told<'_>) -> anyhow::Result<u8> {
    match command {
        Command::Serve(_) => unreachable!("serve is the server, not a verb"),
        Command::Status(a) => {
            let c = Client::new(a.client, clock.clone())?;
            let now = clock.now();
            let rows = match &a.service {
                Some(name) => vec![show::Row::of(&c.observe(name).await?, &c.policy, now)],
                None => {
                    let mut rows = Vec::new();
                    for region in &c.listed_regions()? {
                        let all = c
                            .reconciler
                            .router
                            .list(&c.project, region, deadline())
                            .await
                            .with_context(|| format!("listing services in {region}"))?;
                        rows.extend(
                            all.iter()
                                .filter(|read| {
                                    c.args
                                        .platform
                                        .is_none_or(|p| p == read.observed.service.platform)
                                })
                                .map(|read| show::Row::of(&read.observed, &c.policy, now))
                                .filter(show::Row::is_active),
                        );
                    }
                    rows
                }
            };
            print!("{}", show::status(&rows, a.output)?);
            Ok(0)
        }
        Command::History(a) => {
            let c = Client::new(a.client, clock)?;
            print!("{}", show::history(&c.observe(&a.service).await?)?);
            Ok(0)
        }
        Command::Plan(a) => {
            let c = Client::new(a.client, clock)?;
            let target = c.target(&a.service)?;
            let (d, _) = c
                .reconciler
                .plan(&target, Trigger::Tick, deadline())
                .await
                .map_err(|e| not_found(&target, e))?;
            print!("{}", show::plan(&target, &d));
            Ok(0)
        }
        Command::Start(a) => {
            let action = OperatorAction::Start {
                revision: a.revision,
            };
            act(a.client, &a.service, action, clock, told).await
        }
        Command::Promote(a) => {
            let action = OperatorAction::Promote {
                to: a.to.filter(|_| !a.full),
            };
            act(a.client, &a.service, action, clock, told).await
        }
        Command::Rollback(a) => {
            act(a.client, &a.service, OperatorAction::Rollback, clock, told).await
        }
        Command::Pause(a) => act(a.client, &a.service, OperatorAction::Pause, clock, told).await,
        Command::Resume(a) => act(a.client, &a.service, OperatorAction::Resume, clock, told).await,
    }
}

/// A state-changing verb: decided and written by the reconciler, like any event.
async fn act(
    args: ClientArgs,
    service: &str,
    action: OperatorAction,
    clock: Clock,
    told: Told<'_>,
) -> anyhow::Result<u8> {
    let c = Client::new(args, clock)?;
    let target = c.target(service)?;
    let actor = actor::resolve(
        c.args.google.auth,
        &c.http,
        c.args.google.metadata_host.trim(),
        c.args.actor.as_deref(),
    )
    .await?;
    let records = c
        .reconciler
        .reconcile(&target, Trigger::Operator { action, actor }, deadline())
        .await
        .map_err(|e| not_found(&target, e))?;
    let Some(last) = records.last() else {
        bail!("{target}: nothing was decided");
    };
    for r in &records {
        told(r);
        println!("{}", show::outcome(r));
    }
    Ok(match last.decision {
        Kind::Refused | Kind::Error => REFUSED,
        _ if last.write.starts_with("failed") => 1,
        _ => 0,
    })
}
