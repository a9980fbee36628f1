//! streamguard-bench: N concurrent streams against the mock LLM directly
//! (`direct`), streamguard's gRPC `StreamGenerate` (`grpc`) or its HTTP SSE
//! endpoint (`http`), or its `GuardStream` with the bench itself calling the
//! mock and forwarding each chunk (`guard`, the caller's own LLM). Reports
//! time to first token and inter-chunk gaps as percentiles (and, for
//! `guard`, each chunk's round trip from forwarding it to getting it back
//! guarded), streams and chunks per second, errors, and the peak RSS and
//! CPU seconds of the processes given with `--pid`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use serde_json::{Value, json};
use streamguard::llm::sse;
use streamguard::pb::{
    self, guardrails_client::GuardrailsClient, stream_generate_response::Event as PbEvent,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    /// The mock LLM's OpenAI endpoint, directly.
    Direct,
    /// streamguard's gRPC StreamGenerate.
    Grpc,
    /// streamguard's HTTP SSE endpoint.
    Http,
    /// streamguard's gRPC GuardStream, fed from the mock by the bench.
    Guard,
}

#[derive(Debug, Parser)]
#[command(
    name = "streamguard-bench",
    about = "Concurrent streams against streamguard or the LLM behind it"
)]
struct Args {
    #[arg(long, value_enum)]
    target: Target,
    /// Base URL: http://HOST:PORT/v1 for direct and http, http://HOST:PORT for grpc and guard.
    #[arg(long)]
    url: String,
    /// The mock LLM's base URL (guard: the bench calls it itself).
    #[arg(long)]
    llm_url: Option<String>,
    /// The config id (grpc, http).
    #[arg(long, default_value = "bench")]
    config_id: String,
    /// Concurrent streams.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Total streams to run (default: one per worker).
    #[arg(long)]
    requests: Option<usize>,
    /// Run for this many seconds instead of a count.
    #[arg(long)]
    duration: Option<f64>,
    /// Streams per gRPC connection.
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Processes to measure, as NAME=PID (peak RSS, CPU seconds during the run).
    #[arg(long)]
    pid: Vec<String>,
    /// A label for the result line.
    #[arg(long, default_value = "")]
    label: String,
    /// http: each worker continues threads of its own (`guardrails.thread_id`
    /// = PREFIX-<worker>-<n>), so every request loads and stores one.
    #[arg(long)]
    thread_prefix: Option<String>,
    /// Turns per thread before a worker starts the next one.
    #[arg(long, default_value_t = 10)]
    thread_turns: usize,
}

#[derive(Default)]
struct Samples {
    ttft_us: Vec<u64>,
    gaps_us: Vec<u64>,
    /// Guard: from forwarding a chunk to getting it back.
    round_us: Vec<u64>,
    chunks: u64,
    errors: Vec<String>,
}

/// Process counters from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStat {
    cpu_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn proc_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
    Ok(ProcStat {
        cpu_ticks: ticks(11) + ticks(12),
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn summary(values: &mut [u64]) -> Value {
    values.sort_unstable();
    json!({
        "p50_ms": percentile(values, 0.50), "p90_ms": percentile(values, 0.90),
        "p99_ms": percentile(values, 0.99), "max_ms": percentile(values, 1.0), "n": values.len(),
    })
}

/// Records one stream's timings as chunks arrive.
struct Timer {
    start: Instant,
    last: Option<Instant>,
    ttft: Option<u64>,
    gaps: Vec<u64>,
    rounds: Vec<u64>,
    chunks: u64,
}

impl Timer {
    fn new() -> Self {
        Timer {
            start: Instant::now(),
            last: None,
            ttft: None,
            gaps: Vec::new(),
            rounds: Vec::new(),
            chunks: 0,
        }
    }
    fn chunk(&mut self) {
        let now = Instant::now();
        match self.last {
            None => self.ttft = Some(now.duration_since(self.start).as_micros() as u64),
            Some(prev) => self.gaps.push(now.duration_since(prev).as_micros() as u64),
        }
        self.last = Some(now);
        self.chunks += 1;
    }
    fn record(self, samples: &Mutex<Samples>) {
        if let Ok(mut s) = samples.lock() {
            if let Some(t) = self.ttft {
                s.ttft_us.push(t);
            }
            s.gaps_us.extend(self.gaps);
            s.round_us.extend(self.rounds);
            s.chunks += self.chunks;
        }
    }
}

async fn sse_stream(client: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Timer> {
    let mut timer = Timer::new();
    let response = client.post(url).json(body).send().await?;
    if !response.status().is_success() {
        bail!(
            "HTTP {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let mut events = sse::Events::new(
        response.bytes_stream().boxed(),
        sse::DEFAULT_MAX_EVENT_BYTES,
    );
    while let Some(event) = events.next().await {
        let event = event?;
        if event == "[DONE]" {
            return Ok(timer);
        }
        let v: Value = serde_json::from_str(&event)?;
        if let Some(e) = v.get("error") {
            bail!("error event: {e}");
        }
        if v["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
        {
            timer.chunk();
        }
    }
    bail!("stream ended before [DONE]")
}

async fn grpc_stream(
    client: &mut GuardrailsClient<tonic::transport::Channel>,
    config_id: &str,
) -> anyhow::Result<Timer> {
    let mut timer = Timer::new();
    let request = pb::GenerateRequest {
        config_id: config_id.to_string(),
        messages: vec![pb::Message {
            role: "user".into(),
            content: "Tell me a story.".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = client.stream_generate(request).await?.into_inner();
    while let Some(msg) = stream.message().await? {
        match msg.event {
            Some(PbEvent::Chunk(_)) => timer.chunk(),
            Some(PbEvent::Final(_)) => return Ok(timer),
            Some(_) | None => {}
        }
    }
    bail!("stream ended without a final event")
}

/// GuardStream: the bench reads the mock's stream itself and forwards each
/// content delta as a chunk, timing each one's way back.
async fn guard_stream(
    client: &mut GuardrailsClient<tonic::transport::Channel>,
    http: &reqwest::Client,
    (llm_url, body): (&str, &Value),
    config_id: &str,
) -> anyhow::Result<Timer> {
    use pb::{guard_stream_request::Event as In, guard_stream_response::Event as Out};
    let mut timer = Timer::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let start = pb::GuardStreamStart {
        config_id: config_id.to_string(),
        messages: vec![pb::Message {
            role: "user".into(),
            content: "Tell me a story.".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    tx.send(pb::GuardStreamRequest {
        event: Some(In::Start(start)),
    })
    .await?;
    let mut events = client
        .guard_stream(async_stream::stream! {
            while let Some(m) = rx.recv().await {
                yield m;
            }
        })
        .await?
        .into_inner();
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let forward = {
        let sent = sent.clone();
        async move {
            let response = http.post(llm_url).json(body).send().await?;
            let mut llm = sse::Events::new(
                response.bytes_stream().boxed(),
                sse::DEFAULT_MAX_EVENT_BYTES,
            );
            while let Some(event) = llm.next().await {
                let event = event?;
                if event == "[DONE]" {
                    break;
                }
                let v: Value = serde_json::from_str(&event)?;
                let Some(text) = v["choices"][0]["delta"]["content"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                else {
                    continue;
                };
                if let Ok(mut s) = sent.lock() {
                    s.push(Instant::now());
                }
                let chunk = pb::GuardStreamRequest {
                    event: Some(In::Chunk(pb::Chunk { text: text.into() })),
                };
                tx.send(chunk).await?;
            }
            anyhow::Ok(())
        }
    };
    let receive = async {
        while let Some(msg) = events.message().await? {
            match msg.event {
                Some(Out::Chunk(_)) => {
                    let at = sent
                        .lock()
                        .ok()
                        .and_then(|s| s.get(timer.chunks as usize).copied());
                    if let Some(at) = at {
                        timer.rounds.push(at.elapsed().as_micros() as u64);
                    }
                    timer.chunk();
                }
                Some(Out::Final(_)) => return anyhow::Ok(()),
                None => {}
            }
        }
        bail!("stream ended without a final event")
    };
    let (f, r) = tokio::join!(forward, receive);
    f?;
    r?;
    Ok(timer)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pids: Vec<(String, u32)> = args
        .pid
        .iter()
        .map(|p| {
            let (name, pid) = p.split_once('=').context("--pid takes NAME=PID")?;
            Ok((
                name.to_string(),
                pid.parse().context("--pid takes NAME=PID")?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let before: Vec<ProcStat> = pids
        .iter()
        .map(|(_, p)| proc_stat(*p).unwrap_or_default())
        .collect();

    let total = args.requests.unwrap_or(args.concurrency);
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let started_count = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let completed = Arc::new(AtomicUsize::new(0));
    let peak_rss: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; pids.len()]));

    // Sample RSS while the run goes on (VmHWM covers the whole process life).
    let sampler = {
        let pids = pids.clone();
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                for (i, (_, pid)) in pids.iter().enumerate() {
                    if let (Ok(s), Ok(mut p)) = (proc_stat(*pid), peak.lock()) {
                        p[i] = p[i].max(s.rss_kib);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let mut channels = Vec::new();
    if let Target::Grpc | Target::Guard = args.target {
        let n = args
            .concurrency
            .div_ceil(args.streams_per_connection.max(1));
        for _ in 0..n {
            let ch = tonic::transport::Endpoint::from_shared(args.url.clone())?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.url))?;
            channels.push(ch);
        }
    }
    let url = format!("{}/chat/completions", args.url.trim_end_matches('/'));
    let llm_url = format!(
        "{}/chat/completions",
        args.llm_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    );
    let llm_body = json!({"model": "mock", "stream": true,
        "messages": [{"role": "user", "content": "Tell me a story."}]});
    let body = match args.target {
        Target::Direct => json!({"model": "mock", "stream": true,
            "messages": [{"role": "system", "content": "You are a bench."}, {"role": "user", "content": "Tell me a story."}]}),
        _ => json!({"model": "bench", "stream": true, "guardrails": {"config_id": args.config_id},
            "messages": [{"role": "user", "content": "Tell me a story."}]}),
    };

    let run_started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let http = http.clone();
        let url = url.clone();
        let mut body = body.clone();
        let thread = args
            .thread_prefix
            .clone()
            .map(|p| (format!("{p}-{w:08}"), args.thread_turns.max(1)));
        let mut turn = 0usize;
        let samples = samples.clone();
        let started_count = started_count.clone();
        let completed = completed.clone();
        let target = args.target;
        let config_id = args.config_id.clone();
        let (llm_url, llm_body) = (llm_url.clone(), llm_body.clone());
        let mut grpc = channels
            .get(w / args.streams_per_connection.max(1))
            .cloned()
            .map(GuardrailsClient::new);
        workers.push(tokio::spawn(async move {
            loop {
                match deadline {
                    Some(d) if Instant::now() >= d => break,
                    None if started_count.fetch_add(1, Ordering::Relaxed) >= total => break,
                    _ => {}
                }
                let result = match (target, grpc.as_mut()) {
                    (Target::Grpc, Some(client)) => grpc_stream(client, &config_id).await,
                    (Target::Guard, Some(client)) => {
                        guard_stream(client, &http, (&llm_url, &llm_body), &config_id).await
                    }
                    (Target::Grpc | Target::Guard, None) => Err(anyhow::anyhow!("no gRPC channel")),
                    _ => {
                        if let Some((id, turns)) = &thread {
                            body["guardrails"]["thread_id"] =
                                json!(format!("{id}-{}", turn / turns));
                            turn += 1;
                        }
                        sse_stream(&http, &url, &body).await
                    }
                };
                match result {
                    Ok(timer) => {
                        timer.record(&samples);
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut s) = samples.lock() {
                            s.errors.push(format!("{e:#}"));
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = run_started.elapsed().as_secs_f64();
    sampler.abort();
    let after: Vec<ProcStat> = pids
        .iter()
        .map(|(_, p)| proc_stat(*p).unwrap_or_default())
        .collect();

    let mut s = std::mem::take(&mut *samples.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let done = completed.load(Ordering::Relaxed);
    let peaks = peak_rss
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let procs: Vec<Value> = pids
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            // Clock ticks are 1/100 s on Linux.
            let cpu = (after[i].cpu_ticks.saturating_sub(before[i].cpu_ticks)) as f64 / 100.0;
            json!({"name": name, "cpu_seconds": cpu, "rss_before_kib": before[i].rss_kib,
                   "rss_peak_kib": peaks[i].max(after[i].rss_kib), "hwm_kib": after[i].hwm_kib})
        })
        .collect();
    let result = json!({
        "label": args.label,
        "target": format!("{:?}", args.target).to_lowercase(),
        "concurrency": args.concurrency,
        "streams": done,
        "errors": s.errors.len(),
        "first_error": s.errors.first(),
        "seconds": elapsed,
        "streams_per_second": done as f64 / elapsed,
        "chunks": s.chunks,
        "chunks_per_second": s.chunks as f64 / elapsed,
        "ttft": summary(&mut s.ttft_us),
        "gap": summary(&mut s.gaps_us),
        "round_trip": summary(&mut s.round_us),
        "processes": procs,
    });
    println!("{result}");
    Ok(())
}
