//! The part of NeMo's Colang 2 standard library (`core`, `avatars`,
//! `timing`, `llm`) streamguard runs, written as Colang 2 flows over the
//! UMIM events NeMo's flows of the same names match and send. A config's
//! own flow of the same name replaces one of these.

use crate::config::SourceFile;

/// The flow whose running makes the main model answer what no flow takes.
pub(super) const CONTINUATION: &str = "llm continuation";

/// The flows, for error messages.
pub(super) const NAMES: &str = "`user said`, `user said something`, `bot say`, `bot said`, \
     `bot gesture`, `wait`, `llm continuation` …";

const FLOWS: &str = r#"
flow user said $text -> $transcript
  match UtteranceUserAction.Finished(final_transcript=$text) as $event
  $transcript = $event.final_transcript

flow user said something -> $transcript
  match UtteranceUserAction.Finished() as $event
  $transcript = $event.final_transcript

flow user saying something -> $transcript
  match UtteranceUserAction.TranscriptUpdated() as $event
  $transcript = $event.interim_transcript

flow user started saying something
  match UtteranceUserAction.Started() as $event

flow user became present
  match PresenceUserAction.Started() as $event

flow bot say $text
  await UtteranceBotAction(script=$text) as $action

flow bot said $text
  match FlowFinished(flow_id="bot say", text=$text) as $event

flow bot said something -> $text
  match FlowFinished(flow_id="bot say") as $event
  $text = $event.text

flow bot gesture $gesture
  await GestureBotAction(gesture=$gesture) as $action

flow bot posture $posture
  await PostureBotAction(posture=$posture) as $action

flow wait $time_s $timer_name="wait_timer"
  await TimerBotAction(timer_name=$timer_name, duration=$time_s) as $action

flow llm continuation
  match StreamguardNeverSent() as $event
"#;

/// The library as a source file.
pub(super) fn source() -> SourceFile {
    SourceFile {
        path: "<streamguard's Colang 2 core library>".into(),
        text: FLOWS.to_string(),
    }
}
