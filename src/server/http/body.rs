//! The chat-completions request body, in NeMo's shape (`config_id`,
//! `messages`, `options`) or OpenAI's (`model`, `messages`, `temperature`, …,
//! with `guardrails: {"config_id": …}` through the SDKs' `extra_body`).

use serde::Deserialize;
use serde_json::Value;

use crate::{
    engine::{self, Registry},
    error::Error,
    llm::{CallParams, ChatMessage},
    server::state_token::{self, Resume, StateKey},
};

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
enum StopField {
    One(String),
    Many(Vec<String>),
}

impl StopField {
    fn list(s: Option<StopField>) -> Vec<String> {
        match s {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s],
            Some(StopField::Many(v)) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct GuardrailsField {
    config_id: Option<String>,
    config_ids: Option<Vec<String>>,
    options: Option<NemoOptions>,
    /// `nemo` (an error event) or `azure` (a `content_filter` finish chunk).
    block_style: Option<BlockStyle>,
    // Accepted so that they can be refused by name, never silently dropped.
    thread_id: Option<Value>,
    state: Option<Value>,
    config: Option<Value>,
}

/// How an output-rail block ends an SSE stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockStyle {
    /// NeMo's: an error event `{"error": {…, "code": "content_blocked"}}`, then `[DONE]`.
    #[default]
    Nemo,
    /// Azure OpenAI's: a last chunk with `finish_reason: "content_filter"`
    /// and the violation in a `guardrails` field, then `[DONE]`; for clients
    /// (LiteLLM and others) that cannot read an error event.
    Azure,
}

/// NeMo's `options`.
#[derive(Debug, Default, Deserialize)]
struct NemoOptions {
    rails: Option<NemoRails>,
    llm_params: Option<NemoLlmParams>,
    log: Option<Value>,
    /// Return the main model's reasoning trace.
    reasoning: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct NemoRails {
    input: Option<BoolOrFlows>,
    output: Option<BoolOrFlows>,
    tool_input: Option<bool>,
    tool_output: Option<bool>,
}

/// `true`/`false`, or the flows to run.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "true, false, or a list of flow names")]
enum BoolOrFlows {
    On(bool),
    Flows(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct NemoLlmParams {
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    stop: Option<StopField>,
}

/// Both body shapes in one; unknown OpenAI fields (`top_p`, `user`, …) are ignored.
#[derive(Debug, Deserialize)]
struct ChatBody {
    messages: Vec<super::message::InMessage>,
    #[serde(default)]
    stream: bool,
    config_id: Option<String>,
    config_ids: Option<Vec<String>>,
    model: Option<String>,
    options: Option<NemoOptions>,
    /// NeMo's server: context variables, as a first `context` message.
    #[serde(default)]
    context: Option<Value>,
    guardrails: Option<GuardrailsField>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<StopField>,
    /// Return the reasoning trace as `reasoning_content` (OpenRouter's name).
    include_reasoning: Option<bool>,
    // NeMo's older body had these at the top level; refused by name.
    thread_id: Option<Value>,
    state: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    // OpenAI's deprecated function calling, refused by name.
    functions: Option<Value>,
    function_call: Option<Value>,
}

/// Fields streamguard does not support yet: a clear 400 naming the field
/// beats an answer that silently ignored it.
fn refuse_unsupported(body: &ChatBody) -> Result<(), Error> {
    let g = body.guardrails.as_ref();
    let tools = "OpenAI's deprecated function calling is not supported; send `tools`";
    let checks: [(&'static str, bool, &str); 3] = [
        (
            "guardrails.config",
            g.is_some_and(|g| g.config.is_some()),
            "configs given in the request are not supported; name a loaded config with `config_id`",
        ),
        ("functions", body.functions.is_some(), tools),
        ("function_call", body.function_call.is_some(), tools),
    ];
    for (field, present, why) in checks {
        if present {
            return Err(Error::invalid(field, why));
        }
    }
    let id = body.config_id.is_some() || g.is_some_and(|g| g.config_id.is_some());
    let ids = body.config_ids.is_some() || g.is_some_and(|g| g.config_ids.is_some());
    if id && ids {
        return Err(Error::invalid(
            "config_ids",
            "give `config_id` or `config_ids`, not both",
        ));
    }
    Ok(())
}

/// How the caller wants its answer.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub stream: bool,
    /// OpenAI's reply shape (else NeMo's).
    pub openai: bool,
    /// The main model the request named (`model`, unless it named a config).
    pub model: Option<String>,
    /// The caller's block style, if it chose one.
    pub block_style: Option<BlockStyle>,
    /// The dialog state the request gave (`guardrails.state`) and the config
    /// it is signed for: the reply returns the state after the turn.
    pub resume: Option<Resume>,
    /// The conversation thread (`guardrails.thread_id`) and the whole
    /// conversation sent (its earlier messages in front).
    pub thread: Option<(String, Vec<ChatMessage>)>,
}

fn bad_body(message: String, param: Option<String>) -> Error {
    Error::InvalidBody { param, message }
}

/// The configs the body names: NeMo's `config_id` or `config_ids` (to
/// compose), or (OpenAI clients) a `model` that is a config id; `true` when
/// `model` was taken as the config id (and so names no main model).
fn selected_configs(
    guardrails: &mut GuardrailsField,
    config_id: Option<String>,
    config_ids: Option<Vec<String>>,
    model: Option<&str>,
    registry: &Registry,
) -> (Vec<String>, bool) {
    let ids = guardrails.config_ids.take().or(config_ids);
    match (guardrails.config_id.take().or(config_id), ids) {
        (Some(id), _) => (vec![id], false),
        (None, Some(ids)) => (ids, false),
        (None, None) => match model.filter(|m| registry.get(m).is_ok()) {
            Some(id) => (vec![id.to_string()], true),
            None => (Vec::new(), false),
        },
    }
}

fn options(nemo: NemoOptions, openai: CallParams) -> engine::Options {
    let mut opts = engine::Options::default();
    let params = nemo.llm_params.unwrap_or_default();
    let stop = if openai.stop.is_empty() {
        StopField::list(params.stop)
    } else {
        openai.stop
    };
    opts.llm_params = CallParams {
        temperature: openai.temperature.or(params.temperature),
        max_tokens: openai.max_tokens.or(params.max_tokens),
        stop,
    };
    if let Some(rails) = nemo.rails {
        match rails.input {
            Some(BoolOrFlows::On(on)) => opts.input_rails = on,
            Some(BoolOrFlows::Flows(f)) => opts.input_flows = Some(f),
            None => {}
        }
        match rails.output {
            Some(BoolOrFlows::On(on)) => opts.output_rails = on,
            Some(BoolOrFlows::Flows(f)) => opts.output_flows = Some(f),
            None => {}
        }
        opts.tool_input_rails = rails.tool_input.unwrap_or(true);
        opts.tool_output_rails = rails.tool_output.unwrap_or(true);
    }
    opts.reasoning = nemo.reasoning.unwrap_or(false);
    opts.log = match nemo.log {
        Some(Value::Bool(b)) => b,
        Some(Value::Object(m)) => m.values().any(|v| v == &Value::Bool(true)),
        _ => false,
    };
    opts
}

/// The dialog state of the request (NeMo's server reads `guardrails.state`;
/// older bodies: `state`), and the config it is signed for.
fn dialog_state(
    (nested, top): (Option<Value>, Option<Value>),
    ids: &[String],
    registry: &Registry,
    key: &StateKey,
) -> Result<Option<Resume>, Error> {
    let (field, value) = match (nested, top) {
        (Some(s), _) => ("guardrails.state", s),
        (None, Some(s)) => ("state", s),
        (None, None) => return Ok(None),
    };
    let configs = state_token::scope(ids, registry);
    let prior = key.open_json(&configs, &value, field)?;
    Ok(Some(Resume { configs, prior }))
}

/// Parses a body into the config id, the engine request and the reply shape.
/// The body; the common case parses once, only a bad body is parsed again
/// to name the path to the offending value.
fn read_body(bytes: &[u8]) -> Result<ChatBody, Error> {
    serde_json::from_slice(bytes)
        .or_else(|_| {
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(de)
        })
        .map_err(|e| {
            let path = e.path().to_string();
            let param = (path != ".").then_some(path);
            let message = match &param {
                Some(p) => format!("{p}: {}", e.inner()),
                None => format!("request body: {}", e.inner()),
            };
            bad_body(message, param)
        })
}

pub(super) fn parse(
    bytes: &[u8],
    registry: &Registry,
    key: &StateKey,
) -> Result<(Vec<String>, engine::Request, Shape), Error> {
    let body = read_body(bytes)?;
    refuse_unsupported(&body)?;
    let ChatBody {
        messages: wire,
        stream,
        config_id: nemo_id,
        config_ids,
        model,
        options: nemo_options,
        context: top_context,
        guardrails,
        temperature,
        max_tokens,
        max_completion_tokens,
        stop,
        include_reasoning,
        thread_id: top_thread,
        state: top_state,
        tools,
        tool_choice,
        parallel_tool_calls,
        functions: _,
        function_call: _,
    } = body;
    let mut guardrails = guardrails.unwrap_or_default();
    let block_style = guardrails.block_style;
    let openai = nemo_id.is_none() && config_ids.is_none();
    let (ids, model_is_config) = selected_configs(
        &mut guardrails,
        nemo_id,
        config_ids,
        model.as_deref(),
        registry,
    );
    let nemo = nemo_options.or(guardrails.options).unwrap_or_default();
    let openai_params = CallParams {
        temperature,
        max_tokens: max_tokens.or(max_completion_tokens),
        stop: StopField::list(stop),
    };
    let main_model = model.filter(|m| !m.is_empty() && !model_is_config);
    let mut options = options(nemo, openai_params);
    options.reasoning |= include_reasoning.unwrap_or(false);
    let resume = dialog_state((guardrails.state.take(), top_state), &ids, registry, key)?;
    let (messages, context) = super::message::messages(wire, top_context)?;
    let request = engine::Request {
        messages,
        context,
        options,
        traceparent: None,
        model: main_model.clone(),
        state: resume.as_ref().map(|r| r.prior.clone()),
        tools: super::message::tools(tools, tool_choice, parallel_tool_calls)?,
    };
    let thread = match guardrails.thread_id.take().or(top_thread) {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some((id, Vec::new())),
        Some(_) => {
            return Err(bad_body(
                "guardrails.thread_id: a string".into(),
                Some("guardrails.thread_id".into()),
            ));
        }
    };
    let shape = Shape {
        stream,
        openai,
        model: main_model,
        block_style,
        resume,
        thread,
    };
    Ok((ids, request, shape))
}
