//! The real Pub/Sub emulator, for the tests and the bench that go through it, and the one place
//! that decides what a test does when the emulator cannot be started.
//!
//! [`Emulator::start`] uses the one named by `PUBSUB_EMULATOR_HOST` when set (`.ci/run` starts
//! one), otherwise starts `gcloud beta emulators pubsub start` on a free loopback port and stops
//! it (the whole process group: gcloud runs the Java emulator as a child) when dropped. What it
//! needs is checked first and gcloud is watched while it starts, so a machine without the emulator
//! gets its reason at once, not after the start-up timeout.
//!
//! [`Emulator::for_test`] is what tests call. A test that cannot get an emulator prints one line
//! (not run, why, how to install) and passes, so `cargo test` works with only the Rust toolchain;
//! with `CUTOVER_REQUIRE_EMULATOR=1` (CI sets it) it fails instead, so CI cannot skip it silently.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to `1` to make "the emulator cannot be started" fail a test instead of skipping it.
pub const REQUIRE_VAR: &str = "CUTOVER_REQUIRE_EMULATOR";

/// What to install, appended to every "cannot start" reason.
const HOW_TO_INSTALL: &str = "to run it, install the Google Cloud CLI with the Pub/Sub emulator \
     (`gcloud components install pubsub-emulator beta`, or the Debian/Ubuntu package \
     `google-cloud-cli-pubsub-emulator`) and a Java 11+ runtime, both on PATH";

/// How long a started gcloud may take to answer (a cold JVM on a busy machine is slow).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running emulator.
pub struct Emulator {
    /// `127.0.0.1:PORT`, as `PUBSUB_EMULATOR_HOST` spells it.
    pub host: String,
    child: Option<Child>,
    /// gcloud's output (read when it fails to start), removed on drop.
    log: Option<PathBuf>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .arg("--")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

impl Emulator {
    /// The configured emulator, or a new one for `project`, once it answers. The error says why
    /// there is none (and, when starting one failed, how to install it).
    pub async fn start(project: &str) -> Result<Emulator, String> {
        if let Ok(host) = std::env::var("PUBSUB_EMULATOR_HOST")
            && !host.is_empty()
        {
            if answers(&reqwest::Client::new(), &host, Duration::from_secs(5)).await {
                return Ok(Emulator {
                    host,
                    child: None,
                    log: None,
                });
            }
            return Err(format!(
                "the Pub/Sub emulator cannot be reached: PUBSUB_EMULATOR_HOST={host} is set but \
                 nothing answers there (start it there, or unset the variable to have one started)"
            ));
        }
        Self::launch(project).await.map_err(|why| {
            format!("the Pub/Sub emulator cannot be started: {why}; {HOW_TO_INSTALL}")
        })
    }

    /// For a test that needs the emulator: `Some` when it runs. When it cannot be started, a
    /// test that may skip gets `None` after one line on stderr saying it did not run and why;
    /// under `CUTOVER_REQUIRE_EMULATOR=1` this panics with the same reason.
    pub async fn for_test(project: &str) -> Option<Emulator> {
        let required = required();
        let why = match Self::start(project).await {
            Ok(emulator) => return Some(emulator),
            Err(why) => why,
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        if required {
            panic!("{REQUIRE_VAR}=1 and {test} needs the emulator: {why}");
        }
        // Straight to the stderr handle: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: did not run, {why} (set {REQUIRE_VAR}=1 to make this a failure)"
        );
        None
    }

    /// A new emulator on a free loopback port, once it answers.
    async fn launch(project: &str) -> Result<Emulator, String> {
        for (program, what) in [
            ("gcloud", "the Google Cloud CLI"),
            ("java", "the emulator is a Java program"),
        ] {
            if !on_path(program) {
                return Err(format!("no `{program}` on PATH ({what})"));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let host = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!(
            "cutover-pubsub-emulator-{}-{port}.log",
            std::process::id()
        ));
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        use std::os::unix::process::CommandExt;
        let child = Command::new("gcloud")
            .args([
                "beta",
                "emulators",
                "pubsub",
                "start",
                &format!("--host-port={host}"),
                &format!("--project={project}"),
            ])
            // A missing component must fail, not wait for an answer to "install it?".
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            // Warnings and errors only: see the file for why.
            .env(
                "JAVA_OPTS",
                concat!(
                    "-Djava.util.logging.config.file=",
                    env!("CARGO_MANIFEST_DIR"),
                    "/emulator-logging.properties"
                ),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("`gcloud beta emulators pubsub start` did not run: {e}"))?;
        let mut emulator = Emulator {
            host,
            child: Some(child),
            log: Some(log),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if answers(&http, &emulator.host, Duration::ZERO).await {
                return Ok(emulator);
            }
            if let Some(child) = &mut emulator.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "`gcloud beta emulators pubsub start` exited ({status}): {}",
                    emulator.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "it did not answer on {} within {} s: {}",
            emulator.host,
            START_TIMEOUT.as_secs(),
            emulator.log_tail()
        ))
    }

    /// The last lines gcloud wrote, on one line.
    fn log_tail(&self) -> String {
        let text = self
            .log
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        match lines.len() {
            0 => "it printed nothing".to_string(),
            n => lines[n.saturating_sub(3)..].join(" | "),
        }
    }
}

/// Whether `CUTOVER_REQUIRE_EMULATOR` asks for a failure; a value other than `1`, `0` or empty
/// is a mistake worth stopping for, not a reason to skip.
fn required() -> bool {
    match std::env::var(REQUIRE_VAR).as_deref() {
        Ok("1") => true,
        Ok("0") | Ok("") | Err(std::env::VarError::NotPresent) => false,
        Ok(other) => panic!("{REQUIRE_VAR} must be 1 or 0, not {other:?}"),
        Err(e) => panic!("{REQUIRE_VAR}: {e}"),
    }
}

/// Whether the emulator answers `GET /` at `host`, trying for up to `patience`.
async fn answers(http: &reqwest::Client, host: &str, patience: Duration) -> bool {
    let started = Instant::now();
    loop {
        if let Ok(r) = http
            .get(format!("http://{host}/"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && r.status().is_success()
        {
            return true;
        }
        if started.elapsed() >= patience {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether an executable file called `program` is in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}
