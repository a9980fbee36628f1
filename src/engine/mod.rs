//! The order of work: input rails → the main LLM → output rails, for whole
//! answers ([`Guardrails::generate`]) and streams ([`Guardrails::stream`]).
//!
//! Every front end (gRPC, the CLI, the library) calls these two methods; none
//! re-implements rails, prompts or the streaming rules.

mod handler;
mod preconditions;
mod registry;
mod window;

use std::{path::Path, sync::Arc};

use futures_util::{StreamExt, stream::BoxStream, stream::FuturesUnordered};

use crate::{
    config::{self, Config, ConfigError},
    error::Error,
    llm::{self, CallParams, ChatMessage, ChatRequest, Delta, Provider, Usage},
    rails::{self, Providers, Rail, RailInput, Stage, Verdict},
};

pub use handler::{HandlerChunks, StreamingHandler};
pub use preconditions::PreconditionFailure;
pub use registry::Registry;
pub use window::{Window, Windows};

/// NeMo's predefined refusal.
pub const REFUSAL: &str = "I'm sorry, I can't respond to that.";

/// A conversation to answer, with per-request options.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Oldest first; the last message must be the user's.
    pub messages: Vec<ChatMessage>,
    pub options: Options,
}

impl From<Vec<ChatMessage>> for Request {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Request {
            messages,
            options: Options::default(),
        }
    }
}

impl Request {
    /// A one-turn request.
    pub fn user(text: impl Into<String>) -> Self {
        Request {
            messages: vec![ChatMessage::new("user", text)],
            options: Options::default(),
        }
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            llm_params: CallParams::default(),
            input_rails: true,
            output_rails: true,
        }
    }
}

/// Why a rail stopped the request or the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The flow that blocked.
    pub rail: String,
    pub stage: Stage,
    /// `guardrails_violation`.
    pub kind: &'static str,
    /// `content_blocked`.
    pub code: &'static str,
    /// `Blocked by <flow> rails.`
    pub message: String,
    /// The rail's own explanation.
    pub reason: String,
}

impl Violation {
    fn blocked(rail: &str, stage: Stage, reason: String) -> Self {
        Violation {
            rail: rail.to_string(),
            stage,
            kind: "guardrails_violation",
            code: "content_blocked",
            message: format!("Blocked by {rail} rails."),
            reason,
        }
    }
}

/// The guarded answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The assistant's content: the answer, the refusal, or (on a blocked
    /// stream) exactly the text the client received.
    pub content: String,
    pub violation: Option<Violation>,
    /// Main LLM token usage, when the LLM reported it.
    pub usage: Option<Usage>,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece of the answer, as the model produced it.
    Chunk(String),
    /// The whole response; always the last event.
    Final(Response),
}

/// A streamed answer: chunks, then one [`Event::Final`], or an error.
pub type EventStream = BoxStream<'static, Result<Event, Error>>;

/// One loaded config with its providers and rails, ready to serve.
#[derive(Debug, Clone)]
pub struct Guardrails {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    main: Arc<dyn Provider>,
    input: Vec<Arc<dyn Rail>>,
    output: Vec<Arc<dyn Rail>>,
    system_prompt: Option<String>,
}

impl Guardrails {
    /// Loads one config directory (`config.yml` and friends).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::new(config::load(dir.as_ref())?)
    }

    /// Builds a config from YAML text (one `config.yml`), for tests, examples
    /// and embedding. The config id is `id`.
    pub fn from_yaml(id: &str, yaml: &str) -> Result<Self, ConfigError> {
        Self::new(config::from_yaml(id, yaml)?)
    }

    /// Builds providers and rails for a validated config.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let mut providers = Providers::new();
        for model in &config.models {
            providers
                .entry(model.kind.clone())
                .or_insert(llm::build(model)?);
        }
        let main = providers
            .get("main")
            .cloned()
            .ok_or_else(|| ConfigError::invalid(config.main_file(), "models", "no main model"))?;
        let (input, output) = rails::build(&config, &providers)?;
        let system_prompt = config
            .instructions
            .get("general")
            .map(|s| s.trim().to_string());
        Ok(Guardrails {
            inner: Arc::new(Inner {
                config,
                main,
                input,
                output,
                system_prompt,
            }),
        })
    }

    /// The config this engine serves.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether a streaming request with default options may be served.
    pub fn check_streaming(&self) -> Result<(), PreconditionFailure> {
        preconditions::check(&self.inner.config, self.inner.main.can_stream(), true)
    }

    /// Answers the conversation whole: input rails, the main LLM, output rails
    /// on the whole answer. Works on every config.
    pub async fn generate(&self, request: Request) -> Result<Response, Error> {
        let inner = &self.inner;
        let user_input = validate(&request)?.to_string();
        if let Some(v) = inner.input_check(&request.options, &user_input).await? {
            return Ok(inner.blocked(v));
        }
        let completion = inner
            .main
            .complete(inner.main_request(request))
            .await
            .map_err(Error::Upstream)?;
        if let Some(v) = inner.output_check(&user_input, &completion.text).await? {
            return Ok(Response {
                usage: completion.usage,
                ..inner.blocked(v)
            });
        }
        Ok(Response {
            content: completion.text,
            violation: None,
            usage: completion.usage,
        })
    }

    /// Streams just the text chunks of the answer: the counterpart of NeMo's
    /// `stream_async`. A refusal arrives as one chunk.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// use streamguard::{Guardrails, Request};
    ///
    /// let rails = Guardrails::from_yaml("demo", r#"
    /// models:
    ///   - type: main
    ///     engine: scripted
    ///     model: demo
    ///     parameters: { replies: ["Streaming, one word at a time."] }
    /// streaming: True
    /// "#)?;
    /// let mut chunks = rails.stream_text(Request::user("Hi!"))?;
    /// let mut answer = String::new();
    /// while let Some(chunk) = chunks.next().await {
    ///     answer.push_str(&chunk?);
    /// }
    /// assert_eq!(answer, "Streaming, one word at a time.");
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_text(
        &self,
        request: Request,
    ) -> Result<BoxStream<'static, Result<String, Error>>, Error> {
        let events = self.stream(request)?;
        Ok(Box::pin(events.filter_map(|event| {
            std::future::ready(match event {
                Ok(Event::Chunk(text)) => Some(Ok(text)),
                Ok(Event::Final(_)) => None,
                Err(e) => Some(Err(e)),
            })
        })))
    }

    /// Generates while pushing each chunk into `handler`, and returns the full
    /// response at the end: the counterpart of NeMo's
    /// `generate_async(messages, streaming_handler=handler)`. Read the chunks
    /// from the handler's stream in another task. With stop strings, the
    /// chunks and the response are cut at the first stop string and the
    /// upstream request is dropped there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// use streamguard::{Guardrails, Request, engine::StreamingHandler};
    ///
    /// let rails = Guardrails::from_yaml("demo", r#"
    /// models:
    ///   - type: main
    ///     engine: scripted
    ///     model: demo
    ///     parameters: { replies: ["Sure. User: ignore this"] }
    /// streaming: True
    /// "#)?;
    /// let (handler, chunks) = StreamingHandler::with_stop(["User:"]);
    /// let printer = tokio::spawn(chunks.collect::<Vec<String>>());
    /// let response = rails.generate_with_handler(Request::user("Hi!"), handler).await?;
    /// let chunks = printer.await?;
    /// assert_eq!(chunks.concat(), response.content);
    /// assert_eq!(response.content, "Sure. ");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn generate_with_handler(
        &self,
        request: Request,
        mut handler: StreamingHandler,
    ) -> Result<Response, Error> {
        let mut events = self.stream(request)?;
        let mut last = None;
        while let Some(event) = events.next().await {
            match event? {
                Event::Chunk(text) => {
                    if !handler.push(text).await {
                        break;
                    }
                }
                Event::Final(response) => last = Some(response),
            }
        }
        // At a stop string the stream was left early: dropping it cancels
        // the upstream request.
        drop(events);
        let content = handler.finish().await;
        let mut response = last.unwrap_or_default();
        response.content = content;
        Ok(response)
    }

    /// Streams the answer. The request and the streaming preconditions are
    /// checked before anything is called, so a request that cannot be served
    /// fails here, not inside the stream. Dropping the stream cancels the
    /// upstream LLM request.
    pub fn stream(&self, request: Request) -> Result<EventStream, Error> {
        let user_input = validate(&request)?.to_string();
        let inner = self.inner.clone();
        let output_on = request.options.output_rails && !inner.output.is_empty();
        preconditions::check(&inner.config, inner.main.can_stream(), output_on)?;
        Ok(Box::pin(async_stream::stream! {
            match inner.input_check(&request.options, &user_input).await {
                Err(e) => {
                    yield Err(e);
                    return;
                }
                Ok(Some(v)) => {
                    let response = inner.blocked(v);
                    // NeMo streams the refusal as one chunk.
                    if !response.content.is_empty() {
                        yield Ok(Event::Chunk(response.content.clone()));
                    }
                    yield Ok(Event::Final(response));
                    return;
                }
                Ok(None) => {}
            }
            let settings = inner.config.output_streaming;
            let mut deltas = inner.main.stream(inner.main_request(request));
            let mut content = String::new();
            let mut usage = None;
            let mut windows = output_on.then(|| Windows::new(settings.chunk_size, settings.context_size));
            let hold = output_on && !settings.stream_first;
            // Chunks held back until their window passes (stream_first: false).
            let mut held: Vec<String> = Vec::new();
            // Bytes of `content` the client has received.
            let mut sent = 0usize;
            let mut violation = None;
            let mut ended = false;
            loop {
                let window = match deltas.next().await {
                    Some(Ok(Delta::Text(text))) => {
                        content.push_str(&text);
                        let window = windows.as_mut().and_then(|w| w.push(content.len()));
                        if hold {
                            held.push(text);
                        } else {
                            sent = content.len();
                            yield Ok(Event::Chunk(text));
                        }
                        match window {
                            Some(w) => w,
                            None => continue,
                        }
                    }
                    Some(Ok(Delta::Usage(u))) => {
                        usage = Some(u);
                        continue;
                    }
                    Some(Err(e)) => {
                        yield Err(Error::Upstream(e));
                        return;
                    }
                    None => {
                        ended = true;
                        match windows.as_mut().and_then(Windows::finish) {
                            Some(w) => w,
                            None => break,
                        }
                    }
                };
                match inner.output_check(&user_input, &content[window.bytes.clone()]).await {
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                    Ok(Some(v)) => {
                        violation = Some(v);
                        break;
                    }
                    Ok(None) => {
                        for text in held.drain(..) {
                            sent += text.len();
                            yield Ok(Event::Chunk(text));
                        }
                    }
                }
                if ended {
                    break;
                }
            }
            // Dropping the upstream stream now cancels the LLM request at once.
            drop(deltas);
            content.truncate(sent);
            yield Ok(Event::Final(Response { content, violation, usage }));
        }))
    }
}

/// Checks the request shape and returns the user's last message.
fn validate(request: &Request) -> Result<&str, Error> {
    let Some(last) = request.messages.last() else {
        return Err(Error::invalid(
            "messages",
            "at least one message is required",
        ));
    };
    for (i, m) in request.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "user" | "assistant" | "system") {
            return Err(Error::InvalidRequest {
                field: "messages.role",
                message: format!(
                    "messages[{i}].role is `{}`; expected `user`, `assistant` or `system`",
                    m.role
                ),
            });
        }
    }
    if last.role != "user" {
        return Err(Error::InvalidRequest {
            field: "messages",
            message: format!(
                "the last message must have role `user`, not `{}`",
                last.role
            ),
        });
    }
    if let Some(t) = request.options.llm_params.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(Error::invalid(
            "options.llm_params.temperature",
            format!("{t} is outside 0..=2"),
        ));
    }
    Ok(&last.content)
}

impl Inner {
    fn main_request(&self, request: Request) -> ChatRequest {
        let Request { messages, options } = request;
        let mut all = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = &self.system_prompt {
            all.push(ChatMessage::new("system", system.clone()));
        }
        all.extend(messages);
        ChatRequest {
            task: "general".into(),
            messages: all,
            params: options.llm_params,
        }
    }

    fn blocked(&self, violation: Violation) -> Response {
        // With rails exceptions the response carries only the violation.
        let content = if self.config.enable_rails_exceptions {
            String::new()
        } else {
            REFUSAL.to_string()
        };
        Response {
            content,
            violation: Some(violation),
            usage: None,
        }
    }

    async fn input_check(
        &self,
        options: &Options,
        user_input: &str,
    ) -> Result<Option<Violation>, Error> {
        if !options.input_rails {
            return Ok(None);
        }
        let input = RailInput {
            user_input,
            bot_response: None,
        };
        run_rails(&self.input, self.config.input.parallel, Stage::Input, input).await
    }

    async fn output_check(&self, user_input: &str, text: &str) -> Result<Option<Violation>, Error> {
        let input = RailInput {
            user_input,
            bot_response: Some(text),
        };
        run_rails(
            &self.output,
            self.config.output.parallel,
            Stage::Output,
            input,
        )
        .await
    }
}

/// Runs rails in order (stopping at the first block) or all at once (the
/// first block wins; dropping the rest cancels them).
async fn run_rails(
    rails: &[Arc<dyn Rail>],
    parallel: bool,
    stage: Stage,
    input: RailInput<'_>,
) -> Result<Option<Violation>, Error> {
    let decide = |rail: &Arc<dyn Rail>, verdict: Result<Verdict, rails::RailError>| match verdict {
        Ok(Verdict::Allow) => Ok(None),
        Ok(Verdict::Block { reason }) => Ok(Some(Violation::blocked(rail.flow(), stage, reason))),
        Err(e) => Err(Error::Rail {
            rail: rail.flow().to_string(),
            message: e.0,
        }),
    };
    if parallel && rails.len() > 1 {
        let mut pending: FuturesUnordered<_> = rails
            .iter()
            .map(|rail| async move { (rail, rail.check(input).await) })
            .collect();
        while let Some((rail, verdict)) = pending.next().await {
            if let Some(v) = decide(rail, verdict)? {
                return Ok(Some(v));
            }
        }
        return Ok(None);
    }
    for rail in rails {
        if let Some(v) = decide(rail, rail.check(input).await)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}
