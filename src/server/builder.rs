//! The server as a library type: listeners taken already bound (so tests
//! serve on `127.0.0.1:0`), TLS, keys and limits in [`ServerSettings`],
//! reload, and one `run(shutdown)` that drains every listener alike.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use streamguard::server::Server;
//! let grpc = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
//! let server = Server::builder()
//!     .config_root("examples/configs")
//!     .grpc(grpc)
//!     .reload_on_sighup(true)
//!     .build()
//!     .await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::broadcast, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    ServeError, ServerEvent, ServerSettings, State, grpc, http, listen, metrics,
    reload::{self, ReloadHandle, Source},
};
use crate::{
    engine::{BuildSettings, Registry},
    llm::UpstreamSettings,
    rails::template::TemplateBudget,
};

/// How long past the shutdown grace the server waits for connections to
/// close after their calls were ended, before it stops regardless (a client
/// that stopped reading can hold a connection open forever).
const HARD_STOP_AFTER_GRACE: Duration = Duration::from_secs(5);

/// Where the configs come from.
enum Configs {
    Root(Source),
    Fixed(Registry),
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    configs: Option<Configs>,
    build: BuildSettings,
    default_id: Option<String>,
    settings: ServerSettings,
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
    metrics: Option<TcpListener>,
    sighup: bool,
    watch: bool,
}

/// A built server, ready to [`run`](Server::run).
pub struct Server {
    state: Arc<State>,
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
    metrics: Option<TcpListener>,
    source: Option<Source>,
    sighup: bool,
    watch: bool,
    /// Cancelled when shutdown begins; every listener and task stops on it.
    stop: CancellationToken,
    reload: Option<(ReloadHandle, JoinHandle<()>)>,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            configs: None,
            build: BuildSettings::default(),
            default_id: None,
            settings: ServerSettings::default(),
            grpc: None,
            http: None,
            metrics: None,
            sighup: false,
            watch: false,
        }
    }
}

impl ServerBuilder {
    /// Serve every config under this root (a config directory, or a
    /// directory of them); reloads read it again.
    pub fn config_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.configs = Some(Configs::Root(Source {
            root: root.into(),
            settings: BuildSettings::default(),
            default_id: None,
        }));
        self
    }

    /// Serve these already-built configs (no reload).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.configs = Some(Configs::Fixed(registry));
        self
    }

    /// Timeouts and retries for the configs' upstream LLMs.
    pub fn upstream(mut self, upstream: UpstreamSettings) -> Self {
        self.build.upstream = upstream;
        self
    }

    /// What a config without a `streaming` key means (`true`: it streams,
    /// as in NeMo ≥ 0.20).
    pub fn streaming_default(mut self, on: bool) -> Self {
        self.build.streaming_default = on;
        self
    }

    /// The main model of rails-only configs, and the engine of models
    /// requests name for them.
    pub fn main_model(
        mut self,
        main: Option<crate::config::ModelConfig>,
        request_model: Option<crate::config::ModelConfig>,
    ) -> Self {
        self.build.main_model = main;
        self.build.request_model = request_model;
        self
    }

    /// Serve a config's own main model whatever model a request names.
    pub fn pin_main_model(mut self, on: bool) -> Self {
        self.build.pin_main_model = on;
        self
    }

    /// NeMo's actions server for configs without their own `actions_server_url`.
    pub fn actions_server(mut self, url: Option<reqwest::Url>) -> Self {
        self.build.actions_server = url;
        self
    }

    /// The budget of one prompt-template render.
    pub fn templates(mut self, budget: TemplateBudget) -> Self {
        self.build.templates = budget;
        self
    }

    /// The config for requests that name none.
    pub fn default_config(mut self, id: Option<String>) -> Self {
        self.default_id = id;
        self
    }

    /// Limits, keys, TLS and the shutdown grace.
    pub fn settings(mut self, settings: ServerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Serve gRPC (`Guardrails`, health, reflection) on this listener.
    pub fn grpc(mut self, listener: TcpListener) -> Self {
        self.grpc = Some(listener);
        self
    }

    /// Serve the HTTP API on this listener.
    pub fn http(mut self, listener: TcpListener) -> Self {
        self.http = Some(listener);
        self
    }

    /// Serve Prometheus `/metrics` alone on this listener.
    pub fn metrics(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
    }

    /// Reload the configs on SIGHUP.
    pub fn reload_on_sighup(mut self, on: bool) -> Self {
        self.sighup = on;
        self
    }

    /// Reload the configs when files under the root change.
    pub fn watch(mut self, on: bool) -> Self {
        self.watch = on;
        self
    }

    /// Loads the configs (off the runtime's workers) and checks the setup.
    pub async fn build(self) -> Result<Server, ServeError> {
        // Before the configs are built: they resolve their metric handles then.
        metrics::install();
        if self.grpc.is_none() && self.http.is_none() {
            return Err(ServeError::Setup(
                "a server needs a gRPC or an HTTP listener".into(),
            ));
        }
        let (registry, source) = match self.configs {
            Some(Configs::Root(mut source)) => {
                source.settings = self.build;
                source.default_id = self.default_id;
                (source.load_off_runtime().await?, Some(source))
            }
            Some(Configs::Fixed(registry)) => (
                registry
                    .with_default(self.default_id)
                    .map_err(|e| ServeError::Setup(e.to_string()))?,
                None,
            ),
            None => return Err(ServeError::Setup("a server needs configs".into())),
        };
        if let Some(tls) = &self.settings.tls {
            tls.server_config().map_err(ServeError::Setup)?;
        }
        let state_key = super::state_token::StateKey::from_env().map_err(ServeError::Setup)?;
        if source.is_none() && (self.sighup || self.watch) {
            return Err(ServeError::Setup(
                "reload needs a config root (`config_root`), not a fixed registry".into(),
            ));
        }
        Ok(Server {
            state: State::with_key(registry, self.settings, state_key),
            grpc: self.grpc,
            http: self.http,
            metrics: self.metrics,
            source,
            sighup: self.sighup,
            watch: self.watch,
            stop: CancellationToken::new(),
            reload: None,
        })
    }
}

impl Server {
    /// The shared state (configs, admission, events).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics listener's address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The server's events from now on (reloads, drain).
    pub fn events(&self) -> broadcast::Receiver<ServerEvent> {
        self.state.subscribe()
    }

    /// A handle that reloads the configs of the running server (`None` when
    /// it serves a fixed registry). The reload task starts here.
    pub fn reload_handle(&mut self) -> Option<ReloadHandle> {
        if self.reload.is_none() {
            let source = self.source.clone()?;
            self.reload = Some(reload::spawn(self.state.clone(), source, self.stop.clone()));
        }
        self.reload.as_ref().map(|(h, _)| h.clone())
    }

    /// Serves until `shutdown` completes, then drains: every listener stops
    /// accepting, gRPC health turns NOT_SERVING, in-flight calls may finish
    /// within the shutdown grace and are ended after it.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        metrics::install();
        self.state.threads.announce();
        for g in self.state.registry().iter() {
            metrics::register_config(g.config().id());
        }
        let handle = self.reload_handle();
        let _watcher = match (&handle, &self.source) {
            (Some(h), Some(source)) if self.watch => {
                Some(reload::watch(&source.root, h.clone()).map_err(ServeError::Setup)?)
            }
            _ => None,
        };
        if let (Some(h), true) = (handle, self.sighup) {
            reload::on_sighup(h, self.stop.clone());
        }
        let stopped = {
            let stop = self.stop.clone();
            move || stop.clone().cancelled_owned()
        };
        let mut tasks: Vec<JoinHandle<Result<(), ServeError>>> = Vec::new();
        let connections = self.state.admission.settings.connections.clone();
        let gate = listen::Gate::new(connections.clone());
        if let Some(l) = self.http.take() {
            let serve = http::serve(l, self.state.clone(), gate.clone(), stopped());
            tasks.push(tokio::spawn(serve));
        }
        if let Some(l) = self.metrics.take() {
            let serve = metrics::serve(l, connections, stopped());
            tasks.push(tokio::spawn(async move {
                serve.await;
                Ok(())
            }));
        }
        if let Some(l) = self.grpc.take() {
            let serve = grpc::serve(l, self.state.clone(), gate, stopped());
            tasks.push(tokio::spawn(serve));
        }
        self.drain_after(shutdown);
        let result = self.join(tasks).await;
        self.stop.cancel();
        tracing::info!("stopped");
        result
    }

    /// On `shutdown`: stop accepting, then end what still runs after the grace.
    fn drain_after(&self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        let grace = state.admission.settings.shutdown_grace;
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                // A listener failed: the server is stopping anyway.
                () = stop.cancelled() => {}
            }
            tracing::info!("shutting down: draining in-flight requests");
            state.emit(ServerEvent::Draining);
            stop.cancel();
            tokio::time::sleep(grace).await;
            tracing::warn!(?grace, "shutdown grace passed: ending the remaining calls");
            state.abort_streams();
        });
    }

    /// Waits for every listener to finish draining; past the grace (plus a
    /// margin for connections to close) they are stopped regardless. The
    /// first listener that fails stops the others.
    async fn join(&self, tasks: Vec<JoinHandle<Result<(), ServeError>>>) -> Result<(), ServeError> {
        use futures_util::StreamExt;
        let mut pending: futures_util::stream::FuturesUnordered<_> = tasks.into_iter().collect();
        let hard_stop = {
            let (state, stop) = (self.state.clone(), self.stop.clone());
            async move {
                stop.cancelled().await;
                state.aborted().await;
                tokio::time::sleep(HARD_STOP_AFTER_GRACE).await;
            }
        };
        tokio::pin!(hard_stop);
        let mut failed = None;
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(Ok(Err(e))) => {
                        self.stop.cancel();
                        failed.get_or_insert(e);
                    }
                    Some(Err(e)) => {
                        self.stop.cancel();
                        failed.get_or_insert(ServeError::Setup(format!("a listener task failed: {e}")));
                    }
                },
                () = &mut hard_stop => {
                    tracing::warn!("connections still open after the grace: closing them");
                    for task in pending.iter() {
                        task.abort();
                    }
                    break;
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
