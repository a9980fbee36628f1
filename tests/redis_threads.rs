//! Threads in Redis (`--datastore redis://…`), against a real `redis-server`
//! (Debian's package; `.ci/run` installs it and sets
//! STREAMGUARD_REQUIRE_REDIS) that each test starts on a free port: two
//! streamguard processes continue one thread; NeMo's key and value are
//! read and written; an outage fails thread requests with 503 /
//! UNAVAILABLE and leaves the others working, and the threads come back
//! with Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    io::{Read, Write},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{process::*, *};
use serde_json::{Value, json};
use streamguard::server::{Datastore, ServerSettings, ThreadSettings};

/// A `redis-server` of this test's own.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free port, or `None` (outside CI) without the binary.
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::on(port)
    }

    fn on(port: u16) -> Option<Redis> {
        let dir = tempfile::tempdir().unwrap();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if std::env::var_os("STREAMGUARD_REQUIRE_REDIS").is_some() => {
                panic!("redis-server is required (STREAMGUARD_REQUIRE_REDIS): {e}")
            }
            Err(_) => {
                eprintln!(
                    "redis-server is not installed: the Redis thread tests run in CI (.ci/run)"
                );
                return None;
            }
        };
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if redis.ping() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not answer on port {port}");
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const THREAD: &str = "thread-0123456789abcdef";

fn turn(text: &str) -> Value {
    json!({"model": "bot", "messages": [{"role": "user", "content": text}],
           "guardrails": {"thread_id": "0123456789abcdef"}})
}

/// The messages of the fake LLM's last main call.
fn last_call(llm: &FakeLlm) -> Vec<(String, String)> {
    let r = llm.state.requests();
    let messages = r.last().unwrap()["messages"].as_array().unwrap().clone();
    messages
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_continue_one_thread_through_redis_in_nemo_s_format() {
    let Some(redis) = Redis::start() else { return };
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let url = redis.url();
    let flags = ["--http-addr", "127.0.0.1:0", "--datastore", url.as_str()];
    let (a, b) = (
        spawn_server(configs.root(), &flags),
        spawn_server(configs.root(), &flags),
    );
    let answer = "Hello from the fake model, streamed token by token.";
    // Turn one on replica A, over HTTP.
    let (status, r) = post_chat(
        &format!("http://{}", a.addr("HTTP").await),
        &turn("My name is Ada."),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    // Turn two on replica B, over gRPC and streamed, with the new message only.
    let mut client = b.client().await;
    let mut request = request("bot", "What is my name?");
    request.thread_id = "0123456789abcdef".into();
    let got = collect(&mut client, request).await.unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    let seen = last_call(&llm);
    let said: Vec<(&str, &str)> = seen.iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
    assert_eq!(
        said[1..],
        [
            ("user", "My name is Ada."),
            ("assistant", answer),
            ("user", "What is my name?")
        ]
    );
    // The thread is NeMo's key and value, with the TTL.
    let mut c = redis.connection().await;
    let stored: String = redis::cmd("GET")
        .arg(THREAD)
        .query_async(&mut c)
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored.as_array().unwrap().len(), 4, "{stored}");
    assert_eq!(stored[3], json!({"role": "assistant", "content": answer}));
    let ttl: i64 = redis::cmd("TTL")
        .arg(THREAD)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 86_000, "{ttl}");
    // A thread NeMo's server wrote is continued.
    let nemo = r#"[{"role": "user", "content": "I am Bob."}, {"role": "assistant", "content": "Hi Bob!"}]"#;
    let _: () = redis::cmd("SET")
        .arg("thread-nemo-wrote-this-one")
        .arg(nemo)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut body = turn("Who am I?");
    body["guardrails"]["thread_id"] = json!("nemo-wrote-this-one");
    let (status, _) = post_chat(&format!("http://{}", b.addr("HTTP").await), &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        last_call(&llm)[1..3],
        [
            ("user".into(), "I am Bob.".into()),
            ("assistant".into(), "Hi Bob!".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_fails_thread_requests_only_and_threads_come_back_with_it() {
    let Some(redis) = Redis::start() else { return };
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let settings = ServerSettings {
        threads: ThreadSettings {
            datastore: Some(Datastore::redis(&redis.url()).unwrap()),
            ..ThreadSettings::default()
        },
        ..ServerSettings::default()
    };
    let server = builder(configs.root(), settings)
        .grpc(listener().await)
        .http(listener().await)
        .build()
        .await
        .unwrap();
    let http = format!("http://{}", server.http_addr().unwrap());
    let server = start_server(server).await;
    let (status, _) = post_chat(&http, &turn("Remember: blue.")).await;
    assert_eq!(status, 200);
    let port = redis.stop();
    // Down: thread requests fail, on both transports, naming the datastore.
    let (status, r) = post_chat(&http, &turn("What did I say?")).await;
    assert_eq!(status, 503, "{r}");
    assert_eq!(r["error"]["code"], "datastore_unavailable", "{r}");
    let mut request = request("bot", "What did I say?");
    request.thread_id = "0123456789abcdef".into();
    let e = server
        .client
        .clone()
        .generate(request.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    // Requests without a thread never ask it.
    let (status, _) = post_chat(
        &http,
        &json!({"model": "bot", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    // Back up (empty: it kept nothing on disk); threads work again.
    let _redis = Redis::on(port).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if server
            .client
            .clone()
            .generate(request.clone())
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "threads did not come back with Redis");
    server.shutdown().await;
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn certificates(dir: &std::path::Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "req.pem",
        "-subj",
        "/CN=localhost",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_reach_redis_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    if !certificates(dir.path()) {
        assert!(
            std::env::var_os("STREAMGUARD_REQUIRE_REDIS").is_none(),
            "openssl is needed for the TLS test"
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spawned = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "cert.pem",
            "--tls-key-file",
            "key.pem",
            "--tls-auth-clients",
            "no",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        assert!(
            std::env::var_os("STREAMGUARD_REQUIRE_REDIS").is_none(),
            "redis-server is required"
        );
        return;
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let url = format!("rediss://localhost:{port}/0");
    let trusted = Datastore::redis_with_ca(&url, Some(ca)).unwrap();
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), ""));
    let serve = |datastore| {
        let settings = ServerSettings {
            threads: ThreadSettings {
                datastore: Some(datastore),
                ..ThreadSettings::default()
            },
            ..ServerSettings::default()
        };
        start_http_with(configs.root(), settings)
    };
    let http = serve(trusted).await;
    for _ in 0..2 {
        let (status, r) = post_chat(&http, &turn("Remember: green.")).await;
        assert_eq!(status, 200, "{r}");
    }
    let roles: Vec<String> = last_call(&llm).into_iter().map(|(role, _)| role).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user"],
        "the second turn had the first in front"
    );
    // Without the CA the server's certificate is refused, and so are thread requests.
    let untrusted = serve(Datastore::redis(&url).unwrap()).await;
    let (status, r) = post_chat(&untrusted, &turn("Remember: green.")).await;
    assert_eq!(status, 503, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{r}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
