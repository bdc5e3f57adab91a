//! The real Pub/Sub emulator, for the tests and the bench that go through it.
//!
//! Uses the one named by `PUBSUB_EMULATOR_HOST` when set (`.ci/run` starts one), otherwise
//! starts `gcloud beta emulators pubsub start` on a free loopback port and stops it (the whole
//! process group: gcloud runs the Java emulator as a child) when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator.
pub struct Emulator {
    /// `127.0.0.1:PORT`, as `PUBSUB_EMULATOR_HOST` spells it.
    pub host: String,
    child: Option<Child>,
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
    }
}

impl Emulator {
    /// The configured emulator, or a new one for `project`, once it answers.
    pub async fn start(project: &str) -> Result<Emulator, String> {
        if let Ok(host) = std::env::var("PUBSUB_EMULATOR_HOST")
            && !host.is_empty()
        {
            return Ok(Emulator { host, child: None });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let host = format!("127.0.0.1:{port}");
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!("starting the Pub/Sub emulator (gcloud beta emulators pubsub start): {e}")
            })?;
        let emu = Emulator {
            host,
            child: Some(child),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(90) {
            if let Ok(r) = http.get(format!("http://{}/", emu.host)).send().await
                && r.status().is_success()
            {
                return Ok(emu);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "the Pub/Sub emulator did not start on {}",
            emu.host
        ))
    }
}
