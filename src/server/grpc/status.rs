//! Errors as `google.rpc.Status` with machine-readable details (AIP-193):
//! always an `ErrorInfo` (reason such as `CONFIG_NOT_FOUND` or
//! `STREAMING_PRECONDITION_FAILED`, domain `streamguard`, metadata with the
//! request id and what else is known), plus `BadRequest` field violations for
//! INVALID_ARGUMENT, a `PreconditionFailure` for the streaming rules and
//! `RetryInfo` when the upstream said how long to wait.

use std::collections::HashMap;

use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, echo};

/// The `ErrorInfo.domain` of every streamguard error.
pub const DOMAIN: &str = "streamguard";

/// `ErrorInfo.reason`: the error's JSON `code` in upper snake case
/// (`config_not_found` → `CONFIG_NOT_FOUND`), except for the streaming
/// rules, whose reason says which family failed.
fn reason(error: &Error) -> String {
    match error {
        Error::StreamingUnsupported(_) => "STREAMING_PRECONDITION_FAILED".into(),
        _ => error.kind().1.to_ascii_uppercase(),
    }
}

/// The gRPC status for `error`, with its details and the request id.
pub(super) fn status(error: &Error, rid: &str) -> Status {
    let mut details = ErrorDetails::new();
    let mut meta = HashMap::from([("request_id".to_string(), rid.to_string())]);
    match error {
        Error::ConfigNotFound { id, .. } => {
            meta.insert("config_id".into(), echo(id));
        }
        Error::InvalidRequest { field, message } => {
            details.add_bad_request_violation(*field, message);
        }
        Error::InvalidBody { param, message } => {
            details.add_bad_request_violation(param.as_deref().unwrap_or("body"), message);
        }
        Error::StreamingUnsupported(p) => {
            meta.insert("rule".into(), p.rule().to_string());
            meta.insert("config_id".into(), p.config_id().to_string());
            details.add_precondition_failure_violation(
                format!("STREAMING_RULE_{}", p.rule()),
                format!("config/{}", p.config_id()),
                p.to_string(),
            );
        }
        Error::Upstream(e) => {
            meta.insert("upstream_error".into(), e.kind().into());
            if let Some(model) = e.model() {
                meta.insert("model".into(), model.into());
            }
            if let crate::llm::LlmError::Status { status, .. } = e {
                meta.insert("upstream_status".into(), status.to_string());
            }
        }
        Error::Rail { rail, .. } => {
            meta.insert("rail".into(), rail.clone());
        }
        _ => {}
    }
    if let Some(delay) = error.retry_after() {
        details.set_retry_info(Some(delay));
    }
    details.set_error_info(reason(error), DOMAIN, meta);
    let mut s = Status::with_error_details(error.code(), error.to_string(), details);
    super::with_request_id(s.metadata_mut(), rid);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PreconditionFailure;

    #[test]
    fn every_status_carries_an_error_info_and_field_or_rule_details() {
        let s = status(&Error::invalid("messages", "must not be empty"), "rid-1");
        let d = s.get_error_details();
        let info = d.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_VALUE", DOMAIN)
        );
        assert_eq!(info.metadata["request_id"], "rid-1");
        let bad = d.bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "messages");

        let rule = Error::StreamingUnsupported(PreconditionFailure::StreamingDisabled {
            id: "bot".into(),
            file: "bot/config.yml".into(),
            explicit: false,
        });
        let d = status(&rule, "r").get_error_details();
        let info = d.error_info().unwrap();
        assert_eq!(info.reason, "STREAMING_PRECONDITION_FAILED");
        assert_eq!(
            (
                info.metadata["rule"].as_str(),
                info.metadata["config_id"].as_str()
            ),
            ("1", "bot")
        );
        let v = &d.precondition_failure().unwrap().violations[0];
        assert_eq!(
            (v.r#type.as_str(), v.subject.as_str()),
            ("STREAMING_RULE_1", "config/bot")
        );
        assert!(d.retry_info().is_none());
    }
}
