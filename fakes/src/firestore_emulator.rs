//! The real Firestore emulator, for every test suite that keeps rollout records in Firestore (the
//! store's own tests, the end-to-end platform tests, chaos): the one named by
//! `FIRESTORE_EMULATOR_HOST` when set, else `gcloud emulators firestore start` on a free loopback
//! port, its process group stopped when dropped. One emulator can serve many tests: give each its
//! own collection. Without one, a test prints why it did not run and passes, unless
//! `CUTOVER_REQUIRE_FIRESTORE_EMULATOR=1` (CI sets it), which makes that a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to `1` to make a missing Firestore emulator fail the test instead of skipping it.
pub const REQUIRE_VAR: &str = "CUTOVER_REQUIRE_FIRESTORE_EMULATOR";

const WAIT: Duration = Duration::from_secs(90);

/// A running Firestore emulator at `host` (`127.0.0.1:PORT`).
pub struct FirestoreEmulator {
    pub host: String,
    started: Option<Child>,
}

impl Drop for FirestoreEmulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.started {
            // gcloud runs the emulator as a child: signal the whole group.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["--", &group]).status();
            let _ = child.wait();
        }
    }
}

impl FirestoreEmulator {
    /// An emulator, or `None` (after saying why on stderr) when there is none and none is required.
    pub async fn for_test() -> Option<FirestoreEmulator> {
        let why = match Self::get().await {
            Ok(e) => return Some(e),
            Err(why) => why,
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
            panic!("{REQUIRE_VAR}=1 and {test} needs the Firestore emulator: {why}");
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: did not run, {why} (install `google-cloud-cli-firestore-emulator` \
             and Java 11+, or set FIRESTORE_EMULATOR_HOST; {REQUIRE_VAR}=1 makes this a failure)"
        );
        None
    }

    async fn get() -> Result<FirestoreEmulator, String> {
        if let Ok(host) = std::env::var("FIRESTORE_EMULATOR_HOST")
            && !host.is_empty()
        {
            let mut e = FirestoreEmulator {
                host,
                started: None,
            };
            return match e.ready(Duration::from_secs(5)).await {
                true => Ok(e),
                false => Err(format!(
                    "FIRESTORE_EMULATOR_HOST={} does not answer",
                    e.host
                )),
            };
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        use std::os::unix::process::CommandExt;
        let child = Command::new("gcloud")
            .args(["emulators", "firestore", "start"])
            .arg(format!("--host-port=127.0.0.1:{port}"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("`gcloud emulators firestore start` did not run: {e}"))?;
        let mut e = FirestoreEmulator {
            host: format!("127.0.0.1:{port}"),
            started: Some(child),
        };
        if e.ready(WAIT).await {
            return Ok(e);
        }
        let exited = e.started.as_mut().and_then(|c| c.try_wait().ok().flatten());
        Err(match exited {
            Some(status) => format!("`gcloud emulators firestore start` exited ({status})"),
            None => format!(
                "the Firestore emulator did not answer within {} s",
                WAIT.as_secs()
            ),
        })
    }

    /// Whether `GET /` answers 200 within `patience` (gone early if the process exits).
    async fn ready(&mut self, patience: Duration) -> bool {
        let http = reqwest::Client::new();
        let since = Instant::now();
        while since.elapsed() < patience {
            let ok = http
                .get(format!("http://{}/", self.host))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return true;
            }
            if let Some(c) = &mut self.started
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }
}
