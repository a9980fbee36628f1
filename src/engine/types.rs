//! The engine's request and response types, shared by every front end.

use futures_util::stream::BoxStream;

use super::{answer::DialogTurn, log::GenerationLog};
use crate::{
    error::Error,
    llm::{CallParams, ChatMessage, Finish, ToolCall, ToolCallDelta, Tools, Usage},
    rails::Stage,
};

/// NeMo's predefined refusal.
pub const REFUSAL: &str = "I'm sorry, I can't respond to that.";

/// A conversation to answer, with per-request options.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Oldest first; the last message must be the user's.
    pub messages: Vec<ChatMessage>,
    pub options: Options,
    /// The caller's W3C `traceparent`, passed on to the main LLM call.
    pub traceparent: Option<String>,
    /// The main model to call (its name; the config's engine and settings
    /// stay). `None`: the config's main model, or the server's default.
    pub model: Option<String>,
    /// The dialog state a previous answer returned (NeMo's `state`): the
    /// flow waiting for the user and the flows' variables.
    pub state: Option<crate::dialog::DialogState>,
    /// NeMo's context variables (`context` messages, the HTTP body's
    /// `context`): flows and rails see them (`$llm_output`), and
    /// `relevant_chunks` is the turn's chunks when the config has no
    /// knowledge base.
    pub context: Option<crate::dialog::Vars>,
    /// The tools offered to the main model (OpenAI's `tools`).
    pub tools: Option<std::sync::Arc<Tools>>,
}

/// Adds the variables of a `context` message (`value`, `messages[i]`) to
/// `into`; a later message's keys win, as NeMo's context updates do.
pub fn merge_context(
    into: &mut Option<crate::dialog::Vars>,
    value: serde_json::Value,
    i: usize,
) -> Result<(), crate::error::Error> {
    let serde_json::Value::Object(vars) = value else {
        return Err(crate::error::Error::InvalidRequest {
            field: "messages.content",
            message: format!(
                "messages[{i}].content: a `context` message's content is an object of variables, e.g. {{\"relevant_chunks\": \"…\"}}"
            ),
        });
    };
    // The request's size limit bounds them.
    into.get_or_insert_default().extend(vars);
    Ok(())
}

impl From<Vec<ChatMessage>> for Request {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Request {
            messages,
            options: Options::default(),
            traceparent: None,
            model: None,
            state: None,
            context: None,
            tools: None,
        }
    }
}

impl Request {
    /// A one-turn request.
    pub fn user(text: impl Into<String>) -> Self {
        Request::from(vec![ChatMessage::user(text)])
    }
}

/// Per-request options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Parameters for the main LLM call.
    pub llm_params: CallParams,
    /// Run the input rails.
    pub input_rails: bool,
    /// Run the output rails.
    pub output_rails: bool,
    /// Run only these configured input flows (`None`: all).
    pub input_flows: Option<Vec<String>>,
    /// Run only these configured output flows (`None`: all).
    pub output_flows: Option<Vec<String>>,
    /// Return a [`GenerationLog`] with the response.
    pub log: bool,
    /// Return the main model's reasoning trace: as [`Event::Reasoning`]
    /// while streaming, and in [`Response::reasoning_content`].
    pub reasoning: bool,
    /// Run the tool input rails (on the tool results sent back).
    pub tool_input_rails: bool,
    /// Run the tool output rails (on the calls the model asks for).
    pub tool_output_rails: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            llm_params: CallParams::default(),
            input_rails: true,
            output_rails: true,
            input_flows: None,
            output_flows: None,
            log: false,
            reasoning: false,
            tool_input_rails: true,
            tool_output_rails: true,
        }
    }
}

/// Whether a rail blocked the text or could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    /// The rail decided to block.
    Blocked,
    /// The rail failed (its judge was unreachable, …), which blocks too.
    RailFailed,
}

impl ViolationKind {
    /// The violation `type` on the wire: `guardrails_violation` or `internal_error`.
    pub fn type_str(self) -> &'static str {
        match self {
            ViolationKind::Blocked => "guardrails_violation",
            ViolationKind::RailFailed => "internal_error",
        }
    }

    /// The violation `code` on the wire: `content_blocked` or `rail_execution_failure`.
    pub fn code(self) -> &'static str {
        match self {
            ViolationKind::Blocked => "content_blocked",
            ViolationKind::RailFailed => "rail_execution_failure",
        }
    }
}

/// Why a rail stopped the request or the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The flow that blocked.
    pub rail: String,
    pub stage: Stage,
    pub kind: ViolationKind,
    /// `Blocked by <flow> rails.`
    pub message: String,
    /// The rail's own explanation.
    pub reason: String,
    /// The refusal the rail answers with instead of NeMo's predefined one
    /// (content safety's multilingual refusals).
    pub refusal: Option<String>,
    /// The tool whose call (or result) a tool rail blocked.
    pub tool: Option<String>,
}

impl Violation {
    pub(crate) fn blocked(rail: &str, stage: Stage, reason: String) -> Self {
        Violation {
            rail: rail.to_string(),
            stage,
            kind: ViolationKind::Blocked,
            message: format!("Blocked by {rail} rails."),
            reason,
            refusal: None,
            tool: None,
        }
    }

    pub(crate) fn failed(rail: &str, stage: Stage, reason: String) -> Self {
        Violation {
            rail: rail.to_string(),
            stage,
            kind: ViolationKind::RailFailed,
            // NeMo's wording for a rail that could not run.
            message: format!("Internal error in {rail} rail: {reason}"),
            reason,
            refusal: None,
            tool: None,
        }
    }
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinishReason {
    /// The model was done.
    #[default]
    Stop,
    /// The model ran into its token limit.
    Length,
    /// A rail blocked (or the provider's own filter cut the answer).
    ContentFilter,
    /// One of the request's stop strings cut the answer.
    StopSequence,
    /// The model asks for tool calls (which the tool rails let through).
    ToolCalls,
}

impl FinishReason {
    /// The finish reason of an answer from the model's own and what happened to it.
    pub(crate) fn of(upstream: Option<Finish>, blocked: bool, stopped: bool) -> Self {
        match (blocked, stopped, upstream) {
            (true, _, _) => FinishReason::ContentFilter,
            (_, true, _) => FinishReason::StopSequence,
            (_, _, Some(Finish::Length)) => FinishReason::Length,
            (_, _, Some(Finish::ContentFilter)) => FinishReason::ContentFilter,
            (_, _, Some(Finish::ToolCalls)) => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }

    /// OpenAI's `finish_reason` (a stop string is `stop` there).
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::StopSequence => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// The guarded answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    /// The assistant's content: the answer, the refusal, or (on a blocked
    /// stream) exactly the text the client received.
    pub content: String,
    pub violation: Option<Violation>,
    /// Main LLM token usage, when the LLM reported it.
    pub usage: Option<Usage>,
    /// The request's log, when `options.log` asked for it.
    pub log: Option<GenerationLog>,
    /// With Colang dialog rails: how the dialog read the turn.
    pub dialog: Option<DialogTurn>,
    /// Why the answer ended.
    pub finish_reason: FinishReason,
    /// The main model that served the request (its name).
    pub model: String,
    /// The main model's reasoning trace, when the request asked for it
    /// (`options.reasoning`) and the model gave one.
    pub reasoning_content: Option<String>,
    /// The calls the model asks for, once the tool output rails let them through.
    pub tool_calls: Vec<ToolCall>,
    /// The request's messages the rails rewrote (the user's, tool results),
    /// by index, with their new text: what a thread keeps of the turn.
    pub rewritten: Vec<(usize, String)>,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A piece of the answer, as the model produced it.
    Chunk(String),
    /// A piece of the main model's reasoning trace (only when the request
    /// asked for it: `options.reasoning`); never part of the answer.
    Reasoning(String),
    /// A piece of a tool call, as the model streamed it (after the tool
    /// output rails let the calls through, when the config has some).
    ToolCall(Box<ToolCallDelta>),
    /// The whole response; always the last event. Boxed so the per-chunk
    /// events stay small.
    Final(Box<Response>),
}

/// A streamed answer: chunks, then one [`Event::Final`], or an error.
pub type EventStream = BoxStream<'static, Result<Event, Error>>;
