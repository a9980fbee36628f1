//! Guarding messages without the main model: NeMo's `check_async`. The
//! user's message goes through the input rails, the assistant's through
//! the output rails (with the user's message as their `user_input`), as
//! their roles decide or as the caller names the stages; the answer says
//! whether they passed, were rewritten or were blocked, and by which rail.

use std::time::Instant;

use super::{GenerationLog, Guardrails, Request, Violation, run::Checked};
use crate::{
    error::Error,
    llm::{ChatMessage, Role},
    rails::Stage,
};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Every rail allowed the text.
    Passed,
    /// A rail rewrote it (masked sensitive data, …): see the content.
    Modified,
    /// A rail blocked it.
    Blocked,
}

impl CheckStatus {
    /// NeMo's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passed => "passed",
            CheckStatus::Modified => "modified",
            CheckStatus::Blocked => "blocked",
        }
    }
}

/// The outcome of [`Guardrails::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub status: CheckStatus,
    /// The checked text after the rails: the assistant's message when the
    /// output rails ran, else the user's; the refusal when blocked.
    pub content: String,
    /// Why it was blocked (the rail, its stage and explanation).
    pub violation: Option<Violation>,
    /// The stages that ran.
    pub stages: Vec<Stage>,
    /// The request's log, when its options asked for it.
    pub log: Option<GenerationLog>,
}

/// The stages the messages' roles call for, as NeMo's server decides: input
/// for a user message, output for an assistant's text, tool output for an
/// assistant's tool calls, tool input for a tool result.
pub fn stages_for(messages: &[ChatMessage]) -> Vec<Stage> {
    let has = |role: Role| messages.iter().any(|m| m.role == role);
    let calls = messages.iter().any(|m| !m.tool_calls().is_empty());
    let text = messages
        .iter()
        .any(|m| m.role == Role::Assistant && m.tool_calls().is_empty());
    let mut stages = Vec::new();
    if has(Role::User) {
        stages.push(Stage::Input);
    }
    if text {
        stages.push(Stage::Output);
    }
    if calls {
        stages.push(Stage::ToolOutput);
    }
    // The tool results at the end: those a model has not answered yet.
    if messages.last().is_some_and(|m| m.role == Role::Tool) {
        stages.push(Stage::ToolInput);
    }
    stages
}

fn last_of(messages: &[ChatMessage], role: Role) -> Option<usize> {
    messages.iter().rposition(|m| m.role == role)
}

impl Guardrails {
    /// Runs the rails on the request's messages without calling the main
    /// model. `stages` names the stages to run (`None`: as the roles say).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use streamguard::{Guardrails, Request, engine::CheckStatus};
    ///
    /// let rails = Guardrails::from_yaml("demo", r#"
    /// rails:
    ///   input:
    ///     flows: [mask sensitive data on input]
    ///   config:
    ///     sensitive_data_detection:
    ///       input: { entities: [EMAIL_ADDRESS] }
    /// "#)?;
    /// let checked = rails.check(Request::user("Mail me at ada@example.com"), None).await?;
    /// assert_eq!(checked.status, CheckStatus::Modified);
    /// assert_eq!(checked.content, "Mail me at <EMAIL_ADDRESS>");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check(
        &self,
        request: Request,
        stages: Option<Vec<Stage>>,
    ) -> Result<CheckResult, Error> {
        let started = Instant::now();
        let inner = &self.inner;
        if request.messages.is_empty() {
            return Err(Error::invalid(
                "messages",
                "at least one message is required",
            ));
        }
        own_rail_flows(inner, "Check")?;
        let stages = stages.unwrap_or_else(|| stages_for(&request.messages));
        let user = last_of(&request.messages, Role::User);
        let assistant = last_of(&request.messages, Role::Assistant);
        if stages.contains(&Stage::Input) && user.is_none() {
            return Err(Error::invalid(
                "rail_types",
                "the input rails check a user message, and there is none",
            ));
        }
        if stages.contains(&Stage::Output) && assistant.is_none() {
            return Err(Error::invalid(
                "rail_types",
                "the output rails check an assistant message, and there is none",
            ));
        }
        let mut run = inner.start_check(&request)?;
        let context = request.context.as_ref();
        let text = |i: Option<usize>| i.map(|i| request.messages[i].content.clone());
        let mut user_text = text(user).unwrap_or_default();
        let mut original = user_text.clone();
        let mut content = user_text.clone();
        if let (true, Some(u)) = (stages.contains(&Stage::Input), user) {
            let (violation, rewritten) = run.input_check(&request.messages[..=u], context).await?;
            if let Some(v) = violation {
                return Ok(blocked(inner, run, v, stages, started));
            }
            if let Some(t) = rewritten {
                user_text = t;
            }
            content = user_text.clone();
        }
        // A rewrite of the user's message counts when both stages ran.
        let input_rewrote = content != original;
        if stages.contains(&Stage::Output) {
            let answer = text(assistant).unwrap_or_default();
            original = answer.clone();
            content = answer.clone();
            match run.output_check(&user_text, &answer, None, context).await? {
                Checked::Pass => {}
                Checked::Rewritten(t) => content = t,
                Checked::Stop(v) => return Ok(blocked(inner, run, v, stages, started)),
            }
        }
        let mut rewrote = content != original || input_rewrote;
        match tools_check(&mut run, &request, &stages, &user_text).await? {
            Tools::Blocked(v) => return Ok(blocked(inner, run, v, stages, started)),
            Tools::Result { text, rewritten } => {
                content = text;
                rewrote |= rewritten;
            }
            Tools::Passed => {}
        }
        let status = match rewrote {
            false => CheckStatus::Passed,
            true => CheckStatus::Modified,
        };
        let log = run.finish_log(started);
        Ok(CheckResult {
            status,
            content,
            violation: None,
            stages,
            log,
        })
    }
}

/// What a check's tool stages found.
enum Tools {
    /// Nothing to say (no tool stage, or the calls passed).
    Passed,
    /// The tool result as the tool input rails left it.
    Result {
        text: String,
        rewritten: bool,
    },
    Blocked(Violation),
}

/// The tool stages of a check: the tool output rails on the last assistant
/// message's calls, the tool input rails on the tool results at the end.
async fn tools_check(
    run: &mut super::run::Run,
    request: &Request,
    stages: &[Stage],
    user: &str,
) -> Result<Tools, Error> {
    let context = request.context.as_ref();
    if stages.contains(&Stage::ToolOutput) {
        let asked = request
            .messages
            .iter()
            .rev()
            .find(|m| !m.tool_calls().is_empty())
            .map(|m| m.tool_calls().to_vec())
            .ok_or_else(|| {
                Error::invalid(
                    "rail_types",
                    "the tool output rails check an assistant message's tool calls, and there are none",
                )
            })?;
        if let Some(v) = run.tool_output_check(&asked, user, context).await? {
            return Ok(Tools::Blocked(v));
        }
    }
    if !stages.contains(&Stage::ToolInput) {
        return Ok(Tools::Passed);
    }
    let mut messages = request.messages.clone();
    let Some(before) = messages
        .last()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.clone())
    else {
        return Err(Error::invalid(
            "rail_types",
            "the tool input rails check the tool results at the end of the messages, and there are none",
        ));
    };
    if let Some(v) = run.tool_input_check(&mut messages, user, context).await? {
        return Ok(Tools::Blocked(v));
    }
    let text = messages.pop().map(|m| m.content).unwrap_or_default();
    let rewritten = text != before;
    Ok(Tools::Result { text, rewritten })
}

/// A Colang 2 config whose rail flows are programs runs them in its
/// dialog, which `Check` and `GuardStream` do not run: refused, never
/// passed unchecked.
pub(super) fn own_rail_flows(inner: &super::Inner, what: &str) -> Result<(), Error> {
    match inner.config.colang_2_rail_flows() {
        (false, false) => Ok(()),
        _ => Err(Error::invalid(
            "config_id",
            format!(
                "config `{}` runs its own Colang 2 rail flows in its dialog, which {what} does not \
                 run; call Generate or StreamGenerate",
                inner.config.id()
            ),
        )),
    }
}

fn blocked(
    inner: &super::Inner,
    run: super::run::Run,
    violation: Violation,
    stages: Vec<Stage>,
    started: Instant,
) -> CheckResult {
    let content = inner.blocked(violation.clone()).content;
    CheckResult {
        status: CheckStatus::Blocked,
        content,
        violation: Some(violation),
        stages,
        log: run.finish_log(started),
    }
}
