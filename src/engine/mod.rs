//! The order of work: input rails → the answer (the main LLM, or the dialog
//! in front of it) → output rails, for whole answers ([`Guardrails::generate`])
//! and streams ([`Guardrails::stream`]).
//!
//! Every front end (gRPC, HTTP, the CLI, the library) calls these methods;
//! none re-implements rails, prompts or the streaming rules.
//!
//! - [`answer`]: the seam the engine asks for the answer stream.
//! - `run`: a request's selected rails, its log and timings.
//! - [`Relay`]: the state of one guarded stream; `stream` drives it.
//! - [`Windows`]: the chunk-window bookkeeping.
//! - [`StreamingHandler`]: NeMo's streaming-handler style.
//! - [`Registry`]: the configs a server serves.

pub mod answer;
mod build;
mod check;
mod generate;
mod handler;
mod log;
mod main_model;
mod meters;
mod preconditions;
mod registry;
mod relay;
mod run;
mod stream;
mod tools;
mod trace;
mod types;
mod window;

use std::{path::Path, sync::Arc, time::Instant};

use futures_util::{StreamExt, stream::BoxStream};

use crate::{
    config::{self, Config, ConfigError},
    error::Error,
    llm::{self, ChatMessage, ChatRequest, Provider, UpstreamSettings},
    rails::{RailSet, template::TemplateBudget},
};
use answer::Answerer;

pub use crate::error::PreconditionFailure;
pub use answer::DialogTurn;
pub use check::{CheckResult, CheckStatus, stages_for};
pub use handler::{HandlerChunks, StreamingHandler};
pub use log::{Decision, GenerationLog, PhaseTiming, RailRecord};
pub use registry::Registry;
pub use relay::{Relay, RelayOutcome, WindowCheck, WindowVerdict};
pub use types::{
    Event, EventStream, FinishReason, Options, REFUSAL, Request, Response, Violation,
    ViolationKind, merge_context,
};
pub use window::{Window, Windows};

/// How configs are built: the defaults for talking to upstream LLMs, the
/// budget of one prompt-template render, and what the server adds to every
/// config (a default main model, the meaning of a missing `streaming` key).
#[derive(Debug, Clone, Default)]
pub struct BuildSettings {
    pub upstream: UpstreamSettings,
    pub templates: TemplateBudget,
    /// A config without a `streaming` key streams (NeMo ≥ 0.20 dropped the key).
    pub streaming_default: bool,
    /// The main model of configs that have none (rails-only configs).
    pub main_model: Option<config::ModelConfig>,
    /// The engine and settings of a model a request names for a config
    /// without a main model (`None`: `engine: openai`, as NeMo's server).
    pub request_model: Option<config::ModelConfig>,
    /// A request's `model` is not followed when the config (or the server)
    /// has a main model: callers cannot pick another model on the
    /// operator's account (`--pin-main-model`).
    pub pin_main_model: bool,
    /// NeMo's actions server for configs without their own `actions_server_url`.
    pub actions_server: Option<reqwest::Url>,
}

/// One loaded config with its providers and rails, ready to serve.
#[derive(Debug, Clone)]
pub struct Guardrails {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    answerer: Arc<dyn Answerer>,
    input: RailSet,
    output: RailSet,
    /// The tool input and tool output rails.
    tools: (RailSet, Arc<RailSet>),
    system_prompt: Option<String>,
    warnings: Vec<String>,
    meters: meters::Meters,
    /// The main model's name (empty for a config without one).
    main_name: Arc<str>,
    /// The application gave the main provider (`with_main_provider`).
    custom_main: bool,
    settings: BuildSettings,
    variants: main_model::Variants,
    /// `tracing`: where request traces go.
    tracer: Option<Arc<trace::Tracer>>,
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
        Self::build(config, None, &BuildSettings::default())
    }

    /// Like [`Guardrails::new`], with upstream timeouts and retries other
    /// than the defaults (a model's own `parameters` still win).
    pub fn with_upstream(config: Config, upstream: &UpstreamSettings) -> Result<Self, ConfigError> {
        Self::with_settings(
            config,
            &BuildSettings {
                upstream: *upstream,
                ..BuildSettings::default()
            },
        )
    }

    /// Like [`Guardrails::new`], with these build settings.
    pub fn with_settings(config: Config, settings: &BuildSettings) -> Result<Self, ConfigError> {
        Self::build(config, None, settings)
    }

    /// Like [`Guardrails::new`], with your own provider as the main model
    /// (the config's `type: main` entry still names it in errors and logs).
    pub fn with_main_provider(
        config: Config,
        main: Arc<dyn Provider>,
    ) -> Result<Self, ConfigError> {
        Self::build(config, Some(main), &BuildSettings::default())
    }

    fn build(
        mut config: Config,
        main: Option<Arc<dyn Provider>>,
        settings: &BuildSettings,
    ) -> Result<Self, ConfigError> {
        if config.main_model().is_none()
            && let Some(default) = &settings.main_model
        {
            config = config.with_main_model(default.clone());
        }
        let custom_main = main.is_some();
        let built = build::build(&config, main, settings)?;
        let main_name = config.main_model().map_or("", |m| m.model()).into();
        let system_prompt = config.instruction("general").map(|s| s.trim().to_string());
        Ok(Guardrails {
            inner: Arc::new(Inner {
                answerer: built.answerer,
                input: built.rails.input,
                output: built.rails.output,
                tools: (built.rails.tool_input, Arc::new(built.rails.tool_output)),
                system_prompt,
                warnings: built.rails.warnings,
                meters: meters::Meters::new(config.id()),
                main_name,
                custom_main,
                settings: settings.clone(),
                variants: main_model::Variants::default(),
                tracer: config
                    .tracing()
                    .and_then(|t| trace::Tracer::new(t, config.id()))
                    .map(Arc::new),
                config,
            }),
        })
    }

    /// Non-fatal findings from loading (e.g. entities no recognizer covers).
    pub fn warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// The config this engine serves.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether a streaming request with default options may be served.
    pub fn check_streaming(&self) -> Result<(), PreconditionFailure> {
        let inner = &self.inner;
        preconditions::check(
            &inner.config,
            inner.settings.streaming_default,
            inner.answerer.can_stream(),
            true,
        )
    }

    /// Whether the config needs each request to name its main model (a
    /// rails-only config on a server without a default main model).
    pub fn needs_request_model(&self) -> bool {
        self.inner.config.main_model().is_none()
    }

    /// Answers the conversation whole: input rails, the answer, output rails
    /// on the whole answer. Works on every config.
    pub async fn generate(&self, request: Request) -> Result<Response, Error> {
        let started = Instant::now();
        let this = self.for_model(request.model.as_deref())?;
        tools::check_request(&this.inner, &request)?;
        let run = this.inner.start(&request)?;
        generate::run(&this.inner, run, request, started).await
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
                Ok(Event::Final(_) | Event::Reasoning(_) | Event::ToolCall(_)) => None,
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
                Event::Final(response) => last = Some(*response),
                Event::Reasoning(_) | Event::ToolCall(_) => {}
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
    /// upstream request.
    pub fn stream(&self, request: Request) -> Result<EventStream, Error> {
        let started = Instant::now();
        let this = self.for_model(request.model.as_deref())?;
        let inner = &this.inner;
        tools::check_request(inner, &request)?;
        let run = inner.start(&request)?;
        let output_on = !run.output.is_empty();
        preconditions::check(
            &inner.config,
            inner.settings.streaming_default,
            inner.answerer.can_stream(),
            output_on,
        )?;
        Ok(stream::run(inner.clone(), run, (request, None), started))
    }

    /// Guards a stream the caller's own LLM produces: the input rails on
    /// the request's last user message at once (a block ends it before any
    /// chunk is read), then `chunks` relayed through the output rails on
    /// chunk windows exactly as [`Guardrails::stream`] relays the main
    /// model's, with the same final event. The end of `chunks` ends the
    /// answer; dropping the stream cancels the rail checks in flight. The
    /// streaming rule on output rails applies (their windows need
    /// `rails.output.streaming.enabled`); the config's own model is never
    /// called.
    pub fn guard_stream(
        &self,
        request: Request,
        chunks: BoxStream<'static, Result<String, Error>>,
    ) -> Result<EventStream, Error> {
        let started = Instant::now();
        let inner = &self.inner;
        check::own_rail_flows(inner, "GuardStream")?;
        let run = inner.start(&request)?;
        preconditions::check_windows(&inner.config, !run.output.is_empty())?;
        let pieces = chunks.filter_map(|c| {
            std::future::ready(match c {
                Ok(text) if text.is_empty() => None,
                Ok(text) => Some(Ok(answer::Piece::Text(text))),
                Err(Error::InvalidRequest { field, message }) => {
                    Some(Err(llm::LlmError::Caller { field, message }))
                }
                Err(e) => Some(Err(llm::LlmError::Caller {
                    field: "chunk",
                    message: e.to_string(),
                })),
            })
        });
        let given: answer::PieceStream = Box::pin(pieces);
        Ok(stream::run(
            inner.clone(),
            run,
            (request, Some(given)),
            started,
        ))
    }
}

/// Counts an upstream failure and wraps it.
fn upstream_error(e: llm::LlmError) -> Error {
    if let llm::LlmError::Rail { rail, message } = e {
        return Error::Rail { rail, message };
    }
    if let llm::LlmError::Caller { field, message } = e {
        return Error::InvalidRequest { field, message };
    }
    metrics::counter!("streamguard_upstream_errors_total", "kind" => e.kind()).increment(1);
    Error::Upstream(e)
}

impl Inner {
    /// Validates the request and selects its rails.
    fn start(&self, request: &Request) -> Result<run::Run, Error> {
        let run = run::Run::start(
            request,
            (self.main_name.clone(), self.tracer.clone()),
            &self.input,
            &self.output,
            (self.config.input().parallel, self.config.output().parallel),
        )?;
        Ok(self.with_tool_rails(run, &request.options))
    }

    /// Selects a check's rails (its messages need not end with the user's).
    fn start_check(&self, request: &Request) -> Result<run::Run, Error> {
        let run = run::Run::select(
            request,
            (self.main_name.clone(), self.tracer.clone()),
            (&self.input, &self.output),
            (self.config.input().parallel, self.config.output().parallel),
        )?;
        Ok(self.with_tool_rails(run, &request.options))
    }

    /// The request's tool rails, as its options select them.
    fn with_tool_rails(&self, mut run: run::Run, o: &Options) -> run::Run {
        if o.tool_input_rails {
            run.tool_input = self.tools.0.clone();
        }
        if o.tool_output_rails {
            run.tool_output = self.tools.1.clone();
        }
        run.tool_parallel = (
            self.config.tool_input().parallel,
            self.config.tool_output().parallel,
        );
        run
    }

    /// The main call: the general instruction, then the conversation with
    /// the last user message (rewritten by an input rail when `rewritten`),
    /// and the tools offered. Returns it with the user input the output
    /// rails see.
    fn main_request(&self, request: Request, rewritten: Option<String>) -> (ChatRequest, Arc<str>) {
        let Request {
            mut messages,
            options,
            traceparent,
            model: _,
            state: _,
            context: _,
            tools,
        } = request;
        let last_user = messages
            .iter_mut()
            .rev()
            .find(|m| m.role == llm::Role::User);
        let user_input: Arc<str> = match (rewritten, last_user) {
            (Some(text), Some(last)) => {
                let shared: Arc<str> = text.as_str().into();
                last.set_text(text);
                shared
            }
            (None, Some(last)) => last.content.as_str().into(),
            (_, None) => "".into(),
        };
        let mut all = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = &self.system_prompt {
            all.push(ChatMessage::system(system.clone()));
        }
        all.extend(messages);
        let mut call = ChatRequest::new("general", all);
        call.params = options.llm_params;
        call.traceparent = traceparent;
        call.tools = tools;
        (call, user_input)
    }

    /// An answer with its reasoning trace in front, in the main model's
    /// tags, as output rails see it with `apply_to_reasoning_traces`.
    fn with_trace(&self, trace: &str, answer: &str) -> String {
        let tags = self
            .config
            .main_model()
            .map(|m| m.reasoning().clone())
            .unwrap_or_default();
        format!("{}{trace}{}\n{answer}", tags.start_token, tags.end_token)
    }

    fn blocked(&self, violation: Violation) -> Response {
        // With rails exceptions the response carries only the violation.
        let content = if self.config.enable_rails_exceptions() {
            String::new()
        } else {
            violation
                .refusal
                .clone()
                .unwrap_or_else(|| REFUSAL.to_string())
        };
        Response {
            content,
            violation: Some(violation),
            // An input rail blocked: the main model consumed nothing. (An
            // output block keeps the answer's usage.)
            usage: Some(llm::Usage::default()),
            log: None,
            dialog: None,
            finish_reason: FinishReason::ContentFilter,
            model: String::new(),
            reasoning_content: None,
            tool_calls: Vec::new(),
            rewritten: Vec::new(),
        }
    }
}
