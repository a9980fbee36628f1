//! `streamguard chat`: a terminal chat over a local config or a running
//! server, streaming or not.
//!
//! Interactive (stdin is a terminal): a `> ` prompt, history kept, ctrl-C
//! stops the current answer, ctrl-D or `exit` ends. Scripted (stdin is a pipe):
//! each line is one user turn and stdout gets exactly one line per input line
//! (an answer's own line breaks written as `\n`; an empty line for an empty
//! input or a failed turn, whose error goes to stderr); the exit status is
//! non-zero when a turn failed.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, anyhow};
use futures_util::{StreamExt, stream::BoxStream};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    Guardrails,
    dialog::DialogState,
    engine::{Event, Registry, Request, Response},
    llm::ChatMessage,
    pb::{self, guardrails_client::GuardrailsClient},
};

/// Where the answers come from.
pub enum Backend {
    /// A config loaded in this process.
    Local(Guardrails),
    /// A streamguard server.
    Remote {
        client: GuardrailsClient<tonic::transport::Channel>,
        config_id: String,
    },
}

type Events = BoxStream<'static, anyhow::Result<Event>>;

impl Backend {
    /// Loads a local config: `dir` itself, or `dir/<config_id>`.
    pub fn local(dir: PathBuf, config_id: Option<String>) -> anyhow::Result<(Self, String)> {
        let registry = Registry::load(&dir)
            .with_context(|| format!("loading configs from {}", dir.display()))?
            .with_default(config_id.clone())?;
        let rails = match (&config_id, registry.default_id()) {
            (Some(id), _) => registry.get(id)?.clone(),
            (None, Some(id)) => registry.get(id)?.clone(),
            (None, None) => {
                let ids: Vec<_> = registry
                    .iter()
                    .map(|g| g.config().id().to_string())
                    .collect();
                match ids.as_slice() {
                    [only] => registry.get(only)?.clone(),
                    _ => {
                        return Err(anyhow!(
                            "{} holds several configs ({}); choose one with --config-id",
                            dir.display(),
                            ids.join(", ")
                        ));
                    }
                }
            }
        };
        let path = rails.config().path().display().to_string();
        Ok((Backend::Local(rails), path))
    }

    /// Connects to a server.
    pub async fn remote(server: String, config_id: String) -> anyhow::Result<Self> {
        let client = GuardrailsClient::connect(server.clone())
            .await
            .with_context(|| format!("connecting to {server}"))?;
        Ok(Backend::Remote { client, config_id })
    }

    /// `Err(reason)` when streaming is not possible on this config.
    async fn streaming_support(&mut self) -> anyhow::Result<Result<(), String>> {
        match self {
            Backend::Local(rails) => Ok(rails.check_streaming().map_err(|e| e.to_string())),
            Backend::Remote { client, config_id } => {
                let list = client
                    .list_configs(pb::ListConfigsRequest {})
                    .await
                    .map_err(|s| anyhow!("ListConfigs: {}", s.message()))?
                    .into_inner();
                let info = list
                    .configs
                    .into_iter()
                    .find(|c| &c.id == config_id)
                    .ok_or_else(|| anyhow!("the server has no config `{config_id}`"))?;
                Ok(if info.streaming_supported {
                    Ok(())
                } else {
                    Err(info.streaming_unsupported_reason)
                })
            }
        }
    }

    /// The answer to `messages` as events (one `Final` when not streaming).
    async fn ask(
        &mut self,
        messages: Vec<ChatMessage>,
        state: Option<DialogState>,
        streaming: bool,
    ) -> anyhow::Result<Events> {
        let mut request = Request::from(messages);
        // A local dialog keeps its state (its flows' variables, the flow
        // waiting for the user) from turn to turn, as NeMo's chat does.
        request.state = state;
        match self {
            Backend::Local(rails) => {
                if streaming {
                    Ok(Box::pin(
                        rails
                            .stream(request)?
                            .map(|e| e.map_err(anyhow::Error::from)),
                    ))
                } else {
                    let response = rails.generate(request).await?;
                    Ok(Box::pin(futures_util::stream::iter([Ok(Event::Final(
                        Box::new(response),
                    ))])))
                }
            }
            Backend::Remote { client, config_id } => {
                let request = pb::GenerateRequest {
                    config_id: config_id.clone(),
                    messages: request
                        .messages
                        .into_iter()
                        .map(|m| pb::Message {
                            role: m.role.as_str().to_string(),
                            content: m.content,
                            ..pb::Message::default()
                        })
                        .collect(),
                    options: None,
                    model: request.model.unwrap_or_default(),
                    config_ids: Vec::new(),
                    state: None,
                    thread_id: String::new(),
                    ..pb::GenerateRequest::default()
                };
                let status = |s: tonic::Status| anyhow!("{:?}: {}", s.code(), s.message());
                if streaming {
                    let stream = client
                        .stream_generate(request)
                        .await
                        .map_err(status)?
                        .into_inner();
                    Ok(Box::pin(stream.map(move |m| {
                        let m = m.map_err(status)?;
                        match m.event {
                            Some(pb::stream_generate_response::Event::Chunk(c)) => {
                                Ok(Event::Chunk(c.text))
                            }
                            Some(pb::stream_generate_response::Event::Final(f)) => {
                                Ok(Event::Final(Box::new(from_pb(f))))
                            }
                            Some(pb::stream_generate_response::Event::Reasoning(r)) => {
                                Ok(Event::Reasoning(r.text))
                            }
                            // The chat sends no tools.
                            Some(pb::stream_generate_response::Event::ToolCall(_)) => Err(anyhow!(
                                "the server sent a tool call the chat did not ask for"
                            )),
                            None => Err(anyhow!("the server sent an empty event")),
                        }
                    })))
                } else {
                    let r = client.generate(request).await.map_err(status)?.into_inner();
                    Ok(Box::pin(futures_util::stream::iter([Ok(Event::Final(
                        Box::new(from_pb(r)),
                    ))])))
                }
            }
        }
    }
}

fn from_pb(r: pb::GenerateResponse) -> Response {
    let pb::GenerateResponse {
        message,
        violation,
        usage,
        config_id: _,
        log: _,
        dialog,
        finish_reason: _,
        response_id: _,
        model,
        reasoning_content: _,
        state: _,
    } = r;
    Response {
        content: message.map(|m| m.content).unwrap_or_default(),
        violation: violation.map(|v| crate::engine::Violation {
            stage: if v.stage == "output" {
                crate::rails::Stage::Output
            } else {
                crate::rails::Stage::Input
            },
            kind: if v.code == crate::engine::ViolationKind::RailFailed.code() {
                crate::engine::ViolationKind::RailFailed
            } else {
                crate::engine::ViolationKind::Blocked
            },
            rail: v.rail,
            message: v.message,
            reason: v.reason,
            refusal: None,
            tool: (!v.tool.is_empty()).then_some(v.tool),
        }),
        usage: usage.map(|u| crate::llm::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }),
        log: None,
        model,
        reasoning_content: None,
        tool_calls: Vec::new(),
        rewritten: Vec::new(),
        finish_reason: crate::engine::FinishReason::default(),
        dialog: dialog.map(|d| crate::engine::DialogTurn {
            user_intent: d.user_intent,
            bot_intent: d.bot_intent,
            context: Default::default(),
            state: None,
        }),
    }
}

/// Runs the chat until end of input, `exit`, or ctrl-C at the prompt.
pub async fn run(mut backend: Backend, path: String, mut streaming: bool) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    if streaming && let Err(reason) = backend.streaming_support().await? {
        eprintln!(
            "WARNING: The config `{path}` does not support streaming. Falling back to normal mode."
        );
        eprintln!("{reason}");
        streaming = false;
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut history: Vec<ChatMessage> = Vec::new();
    let mut state = DialogState::default();
    let mut stdout = std::io::stdout();
    let (mut turns, mut failed) = (0usize, 0usize);
    loop {
        if interactive {
            print!("> ");
            stdout.flush()?;
        }
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else {
            if interactive {
                println!();
            }
            return match failed {
                0 => Ok(()),
                n => Err(anyhow!("{n} of {turns} turns failed")),
            };
        };
        let text = line.trim();
        if text.is_empty() {
            if !interactive {
                writeln!(stdout)?;
            }
            continue;
        }
        if interactive && matches!(text, "exit" | "quit") {
            return Ok(());
        }
        turns += 1;
        let mut messages = history.clone();
        messages.push(ChatMessage::user(text));
        let out = Out {
            stdout: &mut stdout,
            one_line: !interactive,
        };
        let asked = (messages.clone(), Some(state.clone()));
        match answer(&mut backend, asked, streaming, out).await {
            Ok(Some(response)) => {
                if let Some(next) = response.dialog.and_then(|d| d.state) {
                    state = next;
                }
                messages.push(ChatMessage::assistant(response.content));
                history = messages;
            }
            Ok(None) => eprintln!("\n(answer stopped)"),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
}

/// Where an answer goes: stdout, on one line when the chat is scripted.
struct Out<'a> {
    stdout: &'a mut std::io::Stdout,
    one_line: bool,
}

impl Out<'_> {
    fn text(&mut self, text: &str) -> std::io::Result<()> {
        match self.one_line && text.contains('\n') {
            true => self
                .stdout
                .write_all(text.replace('\n', "\\n").as_bytes())?,
            false => self.stdout.write_all(text.as_bytes())?,
        }
        self.stdout.flush()
    }

    fn end_line(&mut self) -> std::io::Result<()> {
        writeln!(self.stdout)?;
        self.stdout.flush()
    }
}

/// Prints one answer; `None` when ctrl-C stopped it.
async fn answer(
    backend: &mut Backend,
    (messages, state): (Vec<ChatMessage>, Option<DialogState>),
    streaming: bool,
    mut out: Out<'_>,
) -> anyhow::Result<Option<Response>> {
    let mut events = match backend.ask(messages, state, streaming).await {
        Ok(events) => events,
        Err(e) => {
            if out.one_line {
                out.end_line()?;
            }
            return Err(e);
        }
    };
    let mut printed = false;
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = tokio::signal::ctrl_c() => return Ok(None),
        };
        match event {
            Some(Ok(Event::Chunk(text))) => {
                out.text(&text)?;
                printed = true;
            }
            Some(Ok(Event::Reasoning(_) | Event::ToolCall(_))) => {}
            Some(Ok(Event::Final(response))) => {
                if !printed {
                    out.text(&response.content)?;
                }
                out.end_line()?;
                if let Some(v) = &response.violation {
                    eprintln!("[blocked by {} rail `{}`: {}]", v.stage, v.rail, v.message);
                }
                return Ok(Some(*response));
            }
            Some(Err(e)) => {
                if printed || out.one_line {
                    out.end_line()?;
                }
                return Err(e);
            }
            None => {
                out.end_line()?;
                return Err(anyhow!("the answer ended without a final event"));
            }
        }
    }
}
