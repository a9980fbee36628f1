//! The command line: `serve`, `check`, `chat`. Thin: it parses arguments and
//! calls the library.

mod chat;
mod check;
mod defaults;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};

use std::time::Duration;

use crate::{
    llm::UpstreamSettings,
    rails::template::TemplateBudget,
    server::{
        ApiKeys, ConnectionSettings, Server, ServerSettings, http::BlockStyle, tls::TlsMaterial,
    },
};

/// Guardrails around streaming LLMs, for NeMo Guardrails configs.
#[derive(Debug, Parser)]
#[command(name = "streamguard", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "STREAMGUARD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configs over gRPC (Guardrails, health, reflection) and optionally HTTP.
    Serve(Box<ServeArgs>),
    /// Chat with a config, locally or through a running server.
    Chat {
        /// A config directory, or a directory of configs (then pick one with --config-id).
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        config: Option<PathBuf>,
        /// The config id (required with --server).
        #[arg(long)]
        config_id: Option<String>,
        /// A streamguard server, e.g. http://127.0.0.1:50051.
        #[arg(long, requires = "config_id")]
        server: Option<String>,
        /// Print chunks as they arrive.
        #[arg(long)]
        streaming: bool,
    },
    /// Validate every config under a directory; exits non-zero on errors.
    Check {
        /// A config directory, or a directory of config directories.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        defaults: defaults::DefaultsArgs,
    },
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BlockStyleArg {
    Nemo,
    Azure,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A config directory, or a directory of config directories.
    #[arg(long, env = "STREAMGUARD_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    defaults: defaults::DefaultsArgs,
    /// Address for gRPC.
    #[arg(long, default_value = "127.0.0.1:50051", env = "STREAMGUARD_GRPC_ADDR")]
    grpc_addr: SocketAddr,
    /// Also serve the HTTP API (NeMo endpoints, OpenAI-compatible) here.
    #[arg(long, env = "STREAMGUARD_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Config used when a request names none.
    #[arg(long)]
    default_config_id: Option<String>,
    /// Serve Prometheus `/metrics` here (it is also on the HTTP listener).
    #[arg(long, env = "STREAMGUARD_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for every listener; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// API keys file (YAML: keys: [{name, sha256, configs}]); without it, no authentication.
    #[arg(long, env = "STREAMGUARD_API_KEYS")]
    api_keys: Option<PathBuf>,
    /// Requests served at once; more are refused with RESOURCE_EXHAUSTED / 429.
    #[arg(long)]
    max_concurrent_requests: Option<usize>,
    /// Largest request, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_request_bytes: usize,
    /// Most messages in one request.
    #[arg(long, default_value_t = 512)]
    max_messages: usize,
    /// Longest message content, in bytes.
    #[arg(long, default_value_t = 256 << 10)]
    max_content_bytes: usize,
    /// Keep conversation threads in Redis (`redis://host:6379[/db]`,
    /// `rediss://` for TLS), shared by every replica; default: in memory.
    #[arg(long, env = "STREAMGUARD_DATASTORE", hide_env_values = true)]
    datastore: Option<String>,
    /// The CA (PEM) that signed a `rediss://` datastore's certificate, when the
    /// system's trust store does not have it.
    #[arg(long, requires = "datastore")]
    datastore_ca: Option<PathBuf>,
    /// Seconds an unused thread is kept.
    #[arg(long, default_value = "86400", value_parser = secs)]
    thread_ttl: Duration,
    /// Most message bytes one thread keeps (its oldest messages go first).
    #[arg(long, default_value_t = 256 << 10)]
    thread_max_bytes: usize,
    /// Most threads kept in memory (without --datastore; least recently used go first).
    #[arg(long, default_value_t = 10_000)]
    max_threads: usize,
    /// Serve the playground (a chat page that shows what the guard did) at
    /// /playground on the HTTP listener.
    #[arg(long)]
    playground: bool,
    /// Reload the configs when files under --config change (debounced).
    #[arg(long)]
    watch: bool,
    /// How an output-rail block ends an SSE stream: `nemo` (an error event)
    /// or `azure` (a last chunk with finish_reason content_filter); a request
    /// may choose with `guardrails.block_style`.
    #[arg(long, value_enum, default_value = "nemo")]
    block_style: BlockStyleArg,
    /// Allow browsers from this origin to call the HTTP API (CORS; repeat
    /// for more, `*` for any). Without it CORS is off.
    #[arg(long)]
    cors_origin: Vec<String>,
    /// Fuel (roughly, template instructions) one prompt-template render may use.
    #[arg(long, default_value_t = 200_000)]
    template_fuel: u64,
    /// Bytes one rendered prompt may have.
    #[arg(long, default_value_t = 1 << 20)]
    template_max_bytes: usize,
    /// Seconds in-flight streams may run after SIGTERM before they are ended.
    #[arg(long, default_value = "30", value_parser = secs)]
    shutdown_grace: Duration,
    /// Seconds to connect to an upstream LLM.
    #[arg(long, default_value = "10", value_parser = secs)]
    upstream_connect_timeout: Duration,
    /// Seconds until the upstream's first token.
    #[arg(long, default_value = "60", value_parser = secs)]
    first_token_timeout: Duration,
    /// Seconds allowed between two upstream tokens.
    #[arg(long, default_value = "60", value_parser = secs)]
    idle_timeout: Duration,
    /// Seconds for a whole upstream call.
    #[arg(long, default_value = "600", value_parser = secs)]
    request_timeout: Duration,
    /// Idle connections kept per upstream host (after a burst, the rest close).
    #[arg(long, default_value_t = 64)]
    upstream_pool_idle_per_host: usize,
    /// Seconds an idle upstream connection is kept.
    #[arg(long, default_value = "30", value_parser = secs)]
    upstream_pool_idle_timeout: Duration,
    /// The largest SSE event an upstream may send, in bytes; a larger one fails the call.
    #[arg(long, default_value_t = crate::llm::sse::DEFAULT_MAX_EVENT_BYTES)]
    max_sse_event_bytes: usize,
    /// Retries of upstream connection errors, 429 and 5xx before the first chunk.
    #[arg(long, default_value_t = 2)]
    upstream_retries: u32,
    #[command(flatten)]
    connections: ConnectionArgs,
}

/// Client connection bounds, for every listener.
#[derive(Debug, clap::Args)]
struct ConnectionArgs {
    /// Open client connections across the gRPC and HTTP listeners; more are
    /// closed at once [default: half the open-file limit, less 128].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a new connection has to send its first request (headers,
    /// or the HTTP/2 preface and headers).
    #[arg(long, default_value = "10", value_parser = secs)]
    header_read_timeout: Duration,
    /// Seconds a connection may serve no request before it is closed.
    #[arg(long, default_value = "75", value_parser = secs)]
    connection_idle_timeout: Duration,
    /// Seconds a TLS handshake may take.
    #[arg(long, default_value = "10", value_parser = secs)]
    tls_handshake_timeout: Duration,
    /// TLS handshakes in progress at once; more wait.
    #[arg(long, default_value_t = 256)]
    max_tls_handshakes: usize,
    /// Seconds between HTTP/2 pings to each client (0: none).
    #[arg(long, default_value = "30", value_parser = secs)]
    http2_keepalive_interval: Duration,
    /// Seconds to wait for a ping's answer before the connection is closed.
    #[arg(long, default_value = "10", value_parser = secs)]
    http2_keepalive_timeout: Duration,
}

impl ConnectionArgs {
    fn settings(&self) -> ConnectionSettings {
        ConnectionSettings {
            max_connections: self.max_connections,
            first_request_timeout: self.header_read_timeout,
            idle_timeout: self.connection_idle_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            max_tls_handshakes: self.max_tls_handshakes,
            http2_keepalive_interval: Some(self.http2_keepalive_interval).filter(|d| !d.is_zero()),
            http2_keepalive_timeout: self.http2_keepalive_timeout,
        }
    }
}

/// Runs the CLI and returns the process exit code.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    // The chat's terminal is for the conversation; only warnings go to it.
    let level = if matches!(cli.command, Command::Chat { .. }) {
        "warn"
    } else {
        "info"
    };
    init_tracing(level, cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Check { config, defaults } => return check::run(&config, &defaults),
        Command::Chat {
            config,
            config_id,
            server,
            streaming,
        } => chat(config, config_id, server, streaming).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_level: &str, format: LogFormat) {
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| default_level.to_string());
    // The HTTP/2 and HTTP stacks log headers at trace level; capping them
    // keeps `authorization` values out of logs whatever RUST_LOG says.
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{wanted},h2=info,hyper=info,hyper_util=info,reqwest=info,tonic=info,tower=info"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    let registry = registry.with(otlp::layer());
    let _ = registry.try_init();
}

/// OTLP span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (gRPC).
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::registry::LookupSpan;

    pub fn layer<S>() -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: OTLP exporter not started: {e}");
                return None;
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("streamguard")
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("streamguard");
        opentelemetry::global::set_tracer_provider(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }
}

async fn chat(
    config: Option<PathBuf>,
    config_id: Option<String>,
    server: Option<String>,
    streaming: bool,
) -> anyhow::Result<()> {
    let (backend, path) = match (server, config) {
        (Some(server), _) => {
            let id = config_id.unwrap_or_default();
            let path = format!("{id}` on `{server}");
            (chat::Backend::remote(server, id).await?, path)
        }
        (None, Some(dir)) => chat::Backend::local(dir, config_id)?,
        (None, None) => anyhow::bail!("give --config DIR or --server URL"),
    };
    chat::run(backend, path, streaming).await
}

/// Keys, TLS, limits and connection bounds from the flags.
/// `--datastore` (and `--datastore-ca`): where threads are kept.
fn datastore(args: &ServeArgs) -> anyhow::Result<Option<crate::server::Datastore>> {
    let Some(url) = &args.datastore else {
        return Ok(None);
    };
    let ca = match &args.datastore_ca {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading --datastore-ca {}", path.display()))?,
        ),
        None => None,
    };
    crate::server::Datastore::redis_with_ca(url, ca)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--datastore: {e}"))
}

fn server_settings(args: &ServeArgs) -> anyhow::Result<ServerSettings> {
    let api_keys = match &args.api_keys {
        Some(path) => Some(Arc::new(ApiKeys::load(path)?)),
        None => {
            tracing::warn!("no --api-keys: requests are not authenticated");
            None
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(TlsMaterial::load(cert, key, args.tls_client_ca.as_deref())?)
        }
        _ => None,
    };
    Ok(ServerSettings {
        playground: args.playground,
        threads: crate::server::ThreadSettings {
            datastore: datastore(args)?,
            ttl: args.thread_ttl,
            max_threads: args.max_threads,
            max_bytes: args.thread_max_bytes,
        },
        tls,
        max_concurrent_requests: args.max_concurrent_requests,
        max_request_bytes: args.max_request_bytes,
        max_messages: args.max_messages,
        max_content_bytes: args.max_content_bytes,
        api_keys,
        shutdown_grace: args.shutdown_grace,
        block_style: match args.block_style {
            BlockStyleArg::Nemo => BlockStyle::Nemo,
            BlockStyleArg::Azure => BlockStyle::Azure,
        },
        cors_origins: args.cors_origin.clone(),
        connections: args.connections.settings(),
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    crate::server::raise_fd_limit();
    let upstream = UpstreamSettings {
        connect_timeout: args.upstream_connect_timeout,
        first_token_timeout: args.first_token_timeout,
        idle_timeout: args.idle_timeout,
        request_timeout: args.request_timeout,
        retries: args.upstream_retries,
        max_event_bytes: args.max_sse_event_bytes,
        pool_max_idle_per_host: args.upstream_pool_idle_per_host,
        pool_idle_timeout: args.upstream_pool_idle_timeout,
    };
    let settings = server_settings(&args)?;
    tracing::info!(
        max_connections = settings.connections.connection_limit(),
        "connection limit"
    );
    let bind = |addr: SocketAddr, what: &'static str| async move {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {what} address {addr}"))?;
        tracing::info!(addr = %l.local_addr()?, "{what} listening");
        anyhow::Ok(l)
    };
    let defaults = args.defaults.resolve()?;
    let mut builder = Server::builder()
        .config_root(&args.config)
        .upstream(upstream)
        .streaming_default(defaults.streaming)
        .main_model(defaults.main_model, defaults.request_model)
        .pin_main_model(defaults.pin_main_model)
        .actions_server(defaults.actions_server)
        .templates(TemplateBudget {
            fuel: args.template_fuel,
            max_output_bytes: args.template_max_bytes,
        })
        .default_config(args.default_config_id.clone())
        .settings(settings)
        .reload_on_sighup(true)
        .watch(args.watch)
        .grpc(bind(args.grpc_addr, "gRPC").await?);
    if let Some(addr) = args.http_addr {
        let l = bind(addr, "HTTP").await?;
        if args.playground {
            tracing::info!(url = %format!("http://{}/playground", l.local_addr()?), "playground");
        }
        builder = builder.http(l);
    }
    if let Some(addr) = args.metrics_addr {
        builder = builder.metrics(bind(addr, "metrics").await?);
    }
    let server = builder
        .build()
        .await
        .with_context(|| format!("loading configs from {}", args.config.display()))?;
    let registry = server.state().registry();
    for g in registry.iter() {
        for w in g.warnings() {
            tracing::warn!(config = %g.config().id(), "{w}");
        }
    }
    let ids: Vec<&str> = registry.iter().map(|g| g.config().id()).collect();
    tracing::info!(configs = ?ids, default = ?registry.default_id(), "configs loaded");
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
