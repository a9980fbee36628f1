//! The `engine` of a model entry: which provider serves it, and the NeMo
//! engines streamguard refuses with what to run instead.

/// Which provider serves a model entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// OpenAI's API or any OpenAI-compatible endpoint via `parameters.base_url`.
    OpenAi,
    /// NVIDIA NIM (`nim`, `nvidia_ai_endpoints`), OpenAI-compatible; `/v1`
    /// is added to a `base_url` without it, as NVIDIA's client does.
    Nim,
    /// vLLM's OpenAI-compatible server; needs `parameters.base_url`.
    VllmOpenAi,
    /// Azure OpenAI (`azure`, `azure_openai`, `AzureOpenAI`): deployment URLs,
    /// `api-version`, the `api-key` header.
    Azure,
    /// DeepSeek's OpenAI-compatible API.
    DeepSeek,
    /// A Hugging Face Text Generation Inference endpoint (its OpenAI-compatible
    /// Messages API under `/v1`).
    HuggingFaceEndpoint,
    /// Ollama's OpenAI-compatible API (`http://localhost:11434/v1`).
    Ollama,
    /// Anthropic's Messages API.
    Anthropic,
    /// An embeddings engine streamguard has no client for (`FastEmbed`,
    /// `SentenceTransformers`, `cohere`, `google`): the dialog ranks its
    /// examples lexically (BM25) instead.
    LocalEmbeddings,
    /// streamguard's in-process scripted model, for demos and tests.
    Scripted,
}

impl EngineKind {
    /// Engine names accepted in `models[].engine`.
    pub const NAMES: &'static [&'static str] = &[
        "openai",
        "nim",
        "nvidia_ai_endpoints",
        "vllm_openai",
        "azure",
        "azure_openai",
        "deepseek",
        "huggingface_endpoint",
        "ollama",
        "anthropic",
        "scripted",
    ];

    /// Embeddings engines accepted without a client (see [`EngineKind::LocalEmbeddings`]).
    pub const LOCAL_EMBEDDINGS: &'static [&'static str] =
        &["FastEmbed", "SentenceTransformers", "cohere", "google"];

    pub(super) fn parse(name: &str, embeddings: bool) -> Option<Self> {
        Some(match name {
            "openai" => EngineKind::OpenAi,
            "nim" | "nvidia_ai_endpoints" => EngineKind::Nim,
            "vllm_openai" => EngineKind::VllmOpenAi,
            "azure" | "azure_openai" | "AzureOpenAI" => EngineKind::Azure,
            "deepseek" => EngineKind::DeepSeek,
            "huggingface_endpoint" => EngineKind::HuggingFaceEndpoint,
            "ollama" => EngineKind::Ollama,
            "anthropic" => EngineKind::Anthropic,
            "scripted" => EngineKind::Scripted,
            n if embeddings && Self::LOCAL_EMBEDDINGS.contains(&n) => EngineKind::LocalEmbeddings,
            _ => return None,
        })
    }

    /// The engine's canonical name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::OpenAi => "openai",
            EngineKind::Nim => "nim",
            EngineKind::VllmOpenAi => "vllm_openai",
            EngineKind::Azure => "azure",
            EngineKind::DeepSeek => "deepseek",
            EngineKind::HuggingFaceEndpoint => "huggingface_endpoint",
            EngineKind::Ollama => "ollama",
            EngineKind::Anthropic => "anthropic",
            EngineKind::LocalEmbeddings => "local embeddings",
            EngineKind::Scripted => "scripted",
        }
    }

    /// Whether the engine speaks OpenAI's wire format.
    pub fn openai_compatible(self) -> bool {
        !matches!(
            self,
            EngineKind::Anthropic | EngineKind::Scripted | EngineKind::LocalEmbeddings
        )
    }
}

/// What to do instead, for a NeMo engine that runs in NeMo's own process or
/// needs a vendor SDK streamguard does not have.
pub(super) fn refusal(name: &str) -> Option<&'static str> {
    Some(match name {
        "vertexai" | "google_vertexai" => {
            "Vertex AI is not called natively; use Vertex AI's OpenAI-compatible endpoint (or a gateway such as LiteLLM) with `engine: openai` and `parameters.base_url`"
        }
        n if n.starts_with("hf_pipeline") => {
            "in-process Hugging Face pipelines do not run in streamguard; serve the model with vLLM (`engine: vllm_openai`) or Text Generation Inference (`engine: huggingface_endpoint`)"
        }
        "custom_llm" | "tabular" | "trt_llm" | "fake" => {
            "LLM providers registered in Python (config.py) do not run in streamguard; serve the model behind an OpenAI-compatible server and use `engine: openai` with `parameters.base_url`"
        }
        "huggingface_hub" | "huggingface_pipeline" => {
            "serve the model with Text Generation Inference and use `engine: huggingface_endpoint`"
        }
        _ => return None,
    })
}
