//! Prometheus metrics: one process-wide recorder (the `metrics` facade),
//! rendered at `/metrics`. Counters and histograms are atomics: recording
//! never takes a lock on the per-chunk path, where handles are resolved once
//! per stream.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed");
                    None
                }
            }
        })
        .clone()
}

/// The text exposition of every metric; the process metrics are read now.
pub fn render() -> String {
    let Some(handle) = install() else {
        return String::new();
    };
    process().collect();
    handle.render()
}

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_threads`,
/// `process_start_time_seconds` (the Prometheus client conventions).
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The `code` label of a gRPC outcome: the canonical name (`OK`,
/// `CANCELLED`, `DEADLINE_EXCEEDED` …), as gRPC's own metrics spell it.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The `method` label of each call, as the transports name their calls.
pub(crate) const GENERATE: &str = "Generate";
pub(crate) const STREAM_GENERATE: &str = "StreamGenerate";
pub(crate) const CHECK: &str = "Check";
pub(crate) const GUARD_STREAM: &str = "GuardStream";
pub(crate) const HTTP_CHAT_COMPLETIONS: &str = "http_chat_completions";
pub(crate) const HTTP_GUARDRAIL_CHECKS: &str = "http_guardrail_checks";

/// Every method of each transport, with its success code.
const METHODS: [(&str, &str, &str); 6] = [
    ("grpc", GENERATE, "OK"),
    ("grpc", STREAM_GENERATE, "OK"),
    ("grpc", CHECK, "OK"),
    ("grpc", GUARD_STREAM, "OK"),
    ("http", HTTP_CHAT_COMPLETIONS, "200"),
    ("http", HTTP_GUARDRAIL_CHECKS, "200"),
];

/// Registers a config's series at zero, so dashboards and `rate()` see them
/// before the first request (and an alert on an absent series means one).
pub fn register_config(config: &str) {
    for (transport, method, ok) in METHODS {
        let labels = [
            ("transport", transport.to_string()),
            ("config", config.to_string()),
            ("method", method.to_string()),
        ];
        let mut with_code = labels.to_vec();
        with_code.push(("code", ok.to_string()));
        metrics::counter!("streamguard_requests_total", &with_code).increment(0);
        for stage in ["input", "output"] {
            let mut with_stage = labels.to_vec();
            with_stage.push(("stage", stage.to_string()));
            metrics::counter!("streamguard_requests_blocked_total", &with_stage).increment(0);
        }
    }
    metrics::counter!("streamguard_config_reloads_total", "config" => config.to_string(), "result" => "ok")
        .increment(0);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    process().describe();
    describe_gauge!(
        "streamguard_build_info",
        "1, labelled with the running build's version."
    );
    metrics::gauge!("streamguard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        "streamguard_requests_total",
        "Requests by transport, config, method and code (gRPC: canonical code names; HTTP: status numbers)."
    );
    describe_counter!(
        "streamguard_requests_blocked_total",
        "Requests a rail blocked, by transport, config, method and stage (also counted in streamguard_requests_total)."
    );
    describe_histogram!(
        "streamguard_stream_duration_seconds",
        "A streaming call from admission to its end (final event, error or cancel), by transport and config."
    );
    describe_counter!(
        "streamguard_connections_total",
        "Client connections accepted, by listener."
    );
    describe_gauge!(
        "streamguard_connections_open",
        "Client connections open now, by listener."
    );
    describe_counter!(
        "streamguard_connections_closed_total",
        "Client connections closed, by listener and reason (client, idle, first_request_timeout, shutdown, tls_handshake, error)."
    );
    describe_counter!(
        "streamguard_connections_refused_total",
        "Connections closed at once because the connection limit was reached, by listener."
    );
    describe_counter!(
        "streamguard_tls_handshake_failures_total",
        "TLS handshakes that failed, by listener and reason (timeout, error)."
    );
    describe_gauge!("streamguard_streams_in_flight", "Streams being served now.");
    describe_histogram!(
        "streamguard_time_to_first_chunk_seconds",
        "Request received to first chunk sent, as the caller saw it."
    );
    describe_histogram!(
        "streamguard_added_first_chunk_seconds",
        "What streamguard added to time to first chunk: total minus the upstream's time to first token."
    );
    describe_histogram!(
        "streamguard_upstream_first_token_seconds",
        "Upstream LLM call to its first token."
    );
    describe_counter!("streamguard_chunks_total", "Chunks relayed to callers.");
    describe_counter!(
        "streamguard_tokens_total",
        "Completion tokens reported by upstream LLMs."
    );
    describe_counter!(
        "streamguard_rail_runs_total",
        "Rail runs by rail and decision."
    );
    describe_histogram!(
        "streamguard_rail_duration_seconds",
        "Rail run time by rail."
    );
    describe_counter!(
        "streamguard_upstream_errors_total",
        "Upstream LLM errors by kind."
    );
    describe_counter!(
        "streamguard_config_reloads_total",
        "Config reloads by result."
    );
}

/// Counts a request a rail blocked.
pub fn blocked(
    transport: &'static str,
    config: &str,
    method: &'static str,
    stage: crate::rails::Stage,
) {
    metrics::counter!("streamguard_requests_blocked_total", "transport" => transport, "config" => config.to_string(), "method" => method, "stage" => stage.as_str())
        .increment(1);
}

/// The in-flight gauge, resolved once (after the recorder is installed).
fn in_flight() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| {
        install();
        metrics::gauge!("streamguard_streams_in_flight")
    })
}

/// A response stream started.
pub fn stream_started() {
    in_flight().increment(1.0);
}

/// A response stream ended (finished, failed or dropped).
pub fn stream_ended() {
    in_flight().decrement(1.0);
}

/// Counts a finished request.
pub fn request(transport: &'static str, config: &str, method: &'static str, code: &'static str) {
    metrics::counter!("streamguard_requests_total", "transport" => transport, "config" => config.to_string(), "method" => method, "code" => code)
        .increment(1);
}

/// Records how long a streaming call lasted.
pub fn stream_duration(transport: &'static str, config: &str, seconds: f64) {
    metrics::histogram!("streamguard_stream_duration_seconds", "transport" => transport, "config" => config.to_string())
        .record(seconds);
}

/// Serves `/metrics` alone on `listener` (for `--metrics-addr`), with its
/// own connection slots so a flood on the API listeners cannot starve it.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    settings: super::listen::ConnectionSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    install();
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { render() }));
    let served = super::listen::Listener {
        name: "metrics",
        service: app,
        tls: None,
        gate: super::listen::Gate::with_limit(METRICS_CONNECTIONS, settings),
    };
    super::listen::serve(listener, served, shutdown).await;
}

/// Connections the metrics listener serves at once (scrapers and probes).
const METRICS_CONNECTIONS: usize = 64;
