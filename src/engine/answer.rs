//! The answer seam: what the engine asks for the answer to a turn.
//!
//! The main model answers through [`ModelAnswer`]; a dialog runtime (Colang)
//! answers by wrapping a model and reports how it read the turn beside the
//! text. The engine treats both alike, so input rails, output-rail windows
//! and every front end apply to dialog answers unchanged. This module
//! depends on nothing else in the engine, so `dialog` can implement it.

use std::{fmt, sync::Arc};

use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};

use crate::llm::{
    CallLog, ChatRequest, Completion, Delta, Finish, LlmError, Provider, ToolCallBuilder,
    ToolCallDelta, Usage,
};

/// The intents a dialog turn was answered with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialogTurn {
    pub user_intent: String,
    pub bot_intent: String,
    /// The dialog's variables after the turn (`$relevant_chunks`, what its
    /// flow set, such as `$check_facts`), for the output rails.
    pub context: std::collections::BTreeMap<String, serde_json::Value>,
    /// What the next turn resumes from (NeMo's `state`).
    pub state: Option<crate::dialog::DialogState>,
}

/// One item of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A non-empty piece of text, with the model's own boundaries.
    Text(String),
    /// Token usage.
    Usage(Usage),
    /// How a dialog read the turn.
    Dialog(DialogTurn),
    /// Why the model stopped.
    Finish(Finish),
    /// A piece of the model's reasoning trace.
    Reasoning(String),
    /// A piece of a tool call the model asks for.
    ToolCall(Box<ToolCallDelta>),
}

impl From<Delta> for Piece {
    fn from(d: Delta) -> Self {
        match d {
            Delta::Text(t) => Piece::Text(t),
            Delta::Usage(u) => Piece::Usage(u),
            Delta::Finish(f) => Piece::Finish(f),
            Delta::Reasoning(r) => Piece::Reasoning(r),
            Delta::ToolCall(c) => Piece::ToolCall(c),
        }
    }
}

/// An answer as it is produced; ends after the last piece or with one error.
pub type PieceStream = BoxStream<'static, Result<Piece, LlmError>>;

/// The main call of a turn: the messages for the model, and where calls of
/// its own are recorded when the request keeps a log.
#[derive(Debug, Clone)]
pub struct AnswerRequest {
    pub chat: ChatRequest,
    pub calls: Option<Arc<CallLog>>,
    /// The dialog state the caller gave back.
    pub state: Option<crate::dialog::DialogState>,
    /// The request's context variables (NeMo's `context` messages).
    pub context: Option<Arc<crate::dialog::Vars>>,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeAnswer {
    pub completion: Completion,
    pub dialog: Option<DialogTurn>,
}

/// What answers a turn.
pub trait Answerer: Send + Sync + fmt::Debug {
    /// Whether [`Answerer::stream`] really streams (streaming precondition 2).
    fn can_stream(&self) -> bool;

    /// The answer as it is produced.
    fn stream(&self, request: AnswerRequest) -> PieceStream;

    /// Whether the request's tools, tool messages and content parts reach
    /// the model as sent, or why not.
    fn tools(&self) -> Result<(), &'static str> {
        Err("its answers come from its Colang dialog flows")
    }

    /// The whole answer.
    fn complete(
        &self,
        request: AnswerRequest,
    ) -> BoxFuture<'static, Result<WholeAnswer, LlmError>> {
        collect(self.stream(request)).boxed()
    }
}

/// Collects a streamed answer.
pub async fn collect(mut stream: PieceStream) -> Result<WholeAnswer, LlmError> {
    let mut text = String::new();
    let mut usage = None;
    let mut dialog = None;
    let mut finish = None;
    let mut reasoning: Option<String> = None;
    let mut tools = ToolCallBuilder::default();
    while let Some(piece) = stream.next().await {
        match piece? {
            Piece::ToolCall(c) => tools.push(&c)?,
            Piece::Text(t) => text.push_str(&t),
            Piece::Reasoning(r) => reasoning.get_or_insert_default().push_str(&r),
            Piece::Usage(u) => usage = Some(u),
            Piece::Dialog(d) => dialog = Some(d),
            Piece::Finish(f) => finish = Some(f),
        }
    }
    Ok(WholeAnswer {
        completion: Completion {
            text,
            usage,
            finish,
            reasoning,
            tool_calls: tools.finish(),
        },
        dialog,
    })
}

/// The main model as the answerer: its own whole answer for `complete`, its
/// stream for `stream`.
#[derive(Debug, Clone)]
pub struct ModelAnswer(pub Arc<dyn Provider>);

/// Why a main model cannot take tools.
const MODEL_NO_TOOLS: &str = "its main model's API (Anthropic's Messages API, text completions, the scripted model) is not one streamguard sends them to";

impl Answerer for ModelAnswer {
    fn can_stream(&self) -> bool {
        self.0.can_stream()
    }

    fn tools(&self) -> Result<(), &'static str> {
        self.0.takes_tools().then_some(()).ok_or(MODEL_NO_TOOLS)
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let chat = given_chunks(request);
        Box::pin(self.0.stream(chat).map(|d| d.map(Piece::from)))
    }

    fn complete(
        &self,
        request: AnswerRequest,
    ) -> BoxFuture<'static, Result<WholeAnswer, LlmError>> {
        self.0
            .complete(given_chunks(request))
            .map(|c| {
                c.map(|completion| WholeAnswer {
                    completion,
                    dialog: None,
                })
            })
            .boxed()
    }
}

/// The main model with the turn's chunks (the config's knowledge base's, else
/// a context message's `relevant_chunks`) through the retrieval rails: they
/// go into the system message, as NeMo's `general` prompts for Llama 3 and
/// DeepSeek put them (NeMo's default prompt leaves them out; streamguard
/// always gives them).
#[derive(Debug)]
pub struct KbAnswer {
    pub model: Arc<dyn Provider>,
    pub kb: Option<Arc<crate::kb::KnowledgeBase>>,
    /// `rails.retrieval.flows`, on the chunks before the prompt gets them.
    pub retrieval: crate::rails::RetrievalRails,
}

impl KbAnswer {
    /// The request with the chunks for its last user message, or the answer
    /// when a retrieval rail stopped the turn.
    async fn with_chunks(
        kb: Option<&crate::kb::KnowledgeBase>,
        retrieval: &crate::rails::RetrievalRails,
        request: AnswerRequest,
    ) -> Result<Result<ChatRequest, String>, LlmError> {
        let mut chat = request.chat;
        let query = crate::llm::last_user_text(&chat.messages).to_string();
        let given = request
            .context
            .as_ref()
            .and_then(|c| c.get("relevant_chunks"));
        let mut chunks = match (kb, given.and_then(serde_json::Value::as_str)) {
            (Some(kb), _) => kb.relevant_chunks(&query).await,
            (None, given) => given.unwrap_or_default().trim().to_string(),
        };
        if !retrieval.is_empty() {
            let history = chat.messages.split_last().map_or(&[][..], |(_, h)| h);
            let calls = request.calls.as_deref();
            let guarded = retrieval.run(&query, &chunks, history, calls).await;
            chunks = match guarded? {
                crate::rails::Retrieved::Chunks(text, _) => text,
                crate::rails::Retrieved::Stopped(said) => {
                    return Ok(Err(
                        said.unwrap_or_else(|| crate::rails::UNKNOWN_ANSWER.into())
                    ));
                }
            };
        }
        with_chunks(&mut chat, &chunks);
        Ok(Ok(chat))
    }
}

/// The request's call with the `relevant_chunks` of its context messages
/// (NeMo's way to pass a RAG app's own chunks) in the system message.
fn given_chunks(request: AnswerRequest) -> ChatRequest {
    let mut chat = request.chat;
    let given = request
        .context
        .as_ref()
        .and_then(|c| c.get("relevant_chunks"));
    if let Some(chunks) = given.and_then(serde_json::Value::as_str) {
        with_chunks(&mut chat, chunks.trim());
    }
    chat
}

/// Puts the chunks into the system message, as NeMo's `general` prompts do.
fn with_chunks(chat: &mut ChatRequest, chunks: &str) {
    if chunks.is_empty() {
        return;
    }
    let block = format!("This is some relevant context:\n```markdown\n{chunks}\n```");
    match chat
        .messages
        .iter_mut()
        .find(|m| m.role == crate::llm::Role::System)
    {
        Some(system) => {
            system.content.push('\n');
            system.content.push_str(&block);
        }
        None => chat
            .messages
            .insert(0, crate::llm::ChatMessage::system(block)),
    }
}

impl Answerer for KbAnswer {
    fn can_stream(&self) -> bool {
        self.model.can_stream()
    }

    fn tools(&self) -> Result<(), &'static str> {
        self.model.takes_tools().then_some(()).ok_or(MODEL_NO_TOOLS)
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let (model, kb, retrieval) = (self.model.clone(), self.kb.clone(), self.retrieval.clone());
        Box::pin(async_stream::try_stream! {
            match Self::with_chunks(kb.as_deref(), &retrieval, request).await? {
                Ok(chat) => {
                    let mut tokens = model.stream(chat);
                    while let Some(delta) = tokens.next().await {
                        yield Piece::from(delta?);
                    }
                }
                Err(answer) => {
                    yield Piece::Text(answer);
                    yield Piece::Finish(crate::llm::Finish::Stop);
                }
            }
        })
    }

    fn complete(
        &self,
        request: AnswerRequest,
    ) -> BoxFuture<'static, Result<WholeAnswer, LlmError>> {
        let (model, kb, retrieval) = (self.model.clone(), self.kb.clone(), self.retrieval.clone());
        async move {
            let completion = match Self::with_chunks(kb.as_deref(), &retrieval, request).await? {
                Ok(chat) => model.complete(chat).await?,
                Err(text) => Completion::text(text, Some(Finish::Stop)),
            };
            Ok(WholeAnswer {
                completion,
                dialog: None,
            })
        }
        .boxed()
    }
}
