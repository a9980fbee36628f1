//! A `streamguard serve` process for tests that need one (signals, two
//! replicas): spawned with the built binary, its JSON log collected.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use streamguard::pb;

/// A `streamguard serve` process on a port it binds itself (`:0`); its JSON
/// log on stderr is collected and says where it listens.
pub struct Process {
    pub child: std::process::Child,
    pub log: Arc<std::sync::Mutex<String>>,
}

pub fn spawn_server(root: &std::path::Path, extra: &[&str]) -> Process {
    spawn_with_env(root, extra, &[])
}

pub fn spawn_with_env(root: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .envs(env.iter().copied())
        .args(["--log-format", "json", "serve", "--config"])
        .arg(root)
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    Process { child, log }
}

impl Process {
    /// Waits until a log line contains `needle` (the process logs as it goes).
    pub async fn wait_log(&self, needle: &str) -> String {
        for _ in 0..200 {
            let text = self.log.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no `{needle}` in the log: {}", self.log.lock().unwrap());
    }

    /// The gRPC URL the process logged, once it listens.
    pub async fn grpc(&self) -> String {
        let line = self.wait_log("gRPC listening").await;
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        format!("http://{}", v["fields"]["addr"].as_str().unwrap())
    }

    pub async fn client(
        &self,
    ) -> pb::guardrails_client::GuardrailsClient<tonic::transport::Channel> {
        pb::guardrails_client::GuardrailsClient::connect(self.grpc().await)
            .await
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Process {
    /// The address the process logged for `what` (`gRPC`, `HTTP`) listening.
    pub async fn addr(&self, what: &str) -> String {
        let line = self.wait_log(&format!("{what} listening")).await;
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        v["fields"]["addr"].as_str().unwrap().to_string()
    }
}
