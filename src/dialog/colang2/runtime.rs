//! The interaction flows in front of the main model, as the engine's
//! answerer: each user message goes through the state machine (the input
//! rails flow first, when the config writes its own), and the system
//! actions the flows start run between the machine's steps until the
//! flows wait for the user again. What the bot said is the answer; a
//! message no flow takes, with `llm continuation` activated, gets the main
//! model's answer, streamed.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::{
    Interaction, library,
    machine::{Event, Machine, Outcome},
    tasks::{Call, Tasks},
};
use crate::{
    dialog::Actions,
    engine::answer::{AnswerRequest, Answerer, DialogTurn, Piece, PieceStream},
    llm::{LlmError, Provider, Role},
};

/// The most user messages a request without a state replays (each may
/// call the LLM and the actions server: send the state back instead).
const MAX_TURNS: usize = 50;
/// The most rounds of system actions one user message runs.
const MAX_ROUNDS: usize = 32;

/// What a turn gave: what the flows said, or the main model's answer.
enum Answer {
    Said(Vec<String>),
    Continue,
}

/// What the bot said in these events.
fn utterances(events: &[Event]) -> impl Iterator<Item = String> + '_ {
    events
        .iter()
        .filter(|e| e.name == "UtteranceBotActionFinished")
        .filter_map(|e| e.args.get("final_script"))
        .map(crate::dialog::value::display)
}

/// The request's last user message.
fn last_user(request: &AnswerRequest) -> String {
    request
        .chat
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

fn text_arg(key: &str, text: &str) -> Map<String, Value> {
    let mut args = Map::new();
    args.insert(key.into(), Value::String(text.to_string()));
    args
}

impl Interaction {
    /// One user message through the flows.
    async fn turn(&self, tasks: &Tasks, m: &mut Machine, c: &Call<'_>) -> Result<Answer, LlmError> {
        let message = c.message;
        // NeMo's `user said` sets `$user_message`.
        m.set_global("user_message", Value::String(message.to_string()));
        let shown = message.replace('\n', "\\n");
        m.log(true, format!("user action: user said \"{shown}\""));
        if self.input_flow
            && let Some(refusal) = self
                .rail(tasks, m, c, ("input rails", "input_text", message))
                .await?
        {
            // The rail refused (`bot say …` + `abort`): that is the answer,
            // and the refused message stays out of the history.
            m.forget_user();
            return Ok(Answer::Said(refusal));
        }
        let input = Event::new(
            "UtteranceUserActionFinished",
            text_arg("final_transcript", message),
        );
        let out = m.turn(&self.program, input).map_err(LlmError::Api)?;
        let out = self.drive(tasks, m, c, out).await?;
        let said: Vec<String> = utterances(&out.events).collect();
        let said = self.guard_said(tasks, m, c, said).await?;
        let continues = said.is_empty()
            && out.unhandled_user
            && !out.intent_taken
            && m.running(library::CONTINUATION);
        Ok(match continues {
            true => Answer::Continue,
            false => Answer::Said(said),
        })
    }

    /// Runs the config's own rail flow `(flow, parameter, text)` on its
    /// own: `None` when it passed, what it said when it refused.
    async fn rail(
        &self,
        tasks: &Tasks,
        m: &mut Machine,
        c: &Call<'_>,
        (flow, key, text): (&str, &str, &str),
    ) -> Result<Option<Vec<String>>, LlmError> {
        let out = m
            .start_alone(&self.program, flow, text_arg(key, text))
            .map_err(LlmError::Api)?;
        let out = self.drive(tasks, m, c, out).await?;
        match m.watched_passed() {
            Some(true) => Ok(None),
            Some(false) => Ok(Some(utterances(&out.events).collect())),
            None => {
                m.stop_watched(&self.program).map_err(LlmError::Api)?;
                Err(LlmError::Api(format!(
                    "the Colang 2 flow `{flow}` waits for an event no turn sends"
                )))
            }
        }
    }

    /// The bot's messages through the config's own `flow output rails`
    /// (when it has one), each on its own: a refused one is replaced by
    /// what the rail said, and nothing after it goes out.
    async fn guard_said(
        &self,
        tasks: &Tasks,
        m: &mut Machine,
        c: &Call<'_>,
        said: Vec<String>,
    ) -> Result<Vec<String>, LlmError> {
        if !self.output_flow {
            return Ok(said);
        }
        let mut out = Vec::with_capacity(said.len());
        for text in said {
            match self
                .rail(tasks, m, c, ("output rails", "output_text", &text))
                .await?
            {
                None => out.push(text),
                Some(refusal) => {
                    m.forget_said(&text);
                    out.extend(refusal);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Runs the system actions the flows started, feeding their results
    /// back, until the flows start none.
    async fn drive(
        &self,
        tasks: &Tasks,
        m: &mut Machine,
        c: &Call<'_>,
        mut out: Outcome,
    ) -> Result<Outcome, LlmError> {
        for _ in 0..MAX_ROUNDS {
            let mut finished = Vec::new();
            for (uid, name, args) in std::mem::take(&mut out.started) {
                let Some(ret) = tasks.run(c, m, &name, &args).await? else {
                    continue;
                };
                let mut done = Map::new();
                done.insert("action_uid".into(), Value::from(uid));
                done.insert("return_value".into(), ret);
                done.insert("is_success".into(), Value::Bool(true));
                finished.push(Event::new(&format!("{name}Finished"), done));
            }
            if finished.is_empty() {
                return Ok(out);
            }
            let next = m.resume(&self.program, finished).map_err(LlmError::Api)?;
            out.events.extend(next.events);
            out.unhandled_user |= next.unhandled_user;
            out.intent_taken |= next.intent_taken;
            out.started = next.started;
        }
        Err(LlmError::Api(format!(
            "the Colang 2 flows ran over {MAX_ROUNDS} rounds of actions for one user message"
        )))
    }
}

/// The interaction flows in front of the main model, as the engine's answerer.
#[derive(Debug, Clone)]
pub struct InteractionRuntime {
    dialog: Arc<Interaction>,
    tasks: Arc<Tasks>,
    llm: Arc<dyn Provider>,
    actions: Arc<dyn Actions>,
    /// What answers a message no flow takes (`llm continuation`): the main
    /// model, with the knowledge base's chunks when there is one.
    answer: Arc<dyn Answerer>,
}

impl InteractionRuntime {
    pub fn new(
        dialog: Interaction,
        config: &crate::config::Config,
        (llm, actions, answer): (Arc<dyn Provider>, Arc<dyn Actions>, Arc<dyn Answerer>),
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(InteractionRuntime {
            dialog: Arc::new(dialog),
            tasks: Arc::new(Tasks::new(config)?),
            llm,
            actions,
            answer,
        })
    }

    /// Where the request resumes from and the turns to run: with a state
    /// its last user message, else every user message from the start.
    fn read(&self, request: &AnswerRequest) -> (Machine, Vec<String>) {
        let mut users = request
            .chat
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.clone());
        let given = request.state.as_ref().and_then(|s| s.colang_2.clone());
        let had = given.is_some();
        let kept = given
            .and_then(|v| serde_json::from_value::<Machine>(v).ok())
            .filter(|m| m.fits(&self.dialog.program));
        if had && kept.is_none() {
            tracing::warn!(
                "colang: the request's Colang 2 state does not fit the config; replaying"
            );
        }
        match kept {
            Some(m) => (m, users.next_back().into_iter().collect()),
            None => {
                let all: Vec<String> = users.collect();
                let skip = all.len().saturating_sub(MAX_TURNS);
                (Machine::default(), all.into_iter().skip(skip).collect())
            }
        }
    }
}

impl Answerer for InteractionRuntime {
    fn can_stream(&self) -> bool {
        self.answer.can_stream()
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let (mut machine, turns) = self.read(&request);
        let this = self.clone();
        Box::pin(async_stream::try_stream! {
            let mut answer = Answer::Said(Vec::new());
            for message in &turns {
                let call = Call {
                    prog: &this.dialog.program,
                    llm: &this.llm,
                    actions: &this.actions,
                    request: &request,
                    message,
                };
                answer = this.dialog.turn(&this.tasks, &mut machine, &call).await?;
            }
            let mut state = request.state.clone().unwrap_or_default();
            let saved = serde_json::to_value(&machine)
                .map_err(|e| LlmError::Api(format!("the Colang 2 state: {e}")))?;
            state.colang_2 = Some(saved);
            yield Piece::Dialog(DialogTurn { state: Some(state), ..DialogTurn::default() });
            match answer {
                Answer::Said(said) => {
                    let text = said.join("\n");
                    if !text.is_empty() {
                        yield Piece::Text(text);
                    }
                }
                // The config's own output rails flow checks the whole answer.
                Answer::Continue if this.dialog.output_flow => {
                    let mut pieces = this.answer.stream(request.clone());
                    let mut text = String::new();
                    while let Some(piece) = pieces.next().await {
                        if let Piece::Text(t) = piece? {
                            text.push_str(&t);
                        }
                    }
                    let message = last_user(&request);
                    let call = Call {
                        prog: &this.dialog.program,
                        llm: &this.llm,
                        actions: &this.actions,
                        request: &request,
                        message: &message,
                    };
                    let guarded = this.dialog.guard_said(&this.tasks, &mut machine, &call, vec![text]).await?;
                    let text = guarded.join("\n");
                    if !text.is_empty() {
                        yield Piece::Text(text);
                    }
                }
                Answer::Continue => {
                    let mut pieces = this.answer.stream(request);
                    while let Some(piece) = pieces.next().await {
                        match piece? {
                            // The flows' state is the turn's.
                            Piece::Dialog(_) => {}
                            other => yield other,
                        }
                    }
                }
            }
        })
    }
}
