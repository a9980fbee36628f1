//! The streaming preconditions: when a config may serve a streaming request.

use std::path::PathBuf;

use crate::config::Config;

/// Which streaming precondition a config breaks, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreconditionFailure {
    /// Rule 1: the config does not enable streaming.
    #[error(
        "streaming precondition 1 (streaming enabled) failed: config `{id}` does not enable streaming. \
         Fix: add `streaming: True` to {}, or call Generate instead of StreamGenerate.",
        file.display()
    )]
    StreamingDisabled { id: String, file: PathBuf },
    /// Rule 2: the main model cannot stream.
    #[error(
        "streaming precondition 2 (main LLM can stream) failed: the main model `{model}` of config `{id}` \
         cannot stream (`{key}` in {} declares `streaming: false`). Fix: point the main model at an \
         endpoint that streams and remove `streaming: false` from `{key}`, or call Generate instead of StreamGenerate.",
        file.display()
    )]
    ModelCannotStream {
        id: String,
        model: String,
        file: PathBuf,
        key: String,
    },
    /// Rule 3: output rails without output-rail streaming.
    #[error(
        "streaming precondition 3 (no output rails unless output-rail streaming is enabled) failed: config `{id}` \
         has output rails ({flows}) but rails.output.streaming.enabled is False. Fix: set \
         `rails.output.streaming.enabled: True` in {} so output rails run on chunk windows, or call \
         Generate instead of StreamGenerate.",
        file.display()
    )]
    OutputRailsNotStreamable {
        id: String,
        flows: String,
        file: PathBuf,
    },
}

impl PreconditionFailure {
    /// The rule number (1, 2 or 3) this failure breaks.
    pub fn rule(&self) -> u8 {
        match self {
            PreconditionFailure::StreamingDisabled { .. } => 1,
            PreconditionFailure::ModelCannotStream { .. } => 2,
            PreconditionFailure::OutputRailsNotStreamable { .. } => 3,
        }
    }
}

/// Checks the three rules in order. `main_can_stream` is the provider's own
/// answer; `output_rails` says whether output rails will run on the request.
pub fn check(
    config: &Config,
    main_can_stream: bool,
    output_rails: bool,
) -> Result<(), PreconditionFailure> {
    if !config.streaming {
        return Err(PreconditionFailure::StreamingDisabled {
            id: config.id.clone(),
            file: config.main_file(),
        });
    }
    if !main_can_stream {
        let main = config.main_model();
        return Err(PreconditionFailure::ModelCannotStream {
            id: config.id.clone(),
            model: main.model.clone(),
            file: main.source.clone(),
            key: main.key.clone(),
        });
    }
    if output_rails && !config.output.flows.is_empty() && !config.output_streaming.enabled {
        let flows = config
            .output
            .flows
            .iter()
            .map(|f| format!("`{}`", f.name))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PreconditionFailure::OutputRailsNotStreamable {
            id: config.id.clone(),
            flows,
            file: config.main_file(),
        });
    }
    Ok(())
}
