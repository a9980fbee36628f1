//! The order of work: input rails → the main LLM → output rails, for whole
//! answers ([`Guardrails::generate`]) and streams ([`Guardrails::stream`]).
//!
//! Every front end (gRPC, the CLI, the library) calls these two methods; none
//! re-implements rails, prompts or the streaming rules.

mod handler;
mod log;
mod preconditions;
mod registry;
mod stream;
mod window;

use std::{path::Path, sync::Arc, time::Instant};

use futures_util::{StreamExt, stream::BoxStream, stream::FuturesUnordered};

use crate::{
    config::{self, Config, ConfigError},
    error::Error,
    llm::{
        self, CallLog, CallParams, CallRecord, ChatMessage, ChatRequest, Provider,
        UpstreamSettings, Usage,
    },
    rails::{self, Providers, Rail, RailInput, RailSet, Stage, Verdict},
};

pub use handler::{HandlerChunks, StreamingHandler};
pub use log::{Decision, GenerationLog, PhaseTiming, RailRecord};
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
    /// The caller's W3C `traceparent`, passed on to the main LLM call.
    pub traceparent: Option<String>,
}

impl From<Vec<ChatMessage>> for Request {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Request {
            messages,
            options: Options::default(),
            traceparent: None,
        }
    }
}

impl Request {
    /// A one-turn request.
    pub fn user(text: impl Into<String>) -> Self {
        Request {
            messages: vec![ChatMessage::new("user", text)],
            options: Options::default(),
            traceparent: None,
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
    /// Run only these configured input flows (`None`: all).
    pub input_flows: Option<Vec<String>>,
    /// Run only these configured output flows (`None`: all).
    pub output_flows: Option<Vec<String>>,
    /// Return a [`GenerationLog`] with the response.
    pub log: bool,
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
        }
    }
}

/// Why a rail stopped the request or the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The flow that blocked.
    pub rail: String,
    pub stage: Stage,
    /// `guardrails_violation`, or `internal_error` when the rail failed.
    pub kind: &'static str,
    /// `content_blocked`, or `rail_execution_failure`.
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

    fn failed(rail: &str, stage: Stage, reason: String) -> Self {
        Violation {
            rail: rail.to_string(),
            stage,
            kind: "internal_error",
            code: "rail_execution_failure",
            message: format!("Error in {rail} rail: {reason}"),
            reason,
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
}

/// The intents a dialog turn was answered with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialogTurn {
    pub user_intent: String,
    pub bot_intent: String,
}

/// Collects a streamed answer into a completion and the dialog's intents.
async fn collect(
    mut stream: llm::DeltaStream,
) -> Result<(llm::Completion, Option<DialogTurn>), llm::LlmError> {
    let mut text = String::new();
    let mut usage = None;
    let mut dialog = None;
    while let Some(d) = stream.next().await {
        match d? {
            llm::Delta::Text(t) => text.push_str(&t),
            llm::Delta::Usage(u) => usage = Some(u),
            llm::Delta::Dialog {
                user_intent,
                bot_intent,
            } => {
                dialog = Some(DialogTurn {
                    user_intent,
                    bot_intent,
                })
            }
        }
    }
    Ok((llm::Completion { text, usage }, dialog))
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A piece of the answer, as the model produced it.
    Chunk(String),
    /// The whole response; always the last event. Boxed so the per-chunk
    /// events stay small.
    Final(Box<Response>),
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
    warnings: Vec<String>,
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
        Self::build(config, None, &UpstreamSettings::default())
    }

    /// Like [`Guardrails::new`], with upstream timeouts and retries other
    /// than the defaults (a model's own `parameters` still win).
    pub fn with_upstream(config: Config, upstream: &UpstreamSettings) -> Result<Self, ConfigError> {
        Self::build(config, None, upstream)
    }

    /// Like [`Guardrails::new`], with your own provider as the main model
    /// (the config's `type: main` entry still names it in errors and logs).
    pub fn with_main_provider(
        config: Config,
        main: Arc<dyn Provider>,
    ) -> Result<Self, ConfigError> {
        Self::build(config, Some(main), &UpstreamSettings::default())
    }

    fn build(
        config: Config,
        main: Option<Arc<dyn Provider>>,
        upstream: &UpstreamSettings,
    ) -> Result<Self, ConfigError> {
        let mut providers = Providers::new();
        if let Some(main) = main {
            providers.insert("main".into(), main);
        }
        for model in &config.models {
            providers
                .entry(model.kind.clone())
                .or_insert(llm::build(model, upstream)?);
        }
        let mut main = providers
            .get("main")
            .cloned()
            .ok_or_else(|| ConfigError::invalid(config.main_file(), "models", "no main model"))?;
        // With Colang dialog flows, the dialog runtime answers in front of the
        // main model; everything downstream streams from it unchanged.
        if let Some(dialog) = &config.dialog {
            main = Arc::new(crate::colang::runtime::DialogRuntime::new(
                &config,
                dialog.clone(),
                main,
                upstream,
            )?);
        }
        let mut warnings = Vec::new();
        let (input, output) = rails::build(&config, &providers, &mut warnings)?;
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
                warnings,
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
        preconditions::check(&self.inner.config, self.inner.main.can_stream(), true)
    }

    /// Answers the conversation whole: input rails, the main LLM, output rails
    /// on the whole answer. Works on every config.
    pub async fn generate(&self, request: Request) -> Result<Response, Error> {
        let started = Instant::now();
        let mut run = self.inner.start(&request)?;
        let inner = &self.inner;
        let history_len = request.messages.len() - 1;
        let (violation, rewritten) = run.input_check(inner, &request.messages).await?;
        if let Some(v) = violation {
            return Ok(run.finish(inner.blocked(v), started));
        }
        let user_input = rewritten.unwrap_or_else(|| request.messages[history_len].content.clone());
        let mut main_request = inner.main_request(request, &user_input);
        main_request.calls = run.log.as_ref().map(|l| l.calls.clone());
        let prompt = run
            .log
            .as_ref()
            .map(|_| CallRecord::prompt_text(&main_request.messages));
        let generation = Instant::now();
        let (completion, dialog) = if inner.config.dialog.is_some() {
            // The dialog runtime reports its intents beside the text.
            collect(inner.main.stream(main_request)).await
        } else {
            inner.main.complete(main_request).await.map(|c| (c, None))
        }
        .map_err(upstream_error)?;
        run.timing.generation = generation.elapsed();
        if let (Some(log), Some(prompt)) = (&run.log, prompt) {
            log.calls.record(CallRecord {
                task: "general".into(),
                prompt,
                completion: completion.text.clone(),
                usage: completion.usage,
                duration: run.timing.generation,
            });
        }
        let mut content = completion.text;
        match run.output_check(inner, &user_input, &content).await? {
            Checked::Pass => {}
            Checked::Rewritten(text) => content = text,
            Checked::Stop(v) => {
                let response = Response {
                    usage: completion.usage,
                    ..inner.blocked(v)
                };
                return Ok(run.finish(response, started));
            }
        }
        let response = Response {
            content,
            violation: None,
            usage: completion.usage,
            log: None,
            dialog,
        };
        Ok(run.finish(response, started))
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
                Event::Final(response) => last = Some(*response),
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
        let run = self.inner.start(&request)?;
        let output_on = !run.output.is_empty();
        preconditions::check(&self.inner.config, self.inner.main.can_stream(), output_on)?;
        Ok(stream::run(self.inner.clone(), run, request, started))
    }
}

/// Counts an upstream failure and wraps it.
fn upstream_error(e: llm::LlmError) -> Error {
    metrics::counter!("streamguard_upstream_errors_total", "kind" => e.kind()).increment(1);
    Error::Upstream(e)
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

/// The rails of a stage that a request selected.
fn select(
    rails: &RailSet,
    on: bool,
    only: Option<&Vec<String>>,
    field: &'static str,
) -> Result<RailSet, Error> {
    if !on {
        return Ok(Vec::new());
    }
    let Some(only) = only else {
        return Ok(rails.clone());
    };
    for name in only {
        if !rails.iter().any(|r| r.flow() == name) {
            let configured: Vec<&str> = rails.iter().map(|r| r.flow()).collect();
            return Err(Error::invalid(
                field,
                format!(
                    "`{name}` is not a configured flow of this stage; configured: [{}]",
                    configured.join(", ")
                ),
            ));
        }
    }
    Ok(rails
        .iter()
        .filter(|r| only.iter().any(|n| n == r.flow()))
        .cloned()
        .collect())
}

/// What an output check decided for a text.
enum Checked {
    Pass,
    Rewritten(String),
    Stop(Violation),
}

/// Per-request logging state.
struct RunLog {
    calls: Arc<CallLog>,
    rails: Vec<RailRecord>,
}

/// The call log and the rail records of a request log, borrowed apart.
fn log_parts(log: &mut Option<RunLog>) -> (Option<&CallLog>, Option<&mut Vec<RailRecord>>) {
    match log {
        Some(RunLog { calls, rails }) => (Some(&**calls), Some(rails)),
        None => (None, None),
    }
}

/// One request's selected rails, log and timings.
struct Run {
    input: RailSet,
    /// Shared with the window checks of a stream.
    output: Arc<RailSet>,
    log: Option<RunLog>,
    timing: PhaseTiming,
}

impl Run {
    async fn input_check(
        &mut self,
        inner: &Inner,
        messages: &[ChatMessage],
    ) -> Result<(Option<Violation>, Option<String>), Error> {
        let Some((last, history)) = messages.split_last() else {
            return Ok((None, None));
        };
        let started = Instant::now();
        let (calls, records) = log_parts(&mut self.log);
        let input = RailInput {
            user_input: &last.content,
            bot_response: None,
            history,
            calls,
        };
        let outcome = run_rails(
            &self.input,
            inner.config.input.parallel,
            Stage::Input,
            input,
            records,
        )
        .await;
        self.timing.input_rails = started.elapsed();
        outcome
    }

    async fn output_check(
        &mut self,
        inner: &Inner,
        user_input: &str,
        text: &str,
    ) -> Result<Checked, Error> {
        if self.output.is_empty() {
            return Ok(Checked::Pass);
        }
        let started = Instant::now();
        let (calls, records) = log_parts(&mut self.log);
        let input = RailInput {
            user_input,
            bot_response: Some(text),
            history: &[],
            calls,
        };
        let outcome = run_rails(
            &self.output,
            inner.config.output.parallel,
            Stage::Output,
            input,
            records,
        )
        .await;
        self.timing.output_rails += started.elapsed();
        Ok(match outcome? {
            (Some(v), _) => Checked::Stop(v),
            (None, Some(t)) => Checked::Rewritten(t),
            (None, None) => Checked::Pass,
        })
    }

    fn finish(self, mut response: Response, started: Instant) -> Response {
        if let Some(log) = self.log {
            let mut timing = self.timing;
            timing.total = started.elapsed();
            response.log = Some(GenerationLog {
                rails: log.rails,
                llm_calls: log.calls.take(),
                timing,
            });
        }
        response
    }
}

impl Inner {
    /// Validates the request and selects its rails.
    fn start(&self, request: &Request) -> Result<Run, Error> {
        validate(request)?;
        let o = &request.options;
        Ok(Run {
            input: select(
                &self.input,
                o.input_rails,
                o.input_flows.as_ref(),
                "options.rails.input_flows",
            )?,
            output: Arc::new(select(
                &self.output,
                o.output_rails,
                o.output_flows.as_ref(),
                "options.rails.output_flows",
            )?),
            log: o.log.then(|| RunLog {
                calls: Arc::new(CallLog::default()),
                rails: Vec::new(),
            }),
            timing: PhaseTiming::default(),
        })
    }

    /// The main LLM call: the general instruction, then the conversation
    /// with the (possibly rewritten) last user message.
    fn main_request(&self, request: Request, user_input: &str) -> ChatRequest {
        let Request {
            mut messages,
            options,
            traceparent,
        } = request;
        if let Some(last) = messages.last_mut()
            && last.content != user_input
        {
            last.content = user_input.to_string();
        }
        let mut all = Vec::with_capacity(messages.len() + 1);
        if let Some(system) = &self.system_prompt {
            all.push(ChatMessage::new("system", system.clone()));
        }
        all.extend(messages);
        ChatRequest {
            task: "general".into(),
            messages: all,
            params: options.llm_params,
            traceparent,
            calls: None,
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
            log: None,
            dialog: None,
        }
    }
}

/// Runs rails in order (stopping at the first block; a rewrite feeds the
/// next rail) or all at once (the first block wins; dropping the rest
/// cancels them). Returns the violation, or the rewritten text.
async fn run_rails(
    rails: &[Arc<dyn Rail>],
    parallel: bool,
    stage: Stage,
    input: RailInput<'_>,
    mut records: Option<&mut Vec<RailRecord>>,
) -> Result<(Option<Violation>, Option<String>), Error> {
    if rails.is_empty() {
        return Ok((None, None));
    }
    let mut record = |rail: &Arc<dyn Rail>,
                      verdict: &Result<Verdict, rails::RailError>,
                      started: Instant| {
        let decision = match verdict {
            Ok(Verdict::Allow) => Decision::Allow,
            Ok(Verdict::Block { .. }) => Decision::Block,
            Ok(Verdict::Modify { .. }) => Decision::Modify,
            Err(_) => Decision::Error,
        };
        let took = started.elapsed();
        metrics::counter!("streamguard_rail_runs_total", "rail" => rail.flow().to_string(), "decision" => decision.as_str())
                .increment(1);
        metrics::histogram!("streamguard_rail_duration_seconds", "rail" => rail.flow().to_string())
            .record(took.as_secs_f64());
        if let Some(records) = records.as_deref_mut() {
            let (decision, reason) = match verdict {
                Ok(Verdict::Allow) => (Decision::Allow, String::new()),
                Ok(Verdict::Block { reason }) => (Decision::Block, reason.clone()),
                Ok(Verdict::Modify { reason, .. }) => (Decision::Modify, reason.clone()),
                Err(e) => (Decision::Error, e.0.clone()),
            };
            records.push(RailRecord {
                flow: rail.flow().to_string(),
                stage,
                decision,
                reason,
                duration: started.elapsed(),
            });
        }
    };
    let fail = |rail: &Arc<dyn Rail>, e: rails::RailError| Error::Rail {
        rail: rail.flow().to_string(),
        message: e.0,
    };
    let mut rewritten: Option<String> = None;
    if parallel && rails.len() > 1 {
        let mut pending: FuturesUnordered<_> = rails
            .iter()
            .map(|rail| async move {
                let started = Instant::now();
                (rail, rail.check(input).await, started)
            })
            .collect();
        while let Some((rail, verdict, started)) = pending.next().await {
            record(rail, &verdict, started);
            match verdict.map_err(|e| fail(rail, e))? {
                Verdict::Allow => {}
                Verdict::Block { reason } => {
                    return Ok((Some(Violation::blocked(rail.flow(), stage, reason)), None));
                }
                Verdict::Modify { text, .. } => rewritten = Some(text),
            }
        }
        return Ok((None, rewritten));
    }
    for rail in rails {
        let current = rewritten.as_deref();
        let input = RailInput {
            user_input: match (stage, current) {
                (Stage::Input, Some(t)) => t,
                _ => input.user_input,
            },
            bot_response: match (stage, current) {
                (Stage::Output, Some(t)) => Some(t),
                _ => input.bot_response,
            },
            ..input
        };
        let started = Instant::now();
        let verdict = rail.check(input).await;
        record(rail, &verdict, started);
        match verdict.map_err(|e| fail(rail, e))? {
            Verdict::Allow => {}
            Verdict::Block { reason } => {
                return Ok((Some(Violation::blocked(rail.flow(), stage, reason)), None));
            }
            Verdict::Modify { text, .. } => rewritten = Some(text),
        }
    }
    Ok((None, rewritten))
}
