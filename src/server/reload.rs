//! Hot reload: SIGHUP, file changes (`--watch`, debounced) and
//! [`ReloadHandle::reload`] all ask one task to reload the config root. The
//! files are read and the rails compiled on a blocking thread, off the
//! runtime's workers; a broken edit is logged, counted and reported, and
//! the previous configs keep serving.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ServerEvent, State};
use crate::{
    config::ConfigError,
    engine::{BuildSettings, Registry},
};

/// Where the configs of a reloadable server come from.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub root: PathBuf,
    pub settings: BuildSettings,
    pub default_id: Option<String>,
}

impl Source {
    /// Reads and builds every config (blocking: file reads, regex compiles).
    pub fn load(&self) -> Result<Registry, ConfigError> {
        let registry = Registry::load_with(&self.root, &self.settings)?;
        registry
            .with_default(self.default_id.clone())
            .map_err(|e| ConfigError::invalid(&self.root, "--default-config-id", e.to_string()))
    }

    /// Reloads config by config against `current` (see [`Registry::reload`]),
    /// on a blocking thread.
    pub async fn reload_off_runtime(
        &self,
        current: Arc<Registry>,
    ) -> Result<(Registry, Vec<(String, ConfigError)>), ConfigError> {
        let source = self.clone();
        let work = move || current.reload(&source.root, &source.settings);
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result,
            Err(e) => Err(ConfigError::invalid(
                &self.root,
                "--config",
                format!("reloading the configs did not finish: {e}"),
            )),
        }
    }

    /// [`Source::load`] on a blocking thread.
    pub async fn load_off_runtime(&self) -> Result<Registry, ConfigError> {
        let source = self.clone();
        match tokio::task::spawn_blocking(move || source.load()).await {
            Ok(result) => result,
            Err(e) => Err(ConfigError::invalid(
                &self.root,
                "--config",
                format!("loading the configs did not finish: {e}"),
            )),
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// `SIGHUP`, `watch` or `request`.
    pub trigger: &'static str,
    /// The config ids now served.
    pub configs: Vec<String>,
    /// The configs that failed to load, with the error: each keeps serving
    /// its previous version (a new one is not served).
    pub failed: Vec<(String, String)>,
}

type Reply = oneshot::Sender<Result<ReloadReport, String>>;

/// Asks the running server to reload its configs.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<(&'static str, Option<Reply>)>,
}

impl ReloadHandle {
    /// Reloads now and returns what is served afterwards, or why the reload
    /// failed (the previous configs keep serving).
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(("request", Some(tx)))
            .await
            .map_err(|_| "the server has stopped".to_string())?;
        rx.await
            .map_err(|_| "the server stopped before reloading".to_string())?
    }

    /// Asks for a reload without waiting (signals, the watcher); dropped
    /// when one is already queued.
    fn nudge(&self, trigger: &'static str) {
        let _ = self.tx.try_send((trigger, None));
    }
}

/// The reload task and its handle.
pub(super) fn spawn(
    state: Arc<State>,
    source: Source,
    stop: CancellationToken,
) -> (ReloadHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<(&'static str, Option<Reply>)>(4);
    let task = tokio::spawn(async move {
        loop {
            let (trigger, reply) = tokio::select! {
                Some(next) = rx.recv() => next,
                () = stop.cancelled() => return,
            };
            let outcome = reload_once(&state, &source, trigger).await;
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    });
    (ReloadHandle { tx }, task)
}

async fn reload_once(
    state: &State,
    source: &Source,
    trigger: &'static str,
) -> Result<ReloadReport, String> {
    let (registry, failed) = match source.reload_off_runtime(state.registry()).await {
        Ok(r) => r,
        Err(e) => {
            metrics::counter!("streamguard_config_reloads_total", "config" => "", "result" => "failed")
                .increment(1);
            tracing::error!(
                trigger,
                "config reload failed, still serving the previous configs: {e:#}"
            );
            let error = e.to_string();
            state.emit(ServerEvent::ReloadFailed {
                trigger,
                error: error.clone(),
            });
            return Err(error);
        }
    };
    let configs: Vec<String> = registry
        .iter()
        .map(|g| g.config().id().to_string())
        .collect();
    state.replace_registry(registry);
    let failed: Vec<(String, String)> = failed
        .into_iter()
        .map(|(id, e)| (id, e.to_string()))
        .collect();
    for id in &configs {
        super::metrics::register_config(id);
        let result = if failed.iter().any(|(f, _)| f == id) {
            "failed"
        } else {
            "ok"
        };
        metrics::counter!("streamguard_config_reloads_total", "config" => id.clone(), "result" => result)
            .increment(1);
    }
    for (id, error) in &failed {
        if !configs.contains(id) {
            metrics::counter!("streamguard_config_reloads_total", "config" => id.clone(), "result" => "failed")
                .increment(1);
        }
        tracing::error!(config = %id, trigger, "config reload failed, still serving the previous version (if any): {error}");
    }
    tracing::info!(configs = ?configs, trigger, "configs reloaded");
    let report = ReloadReport {
        trigger,
        configs,
        failed,
    };
    if !report.failed.is_empty() {
        let error = report
            .failed
            .iter()
            .map(|(id, e)| format!("{id}: {e}"))
            .collect::<Vec<_>>()
            .join("\n");
        state.emit(ServerEvent::ReloadFailed { trigger, error });
    }
    state.emit(ServerEvent::Reloaded(report.clone()));
    Ok(report)
}

/// Reloads on SIGHUP until `stop`.
pub(super) fn on_sighup(handle: ReloadHandle, stop: CancellationToken) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by restarting");
            return;
        };
        loop {
            tokio::select! {
                got = hup.recv() => match got {
                    Some(()) => handle.nudge("SIGHUP"),
                    None => return,
                },
                () = stop.cancelled() => return,
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (handle, stop);
}

/// The file watcher, kept alive for as long as the server runs.
pub(super) type Watcher =
    notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>;

/// Watches the config root; changes (debounced) request a reload.
pub(super) fn watch(root: &std::path::Path, handle: ReloadHandle) -> Result<Watcher, String> {
    use notify_debouncer_mini::{DebounceEventResult, new_debouncer, notify::RecursiveMode};
    let mut debouncer = new_debouncer(
        Duration::from_millis(300),
        move |events: DebounceEventResult| {
            if events.is_ok() {
                handle.nudge("watch");
            }
        },
    )
    .map_err(|e| format!("starting the file watcher: {e}"))?;
    debouncer
        .watcher()
        .watch(root, RecursiveMode::Recursive)
        .map_err(|e| format!("watching {}: {e}", root.display()))?;
    tracing::info!(root = %root.display(), "watching configs for changes");
    Ok(debouncer)
}
