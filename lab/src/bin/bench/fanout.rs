//! Figure 6 of `bench` (`--only fanout`): issue 16's fan-out at the size, with the real
//! binary.
//!
//! 50 projects × 3 regions × 1,000 services (150,000) with 5,000 rollouts due at once; one tick
//! fans them out through the real Pub/Sub emulator to 1, 2 and 4 `cutover serve` processes (the
//! release binary, each with its share of the default rate budgets) behind a round-robin front
//! standing in for Cloud Run's load balancing. The fakes stay in the bench process, on HTTP, with
//! 50 ms on every Run and Monitoring call. Measured: time until every due rollout is judged, the
//! tick's own time and listing calls, API calls per judged rollout, the busiest 60-second window
//! of calls per project × region (Run reads, writes) and per project (Monitoring queries)
//! against the configured budgets, CPU per evaluation from the cutover processes' own
//! `/proc/<pid>/stat`, and alert → rollback for ≥ 100 alerts, each for a service whose
//! evaluation is in flight at the front when the alert is published.
//!
//! Time: cutover runs on the system clock (it is another process). The fakes' clock is a manual
//! one set 9 minutes back while the rollouts are started (so every step has 9 minutes of
//! modelled traffic behind it), then made to follow the system clock (a thread sets it every
//! 250 µs), so the fakes' timestamps (a rollback PATCH's acceptance, the request log) compare
//! with the bench's own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use axum::extract::Request;
use base64::Engine;
use cutover_fakes::pusher::Pusher;
use cutover_fakes::{FakeGcp, RevisionProfile};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{
    PROJECT, REGION, Rest, Row, candidate, free_port, healthz, instance, p50_p99, percentile, row,
    stable,
};

/// Cloud Run Admin API budgets a minute per project × region, and Monitoring queries a minute
/// per project: cutover's defaults (`src/gcp/quota.rs`), shared by all processes.
const RUN_READS: usize = 1000;
const RUN_WRITES: usize = 50;
const QUERIES: usize = 5000;

/// Push subscriptions the alerts are spread over (see where they are made).
const ALERT_SUBSCRIPTIONS: usize = 32;

/// What the front saw pass through it, keyed `project/region/service` (cutover's own naming
/// of a Cloud Run service in its decisions).
#[derive(Default)]
struct Seen {
    /// Evaluation pushes handed to a process and not yet answered.
    in_flight: HashMap<String, usize>,
    /// The first answer carrying a judgement (a decision with a window, or an alert's).
    judged: HashMap<String, Instant>,
    /// An alert push's first arrival at the front.
    alert_in: HashMap<String, Instant>,
    /// The answer to an alert push whose rollback was recorded `applied` (the write confirmed
    /// by its operation).
    alert_applied: HashMap<String, Instant>,
    /// Decisions in the evaluations' answers, by kind (`decision`, and `write` when not
    /// `none`).
    decisions: BTreeMap<String, usize>,
}

type Shared = Arc<Mutex<Seen>>;

/// `project/region/service` of an evaluation message (`{"service": "projects/P/locations/R/
/// services/S"}`).
fn evaluated(envelope: &Value) -> Option<String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(envelope["message"]["data"].as_str()?)
        .ok()?;
    let message: Value = serde_json::from_slice(&data).ok()?;
    let parts: Vec<&str> = message["service"].as_str()?.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "locations", r, "services", s] => Some(format!("{p}/{r}/{s}")),
        _ => None,
    }
}

/// A front that hands each request to the next of `backends` in turn, as Cloud Run's load
/// balancer spreads pushes over instances, and answers with the backend's status. On the way it
/// notes in `seen` which evaluations are in flight, which services were judged (from the
/// decisions in the answers) and when each alert arrived and was answered `applied`.
async fn round_robin(backends: Vec<String>, seen: Shared) -> Result<String> {
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let router = axum::Router::new().fallback(move |req: Request| {
        let (http, next, backends, seen) = (
            http.clone(),
            Arc::clone(&next),
            backends.clone(),
            Arc::clone(&seen),
        );
        async move {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize % backends.len();
            let path = req.uri().path().to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let (evaluation, alert) = (path.ends_with("/evaluations"), path.ends_with("/alerts"));
            let envelope: Value = if evaluation || alert {
                serde_json::from_slice(&body).unwrap_or_default()
            } else {
                Value::Null
            };
            let key = if evaluation {
                evaluated(&envelope)
            } else if alert {
                envelope["message"]["attributes"]["bench-service"]
                    .as_str()
                    .map(str::to_string)
            } else {
                None
            };
            if let Some(k) = &key {
                let mut s = seen.lock().unwrap();
                if evaluation {
                    *s.in_flight.entry(k.clone()).or_default() += 1;
                } else {
                    s.alert_in.entry(k.clone()).or_insert_with(Instant::now);
                }
            }
            let answer = http
                .post(format!("{}{path}", backends[i]))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let status = match answer {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.bytes().await.unwrap_or_default();
                    let at = Instant::now();
                    if (evaluation || alert) && status == 200 {
                        let answer: Value = serde_json::from_slice(&text).unwrap_or_default();
                        let mut s = seen.lock().unwrap();
                        for d in answer["decisions"].as_array().into_iter().flatten() {
                            let service = d["service"].as_str().unwrap_or_default();
                            if evaluation {
                                let kind = match d["write"].as_str().unwrap_or("none") {
                                    "none" => d["decision"].to_string(),
                                    write => format!("{} ({write})", d["decision"]),
                                };
                                *s.decisions.entry(kind.replace('"', "")).or_default() += 1;
                            }
                            let by_alert = d["trigger"] == "alert";
                            if by_alert || !d["window_end"].is_null() {
                                s.judged.entry(service.to_string()).or_insert(at);
                            }
                            if alert && by_alert && d["write"] == "applied" {
                                s.alert_applied.entry(service.to_string()).or_insert(at);
                            }
                        }
                    }
                    status
                }
                Err(_) => 502,
            };
            if let (true, Some(k)) = (evaluation, &key) {
                let mut s = seen.lock().unwrap();
                if let Some(n) = s.in_flight.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        s.in_flight.remove(k);
                    }
                }
            }
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}
/// Stands in for Pub/Sub's push delivery of the evaluations subscription, whose throughput
/// the emulator does not scale (it delivered ~14 pushes/s whatever the endpoint did; Google's
/// push grows with the subscription's backlog and the endpoint's answers). The messages stay in
/// the real emulator: pullers take them from a pull subscription over its REST surface
/// (`:pull`), each is POSTed to `endpoint` in the push envelope Pub/Sub sends (`{"message": …,
/// "subscription": …}`), up to `concurrency` at once, and acknowledged (`:acknowledge`) only
/// after a 2xx answer; any other answer, or none, is nacked (`:modifyAckDeadline` to 0), so the
/// emulator redelivers it, as push would. Acknowledgements go in batches (whatever is ready,
/// at most every 10 ms): push costs the broker no acknowledgement request at all, and one
/// request per message made the emulator, which also pushes the alerts, the bottleneck of
/// their latency. Returns the task (abort it when done) and the count of forwarded deliveries.
fn forward_pulls(
    host: &str,
    subscription: &str,
    endpoint: String,
    concurrency: usize,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let http = reqwest::Client::new();
    let sub_url = format!("http://{host}/v1/{subscription}");
    let subscription = subscription.to_string();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let delivered = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&delivered);
    let (answered, mut to_ack) = tokio::sync::mpsc::unbounded_channel::<(bool, Value)>();
    let task =
        tokio::spawn(async move {
            let acker = {
                let (http, sub_url) = (http.clone(), sub_url.clone());
                async move {
                    while let Some(first) = to_ack.recv().await {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let (mut ok, mut failed) = (Vec::new(), Vec::new());
                        let mut next = Some(first);
                        while let Some((good, id)) = next {
                            if good {
                                ok.push(id)
                            } else {
                                failed.push(id)
                            }
                            next = to_ack.try_recv().ok();
                        }
                        if !ok.is_empty() {
                            let _ = http
                                .post(format!("{sub_url}:acknowledge"))
                                .json(&json!({"ackIds": ok}))
                                .send()
                                .await;
                        }
                        if !failed.is_empty() {
                            let _ = http
                                .post(format!("{sub_url}:modifyAckDeadline"))
                                .json(&json!({"ackIds": failed, "ackDeadlineSeconds": 0}))
                                .send()
                                .await;
                        }
                    }
                }
            };
            let pullers: Vec<_> = (0..4).map(|_| {
            let (http, sub_url, subscription, endpoint, gate, count, answered) = (
                http.clone(),
                sub_url.clone(),
                subscription.clone(),
                endpoint.clone(),
                Arc::clone(&gate),
                Arc::clone(&count),
                answered.clone(),
            );
            async move {
                loop {
                    let room = gate.available_permits().clamp(1, 500);
                    let Ok(r) = http
                        .post(format!("{sub_url}:pull"))
                        .json(&json!({"maxMessages": room}))
                        .send()
                        .await
                    else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let body: Value = r.json().await.unwrap_or_default();
                    let received = body["receivedMessages"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for m in received {
                        let permit = Arc::clone(&gate).acquire_owned().await;
                        let (http, subscription, endpoint, count, answered) = (
                            http.clone(),
                            subscription.clone(),
                            endpoint.clone(),
                            Arc::clone(&count),
                            answered.clone(),
                        );
                        tokio::spawn(async move {
                            let _permit = permit;
                            let envelope =
                                json!({"message": m["message"], "subscription": subscription});
                            let ok = http
                                .post(&endpoint)
                                .json(&envelope)
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success());
                            count.fetch_add(1, Ordering::Relaxed);
                            let _ = answered.send((ok, m["ackId"].clone()));
                        });
                    }
                }
            }
        }).collect();
            drop(answered);
            futures::future::join(futures::future::join_all(pullers), acker).await;
        });
    (task, delivered)
}

/// The environment variable `name` parsed, or `default` when it is unset or unreadable.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `nice` value of the stand-ins for Google (the fakes, the emulator, the front and the
/// forwarder): in production none of them shares cutover's CPU, so in the bench they go first
/// and cutover's load cannot slow what stands for Google's servers. `BENCH_STAND_INS_NICE=0`
/// runs everything at one priority, as the runs before this setting did.
const STAND_INS_NICE: i32 = -10;

/// Gives every thread of this process (the bench: front, forwarder, fakes) `nice` and returns
/// what it got: the threads and processes they start later inherit it (the emulator, started
/// after this, included). Lowering a `nice` value needs root; where it is refused the bench
/// says so and runs everything at one priority.
fn stand_ins_first() -> i32 {
    let wanted = env_or("BENCH_STAND_INS_NICE", STAND_INS_NICE);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut all = true;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        // SAFETY: setpriority only reads its arguments; on Linux `who` names one thread.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, wanted) };
        all &= done == 0;
    }
    if all { wanted } else { 0 }
}

/// `cutover serve` (the release binary) on `port` with `flags`, its log (warnings and errors,
/// stdout and stderr) going to `log`; nothing from the caller's environment changes what it runs with.
/// It runs at `nice` 0 whatever the bench's own priority ([`stand_ins_first`]).
fn spawn_serve(bin: &Path, port: u16, flags: &[String], log: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = super::serve_command(bin);
    cmd.args(flags).args(["--port", &port.to_string()]);
    // SAFETY: between fork and exec this calls only setpriority, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 0);
            Ok(())
        });
    }
    let log = std::fs::File::create(log)?;
    cmd.env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(cmd.spawn()?)
}

/// CPU time (user + system) process `pid` has used, in seconds (`/proc/<pid>/stat`, 100 ticks
/// a second).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The fakes, started on a runtime of their own (`BENCH_FAKES_WORKERS` workers, default 8),
/// which serves them until it is shut down. With 2 workers, the fakes' own 50 ms answer took
/// p99 90–154 ms while 256 evaluations were in flight, and a quarter of the alerts lost their
/// etag race to the evaluation they were aimed at; with 8, p99 93 ms and 3 of 86 (one run, 4
/// processes). Google's front ends are not two threads.
fn fakes_apart(clock: cutover_fakes::FakeClock) -> Result<(FakeGcp, tokio::runtime::Runtime)> {
    let workers = env_or("BENCH_FAKES_WORKERS", 8).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-fakes")
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let fake = std::thread::spawn(move || handle.block_on(FakeGcp::start(clock)))
        .join()
        .map_err(|_| anyhow!("the fakes did not start"))?;
    Ok((fake, runtime))
}

/// What a cutover process logged about the alerts (its log at `warn`): when each alert's
/// handler started (`alert opened`, keyed `project/region/service`) and the alerts' decisions
/// (the time each was made at, and whether its write was applied or lost the etag race).
#[derive(Default)]
struct AlertLog {
    opened: HashMap<String, Vec<Timestamp>>,
    /// (service, decided at, write).
    decided: Vec<(String, Timestamp, String)>,
}

fn read_alert_log(path: &Path, into: &mut AlertLog) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        // The text format: ANSI colours, then `TIMESTAMP LEVEL message fields`.
        let mut plain = String::with_capacity(line.len());
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        let Some((at, rest)) = plain.split_once(' ') else {
            continue;
        };
        if rest.contains("alert opened") {
            let (Ok(at), Some(service)) = (
                at.parse::<Timestamp>(),
                rest.split("service=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next()),
            ) else {
                continue;
            };
            into.opened.entry(service.to_string()).or_default().push(at);
        } else if let Some(json) = rest.split_once("fields_json=").map(|(_, j)| j) {
            let Ok(text) = serde_json::from_str::<String>(json.trim()) else {
                continue;
            };
            let Ok(d) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if d["trigger"] != "alert" {
                continue;
            }
            let (Some(service), Some(Ok(at))) = (
                d["service"].as_str(),
                d["at"].as_str().map(str::parse::<Timestamp>),
            ) else {
                continue;
            };
            let write = d["write"].as_str().unwrap_or("none");
            let write = write.split(':').next().unwrap_or(write).to_string();
            into.decided.push((service.to_string(), at, write));
        }
    }
}

/// A project no cutover process evaluates, whose one service the fake's probe reads.
const PROBE_PROJECT: &str = "bench-probe";

/// Reads a service of the Run fake every 100 ms from a thread of its own (its own runtime and
/// connection) until `stop`, and returns each round trip in ms: how long the fakes, in the
/// bench process beside the front and the forwarder, take to answer a call that should take
/// 50 ms.
fn probe_fake(base: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        rt.block_on(async move {
            let http = reqwest::Client::new();
            let url =
                format!("{base}/v2/projects/{PROBE_PROJECT}/locations/{REGION}/services/probe");
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if http.get(&url).send().await.is_ok() {
                    took.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            took
        })
    })
}

/// The machine's 1-minute load average.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The most of `times` inside any 60-second window.
fn busiest_minute(times: &mut [Timestamp]) -> usize {
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= SignedDuration::from_secs(60) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// The busiest minute of Run reads and writes in any one project × region, and of Monitoring
/// queries in any one project, over `calls` (an operation's `:wait` is a read, as for the
/// limiter).
fn busiest(calls: &[cutover_fakes::RecordedRequest]) -> (usize, usize, usize) {
    let mut buckets: HashMap<(String, String, &str), Vec<Timestamp>> = HashMap::new();
    for r in calls {
        let parts: Vec<&str> = r.path.split('/').collect();
        let bucket = match parts.as_slice() {
            ["", "v2", "projects", p, "locations", l, ..] => {
                let read = r.method == "GET" || r.path.ends_with(":wait");
                (
                    p.to_string(),
                    l.to_string(),
                    if read { "read" } else { "write" },
                )
            }
            ["", "v3", "projects", p, "timeSeries"] => (p.to_string(), String::new(), "query"),
            _ => continue,
        };
        buckets.entry(bucket).or_default().push(r.at);
    }
    let mut peak = |class: &str| {
        buckets
            .iter_mut()
            .filter(|(k, _)| k.2 == class)
            .map(|(_, v)| busiest_minute(v))
            .max()
            .unwrap_or(0)
    };
    (peak("read"), peak("write"), peak("query"))
}

/// Where each alert's time went, push at the front → PATCH accepted, from the front's arrival
/// time, the process's log (`alert opened`, its decisions) and the fake's request log.
#[derive(Default)]
struct Stages {
    /// Front → the handler's `alert opened`.
    to_handler: Vec<f64>,
    /// Handler → its first GET of the service reaches the fake.
    to_get: Vec<f64>,
    /// That GET's arrival → the decision whose write was applied (the fake's 50 ms, its answer
    /// back, decoding, deciding; and a whole second round for an alert that lost the etag race).
    get_to_decision: Vec<f64>,
    /// The same for alerts that decided once.
    get_to_decision_first: Vec<f64>,
    /// The decision → its PATCH reaches the fake.
    to_patch: Vec<f64>,
    /// The PATCH's arrival → accepted (the fake's 50 ms and its work).
    patch_accepted: Vec<f64>,
    /// Alerts whose first write lost the etag race (to the evaluation in flight).
    raced: usize,
}

impl Stages {
    fn note(
        &mut self,
        key: &str,
        arrived: Timestamp,
        patched: Timestamp,
        log: &AlertLog,
        calls: &[cutover_fakes::RecordedRequest],
    ) {
        let ms = |from: Timestamp, to: Timestamp| to.duration_since(from).as_secs_f64() * 1000.0;
        let Some(opened) = log
            .opened
            .get(key)
            .and_then(|o| o.iter().filter(|t| **t >= arrived).min())
        else {
            return;
        };
        let parts: Vec<&str> = key.split('/').collect();
        let [p, r, s] = parts.as_slice() else {
            return;
        };
        let path = format!("/v2/projects/{p}/locations/{r}/services/{s}");
        let on = |method: &str| -> Vec<(Timestamp, u16)> {
            calls
                .iter()
                .filter(|c| c.method == method && c.path == path)
                .map(|c| (c.at, c.status))
                .collect()
        };
        let Some(get) = on("GET")
            .into_iter()
            .map(|c| c.0)
            .filter(|t| t >= opened)
            .min()
        else {
            return;
        };
        let decisions: Vec<&(String, Timestamp, String)> = log
            .decided
            .iter()
            .filter(|d| d.0 == key && d.1 >= *opened)
            .collect();
        let Some(applied) = decisions
            .iter()
            .filter(|d| d.2 == "applied")
            .map(|d| d.1)
            .min()
        else {
            return;
        };
        let raced = decisions.iter().any(|d| d.2 == "conflict" && d.1 < applied);
        let Some(patch) = on("PATCH")
            .into_iter()
            .filter(|c| c.1 == 200 && c.0 >= applied && c.0 <= patched)
            .map(|c| c.0)
            .max()
        else {
            return;
        };
        self.to_handler.push(ms(arrived, *opened));
        self.to_get.push(ms(*opened, get));
        self.get_to_decision.push(ms(get, applied));
        if raced {
            self.raced += 1;
        } else {
            self.get_to_decision_first.push(ms(get, applied));
        }
        self.to_patch.push(ms(applied, patch));
        self.patch_accepted.push(ms(patch, patched));
    }

    fn rows(self) -> Vec<(String, Vec<f64>)> {
        let n = self.to_handler.len();
        vec![
            (
                format!("front → handler starts (`alert opened`), {n}"),
                sorted(self.to_handler),
            ),
            (
                "handler → its GET reaches the fake".into(),
                sorted(self.to_get),
            ),
            (
                format!(
                    "GET reaches the fake → decision written (all; {} of {n} lost the etag race first and read again)",
                    self.raced
                ),
                sorted(self.get_to_decision),
            ),
            (
                "GET reaches the fake → decision, alerts that decided once".into(),
                sorted(self.get_to_decision_first),
            ),
            (
                "decision → its PATCH reaches the fake".into(),
                sorted(self.to_patch),
            ),
            (
                "PATCH reaches the fake → accepted".into(),
                sorted(self.patch_accepted),
            ),
        ]
    }
}

/// Whether `request` is about one of `services` (`project/region/service`): a Run call on its
/// path, or a Monitoring query whose filter names it in its region.
fn names_any(request: &cutover_fakes::RecordedRequest, services: &[&str]) -> bool {
    let filter = filter_of(request);
    services.iter().any(|key| {
        let [p, r, s] = key.split('/').collect::<Vec<_>>()[..] else {
            return false;
        };
        if request.path.starts_with("/v2/") {
            return request.path == format!("/v2/projects/{p}/locations/{r}/services/{s}");
        }
        request.path.starts_with(&format!("/v3/projects/{p}/"))
            && filter.contains(&format!("service_name = \"{s}\""))
            && filter.contains(&format!("location = \"{r}\""))
    })
}

/// The `filter` parameter of a recorded request's query string, decoded (empty if none).
fn filter_of(request: &cutover_fakes::RecordedRequest) -> String {
    let Some(uri) = request
        .query
        .as_deref()
        .and_then(|q| format!("/?{q}").parse::<axum::http::Uri>().ok())
    else {
        return String::new();
    };
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "filter"))
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

pub(crate) async fn fanout(quick: bool) -> Result<Vec<Row>> {
    // `BENCH_FANOUT_SIZE=projects,services_per_region,due` overrides the size.
    let size = std::env::var("BENCH_FANOUT_SIZE").ok().and_then(|v| {
        let n: Vec<usize> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        (n.len() == 3).then(|| (n[0], n[1], n[2]))
    });
    let (projects, per_region, due) =
        size.unwrap_or(if quick { (2, 30, 24) } else { (50, 1000, 5000) });
    let alerts = if quick { 4 } else { 120 };
    // Pushes in flight at once (`BENCH_FANOUT_IN_FLIGHT`, default 256), all processes together.
    let in_flight = env_or("BENCH_FANOUT_IN_FLIGHT", 256usize);
    // `BENCH_FANOUT_PROCESSES=1,4` runs some of the three.
    let counts: Vec<usize> = std::env::var("BENCH_FANOUT_PROCESSES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4]);
    let regions = ["europe-west1", "us-central1", "asia-east1"];
    let bin = super::process::cutover_binary()?;
    let logs = std::env::temp_dir().join(format!("cutover-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let stand_ins_nice = stand_ins_first();
    let process = cutover_fakes::emulator::Emulator::start(PROJECT)
        .await
        .map_err(|e| anyhow!(e))?;
    let emu = Rest::new(&process.host);
    let mut rows = Vec::new();
    let topic = format!("idle-{}", std::process::id());
    let idle = sorted(super::emulator_alone(&emu, &topic, if quick { 20 } else { 100 }).await?);
    rows.push(row(
        format!(
            "6. fan-out: the emulator alone, before any load: publish → push to an empty endpoint ({} messages)",
            idle.len()
        ),
        p50_p99(&idle),
        "measured, not ours",
        None,
    ));
    for processes in counts {
        let load_before = load();
        let set_up = Instant::now();
        let fake_clock =
            cutover_fakes::FakeClock::manual(Timestamp::now() - SignedDuration::from_mins(9));
        let clock = cutover_lab::local::clock(&fake_clock);
        // The fakes stand in for Google's servers: they get a runtime (and threads) of their
        // own, so they do not answer in turn with the front's and the forwarder's tasks.
        let (fake, fakes_runtime) = fakes_apart(fake_clock.clone())?;
        let project_ids: Vec<String> = (0..projects).map(|p| format!("fan-{p:02}")).collect();
        let joined_projects = project_ids.join(",");
        let joined_regions = regions.join(",");

        // Services everywhere; `due` of them mid-rollout at 10%, spread over every bucket.
        let mut rolling = Vec::new();
        let mut k = 0usize;
        let services = projects * regions.len() * per_region;
        for p in &project_ids {
            for r in regions {
                for i in 0..per_region {
                    let s = format!("svc{i:04}");
                    fake.add_service(p, r, &s, &stable(&s), RevisionProfile::healthy(), 200.0);
                    k += 1;
                    if k * due / services > rolling.len() {
                        fake.deploy(p, r, &s, &candidate(&s), RevisionProfile::healthy());
                        rolling.push((p.clone(), r, s));
                    }
                }
            }
        }
        // Rollouts are started at the fakes' (past) time by an in-process cutover without
        // limits: the setup is not what is measured, and its calls come before the count.
        let setup_flags = [
            "--event-deadline",
            "60s",
            "--projects",
            &joined_projects,
            "--regions",
            &joined_regions,
        ];
        let setup = instance(&fake, clock.clone(), &setup_flags).await?;
        let pushers: BTreeMap<&String, Pusher> = project_ids
            .iter()
            .map(|p| (p, Pusher::new(&setup.base, p)))
            .collect();
        for chunk in rolling.chunks(50) {
            let answers = futures::future::join_all(
                chunk
                    .iter()
                    .map(|(p, r, s)| pushers[p].build(s, r, "SUCCESS", clock.now())),
            )
            .await;
            for a in answers {
                let a = a.map_err(|e| anyhow!(e))?;
                if a.status != 200 {
                    bail!("build push answered {}: {}", a.status, a.body);
                }
            }
        }
        drop(setup);
        // From here the fakes' clock is the system's.
        let following = Arc::new(AtomicBool::new(true));
        let follower = {
            let (time, following) = (fake_clock.shared(), Arc::clone(&following));
            std::thread::spawn(move || {
                while following.load(Ordering::Relaxed) {
                    if let Some(t) = &time {
                        *t.lock().unwrap_or_else(|p| p.into_inner()) = Timestamp::now();
                    }
                    std::thread::sleep(Duration::from_micros(250));
                }
            })
        };

        // The processes, the emulator's topics, the front and the forwarder.
        let topic = format!("evaluations-{processes}-{}", std::process::id());
        let full_topic = format!("projects/{PROJECT}/topics/{topic}");
        emu.put(&full_topic, json!({})).await?;
        let share = |budget: usize| (budget / processes).to_string();
        let extra = [
            "--event-deadline".to_string(),
            "60s".into(),
            "--projects".into(),
            joined_projects.clone(),
            "--regions".into(),
            joined_regions.clone(),
            "--evaluations-topic".into(),
            full_topic.clone(),
            "--pubsub-emulator-host".into(),
            process.host.clone(),
            "--run-reads-per-minute".into(),
            share(RUN_READS),
            "--run-writes-per-minute".into(),
            share(RUN_WRITES),
            "--monitoring-queries-per-minute".into(),
            share(QUERIES),
        ];
        let flags = cutover_fakes::flags::flags_with(&fake, PROJECT, REGION, &extra);
        let mut children = Vec::new();
        let mut bases = Vec::new();
        for n in 0..processes {
            let port = free_port()?;
            let log = logs.join(format!("serve-{processes}-{n}.log"));
            children.push(spawn_serve(&bin, port, &flags, &log)?);
            bases.push(format!("http://127.0.0.1:{port}"));
            let t0 = Instant::now();
            while !healthz(port) {
                if t0.elapsed() > Duration::from_secs(10) {
                    for c in &mut children {
                        let _ = c.kill();
                    }
                    bail!("cutover serve did not start (log: {})", log.display());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let seen: Shared = Arc::default();
        let front = round_robin(bases, Arc::clone(&seen)).await?;
        let pulled = format!("projects/{PROJECT}/subscriptions/{topic}-pull");
        emu.put(
            &pulled,
            json!({"topic": full_topic, "ackDeadlineSeconds": 120}),
        )
        .await?;
        let (forwarder, delivered) = forward_pulls(
            &process.host,
            &pulled,
            format!("{front}/pubsub/evaluations"),
            in_flight,
        );
        // The emulator pushes a subscription's messages at its own pace (~14 a second at best,
        // measured in issue 16's first round; 120 alerts in one subscription waited 10-60 s
        // for it), where Google's push delivers many at once: one subscription would measure
        // the emulator's queue. So the alerts are spread over several push subscriptions.
        let alert_topics: Vec<String> = (0..ALERT_SUBSCRIPTIONS)
            .map(|i| format!("{topic}-alerts-{i}"))
            .collect();
        for t in &alert_topics {
            emu.push_topic(t, &format!("{front}/pubsub/alerts")).await?;
        }
        fake.faults().latency(Duration::from_millis(50));
        fake.add_service(
            PROBE_PROJECT,
            REGION,
            "probe",
            &stable("probe"),
            RevisionProfile::healthy(),
            1.0,
        );
        let probing = Arc::new(AtomicBool::new(false));
        let probe = probe_fake(fake.base_url(), Arc::clone(&probing));
        let set_up = set_up.elapsed();
        eprintln!(
            "bench: fan-out, {processes} process(es): set up in {:.0} s, ticking",
            set_up.as_secs_f64()
        );

        // The tick, and alerts for services whose evaluation is in flight meanwhile.
        let before = fake.requests().len();
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        let cpu0: f64 = pids.iter().map(|p| process_cpu(*p)).sum();
        let t0 = Instant::now();
        let tick = {
            let front = front.clone();
            tokio::spawn(async move {
                let answer = Pusher::new(&front, PROJECT).tick(Timestamp::now()).await;
                (answer, t0.elapsed())
            })
        };
        let sent: Arc<Mutex<BTreeMap<String, (Instant, Timestamp)>>> = Arc::default();
        let alerter = {
            let (seen, sent) = (Arc::clone(&seen), Arc::clone(&sent));
            let (host, alert_topics) = (process.host.clone(), alert_topics.clone());
            let everyone = rolling.len();
            tokio::spawn(async move {
                let emu = Arc::new(Rest::new(&host));
                let mut alerted = HashSet::new();
                while alerted.len() < alerts && t0.elapsed() < Duration::from_secs(120) {
                    let pick = {
                        let s = seen.lock().unwrap();
                        if s.judged.len() >= everyone {
                            break;
                        }
                        s.in_flight
                            .keys()
                            .find(|k| !alerted.contains(*k) && !s.judged.contains_key(*k))
                            .cloned()
                    };
                    let Some(key) = pick else {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    };
                    let parts: Vec<&str> = key.split('/').collect();
                    let [p, r, s] = parts.as_slice() else {
                        continue;
                    };
                    let incident = cutover_fakes::pusher::incident(
                        p,
                        s,
                        &candidate(s),
                        r,
                        "open",
                        Timestamp::now(),
                    );
                    let data = serde_json::to_vec(&incident).unwrap_or_default();
                    let attributes = BTreeMap::from([("bench-service".to_string(), key.clone())]);
                    sent.lock()
                        .unwrap()
                        .insert(key.clone(), (Instant::now(), Timestamp::now()));
                    alerted.insert(key);
                    // Published without waiting for the answer, so a slow publish does not
                    // thin the alerts out; 30 ms apart.
                    let alert_topic = alert_topics[alerted.len() % alert_topics.len()].clone();
                    let emu = Arc::clone(&emu);
                    tokio::spawn(async move {
                        let _ = emu.publish(&alert_topic, &data, &attributes).await;
                    });
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        let limit = Duration::from_secs(if quick { 60 } else { 300 });
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let s = seen.lock().unwrap();
            let applied = sent
                .lock()
                .unwrap()
                .keys()
                .all(|k| s.alert_applied.contains_key(k));
            if (s.judged.len() >= rolling.len() && applied && alerter.is_finished())
                || t0.elapsed() > limit
            {
                break;
            }
        }
        let cpu = pids.iter().map(|p| process_cpu(*p)).sum::<f64>() - cpu0;
        probing.store(true, Ordering::Relaxed);
        let probed = sorted(probe.join().unwrap_or_default());
        forwarder.abort();
        let deliveries = delivered.load(Ordering::Relaxed);
        let (tick_answer, tick_wall) = tick.await?;
        let tick_answer = tick_answer.map_err(|e| anyhow!(e))?;
        if tick_answer.status != 200 {
            bail!("tick answered {}: {}", tick_answer.status, tick_answer.body);
        }
        let _ = alerter.await;
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        following.store(false, Ordering::Relaxed);
        let _ = follower.join();
        fakes_runtime.shutdown_background();
        let load_after = load();

        // Figures.
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let sent = sent.lock().unwrap().clone();
        let judged = seen.judged.len();
        let all_judged = seen
            .judged
            .values()
            .max()
            .map_or(f64::NAN, |at| at.duration_since(t0).as_secs_f64());
        let probe_path = format!("/v2/projects/{PROBE_PROJECT}/");
        let calls: Vec<_> = fake
            .requests()
            .into_iter()
            .skip(before)
            .filter(|r| !r.path.starts_with(&probe_path))
            .collect();
        let mut alert_log = AlertLog::default();
        for n in 0..processes {
            read_alert_log(
                &logs.join(format!("serve-{processes}-{n}.log")),
                &mut alert_log,
            );
        }
        let listing = calls
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/services"))
            .count();
        let per_judged = (calls.len() - listing) as f64 / judged.max(1) as f64;
        // What those calls were, per judged rollout (the alerts' own calls included).
        let kind = |f: &dyn Fn(&cutover_fakes::RecordedRequest) -> bool| {
            calls.iter().filter(|r| f(r)).count() as f64 / judged.max(1) as f64
        };
        let gets = kind(&|r| {
            r.method == "GET" && r.path.starts_with("/v2/") && !r.path.ends_with("/services")
        });
        let queries = kind(&|r| r.path.starts_with("/v3/"));
        let patches = kind(&|r| r.method == "PATCH");
        let waits = kind(&|r| r.path.ends_with(":wait"));
        // The same without the alerted services (their alerts' calls and their evaluations'):
        // what judging a rollout costs, which the goal is about.
        let alerted: Vec<&str> = sent.keys().map(String::as_str).collect();
        let (mut on_alerted, mut alerted_writes) = (0, 0);
        for r in calls.iter().filter(|r| names_any(r, &alerted)) {
            on_alerted += 1;
            alerted_writes += usize::from(r.method == "PATCH" && r.status == 200);
        }
        let judged_unalerted = seen
            .judged
            .keys()
            .filter(|k| !sent.contains_key(*k))
            .count();
        // Each accepted PATCH is followed by one `operations:wait`, which names no service.
        let per_judged_unalerted = (calls.len() - listing - on_alerted - alerted_writes) as f64
            / judged_unalerted.max(1) as f64;
        let (peak_reads, peak_writes, peak_queries) = busiest(&calls);
        let mut moved = Vec::new();
        let mut applied = Vec::new();
        let mut pushed = Vec::new();
        let mut ours = Vec::new();
        let mut stages = Stages::default();
        for (key, (at, stamp)) in &sent {
            let parts: Vec<&str> = key.split('/').collect();
            let [p, r, s] = parts.as_slice() else {
                continue;
            };
            let stable = stable(s);
            let patched = fake
                .history(p, r, s)
                .into_iter()
                .rev()
                .find(|c| !c.by_hand && c.allocation == vec![(stable.clone(), 100)])
                .map(|c| c.at);
            if let (Some(patched), Some(arrived)) = (patched, seen.alert_in.get(key)) {
                let arrived = stamp.checked_add(arrived.duration_since(*at))?;
                stages.note(key, arrived, patched, &alert_log, &calls);
            }
            if let Some(patched) = patched {
                moved.push(patched.duration_since(*stamp).as_secs_f64() * 1000.0);
                // The push's arrival on the fakes' clock: the publish's timestamp moved by the
                // bench's own measure of publish → arrival.
                if let Some(arrived) = seen.alert_in.get(key) {
                    let arrived = stamp.checked_add(arrived.duration_since(*at))?;
                    ours.push(patched.duration_since(arrived).as_secs_f64() * 1000.0);
                }
            }
            if let Some(done) = seen.alert_applied.get(key) {
                applied.push(done.duration_since(*at).as_secs_f64() * 1000.0);
            }
            if let Some(arrived) = seen.alert_in.get(key) {
                pushed.push(arrived.duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
        let (moved, applied, pushed, ours) =
            (sorted(moved), sorted(applied), sorted(pushed), sorted(ours));
        let cpu_ms = cpu * 1000.0 / judged.max(1) as f64;
        let decisions = seen
            .decisions
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let within = judged == rolling.len() && all_judged <= 60.0;
        rows.push(row(
            format!(
                "6. fan-out: {projects} projects × 3 regions × {per_region} services ({services}), {due} due, {processes} cutover process(es), 50 ms per call; load {load_before} → {load_after}; stand-ins for Google at nice {stand_ins_nice}, cutover at 0"
            ),
            format!(
                "all {judged}/{} judged in {all_judged:.1} s; tick answered in {:.2} s with {listing} listing calls; {per_judged:.2} calls per judged rollout (GET {gets:.2}, query {queries:.2}, PATCH {patches:.2}, :wait {waits:.2}; the alerts' included); {per_judged_unalerted:.2} per judged rollout of the {judged_unalerted} services no alert touched; CPU {cpu_ms:.2} ms per judged rollout ({cpu:.1} s in the cutover processes); {deliveries} deliveries forwarded, {in_flight} at once; evaluations decided {decisions}; set-up {:.0} s",
                rolling.len(),
                tick_wall.as_secs_f64(),
                set_up.as_secs_f64(),
            ),
            "all judged ≤ 60 s; ≤ 3 calls each (no alert's)",
            Some(within && per_judged_unalerted <= 3.0),
        ));
        rows.push(row(
            "   busiest 60 s: Run reads, writes per project × region; Monitoring queries per project",
            format!(
                "{peak_reads} reads (quota {RUN_READS}), {peak_writes} writes (quota {RUN_WRITES}), {peak_queries} queries (quota {QUERIES})"
            ),
            "never above the quota",
            Some(peak_reads <= RUN_READS && peak_writes <= RUN_WRITES && peak_queries <= QUERIES),
        ));
        rows.push(row(
            format!(
                "   alert → traffic back on stable (the fake accepts the PATCH), {} of {} alerts on evaluations in flight",
                moved.len(),
                sent.len()
            ),
            p50_p99(&moved),
            "p99 ≤ 250 ms",
            Some(
                sent.len() >= alerts.min(rolling.len())
                    && moved.len() == sent.len()
                    && percentile(&moved, 0.99) <= 250.0,
            ),
        ));
        rows.push(row(
            format!(
                "   alert → rollback recorded applied (its operation confirmed), {} of {}",
                applied.len(),
                sent.len()
            ),
            p50_p99(&applied),
            "",
            None,
        ));
        rows.push(row(
            format!(
                "   of which publish → push at the front (emulator), {}",
                pushed.len()
            ),
            p50_p99(&pushed),
            "measured, not ours",
            None,
        ));
        rows.push(row(
            format!(
                "   of which push at the front → traffic back on stable (cutover; it goes beside the evaluation in flight), {}",
                ours.len()
            ),
            p50_p99(&ours),
            "",
            None,
        ));
        for (what, ms) in stages.rows() {
            rows.push(row(format!("      {what}"), p50_p99(&ms), "", None));
        }
        rows.push(row(
            format!(
                "      the Run fake's own answer to a GET (50 ms injected), from a thread of its own, {} probes",
                probed.len()
            ),
            p50_p99(&probed),
            "",
            None,
        ));
    }
    Ok(rows)
}
