//! The part of NeMo's Colang 2 standard library (`core`, `avatars`,
//! `timing`, `llm`) streamguard runs, written as Colang 2 flows over the
//! UMIM events NeMo's flows of the same names match and send. A config's
//! own flow of the same name replaces one of these.

use crate::config::SourceFile;

/// The flow whose running makes the main model answer what no flow takes.
pub(super) const CONTINUATION: &str = "llm continuation";

/// The flows, for error messages.
pub(super) const NAMES: &str = "`user said`, `user said something`, `bot say`, `bot inform`, \
     `bot said`, `bot gesture`, `user gestured`, `wait`, `user was silent`, `llm continuation`, \
     `generating user intent for unhandled user utterance`, `unhandled user intent`, \
     `llm continue interaction`, `bot say something like` …";

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

flow bot inform $text
  bot say $text

flow bot ask $text
  bot say $text

flow bot express $text
  bot say $text

flow bot respond $text
  bot say $text

flow bot clarify $text
  bot say $text

flow bot suggest $text
  bot say $text

flow user gestured $gesture -> $final_gesture
  match GestureUserAction.Finished(gesture=$gesture) as $event
  $final_gesture = $event.gesture

flow repeating timer $timer_id $interval_s
  while True
    await wait $interval_s $timer_id

flow polling llm request response $interval=1.0
  match StreamguardNeverSent() as $event

flow tracking bot talking state
  match StreamguardNeverSent() as $event

flow user was silent $time_s
  await wait $time_s

flow _user_said_something_unexpected -> $event
  match UnhandledEvent(event="UtteranceUserActionFinished") as $event

flow user said something unexpected -> $transcript
  match UnhandledEvent(event="UtteranceUserActionFinished") as $event
  $transcript = $event.final_transcript

flow llm continuation
  activate _intent of an unexpected utterance
  activate continuation on undefined flow
  match StreamguardNeverSent() as $event

flow _intent of an unexpected utterance
  await _user_said_something_unexpected as $user_said
  $expected = await CheckUserIntentsExpectedAction()
  if $expected
    $text = $user_said.event.final_transcript
    $intent = await GenerateUserIntentAction(user_action='user said "{$text}"', max_example_flows=20)
    send FinishFlow(flow_id=$intent)

@loop("NEW")
flow continuation on undefined flow
  match UnhandledEvent(event="StartFlow") as $event
  start_new_flow_instance:
  if search("^user ", $event.flow_id)
    send FlowStarted(flow_id=$event.flow_id, flow_instance_uid=$event.flow_instance_uid)
    when FinishFlow(flow_id=$event.flow_id)
      send FlowFinished(flow_id=$event.flow_id, flow_instance_uid=$event.flow_instance_uid)
    or when StopFlow(flow_instance_uid=$event.flow_instance_uid)
      return
  else
    $source = await GenerateFlowFromNameAction(name=$event.flow_id)
    await AddFlowsAction(config=$source)
    await await_flow_by_name $event.flow_id $event.flow_instance_uid
    await RemoveFlowsAction(flow_ids=[$event.flow_id])

flow automating intent detection
  match StreamguardNeverSent() as $event

flow generating user intent for unhandled user utterance
  await _user_said_something_unexpected as $user_said
  $text = $user_said.event.final_transcript
  $intent = await GenerateUserIntentAction(user_action='user said "{$text}"', max_example_flows=20)
  send FinishFlow(flow_id=$intent)

flow unhandled user intent -> $intent
  match UnhandledEvent(event="FinishFlow", flow_id=regex("^user ")) as $event
  $intent = $event.flow_id

flow await_flow_by_name $flow_name $new_flow_instance_uid=None
  send StartFlow(flow_id=$flow_name, flow_instance_uid=$new_flow_instance_uid)
  when FlowFinished(flow_id=$flow_name)
    return
  or when FlowFailed(flow_id=$flow_name)
    abort

flow llm continue interaction
  $flow_info = await GenerateFlowContinuationAction(temperature=0.1)
  await AddFlowsAction(config=$flow_info.body)
  await await_flow_by_name $flow_info.name
  await RemoveFlowsAction(flow_ids=[$flow_info.name])

flow bot say something like $text
  $variation = ..."Return a single string that is a new variation of: {$text}"
  bot say $variation
"#;

/// The library as a source file.
pub(super) fn source() -> SourceFile {
    SourceFile {
        path: "<streamguard's Colang 2 core library>".into(),
        text: FLOWS.to_string(),
    }
}
