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

/// The text exposition of every metric.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "streamguard_requests_total",
        "Requests by config, method and status code."
    );
    describe_counter!(
        "streamguard_requests_blocked_total",
        "Requests a rail blocked, by config, method and stage (also counted in streamguard_requests_total)."
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
pub fn blocked(config: &str, method: &'static str, stage: crate::rails::Stage) {
    metrics::counter!("streamguard_requests_blocked_total", "config" => config.to_string(), "method" => method, "stage" => stage.as_str())
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
pub fn request(config: &str, method: &'static str, code: impl Into<String>) {
    metrics::counter!("streamguard_requests_total", "config" => config.to_string(), "method" => method, "code" => code.into())
        .increment(1);
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
