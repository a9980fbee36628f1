//! Where each OpenAI-compatible engine lives by default, and how its
//! `base_url` is completed: the engines NeMo reaches through vendor clients
//! that all speak `/v1/chat/completions` (NVIDIA NIM, DeepSeek, Hugging Face
//! TGI, Ollama, vLLM, OpenAI itself).

use crate::config::EngineKind;

/// An engine's default endpoint and API key variable.
pub(super) struct Defaults {
    /// The base URL when the entry names none (`None`: it must name one).
    pub base: Option<String>,
    /// The env var holding the key (`None`: no key is sent by default).
    pub key_var: Option<&'static str>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The defaults of `engine` (environment variables as each vendor's client reads them).
pub(super) fn defaults(engine: EngineKind) -> Defaults {
    let (base, key_var) = match engine {
        // OpenAI SDKs' convention: OPENAI_BASE_URL redirects entries that
        // name no endpoint, so NeMo configs run unchanged against any
        // OpenAI-compatible server.
        EngineKind::OpenAi | EngineKind::Scripted | EngineKind::LocalEmbeddings => (
            Some(env("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".into())),
            Some("OPENAI_API_KEY"),
        ),
        EngineKind::Nim => (
            Some(
                env("NVIDIA_BASE_URL")
                    .unwrap_or_else(|| "https://integrate.api.nvidia.com/v1".into()),
            ),
            Some("NVIDIA_API_KEY"),
        ),
        EngineKind::DeepSeek => (
            Some(env("DEEPSEEK_API_BASE").unwrap_or_else(|| "https://api.deepseek.com/v1".into())),
            Some("DEEPSEEK_API_KEY"),
        ),
        EngineKind::Ollama => (Some(ollama_base()), None),
        EngineKind::HuggingFaceEndpoint => (None, Some("HUGGINGFACEHUB_API_TOKEN")),
        EngineKind::Azure => (env("AZURE_OPENAI_ENDPOINT"), Some("AZURE_OPENAI_API_KEY")),
        EngineKind::Anthropic => (
            Some(
                env("ANTHROPIC_BASE_URL")
                    .or_else(|| env("ANTHROPIC_API_URL"))
                    .unwrap_or_else(|| "https://api.anthropic.com".into()),
            ),
            Some("ANTHROPIC_API_KEY"),
        ),
        EngineKind::VllmOpenAi => (None, None),
    };
    Defaults { base, key_var }
}

/// Ollama's server: `OLLAMA_HOST` (`host:port`, with or without a scheme)
/// as Ollama's own clients read it, else `http://localhost:11434`.
fn ollama_base() -> String {
    match env("OLLAMA_HOST") {
        Some(h) if h.starts_with("http://") || h.starts_with("https://") => h,
        Some(h) => format!("http://{h}"),
        None => "http://localhost:11434".into(),
    }
}

/// The base URL the engine's requests are made under (`…/v1`): NVIDIA's
/// client appends `/v1` to a `base_url` whose path does not end with it,
/// and TGI and Ollama serve their OpenAI-compatible APIs under `/v1`.
pub(super) fn complete_base(engine: EngineKind, base: &str) -> String {
    let base = base.trim_end_matches('/');
    let adds_v1 = matches!(
        engine,
        EngineKind::Nim | EngineKind::HuggingFaceEndpoint | EngineKind::Ollama
    );
    if adds_v1 && !base.ends_with("/v1") {
        format!("{base}/v1")
    } else {
        base.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nim_tgi_and_ollama_bases_get_v1_once() {
        assert_eq!(
            complete_base(EngineKind::Nim, "http://localhost:8000"),
            "http://localhost:8000/v1"
        );
        assert_eq!(
            complete_base(EngineKind::Nim, "http://localhost:8000/v1/"),
            "http://localhost:8000/v1"
        );
        assert_eq!(
            complete_base(EngineKind::HuggingFaceEndpoint, "http://tgi:80/"),
            "http://tgi:80/v1"
        );
        assert_eq!(
            complete_base(EngineKind::OpenAi, "http://proxy/openai"),
            "http://proxy/openai"
        );
    }
}
