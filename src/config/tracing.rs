//! `tracing`: NeMo's interaction traces. The `FileSystem` adapter appends
//! one JSON line per request to `filepath`; the `OpenTelemetry` adapter is
//! streamguard's own OTLP export (the `otlp` build, with
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), which already carries a span per request.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// NeMo's default trace file.
pub const DEFAULT_TRACE_FILE: &str = "./.traces/trace.jsonl";

/// A validated `tracing` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracingConfig {
    /// The file of the `FileSystem` adapter, when it is on.
    pub file: Option<PathBuf>,
    /// The `OpenTelemetry` adapter is on.
    pub opentelemetry: bool,
    /// `span_format: legacy` (else NeMo's default `opentelemetry`).
    pub legacy: bool,
    /// `enable_content_capture`: prompts and completions go into the spans.
    pub content: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    enabled: bool,
    adapters: Option<Vec<RawAdapter>>,
    span_format: Option<String>,
    #[serde(default)]
    enable_content_capture: bool,
}

#[derive(Deserialize)]
struct RawAdapter {
    name: String,
    filepath: Option<String>,
    /// Other adapter settings NeMo passes to the adapter (e.g. `service_name`).
    #[serde(flatten)]
    _rest: serde_yaml::Mapping,
}

impl TracingConfig {
    /// `tracing` of `file`; `None` when absent or disabled.
    pub(super) fn parse(
        value: serde_yaml::Value,
        file: &Path,
    ) -> Result<Option<Self>, ConfigError> {
        let raw: Raw = serde_yaml::from_value(value)
            .map_err(|e| ConfigError::invalid(file, "tracing", e.to_string()))?;
        if !raw.enabled {
            return Ok(None);
        }
        let legacy = match raw.span_format.as_deref() {
            None | Some("opentelemetry") => false,
            Some("legacy") => true,
            Some(other) => {
                return Err(ConfigError::invalid(
                    file,
                    "tracing.span_format",
                    format!("`{other}` is not `opentelemetry` or `legacy`"),
                ));
            }
        };
        let mut out = TracingConfig {
            legacy,
            content: raw.enable_content_capture,
            ..TracingConfig::default()
        };
        let adapters = raw.adapters.unwrap_or_else(|| {
            vec![RawAdapter {
                name: "FileSystem".into(),
                filepath: None,
                _rest: serde_yaml::Mapping::new(),
            }]
        });
        for (i, a) in adapters.into_iter().enumerate() {
            match a.name.as_str() {
                "FileSystem" => {
                    out.file = Some(PathBuf::from(
                        a.filepath.as_deref().unwrap_or(DEFAULT_TRACE_FILE),
                    ))
                }
                "OpenTelemetry" => out.opentelemetry = true,
                other => {
                    return Err(ConfigError::invalid(
                        file,
                        format!("tracing.adapters[{i}].name"),
                        format!(
                            "unknown adapter `{other}`; streamguard has FileSystem and OpenTelemetry"
                        ),
                    ));
                }
            }
        }
        Ok(Some(out))
    }
}
