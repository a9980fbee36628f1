//! Azure OpenAI: OpenAI's wire format at per-deployment URLs,
//! `{endpoint}/openai/deployments/{deployment}/{operation}?api-version=…`,
//! with the key in an `api-key` header. Its content filter ends a stream
//! with `finish_reason: content_filter` (read as such) and refuses prompts
//! with HTTP 400 `code: content_filter`, passed on like any upstream error.

use crate::config::OpenAiSettings;

/// Azure's current GA data-plane API version, used when neither the entry
/// nor `OPENAI_API_VERSION` names one.
pub(super) const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The URL of `operation` (`chat/completions`, `completions`, `embeddings`)
/// of the entry's deployment (its `azure_deployment`, else the model name).
pub(super) fn url(
    endpoint: &str,
    settings: &OpenAiSettings,
    model: &str,
    operation: &str,
) -> Result<String, String> {
    let endpoint = endpoint.trim_end_matches('/');
    // An endpoint given with its `/openai` suffix is taken as is.
    let endpoint = endpoint.strip_suffix("/openai").unwrap_or(endpoint);
    let deployment = settings.deployment.as_deref().unwrap_or(model);
    let version = settings
        .api_version
        .clone()
        .or_else(|| std::env::var("OPENAI_API_VERSION").ok())
        .unwrap_or_else(|| DEFAULT_API_VERSION.to_string());
    let mut url = reqwest::Url::parse(endpoint).map_err(|e| format!("`{endpoint}`: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("`{endpoint}` cannot have a path"))?
        .pop_if_empty()
        .extend(["openai", "deployments", deployment])
        .extend(operation.split('/'));
    url.query_pairs_mut().append_pair("api-version", &version);
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_urls_carry_the_api_version() {
        let s = OpenAiSettings {
            deployment: Some("gpt4o-prod".into()),
            api_version: Some("2024-06-01".into()),
            ..OpenAiSettings::default()
        };
        assert_eq!(
            url(
                "https://r.openai.azure.com/",
                &s,
                "gpt-4o",
                "chat/completions"
            )
            .unwrap(),
            "https://r.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
        );
        let s = OpenAiSettings {
            api_version: Some("v".into()),
            ..OpenAiSettings::default()
        };
        assert_eq!(
            url(
                "https://r.openai.azure.com/openai",
                &s,
                "gpt-4o",
                "embeddings"
            )
            .unwrap(),
            "https://r.openai.azure.com/openai/deployments/gpt-4o/embeddings?api-version=v"
        );
    }
}
