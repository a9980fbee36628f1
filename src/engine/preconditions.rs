//! The streaming preconditions: when a config may serve a streaming request.
//! The failure, with the rule and the fix, is [`PreconditionFailure`].

use crate::{config::Config, error::PreconditionFailure};

/// Checks the three rules in order. `streaming_default` is what a config
/// without a `streaming` key means (the server's `--streaming-default`);
/// `main_can_stream` is the answerer's own answer; `output_rails` says
/// whether output rails will run on the request.
pub fn check(
    config: &Config,
    streaming_default: bool,
    main_can_stream: bool,
    output_rails: bool,
) -> Result<(), PreconditionFailure> {
    if !config.streaming().unwrap_or(streaming_default) {
        return Err(PreconditionFailure::StreamingDisabled {
            id: config.id().to_string(),
            file: config.relative(&config.main_file()),
            explicit: config.streaming().is_some(),
        });
    }
    if !main_can_stream && let Some(main) = config.main_model() {
        return Err(PreconditionFailure::ModelCannotStream {
            id: config.id().to_string(),
            model: main.model().to_string(),
            file: config.relative(main.source()),
            key: main.key().to_string(),
        });
    }
    check_windows(config, output_rails)
}

/// Rule 3 alone: output rails on a stream need their chunk windows
/// (`rails.output.streaming.enabled`). A guarded stream of the caller's
/// (GuardStream) needs only this one.
pub fn check_windows(config: &Config, output_rails: bool) -> Result<(), PreconditionFailure> {
    let output = config.output();
    if output_rails && !output.flows.is_empty() && !config.output_streaming().enabled {
        let flows = output
            .flows
            .iter()
            .map(|f| format!("`{}`", f.name))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PreconditionFailure::OutputRailsNotStreamable {
            id: config.id().to_string(),
            flows,
            file: config.relative(&config.main_file()),
        });
    }
    Ok(())
}
